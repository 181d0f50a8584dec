//! Status (pure): what a successful pass records (Ready, the next renewal, drift) and when it
//! looks again. `token::report` writes it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::plan::{Desired, IssueReason, renewal_time};
use crate::api::TokenStatus;
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::conditions;
use crate::controller::runtime::events::{EventType, Note};
use crate::controller::runtime::jitter::jitter;

/// A failed revocation is retried this soon, not after a full resync.
const REVOCATION_RETRY: Duration = Duration::from_secs(30);

/// Marks a successful pass Ready, records the next renewal, and returns when to look again:
/// the next renewal, the JWT's refresh, the end of a grace period, or the resync.
pub fn finish<K: TokenResource>(
    obj: &K,
    desired: &Desired,
    status: &mut TokenStatus,
    now: Timestamp,
    resync: Duration,
    jwt_refresh: Option<Timestamp>,
) -> Duration {
    // A pass that did not wait for a replacement has none waiting (`record_waiting`).
    status.conditions.retain(|c| c.type_ != ROTATING);
    if let Some(c) = &status.current {
        conditions::set(
            &mut status.conditions,
            "Ready",
            true,
            "TokenReady",
            &format!("Secret {} holds token {}", c.secret_name, c.id),
            obj.meta().generation,
        );
    }
    status.observed_generation = obj.meta().generation;
    status.next_renewal = status
        .current
        .as_ref()
        .and_then(|c| renewal_time(c.issued_at, c.expires_at, desired.renew_before));

    let until = |t: Timestamp| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO);
    let mut requeue = status.next_renewal.map_or(resync, until);
    if let Some(at) = jwt_refresh {
        requeue = requeue.min(until(at));
    }
    for pending in &status.pending_revocations {
        let wait = match pending.not_before {
            Some(t) if t > now => until(t).saturating_add(Duration::from_secs(1)),
            _ => REVOCATION_RETRY,
        };
        requeue = requeue.min(wait);
    }
    // Tokens issued together would otherwise resync together, and their groups' drift
    // lists would reach Frontegg in one burst every period: spread them over ±10 %.
    requeue.min(resync.mul_f64(jitter(0.9, 1.1)))
}

/// Sets the RemoteDrift condition from the attributes that differ (`fields`, empty when the
/// remote token matches). It is added only when there is drift, so tokens that never drift
/// carry no extra condition (and cost no write). Returns the Warning to publish when drift is
/// found or its fields change.
pub fn record_drift(
    conditions: &mut Vec<Condition>,
    fields: &[String],
    hint: &str,
    generation: Option<i64>,
) -> Option<Note> {
    let existing = conditions.iter().find(|c| c.type_ == REMOTE_DRIFT);
    if fields.is_empty() {
        if existing.is_some_and(|c| c.status == "True") {
            conditions::set(
                conditions,
                REMOTE_DRIFT,
                false,
                "InSync",
                "the remote token matches the spec",
                generation,
            );
        }
        return None;
    }
    let message = format!(
        "the remote token was changed outside the operator: {} differ from the spec{hint}",
        fields.join(", ")
    );
    let new = !existing.is_some_and(|c| c.status == "True" && c.message == message);
    conditions::set(
        conditions,
        REMOTE_DRIFT,
        true,
        "RemoteDrift",
        &message,
        generation,
    );
    new.then_some((EventType::Warning, "RemoteDrift", message))
}

pub const REMOTE_DRIFT: &str = "RemoteDrift";

/// A replacement that is decided but waits for `--min-reissue-interval`.
pub const ROTATING: &str = "Rotating";

/// Records a replacement that waits for `--min-reissue-interval`. Waiting is not a failure:
/// the Secret still holds a live credential, so `Ready` stays as `finish` set it, and the
/// `Rotating` condition says when the new token comes and why. Returns the Normal Event to
/// publish when the wait is new.
pub fn record_waiting(
    conditions: &mut Vec<Condition>,
    current: &str,
    reason: IssueReason,
    at: Timestamp,
    generation: Option<i64>,
) -> Option<Note> {
    // Whole seconds, so that passes during the same wait say the same thing.
    let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
    let message = format!(
        "token {current} is replaced at {at} ({}): --min-reissue-interval allows one new token per resource per interval",
        reason.describe()
    );
    let new = !conditions
        .iter()
        .any(|c| c.type_ == ROTATING && c.message == message);
    conditions::set(
        conditions,
        ROTATING,
        true,
        ROTATION_SCHEDULED,
        &message,
        generation,
    );
    new.then_some((EventType::Normal, ROTATION_SCHEDULED, message))
}

const ROTATION_SCHEDULED: &str = "RotationScheduled";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IssuedTokenRecord;
    use crate::controller::runtime::fixtures::user_api_token;

    #[test]
    fn a_waiting_replacement_is_said_once_and_cleared_by_the_next_pass() {
        let at: Timestamp = "2026-01-01T00:01:00.4Z".parse().unwrap();
        let mut conditions = Vec::new();
        let note = record_waiting(
            &mut conditions,
            "tok-1",
            IssueReason::RotationRequested,
            at,
            Some(1),
        )
        .expect("a new wait is announced");
        assert_eq!((note.0, note.1), (EventType::Normal, "RotationScheduled"));
        assert!(
            note.2
                .contains("token tok-1 is replaced at 2026-01-01T00:01:00Z")
        );
        let again = record_waiting(
            &mut conditions,
            "tok-1",
            IssueReason::RotationRequested,
            at,
            Some(1),
        );
        assert!(again.is_none(), "the same wait is not announced twice");
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].status, "True");

        let obj = user_api_token(|_| {});
        let desired =
            crate::controller::steps::validate::desired_state(&obj, Duration::from_secs(600))
                .unwrap();
        let mut status = TokenStatus {
            current: Some(IssuedTokenRecord {
                id: "tok-2".into(),
                secret_name: "ci".into(),
                ..IssuedTokenRecord::default()
            }),
            conditions,
            ..TokenStatus::default()
        };
        finish(
            &obj,
            &desired,
            &mut status,
            at,
            Duration::from_secs(300),
            None,
        );
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready"], "a pass that did not wait clears the wait");
    }
}
