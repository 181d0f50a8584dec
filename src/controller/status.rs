//! Status: what a pass records (Ready, the next renewal, metrics) and when it looks again, and
//! the two writes every step shares: the status subresource and Events.

use std::time::Duration;

use super::events::EventType;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::error::KubeContext;
use super::kinds::TokenResource;
use super::plan::{Desired, renewal_time};
use super::{Context, Error, conditions};
use crate::api::TokenStatus;

pub const FIELD_MANAGER: &str = "frontegg-token-operator";

/// A failed revocation is retried this soon, not after a full resync.
const REVOCATION_RETRY: Duration = Duration::from_secs(30);

/// Marks a successful pass Ready, records the next renewal, and returns
/// when to look again: the next renewal, the end of a grace period, or the resync. After a
/// pass that only settled an interrupted issuance, it changes nothing and asks for another
/// pass at once.
pub fn finish<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    desired: &Desired,
    status: &mut TokenStatus,
    now: Timestamp,
    settled_only: bool,
    jwt_refresh: Option<Timestamp>,
) -> Duration {
    if settled_only {
        // A pass that only settled an interrupted issuance: the condition keeps saying why
        // (the failure that interrupted it), and the next pass decides at once.
        return Duration::ZERO;
    }
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
    let mut requeue = status.next_renewal.map_or(ctx.config.resync, until);
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
    let resync = ctx.config.resync.mul_f64(super::context::jitter(0.9, 1.1));
    requeue.min(resync)
}

/// Sets the RemoteDrift condition from the attributes that differ (`fields`, empty when the
/// remote token matches). It is added only when there is drift, so tokens that never drift
/// carry no extra condition (and cost no write). Returns the Warning to publish when drift is
/// found or its fields change.
pub fn record_drift(
    conditions: &mut Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>,
    fields: &[String],
    hint: &str,
    generation: Option<i64>,
) -> Option<(EventType, &'static str, String)> {
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

/// `Kind/namespace/name`: the key of per-resource state and of log lines.
pub fn object_key<K: TokenResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Server-side applies the status, unless it is what the object already has.
pub async fn write_status<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
) -> Result<(), Error> {
    let status = status.durable();
    if unchanged(obj.token_status(), &status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch =
        json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .context("write the token's status")?;
    Ok(())
}

/// Whether `status` is what the object has. No status and an empty one are the same: a pass
/// that starts from a cached object without status, and changes nothing, must not apply an
/// empty status. With force, that apply would remove every field our manager set, the status
/// another pass wrote a moment ago included.
fn unchanged(stored: Option<&TokenStatus>, status: &TokenStatus) -> bool {
    match stored {
        Some(stored) => stored == status,
        None => *status == TokenStatus::default(),
    }
}

/// Records a failure: Ready=False with its reason, plus the journal this pass closed (a token
/// it revoked again). A merge patch of those fields only: the cached status a failure starts
/// from may be behind the API server, and writing all of it back would undo newer fields
/// (an older current token). Publishes a Warning when the condition changed.
pub async fn write_failure<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    err: &Error,
    written: Option<&TokenStatus>,
) -> Result<(), Error> {
    let cached = obj.token_status().cloned().unwrap_or_default();
    let mut conditions = written.map_or(cached.conditions.clone(), |w| w.conditions.clone());
    let generation = obj.meta().generation;
    conditions::set(
        &mut conditions,
        "Ready",
        false,
        err.reason(),
        &err.to_string(),
        generation,
    );
    let journal_changed = written.is_some_and(|w| w.settled_attempt != cached.settled_attempt);
    if conditions == cached.conditions
        && generation == cached.observed_generation
        && !journal_changed
    {
        return Ok(());
    }
    let mut patch = json!({ "status": {
        "conditions": conditions,
        "observedGeneration": generation,
    }});
    if let (Some(w), Some(status)) = (written, patch.get_mut("status")) {
        status["settledAttempt"] = json!(w.settled_attempt);
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_status(&obj.name_any(), &params, &Patch::Merge(&patch))
        .await
        .context("record the failure in the token's status")?;
    if conditions != cached.conditions {
        publish(obj, ctx, EventType::Warning, err.reason(), err.to_string()).await;
    }
    Ok(())
}

pub async fn publish<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if let Err(e) = ctx
        .events
        .publish(&obj.object_ref(&()), type_, reason, &note)
        .await
    {
        tracing::debug!(error = %e, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_that_changed_nothing_writes_nothing_even_without_a_stored_status() {
        assert!(unchanged(None, &TokenStatus::default()));
        let issued = TokenStatus {
            settled_attempt: Some("0a1b2c3d".into()),
            ..TokenStatus::default()
        };
        assert!(!unchanged(None, &issued));
        assert!(unchanged(Some(&issued), &issued));
        assert!(!unchanged(Some(&issued), &TokenStatus::default()));
    }
}
