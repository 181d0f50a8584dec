//! At most one remote create per resource per `--min-reissue-interval`, whatever the planner
//! says; after failed issuances, exponentially less often (`backoff`). A spec mistake, a lying remote or an operator bug can then cost Frontegg one token
//! per interval, never a hot loop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use crate::api::IssuanceBackoff;

/// When each resource (by UID) last attempted a remote create. The status holds the same
/// fact durably (`current.issuedAt`); this map also covers attempts whose status write never
/// happened (the create failed half-way, or the Secret write was refused). An entry older
/// than the interval no longer restrains anything, so such entries are swept whenever the map
/// has doubled: it holds about one interval's attempts, not one entry per token ever issued.
#[derive(Default)]
pub struct IssueThrottle {
    last_attempt: Mutex<Attempts>,
}

#[derive(Default)]
struct Attempts {
    by_uid: HashMap<String, Timestamp>,
    sweep_at: usize,
}

/// The map's size below which it is never swept.
const SWEEP_FLOOR: usize = 1024;

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
        let Ok(mut attempts) = self.last_attempt.lock() else {
            // A poisoned map means a panic elsewhere; refusing is the safe side.
            return Err(interval);
        };
        let Attempts {
            by_uid: last,
            sweep_at,
        } = &mut *attempts;
        let latest = match (last.get(uid).copied(), recorded) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if let Some(wait) = wait_before_next(latest, now, interval) {
            return Err(wait);
        }
        last.insert(uid.to_string(), now);
        if last.len() >= *sweep_at {
            last.retain(|_, at| wait_before_next(Some(*at), now, interval).is_some());
            last.shrink_to_fit();
            *sweep_at = last.len().saturating_mul(2).max(SWEEP_FLOOR);
        }
        Ok(())
    }

    /// Forgets a deleted resource.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut attempts) = self.last_attempt.lock() {
            attempts.by_uid.remove(uid);
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

/// The wait after the `failures`-th failed issuance in a row: `base` doubled per failure
/// after the first, at most `cap`.
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1u32 << doublings).min(cap)
}

/// The failures recorded in `recorded` that still count: counted under this spec generation
/// and rotate request (a change of either starts over).
pub fn failures_that_count<'a>(
    recorded: Option<&'a IssuanceBackoff>,
    generation: Option<i64>,
    rotation_request: Option<&str>,
) -> Option<&'a IssuanceBackoff> {
    recorded
        .filter(|b| b.generation == generation && b.rotation_request.as_deref() == rotation_request)
}

/// The record after one more failure at `now`.
pub fn after_failure(
    counted: Option<&IssuanceBackoff>,
    reason: &str,
    now: Timestamp,
    base: Duration,
    cap: Duration,
) -> IssuanceBackoff {
    let failures = counted.map_or(1, |b| b.failures.saturating_add(1));
    let wait = backoff(failures, base, cap);
    IssuanceBackoff {
        failures,
        next_attempt_at: now.checked_add(wait).unwrap_or(now),
        last_failure: reason.to_string(),
        generation: None,
        rotation_request: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_double_the_wait_up_to_the_cap_and_a_change_starts_over() {
        let (base, cap) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n, base, cap).as_secs()).collect();
        assert_eq!(
            waits,
            [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600]
        );
        assert_eq!(backoff(u32::MAX, base, cap), cap);
        assert_eq!(backoff(3, Duration::ZERO, cap), Duration::ZERO);
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut record = after_failure(None, "KubernetesError", now, base, cap);
        record.generation = Some(2);
        assert_eq!(record.failures, 1);
        assert_eq!(record.next_attempt_at, now + base);
        let counted = failures_that_count(Some(&record), Some(2), None);
        let second = after_failure(counted, "KubernetesError", now, base, cap);
        assert_eq!(
            (second.failures, second.next_attempt_at),
            (2, now + 2 * base)
        );
        // A spec change (generation 3) or a rotate request: the failures no longer count.
        assert!(failures_that_count(Some(&record), Some(3), None).is_none());
        assert!(failures_that_count(Some(&record), Some(2), Some("now")).is_none());
        let fresh = after_failure(None, "KubernetesError", now, base, cap);
        assert_eq!(fresh.failures, 1);
    }

    #[test]
    fn attempts_older_than_the_interval_are_swept_and_recent_ones_kept() {
        let throttle = IssueThrottle::default();
        let interval = Duration::from_secs(60);
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // 10,000 resources issued at 100/s: 100 s, more than one interval.
        for i in 0..10_000u64 {
            let now = start + Duration::from_millis(10 * i);
            assert!(
                throttle
                    .try_acquire(&format!("uid-{i}"), None, now, interval)
                    .is_ok()
            );
        }
        let held = throttle.last_attempt.lock().unwrap().by_uid.len();
        assert!(held < 8_000, "swept: {held} entries held");
        // The last interval's attempts still restrain.
        let now = start + Duration::from_millis(100_000);
        assert!(
            throttle
                .try_acquire("uid-9999", None, now, interval)
                .is_err()
        );
        assert!(
            throttle
                .try_acquire("uid-9000", None, now, interval)
                .is_err()
        );
    }

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
