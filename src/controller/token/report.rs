//! Report: writes what a pass decided (the status, then its Events), or a failure (Ready=False
//! and a Warning), and picks the requeue. Permanent failures wait for a change instead of
//! looping.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, TokenStatus};
use crate::controller::issuance::step::Changes;
use crate::controller::kinds::{TokenResource, object_key};
use crate::controller::runtime::conditions;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::events::{EventType, Note};
use crate::controller::runtime::jitter::jitter;
use crate::controller::runtime::test_hooks;

/// What a successful pass wants written.
pub struct Outcome {
    pub status: TokenStatus,
    pub notes: Vec<Note>,
    pub requeue: Duration,
}

impl Outcome {
    /// What an executed step changed, to be written, then looked at again after `requeue`.
    pub fn of(changes: Changes, requeue: Duration) -> Self {
        Outcome {
            status: changes.status,
            notes: changes.notes,
            requeue,
        }
    }

    /// Nothing changed but what `status` says; look again after `requeue`.
    pub fn quiet(status: TokenStatus, requeue: Duration) -> Self {
        Outcome {
            status,
            notes: Vec::new(),
            requeue,
        }
    }
}

/// Which driver produced the result: a failed cleanup must stay an error.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Apply,
    Cleanup,
}

pub async fn report<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    result: Result<Outcome, Error>,
    written: Option<TokenStatus>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    match result {
        Ok(outcome) => succeeded(obj, ctx, phase, outcome).await,
        Err(err @ (Error::Stale { .. } | Error::SecretAppeared(_))) => {
            // Another write won the race; nothing of this pass was done. Plan again on the
            // fresh resource, without a failure to report.
            tracing::debug!(object = %key, error = %err, "changed meanwhile; planning again");
            Ok(Action::requeue(Duration::from_millis(500)))
        }
        Err(err @ Error::WorkersBusy(_)) => {
            // Nothing was done and nothing failed: come back soon, spread out, without a
            // status write or a longer backoff.
            tracing::debug!(object = %key, error = %err, "environment busy; requeued");
            Ok(Action::requeue(
                Duration::from_millis(500).mul_f64(jitter(1.0, 3.0)),
            ))
        }
        Err(err @ Error::ReissueThrottled { .. }) if ready_is_false(obj) => {
            // The condition already says what went wrong with the last create; waiting for
            // the next one must not hide it.
            tracing::debug!(object = %key, "reissue waits for --min-reissue-interval");
            Err(err)
        }
        Err(err) => failed(obj, ctx, phase, err, written).await,
    }
}

async fn succeeded<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    outcome: Outcome,
) -> Result<Action, Error> {
    if phase == Phase::Apply {
        write_status(obj, ctx, &outcome.status).await?;
        test_hooks::exit_at("after-status", obj);
        if outcome
            .status
            .pending_revocations
            .iter()
            .any(|p| p.not_before.is_some_and(|t| t > Timestamp::now()))
        {
            test_hooks::exit_at("mid-grace", obj);
        }
    }
    for (type_, reason, note) in outcome.notes {
        publish(obj, ctx, type_, reason, note).await;
    }
    ctx.reset_backoff(&object_key(obj));
    Ok(Action::requeue(outcome.requeue))
}

async fn failed<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    err: Error,
    written: Option<TokenStatus>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    if let Err(e) = write_failure(obj, ctx, &err, written.as_ref()).await {
        tracing::warn!(object = %key, error = %e, "could not record the failure in status");
    }
    tracing::warn!(object = %key, reason = err.reason(), error = %err, "reconcile failed");
    // A failed cleanup must stay an error: the finalizer helper removes the finalizer
    // on Ok, which would drop the resource with its remote token still alive. It is
    // retried with the per-resource backoff until it succeeds or the user orphans it.
    if err.is_permanent() && phase == Phase::Apply {
        Ok(Action::requeue(ctx.config.permanent_retry))
    } else {
        Err(err)
    }
}

/// Whether the last pass failed: a wait that follows a failed create keeps that failure.
pub fn ready_is_false<K: TokenResource>(obj: &K) -> bool {
    obj.token_status()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "False")
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
    clear_backoff(obj, &api, &status).await?;
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

/// The failure path records `issuanceBackoff` with a merge patch, so the apply below cannot
/// drop it by leaving it out: once an issuance succeeds, it is removed here. Before the apply,
/// so that no reader ever sees `Ready=True` next to a backoff that no longer holds.
async fn clear_backoff<K: TokenResource>(
    obj: &K,
    api: &Api<K>,
    status: &TokenStatus,
) -> Result<(), Error> {
    let recorded = obj.token_status().and_then(|s| s.issuance_backoff.as_ref());
    if recorded.is_none() || status.issuance_backoff.is_some() {
        return Ok(());
    }
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let patch = json!({ "status": { "issuanceBackoff": null } });
    api.patch_status(&obj.name_any(), &params, &Patch::Merge(&patch))
        .await
        .context("clear the token's issuance backoff")?;
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
    let backoff_changed = written.is_some_and(|w| w.issuance_backoff != cached.issuance_backoff);
    if conditions == cached.conditions
        && generation == cached.observed_generation
        && !journal_changed
        && !backoff_changed
    {
        return Ok(());
    }
    let mut patch = json!({ "status": {
        "conditions": conditions,
        "observedGeneration": generation,
    }});
    if let (Some(w), Some(status)) = (written, patch.get_mut("status")) {
        status["settledAttempt"] = json!(w.settled_attempt);
        status["issuanceBackoff"] = json!(w.issuance_backoff);
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
