//! Shared remote listings: one list call per (environment, kind, tenant, user) group per
//! drift period, whatever the number of resources in the group.
//!
//! Reconciles never wait for a drift listing. They register the group they belong to
//! (`watch`) and read whatever listing is at hand; each environment's background lister
//! (`background.rs`) lists the groups in turn, oldest first, at the pace the budget allows.
//! When the groups need more listings per period than the budget leaves, the achieved period
//! stretches; when they fit again, it shrinks back. Listings someone waits for (a recovery,
//! an import) are fetched in place (`listing`) and shared with the drift checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;

use super::jitter::jitter;
use crate::identity::{IdentityError, RemoteToken};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GroupKey {
    pub environment: String,
    /// The token kind, and its endpoint family (one per kind).
    pub kind: &'static str,
    pub endpoint: &'static str,
    pub tenant: String,
    pub user: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Listing {
    pub fetched_at: Timestamp,
    pub tokens: Arc<Vec<RemoteToken>>,
}

/// Lists one group in the background, through the client of the reconcile that last
/// registered it (a changed environment brings a new client).
pub type Lister =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<RemoteToken>, IdentityError>> + Send + Sync>;

type Slot = Arc<tokio::sync::Mutex<Option<Listing>>>;

struct Group {
    /// The latest listing; its lock makes concurrent in-place fetches share one call.
    slot: Slot,
    /// Set once a reconcile registered the group for drift checks.
    lister: Option<Lister>,
    /// When the next background listing is due.
    due: Timestamp,
    /// When a reconcile last registered it, or a listing was fetched in place: a group
    /// nobody uses for a few periods has no resources left and is dropped.
    seen: Timestamp,
}

impl Group {
    fn new(due: Timestamp, now: Timestamp) -> Self {
        Group {
            slot: Slot::default(),
            lister: None,
            due,
            seen: now,
        }
    }
}

/// A group whose background listing is due, and how to list it.
pub struct Due {
    pub key: GroupKey,
    pub lister: Lister,
}

/// How one environment's drift checks keep up, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pace {
    pub groups: usize,
    /// The configured period plus how late the most overdue group is.
    pub achieved: Duration,
}

/// Groups unregistered for this many periods are dropped.
const FORGET_AFTER_PERIODS: u32 = 3;

/// An environment's use of its budget between two measurements.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BudgetUse {
    /// Turns given per second, all priorities.
    pub rate: f64,
    /// Turns given per second to foreground work (urgent and interactive).
    pub foreground_rate: f64,
}

#[derive(Default)]
pub struct DriftCache {
    groups: Mutex<HashMap<GroupKey, Group>>,
    /// Per environment: when its budget was last measured, and the turns given by then.
    samples: Mutex<HashMap<String, (Timestamp, [u64; 3])>>,
}

impl DriftCache {
    /// Registers `key` for background drift checks (listed through `lister` once per
    /// `period`) and returns the latest listing at hand, however old: its `fetched_at` says
    /// what it can prove. A new group's first turn is spread over one period, so a restart
    /// (or a burst of new groups) does not list every group at once. So is that of a group
    /// first listed in place (a recovery): it was just listed, and would otherwise be due at
    /// once and listed again.
    pub fn watch(&self, key: GroupKey, lister: Lister, period: Duration) -> Option<Listing> {
        let now = Timestamp::now();
        let slot = {
            let mut groups = self.groups.lock().ok()?;
            let first_turn = later(now, period.mul_f64(jitter(0.05, 1.0)));
            let group = groups
                .entry(key)
                .or_insert_with(|| Group::new(first_turn, now));
            if group.lister.is_none() {
                group.due = group.due.max(first_turn);
            }
            group.lister = Some(lister);
            group.seen = now;
            group.slot.clone()
        };
        // Held only while a listing is stored or fetched in place; a busy slot means a fresh
        // listing is on its way, and the next pass reads it.
        slot.try_lock().ok().and_then(|l| l.clone())
    }

    /// Returns a listing no older than `max_age`, fetching it at most once for all concurrent
    /// callers of the same group. Used where someone waits for the answer.
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
        let slot = self.slot(key)?;
        let mut cached = slot.lock().await;
        if let Some(listing) = cached.as_ref()
            && age(listing.fetched_at, Timestamp::now()) < max_age
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

    fn slot(&self, key: GroupKey) -> Result<Slot, IdentityError> {
        let mut groups = self
            .groups
            .lock()
            .map_err(|_| IdentityError::Transient("drift cache poisoned".into()))?;
        let now = Timestamp::now();
        let group = groups.entry(key).or_insert_with(|| Group::new(now, now));
        group.seen = now;
        Ok(group.slot.clone())
    }

    /// The most overdue registered group of `environment` whose turn has come at `now`, with
    /// how long until the next turn when none has. Groups nobody registered for a few
    /// periods are dropped here.
    pub fn next_due(
        &self,
        environment: &str,
        now: Timestamp,
        period: Duration,
    ) -> Result<Due, Duration> {
        let Ok(mut groups) = self.groups.lock() else {
            return Err(period);
        };
        let forget = period.saturating_mul(FORGET_AFTER_PERIODS);
        // Also the groups only ever listed in place (a recovery, an import): none is kept
        // for longer than its use.
        groups.retain(|_, g| age(g.seen, now) < forget);
        let oldest = groups
            .iter()
            .filter(|(k, g)| k.environment == environment && g.lister.is_some())
            .min_by_key(|(_, g)| g.due);
        match oldest {
            Some((key, group)) if group.due <= now => Ok(Due {
                key: key.clone(),
                lister: group.lister.clone().ok_or(period)?,
            }),
            Some((_, group)) => Err(until(now, group.due)),
            None => Err(period),
        }
    }

    /// Stores a background listing of `key`, fetched from `fetched_at` on, and schedules the
    /// group's next turn one period after it.
    pub async fn store(
        &self,
        key: &GroupKey,
        tokens: Vec<RemoteToken>,
        fetched_at: Timestamp,
        period: Duration,
    ) -> Listing {
        let listing = Listing {
            fetched_at,
            tokens: Arc::new(tokens),
        };
        let slot = match self.groups.lock() {
            Ok(mut groups) => groups.get_mut(key).map(|g| {
                g.due = later(fetched_at, period);
                g.slot.clone()
            }),
            Err(_) => None,
        };
        if let Some(slot) = slot {
            *slot.lock().await = Some(listing.clone());
        }
        listing
    }

    /// Puts a group whose listing failed back in line after `delay`, behind the others.
    pub fn postpone(&self, key: &GroupKey, now: Timestamp, delay: Duration) {
        if let Ok(mut groups) = self.groups.lock()
            && let Some(group) = groups.get_mut(key)
        {
            group.due = later(now, delay);
        }
    }

    /// The environments with groups registered for drift checks.
    pub fn environments(&self) -> Vec<String> {
        let Ok(groups) = self.groups.lock() else {
            return Vec::new();
        };
        let mut envs: Vec<String> = groups
            .iter()
            .filter(|(_, g)| g.lister.is_some())
            .map(|(k, _)| k.environment.clone())
            .collect();
        envs.sort_unstable();
        envs.dedup();
        envs
    }

    /// How `environment`'s drift checks keep up at `now`.
    pub fn pace(&self, environment: &str, now: Timestamp, period: Duration) -> Pace {
        let Ok(groups) = self.groups.lock() else {
            return Pace::default();
        };
        let mut pace = Pace {
            groups: 0,
            achieved: period,
        };
        for (_, group) in groups
            .iter()
            .filter(|(k, g)| k.environment == environment && g.lister.is_some())
        {
            pace.groups = pace.groups.saturating_add(1);
            pace.achieved = pace
                .achieved
                .max(period.saturating_add(age(group.due, now)));
        }
        pace
    }
}

/// A measurement of an environment's budget use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measured {
    /// The last one is younger than the interval: keep what it said.
    TooSoon,
    /// The first one: nothing to compare with yet.
    First,
    Used(BudgetUse),
}

impl DriftCache {
    /// The budget use of `environment` since the last measurement, from the client's running
    /// count of turns (`granted`, in `Priority::ALL` order), at most once per `interval`: an
    /// environment's status write brings its next check at once, and a measurement over a
    /// few milliseconds would say nothing (and change the status again).
    pub fn budget_use(
        &self,
        environment: &str,
        granted: [u64; 3],
        now: Timestamp,
        interval: Duration,
    ) -> Measured {
        let Ok(mut samples) = self.samples.lock() else {
            return Measured::TooSoon;
        };
        let previous = samples.get(environment).copied();
        if previous.is_some_and(|(then, _)| age(then, now) < interval) {
            return Measured::TooSoon;
        }
        samples.insert(environment.to_string(), (now, granted));
        let Some((then, before)) = previous else {
            return Measured::First;
        };
        rates(granted, before, age(then, now).as_secs_f64()).map_or(Measured::First, Measured::Used)
    }
}

/// Turns per second from two counts `secs` apart.
fn rates(granted: [u64; 3], before: [u64; 3], secs: f64) -> Option<BudgetUse> {
    if secs <= 0.0 {
        return None;
    }
    let delta = |i: usize| {
        let (a, b) = (granted.get(i).copied()?, before.get(i).copied()?);
        // A new client (the environment changed) counts from zero again.
        Some(a.checked_sub(b).unwrap_or(a) as f64)
    };
    let foreground = delta(0)? + delta(1)?;
    Some(BudgetUse {
        rate: (foreground + delta(2)?) / secs,
        foreground_rate: foreground / secs,
    })
}

/// How long ago `then` was; zero when it is in the future.
fn age(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

fn until(now: Timestamp, then: Timestamp) -> Duration {
    age(now, then)
}

fn later(t: Timestamp, by: Duration) -> Timestamp {
    t.checked_add(by).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn key(env: &str, user: usize) -> GroupKey {
        GroupKey {
            environment: env.into(),
            kind: "K",
            endpoint: "x",
            tenant: "t".into(),
            user: Some(format!("u{user}")),
        }
    }

    fn lister() -> Lister {
        Arc::new(|| Box::pin(async { Ok(vec![]) }))
    }

    #[tokio::test]
    async fn a_new_group_waits_for_its_spread_out_turn_and_reads_what_is_at_hand() {
        let cache = DriftCache::default();
        let hour = Duration::from_secs(3600);
        assert!(cache.watch(key("e", 1), lister(), hour).is_none());
        // Its turn is somewhere in the coming hour, not now.
        let now = Timestamp::now();
        let wait = cache.next_due("e", now, hour).err().unwrap();
        assert!(wait > Duration::ZERO && wait <= hour, "{wait:?}");
        // A listing fetched in place (a recovery) is at hand for the next pass.
        cache
            .listing(key("e", 1), Duration::ZERO, || async { Ok(vec![]) })
            .await
            .unwrap();
        assert!(cache.watch(key("e", 1), lister(), hour).is_some());
        // Other environments' groups are not this one's.
        assert!(cache.next_due("other", now, hour).is_err());
    }

    #[tokio::test]
    async fn a_group_first_listed_in_place_is_not_listed_again_at_once_when_registered() {
        let cache = DriftCache::default();
        let hour = Duration::from_secs(3600);
        // A recovery lists the group in place before any reconcile registered it.
        cache
            .listing(key("e", 1), Duration::ZERO, || async { Ok(vec![]) })
            .await
            .unwrap();
        assert!(cache.watch(key("e", 1), lister(), hour).is_some());
        let wait = cache.next_due("e", Timestamp::now(), hour).err();
        assert!(
            wait.is_some_and(|w| w > Duration::ZERO && w <= hour),
            "{wait:?}"
        );
        // Registering again keeps the turn it was given.
        let again = cache.next_due("e", Timestamp::now(), hour).err();
        cache.watch(key("e", 1), lister(), hour);
        let after = cache.next_due("e", Timestamp::now(), hour).err();
        assert!(
            after.zip(again).is_some_and(|(a, b)| a <= b),
            "{after:?} {again:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_per_period() {
        let cache = Arc::new(DriftCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let key = key("e", 0);
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

    /// Runs the background lister of environment "e" on a simulated clock for `span`, at
    /// `rate` listings per second, while reconciles keep registering the groups of users
    /// below `live`; returns (the groups in the order listed, the pace at the end).
    async fn simulate(
        cache: &DriftCache,
        (start, span): (Timestamp, Duration),
        rate: f64,
        period: Duration,
        live: usize,
    ) -> (Vec<GroupKey>, Pace) {
        let step = Duration::from_secs_f64(1.0 / rate);
        let mut now = start;
        let mut listed = Vec::new();
        while now < start + span {
            for (k, g) in cache.groups.lock().unwrap().iter_mut() {
                if k.user.as_deref().unwrap()[1..].parse::<usize>().unwrap() < live {
                    g.seen = now;
                }
            }
            match cache.next_due("e", now, period) {
                Ok(due) => {
                    cache.store(&due.key, vec![], now, period).await;
                    listed.push(due.key);
                    now += step;
                }
                Err(wait) => now += wait.max(step),
            }
        }
        (listed, cache.pace("e", now, period))
    }

    /// Registers `n` groups as reconciles would, all due at `at`.
    fn register(cache: &DriftCache, n: usize, at: Timestamp) {
        for user in 0..n {
            cache.watch(key("e", user), lister(), Duration::from_secs(1));
            cache
                .groups
                .lock()
                .unwrap()
                .get_mut(&key("e", user))
                .unwrap()
                .due = at;
        }
    }

    #[tokio::test]
    async fn the_period_stretches_when_groups_outgrow_the_budget_and_shrinks_back() {
        let cache = DriftCache::default();
        let period = Duration::from_secs(20);
        let start = Timestamp::now();
        // 600 groups at 10 listings/s need 60 s: three times the period.
        register(&cache, 600, start);
        let span = Duration::from_secs(300);
        let (listed, pace) = simulate(&cache, (start, span), 10.0, period, 600).await;
        assert_eq!(pace.groups, 600);
        let achieved = pace.achieved.as_secs_f64();
        assert!((55.0..=65.0).contains(&achieved), "achieved {achieved} s");
        // Fair: every group got its turns, none more than one ahead of another.
        let mut counts = HashMap::new();
        for k in &listed {
            *counts.entry(k.clone()).or_insert(0) += 1;
        }
        let (min, max) = (
            counts.values().min().unwrap(),
            counts.values().max().unwrap(),
        );
        assert!(max - min <= 1, "turns per group from {min} to {max}");
        // 500 of them go (their resources deleted: nobody registers them any more): they are
        // dropped after three periods, and the 100 left fit in the period again.
        let later = start + span;
        let span = Duration::from_secs(120);
        let (_, pace) = simulate(&cache, (later, span), 10.0, period, 100).await;
        assert_eq!(pace.groups, 100);
        assert!(
            pace.achieved <= period + Duration::from_secs(1),
            "{:?}",
            pace.achieved
        );
    }

    #[tokio::test]
    async fn the_oldest_listing_goes_first() {
        let cache = DriftCache::default();
        let period = Duration::from_secs(10);
        let start = Timestamp::now();
        register(&cache, 3, start);
        // Group 2 was listed longest ago, then 0, then 1.
        for (user, ago) in [(0, 30), (1, 20), (2, 40)] {
            cache
                .groups
                .lock()
                .unwrap()
                .get_mut(&key("e", user))
                .unwrap()
                .due = start - Duration::from_secs(ago);
        }
        let mut order = Vec::new();
        for _ in 0..3 {
            let due = cache.next_due("e", start, period).ok().unwrap();
            order.push(due.key.user.clone().unwrap());
            cache.store(&due.key, vec![], start, period).await;
        }
        assert_eq!(order, ["u2", "u0", "u1"]);
        // Nobody is due now: the answer is how long until the next turn.
        assert_eq!(cache.next_due("e", start, period).err(), Some(period));
    }

    #[tokio::test]
    async fn groups_nobody_uses_for_three_periods_are_dropped() {
        let cache = DriftCache::default();
        let period = Duration::from_secs(10);
        let start = Timestamp::now();
        register(&cache, 2, start);
        // A group only ever listed in place (a recovery) goes the same way.
        cache
            .listing(key("e", 9), Duration::ZERO, || async { Ok(vec![]) })
            .await
            .unwrap();
        let much_later = start + Duration::from_secs(31);
        assert!(cache.next_due("e", much_later, period).is_err());
        assert_eq!(cache.pace("e", much_later, period).groups, 0);
        assert!(cache.environments().is_empty());
        assert!(cache.groups.lock().unwrap().is_empty());
    }
}
