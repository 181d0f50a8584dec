//! Shared remote listings: one list call per (environment, kind, tenant, user) group per
//! resync period, whatever the number of resources in the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;

use super::jitter::jitter;
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
    /// When each group's first periodic listing is due, spread over one period from the
    /// moment the group is first seen: a restart (or a burst of new groups) must not list
    /// every group at once.
    first_due: Mutex<HashMap<GroupKey, Timestamp>>,
}

impl DriftCache {
    /// The listing drift checks use: at most one fetch per group per `period`, and none before
    /// the group's spread-out first turn. Until then, a listing some other step fetched (a
    /// recovery, an import) is used when it is fresh enough, and `None` otherwise.
    pub async fn periodic_listing<F, Fut>(
        &self,
        key: GroupKey,
        period: Duration,
        fetch: F,
    ) -> Result<Option<Listing>, IdentityError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<RemoteToken>, IdentityError>>,
    {
        let now = Timestamp::now();
        let due = {
            let mut first_due = self
                .first_due
                .lock()
                .map_err(|_| IdentityError::Transient("drift cache poisoned".into()))?;
            *first_due.entry(key.clone()).or_insert_with(|| {
                now.checked_add(period.mul_f64(jitter(0.05, 1.0)))
                    .unwrap_or(now)
            })
        };
        if now < due {
            return Ok(self.cached(&key, period).await);
        }
        self.listing(key, period, fetch).await.map(Some)
    }

    /// A listing already held for `key`, if younger than `max_age`.
    async fn cached(&self, key: &GroupKey, max_age: Duration) -> Option<Listing> {
        let slot = self.groups.lock().ok()?.get(key).cloned()?;
        let cached = slot.lock().await;
        cached
            .as_ref()
            .filter(|l| {
                Duration::try_from(Timestamp::now().duration_since(l.fetched_at))
                    .unwrap_or(Duration::MAX)
                    < max_age
            })
            .cloned()
    }

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
    async fn the_first_periodic_listing_waits_for_its_turn_unless_one_is_at_hand() {
        let cache = DriftCache::default();
        let calls = AtomicUsize::new(0);
        let key = |t: &str| GroupKey {
            environment: "e".into(),
            endpoint: "x",
            tenant: t.into(),
            user: None,
        };
        let hour = Duration::from_secs(3600);
        // A group seen for the first time gets its turn later in the period: no call now.
        for tenant in ["a", "b", "c"] {
            let got = cache
                .periodic_listing(key(tenant), hour, || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(vec![])
                })
                .await
                .unwrap();
            assert!(got.is_none());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // A listing fetched for another reason (a recovery) is used meanwhile.
        cache
            .listing(key("a"), Duration::ZERO, || async { Ok(vec![]) })
            .await
            .unwrap();
        let got = cache
            .periodic_listing(key("a"), hour, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(vec![])
            })
            .await
            .unwrap();
        assert!(got.is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        // With no period to spread over, the turn is now.
        let got = cache
            .periodic_listing(key("d"), Duration::ZERO, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(vec![])
            })
            .await
            .unwrap();
        assert!(got.is_some());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

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
