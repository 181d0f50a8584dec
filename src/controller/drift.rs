//! Shared remote listings: one list call per (environment, kind, tenant, user) group per
//! resync period, whatever the number of resources in the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use crate::identity::{IdentityError, RemoteToken};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub environment: String,
    pub endpoint: &'static str,
    pub tenant: String,
    pub user: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Listing {
    pub fetched_at: Timestamp,
    pub tokens: Arc<Vec<RemoteToken>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

#[derive(Default)]
pub struct DriftCache {
    groups: Mutex<HashMap<GroupKey, Slot>>,
}

impl DriftCache {
    /// Returns a listing no older than `max_age`, fetching it at most once for all concurrent
    /// callers of the same group.
    pub async fn listing<F, Fut>(
        &self,
        key: GroupKey,
        max_age: Duration,
        fetch: F,
    ) -> Result<Listing, IdentityError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<RemoteToken>, IdentityError>>,
    {
        let slot = {
            let mut groups = self
                .groups
                .lock()
                .map_err(|_| IdentityError::Transient("drift cache poisoned".into()))?;
            groups.entry(key).or_default().clone()
        };
        let mut cached = slot.lock().await;
        let now = Timestamp::now();
        if let Some(listing) = cached.as_ref()
            && Duration::try_from(now.duration_since(listing.fetched_at)).unwrap_or(Duration::MAX)
                < max_age
        {
            return Ok(listing.clone());
        }
        // Stamp before the call: a token created while the list is in flight must not be
        // judged missing by it.
        let fetched_at = Timestamp::now();
        let tokens = fetch().await?;
        let listing = Listing {
            fetched_at,
            tokens: Arc::new(tokens),
        };
        *cached = Some(listing.clone());
        Ok(listing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_per_period() {
        let cache = Arc::new(DriftCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = GroupKey {
            environment: "e".into(),
            endpoint: "x",
            tenant: "t".into(),
            user: None,
        };
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (cache, calls, key) = (cache.clone(), calls.clone(), key.clone());
                tokio::spawn(async move {
                    cache
                        .listing(key, Duration::from_secs(60), || async {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            Ok(vec![])
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache
            .listing(key, Duration::ZERO, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(vec![])
            })
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
