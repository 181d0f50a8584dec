//! At most one remote create per resource per `--min-reissue-interval`, whatever the planner
//! says. A spec mistake, a lying remote or an operator bug can then cost Frontegg one token
//! per interval, never a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// When each resource (by UID) last attempted a remote create. The status holds the same
/// fact durably (`current.issuedAt`); this map also covers attempts whose status write never
/// happened (the create failed half-way, or the Secret write was refused).
#[derive(Default)]
pub struct IssueThrottle {
    last_attempt: Mutex<HashMap<String, Timestamp>>,
}

impl IssueThrottle {
    /// Claims the right to create now, or returns how long to wait. `recorded` is the last
    /// create the status knows of.
    pub fn try_acquire(
        &self,
        uid: &str,
        recorded: Option<Timestamp>,
        now: Timestamp,
        interval: Duration,
    ) -> Result<(), Duration> {
        let Ok(mut last) = self.last_attempt.lock() else {
            // A poisoned map means a panic elsewhere; refusing is the safe side.
            return Err(interval);
        };
        let latest = match (last.get(uid).copied(), recorded) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(wait) = wait_before_next(latest, now, interval) {
            return Err(wait);
        }
        last.insert(uid.to_string(), now);
        Ok(())
    }

    /// Forgets a deleted resource.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut last) = self.last_attempt.lock() {
            last.remove(uid);
        }
    }
}

/// How long until another create is allowed; None when it is allowed now. A `last` in the
/// future (a clock step) counts as now.
pub fn wait_before_next(
    last: Option<Timestamp>,
    now: Timestamp,
    interval: Duration,
) -> Option<Duration> {
    let last = last?.min(now);
    let since = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
    interval.checked_sub(since).filter(|w| !w.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planner_that_always_rotates_gets_one_create_per_interval() {
        let throttle = IssueThrottle::default();
        let interval = Duration::from_secs(60);
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let always_rotate = |_: Timestamp| true;
        let mut creates = 0;
        // Ten minutes of reconciles, one every 250 ms.
        for tick in 0..(10 * 60 * 4) {
            let now = start + Duration::from_millis(250 * tick);
            if always_rotate(now) && throttle.try_acquire("uid", None, now, interval).is_ok() {
                creates += 1;
            }
        }
        assert_eq!(creates, 10);
    }

    #[test]
    fn the_status_record_counts_after_a_restart_and_waits_are_exact() {
        let throttle = IssueThrottle::default();
        let interval = Duration::from_secs(60);
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let recorded = Some("2026-01-01T00:00:30Z".parse().unwrap());
        assert_eq!(
            throttle.try_acquire("uid", recorded, now, interval),
            Err(Duration::from_secs(30))
        );
        assert_eq!(throttle.try_acquire("other", None, now, interval), Ok(()));
        let future = Some("2030-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(
            throttle.try_acquire("skewed", future, now, interval),
            Err(interval)
        );
        assert_eq!(
            throttle.try_acquire("off", recorded, now, Duration::ZERO),
            Ok(())
        );
    }
}
