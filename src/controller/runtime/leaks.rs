//! Leaked tokens: remote tokens this installation created whose resource no longer exists
//! (someone removed its finalizer by hand). The group listings find them
//! (`steps/leaks.rs`); the environment check reports them and, with
//! `--collect-leaked-tokens`, revokes them (`environment/leaks.rs`). Held in memory: after a
//! restart the next listings find them again, and collection waits a full period again.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

use super::listings::GroupKey;
use crate::identity::TokenOwner;

/// One leaked token.
#[derive(Clone, Debug, PartialEq)]
pub struct Leak {
    /// The endpoint family it was listed from (`TokenEndpoint::NAME`), to revoke it there.
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub id: String,
    /// The UID its mark names, which no token resource has any longer.
    pub resource_uid: String,
    pub owner: TokenOwner,
    pub first_seen: Timestamp,
}

#[derive(Default)]
pub struct Leaks {
    groups: Mutex<HashMap<GroupKey, Vec<Leak>>>,
}

impl Leaks {
    /// What one listing of `key` showed: the group's leaks are replaced, and one seen before
    /// keeps its first sighting.
    pub fn observe(&self, key: GroupKey, mut found: Vec<Leak>) {
        let Ok(mut groups) = self.groups.lock() else {
            return;
        };
        if let Some(before) = groups.get(&key) {
            for leak in &mut found {
                if let Some(earlier) = before.iter().find(|b| b.id == leak.id) {
                    leak.first_seen = earlier.first_seen;
                }
            }
        }
        if found.is_empty() {
            groups.remove(&key);
        } else {
            groups.insert(key, found);
        }
    }

    /// Every leak of the environment with this key, oldest sighting first.
    pub fn of_environment(&self, environment: &str) -> Vec<Leak> {
        let Ok(groups) = self.groups.lock() else {
            return Vec::new();
        };
        let mut all: Vec<Leak> = groups
            .iter()
            .filter(|(k, _)| k.environment == environment)
            .flat_map(|(_, leaks)| leaks.iter().cloned())
            .collect();
        all.sort_by(|a, b| (a.first_seen, &a.id).cmp(&(b.first_seen, &b.id)));
        all
    }

    /// A leak revoked: gone until a listing shows it again.
    pub fn forget(&self, environment: &str, id: &str) {
        if let Ok(mut groups) = self.groups.lock() {
            for (_, leaks) in groups
                .iter_mut()
                .filter(|(k, _)| k.environment == environment)
            {
                leaks.retain(|l| l.id != id);
            }
            groups.retain(|_, leaks| !leaks.is_empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(env: &str, tenant: &str) -> GroupKey {
        GroupKey {
            environment: env.into(),
            kind: "UserApiToken",
            endpoint: "user-api-tokens",
            tenant: tenant.into(),
            user: None,
        }
    }

    fn leak(id: &str, at: i64) -> Leak {
        Leak {
            endpoint: "user-api-tokens",
            kind: "UserApiToken",
            id: id.into(),
            resource_uid: "gone".into(),
            owner: TokenOwner {
                tenant_id: "t".into(),
                user_id: None,
            },
            first_seen: Timestamp::from_second(at).unwrap(),
        }
    }

    #[test]
    fn a_leak_keeps_its_first_sighting_until_a_listing_no_longer_shows_it() {
        let leaks = Leaks::default();
        leaks.observe(key("e", "t1"), vec![leak("a", 10)]);
        leaks.observe(key("e", "t2"), vec![leak("b", 20)]);
        leaks.observe(key("other", "t1"), vec![leak("c", 5)]);
        leaks.observe(key("e", "t1"), vec![leak("a", 30), leak("d", 30)]);
        let seen: Vec<(String, i64)> = leaks
            .of_environment("e")
            .into_iter()
            .map(|l| (l.id, l.first_seen.as_second()))
            .collect();
        assert_eq!(
            seen,
            vec![("a".into(), 10), ("b".into(), 20), ("d".into(), 30)]
        );
        leaks.observe(key("e", "t1"), vec![]);
        leaks.forget("e", "b");
        assert!(leaks.of_environment("e").is_empty());
        assert_eq!(leaks.of_environment("other").len(), 1);
    }
}
