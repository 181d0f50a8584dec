//! The schedule of a delivered JWT (pure): when the Secret's JWT is due for replacement, and
//! the state the plan reads.

use std::time::Duration;

use jiff::Timestamp;

/// Default `refreshBefore`.
pub const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(600);

/// The delivered JWT, as the plan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtState {
    /// The spec does not ask for one.
    NotWanted,
    /// Wanted, but the Secret has none (or an unreadable expiry).
    Missing,
    /// The Secret's JWT is good until this refresh time.
    RefreshAt(Timestamp),
}

/// The shortest time between two JWTs for one token. A server (or a hostile `baseUrl`) that
/// hands out JWTs living a second must not turn into a Secret write per second per token.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// When to replace a JWT: `refresh_before` ahead of its expiry, but never in the first half of
/// its life, so that a JWT shorter than `refreshBefore` is not refreshed on every pass, and
/// never sooner than `MIN_REFRESH_INTERVAL` after it was obtained.
pub fn refresh_time(
    obtained: Timestamp,
    expires: Timestamp,
    refresh_before: Duration,
) -> Timestamp {
    let lifetime = Duration::try_from(expires.duration_since(obtained)).unwrap_or(Duration::ZERO);
    let before = refresh_before.min(lifetime.checked_div(2).unwrap_or_default());
    let due = expires.checked_sub(before).unwrap_or(expires);
    let floor = obtained
        .checked_add(MIN_REFRESH_INTERVAL)
        .unwrap_or(obtained);
    due.max(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn refresh_before_expiry_but_not_in_the_first_half_of_life() {
        let t0 = at("2026-01-01T00:00:00Z");
        let one_hour = at("2026-01-01T01:00:00Z");
        assert_eq!(
            refresh_time(t0, one_hour, DEFAULT_REFRESH_BEFORE),
            at("2026-01-01T00:50:00Z")
        );
        // A JWT shorter than refreshBefore is refreshed at half its life, not at once.
        let five_minutes = at("2026-01-01T00:05:00Z");
        assert_eq!(
            refresh_time(t0, five_minutes, DEFAULT_REFRESH_BEFORE),
            at("2026-01-01T00:02:30Z")
        );
        // A JWT that lives 2 s (or already expired) is still replaced only after 10 s.
        let two_seconds = at("2026-01-01T00:00:02Z");
        assert_eq!(
            refresh_time(t0, two_seconds, DEFAULT_REFRESH_BEFORE),
            at("2026-01-01T00:00:10Z")
        );
        assert_eq!(
            refresh_time(one_hour, t0, DEFAULT_REFRESH_BEFORE),
            at("2026-01-01T01:00:10Z")
        );
    }
}
