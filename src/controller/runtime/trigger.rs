//! Which watch events start a reconcile: kube-runtime's `predicate_filter`, with a smaller
//! memory of what it has seen.
//!
//! kube-runtime keys its cache by the name, namespace and UID strings of every object, about
//! 200 bytes per token; here a key is a hash of the UID, and an entry takes 24 bytes. A hash
//! collision between two UIDs (2^-64 per pair) could hide one change of one of them until the
//! next resync, which requeues every token anyway.

use std::collections::HashMap;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt, future};
use kube::Resource;
use kube::runtime::utils::Predicate;

/// An object not seen for this long counts as new again, and its entry is dropped, as in
/// kube-runtime (whose default is the same hour).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

struct Seen {
    hash: u64,
    /// Seconds since the filter started.
    at: u32,
}

fn key_of<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    let mut hasher = DefaultHasher::new();
    match &meta.uid {
        Some(uid) => uid.hash(&mut hasher),
        None => (&meta.namespace, &meta.name).hash(&mut hasher),
    }
    hasher.finish()
}

/// Passes an object on only when `predicate`'s hash of it changed (or it is new, or it was not
/// seen for an hour); objects the predicate cannot hash always pass.
pub fn changed<K, E, S, P>(stream: S, predicate: P) -> impl Stream<Item = Result<K, E>>
where
    K: Resource,
    S: Stream<Item = Result<K, E>>,
    P: Predicate<K>,
{
    let start = Instant::now();
    let mut last_sweep = 0u32;
    let mut seen: HashMap<u64, Seen> = HashMap::new();
    let forget = u32::try_from(FORGET_AFTER.as_secs()).unwrap_or(u32::MAX);
    stream.filter(move |item| {
        let pass = match item {
            Ok(obj) => match predicate.hash_property(obj) {
                Some(hash) => {
                    let now = u32::try_from(start.elapsed().as_secs()).unwrap_or(u32::MAX);
                    if now.saturating_sub(last_sweep) >= forget {
                        seen.retain(|_, s| now.saturating_sub(s.at) < forget);
                        last_sweep = now;
                    }
                    match seen.entry(key_of(obj)) {
                        Entry::Occupied(mut e) => {
                            let stale = now.saturating_sub(e.get().at) >= forget;
                            let changed = stale || e.get().hash != hash;
                            e.insert(Seen { hash, at: now });
                            changed
                        }
                        Entry::Vacant(e) => {
                            e.insert(Seen { hash, at: now });
                            true
                        }
                    }
                }
                None => true,
            },
            Err(_) => true,
        };
        future::ready(pass)
    })
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use kube::runtime::predicates;

    use super::*;
    use crate::api::UserApiToken;
    use crate::controller::runtime::fixtures::user_api_token;

    fn token(uid: &str, generation: i64) -> Result<UserApiToken, ()> {
        let mut t = user_api_token(|_| {});
        t.metadata.uid = Some(uid.into());
        t.metadata.generation = Some(generation);
        Ok(t)
    }

    #[tokio::test]
    async fn only_new_objects_and_changed_predicates_pass() {
        let events = vec![
            token("a", 1),
            token("b", 1),
            token("a", 1), // a status write: same generation
            token("a", 2), // a spec change
            token("b", 1),
            Err(()),
        ];
        let passed: Vec<_> = changed(stream::iter(events), predicates::generation)
            .map(|r| r.map(|t| (t.metadata.uid.unwrap_or_default(), t.metadata.generation)))
            .collect()
            .await;
        assert_eq!(
            passed,
            vec![
                Ok(("a".to_string(), Some(1))),
                Ok(("b".to_string(), Some(1))),
                Ok(("a".to_string(), Some(2))),
                Err(()),
            ]
        );
    }

    #[tokio::test]
    async fn a_recreated_object_is_new() {
        // Same name and namespace, another UID: a deleted and recreated resource.
        let events = vec![token("a", 1), token("a2", 1)];
        let passed = changed(stream::iter(events), predicates::generation)
            .count()
            .await;
        assert_eq!(passed, 2);
    }
}
