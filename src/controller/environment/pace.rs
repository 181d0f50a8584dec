//! How an environment's background drift checks keep up with its budget, as its status says
//! (`driftChecks`, the `DriftOnSchedule` condition), its metrics (`drift_period_seconds`,
//! `drift_groups`, `budget_used_ratio`) and a Warning when they fall behind.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::events::EventType;

use crate::api::{DriftChecks, EnvironmentStatus};
use crate::controller::runtime::conditions;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::events::Note;
use crate::controller::runtime::listings::{BudgetUse, Measured, Pace};
use crate::identity::IdentityClient;
use crate::metrics::EnvironmentKeyLabels;

/// The longest between two measurements, whatever the resync period.
const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// Past this multiple of the configured period, the checks are reported behind.
const BEHIND: u32 = 2;

/// The share of the budget background work keeps however busy foreground work is (the
/// budget's floor).
const BACKGROUND_FLOOR: f64 = 0.1;

pub const CONDITION: &str = "DriftOnSchedule";

/// Measures the pace of the environment with `key`, records it in `status` and the metrics,
/// and returns the Warning to send when the checks just fell behind.
pub fn report(
    ctx: &Context,
    key: &str,
    client: &IdentityClient,
    status: &mut EnvironmentStatus,
    generation: Option<i64>,
) -> Option<Note> {
    let period = ctx.config.resync;
    let now = Timestamp::now();
    let (granted, qps) = client.budget_use();
    let used = match ctx
        .drift
        .budget_use(key, granted, now, period.min(MAX_INTERVAL))
    {
        // Measured a moment ago (this check follows its own status write): as it was.
        Measured::TooSoon => return None,
        Measured::First => None,
        Measured::Used(used) => Some(used),
    };
    let pace = ctx.drift.pace(key, now, period);
    let previous = status.drift_checks.clone();
    let checks = drift_checks(&pace, used, previous.as_ref(), qps, period);
    publish_metrics(ctx, key, &checks);
    let was_behind = status
        .conditions
        .iter()
        .any(|c| c.type_ == CONDITION && c.status == "False");
    let behind = is_behind(&checks);
    let (reason, message) = describe(&checks, behind);
    conditions::set(
        &mut status.conditions,
        CONDITION,
        !behind,
        reason,
        &message,
        generation,
    );
    status.drift_checks = Some(checks);
    (behind && !was_behind).then_some((EventType::Warning, "DriftChecksBehind", message))
}

/// The status block. Budget use is kept from the last measurement until a new one exists.
fn drift_checks(
    pace: &Pace,
    used: Option<BudgetUse>,
    previous: Option<&DriftChecks>,
    qps: f64,
    period: Duration,
) -> DriftChecks {
    let percent = |rate: f64| (rate / qps * 100.0).round().clamp(0.0, 100.0) as u32;
    let (budget_used_percent, groups_that_fit) = match used {
        Some(u) => {
            let left = (qps - u.foreground_rate).max(qps * BACKGROUND_FLOOR);
            (
                percent(u.rate),
                (left * period.as_secs_f64())
                    .floor()
                    .min(f64::from(u32::MAX)) as u32,
            )
        }
        None => previous.map_or(
            (
                0,
                (qps * period.as_secs_f64())
                    .floor()
                    .min(f64::from(u32::MAX)) as u32,
            ),
            |p| (p.budget_used_percent, p.groups_that_fit),
        ),
    };
    DriftChecks {
        groups: u32::try_from(pace.groups).unwrap_or(u32::MAX),
        configured_period_seconds: period.as_secs(),
        achieved_period_seconds: pace.achieved.as_secs(),
        budget_used_percent,
        groups_that_fit,
    }
}

fn is_behind(checks: &DriftChecks) -> bool {
    checks.achieved_period_seconds
        > checks
            .configured_period_seconds
            .saturating_mul(u64::from(BEHIND))
}

fn describe(checks: &DriftChecks, behind: bool) -> (&'static str, String) {
    if !behind {
        return (
            "OnSchedule",
            format!(
                "{} group(s) listed every {} s (configured {} s)",
                checks.groups, checks.achieved_period_seconds, checks.configured_period_seconds
            ),
        );
    }
    (
        "Behind",
        format!(
            "drift checks of {} group(s) take {} s, more than twice the resync period of {} s; \
             the budget leaves room for about {} group(s) per period: raise the environment's \
             rateLimit.qps if Frontegg allows it, lengthen --resync-period, or spread the tokens \
             over more environments; issuance, rotation and revocation are not delayed",
            checks.groups,
            checks.achieved_period_seconds,
            checks.configured_period_seconds,
            checks.groups_that_fit
        ),
    )
}

fn publish_metrics(ctx: &Context, key: &str, checks: &DriftChecks) {
    let labels = EnvironmentKeyLabels {
        environment: key.to_string(),
    };
    ctx.metrics
        .drift_period_seconds
        .get_or_create(&labels)
        .set(i64::try_from(checks.achieved_period_seconds).unwrap_or(i64::MAX));
    ctx.metrics
        .drift_groups
        .get_or_create(&labels)
        .set(i64::from(checks.groups));
    ctx.metrics
        .budget_used_percent
        .get_or_create(&labels)
        .set(i64::from(checks.budget_used_percent));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(groups: usize, achieved: u64) -> Pace {
        Pace {
            groups,
            achieved: Duration::from_secs(achieved),
        }
    }

    #[test]
    fn behind_past_twice_the_period_with_the_groups_that_would_fit() {
        let period = Duration::from_secs(20);
        let busy = BudgetUse {
            rate: 10.0,
            foreground_rate: 4.0,
        };
        let checks = drift_checks(&pace(600, 60), Some(busy), None, 10.0, period);
        assert_eq!(checks.budget_used_percent, 100);
        // 6 listings/s left × 20 s.
        assert_eq!(checks.groups_that_fit, 120);
        assert!(is_behind(&checks));
        let (reason, message) = describe(&checks, true);
        assert_eq!(reason, "Behind");
        assert!(message.contains("about 120 group(s)"), "{message}");
        // At twice the period exactly, not yet.
        assert!(!is_behind(&drift_checks(
            &pace(10, 40),
            Some(busy),
            None,
            10.0,
            period
        )));
        // Saturated foreground: the floor is what is left.
        let saturated = BudgetUse {
            rate: 10.0,
            foreground_rate: 10.0,
        };
        let checks = drift_checks(&pace(600, 600), Some(saturated), None, 10.0, period);
        assert_eq!(checks.groups_that_fit, 20);
        // No new measurement: the last one stands.
        let kept = drift_checks(&pace(600, 600), None, Some(&checks), 10.0, period);
        assert_eq!(kept.groups_that_fit, 20);
    }
}
