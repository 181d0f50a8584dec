//! The one token lifecycle, generic over the four kinds. A pass runs, in order:
//! 1. validate (`validate.rs`, no client): the spec against its bounds;
//! 2. dereference (`dereference.rs`): environment, Secret, credential, remote state, and what
//!    an interrupted issuance left;
//! 3. plan (`plan.rs`, pure): the one next step;
//! 4. execute (`execute.rs`): that step, then the revocations that are due;
//! 5. status (`status.rs`): Ready, the next renewal, metrics, the requeue.
//!
//! Deletion runs `cleanup.rs` instead. This file drives the steps and reports the outcome.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::access_token::JwtState;
use super::dereference::{SecretRead, dereference};
use super::execute::{self, Note, PatchReason};
use super::kinds::TokenResource;
use super::plan::{self, Plan};
use super::status::{self, object_key, publish, write_status};
use super::{Context, Error, cleanup, context, import, journal, observe, test_hooks, validate};
use crate::api::{ManagementPolicy, TokenStatus};
use crate::identity::IdentityError;
use crate::metrics::{Metrics, ReconcileLabels};

pub async fn reconcile<K: TokenResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // Not kube's finalizer helper: it adds the finalizer in a write of its own, and the
    // journal write that precedes every create adds it for free (`journal.rs`).
    let pipeline = async {
        if obj.meta().deletion_timestamp.is_none() {
            let mut written = None;
            let result = apply(&*obj, &ctx, &mut written).await;
            return report(&*obj, &ctx, Phase::Apply, result, written).await;
        }
        if !journal::has_finalizer(&*obj) {
            // Never issued anything, or already cleaned up.
            return Ok(Action::await_change());
        }
        let result = cleanup::cleanup(&*obj, &ctx).await.map(|notes| Outcome {
            status: obj.token_status().cloned().unwrap_or_default(),
            notes,
            requeue: Duration::ZERO,
        });
        let action = report(&*obj, &ctx, Phase::Cleanup, result, None).await?;
        journal::remove_finalizer(&*obj, &ctx).await?;
        Ok(action)
    };
    // A panic is an operator bug. Caught here, it fails this one object (Ready=False,
    // InternalError) and the process goes on serving everyone else.
    let result = match AssertUnwindSafe(pipeline).catch_unwind().await {
        Ok(result) => result,
        Err(_) => {
            ctx.metrics
                .reconcile_panics
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
            tracing::error!(object = %object_key(&*obj), "reconcile panicked; reported as InternalError");
            let phase = if obj.meta().deletion_timestamp.is_some() {
                Phase::Cleanup
            } else {
                Phase::Apply
            };
            let err = Error::Internal("the reconcile panicked".into());
            report(&*obj, &ctx, phase, Err(err), None)
                .await
                .and_then(|_| Err(Error::Internal("the reconcile panicked".into())))
        }
    };
    let outcome = match &result {
        Ok(_) => "success".to_string(),
        Err(e) => e.reason().to_string(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: outcome,
        })
        .inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&Metrics::kind(K::KIND))
        .observe(started.elapsed().as_secs_f64());
    result
}

pub fn error_policy<K: TokenResource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    match err {
        Error::Identity(IdentityError::RateLimited { reset }) => {
            let wait = Duration::try_from(reset.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        Error::ReissueThrottled { wait } => {
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        // Our own client-side limits: the environment is healthy, only busy. Come back soon,
        // spread out, without growing the per-resource backoff.
        Error::Identity(IdentityError::Throttled(_)) => {
            Action::requeue(Duration::from_secs(1).mul_f64(context::jitter(1.0, 3.0)))
        }
        _ => Action::requeue(ctx.next_backoff(&object_key(&*obj))),
    }
}

/// What a successful pass wants written.
struct Outcome {
    status: TokenStatus,
    notes: Vec<Note>,
    requeue: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Apply,
    Cleanup,
}

/// Validate, dereference, plan, execute, status. `written` receives the status of a pass that
/// fails after closing its journal (the new token revoked again), for the failure report to
/// record that.
async fn apply<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    written: &mut Option<TokenStatus>,
) -> Result<Outcome, Error> {
    match apply_pass(obj, ctx, written, SecretRead::UnlessNew).await {
        // Nothing was written yet; once more, knowing what that Secret is.
        Err(Error::SecretAppeared(_)) => apply_pass(obj, ctx, written, SecretRead::Always).await,
        result => result,
    }
}

async fn apply_pass<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    written: &mut Option<TokenStatus>,
    read: SecretRead,
) -> Result<Outcome, Error> {
    test_hooks::panic_if_requested(obj);
    if obj.common().management_policy == ManagementPolicy::Observe {
        let seen = observe::observe(obj, ctx).await?;
        return Ok(Outcome {
            status: seen.status,
            notes: seen.notes,
            requeue: seen.requeue,
        });
    }
    let status = journal::status_of(obj);
    if !journal::has_finalizer(obj)
        && (status.current.is_some()
            || status.pending_issue.is_some()
            || !status.pending_revocations.is_empty())
    {
        // Someone removed it from a resource that holds tokens: a deletion must still revoke
        // them, even while the spec is invalid, so before validation. The write changes the
        // resource; the next pass goes on from there.
        journal::ensure_finalizer(obj, ctx).await?;
        return Ok(Outcome {
            status,
            notes: Vec::new(),
            requeue: Duration::from_millis(500),
        });
    }
    // validate (no client required)
    let desired = validate::desired_state(obj, ctx.config.grace_period)?;

    let world = dereference(obj, ctx, &desired, &status, read).await?;

    let now = Timestamp::now();
    let mut new_status = status.clone();
    // Frontegg's own expiry is the truth for renewal.
    if let (Some(current), Some(remote)) = (new_status.current.as_mut(), world.remote_expires) {
        current.expires_at = Some(remote);
    }
    // plan (pure)
    let step = plan::plan(
        &desired,
        &new_status,
        &world.observed,
        now,
        ctx.config.resync,
    );
    tracing::debug!(object = %object_key(obj), ?step, "planned");
    // Creating a remote token is the one step that cannot be repeated safely. A reconcile
    // triggered by our own Secret write can see a cached object that predates our status
    // write; decide again on fresh state instead of issuing a second token. An issue checks
    // this for free: its journal write carries the cached resourceVersion (`journal::open`).
    if matches!(step, Plan::Recover(_)) && journal::cache_is_behind(obj, ctx).await? {
        tracing::debug!(object = %object_key(obj), "cache behind the API server; re-planning");
        return Ok(Outcome {
            status,
            notes: Vec::new(),
            requeue: Duration::from_millis(500),
        });
    }

    // execute
    let mut notes = Vec::new();
    let recovered = matches!(step, Plan::Recover(_));
    let drift_resolved = matches!(
        step,
        Plan::RepairDrift
            | Plan::Issue {
                reason: plan::IssueReason::RemoteDrift,
                ..
            }
    );
    match step {
        Plan::Recover(recovery) => {
            execute::recover::<K>(
                ctx,
                &world,
                &desired,
                &mut new_status,
                recovery,
                now,
                &mut notes,
            )
            .await?;
        }
        Plan::Issue { reason, revoke } => {
            if reason == plan::IssueReason::SecretTampered {
                notes.push((
                    EventType::Warning,
                    "SecretTampered",
                    format!(
                        "Secret {} holds a credential this resource did not issue; issuing a new token",
                        desired.secret_name
                    ),
                ));
            }
            execute::issue(
                obj,
                ctx,
                &world,
                &desired,
                &mut new_status,
                reason,
                revoke,
                now,
                &mut notes,
                written,
            )
            .await?;
        }
        Plan::Import => {
            import::import(obj, ctx, &world, &desired, &mut new_status, now, &mut notes).await?;
        }
        Plan::Patch | Plan::RepairDrift => {
            let reason = if step == Plan::Patch {
                PatchReason::Spec
            } else {
                PatchReason::Drift
            };
            execute::patch(
                obj,
                ctx,
                &world,
                &desired,
                &mut new_status,
                reason,
                now,
                &mut notes,
            )
            .await?;
        }
        Plan::RefreshAccessToken => {
            execute::refresh_access_token(obj, ctx, &world, &desired).await?;
        }
        Plan::WriteSecret => execute::rewrite_secret(obj, &world, &desired, &mut notes).await?,
        Plan::Steady { .. } => {}
    }
    execute::revoke_due::<K>(
        ctx,
        &world.env,
        &world.owner,
        &mut new_status,
        now,
        &mut notes,
    )
    .await;

    // status
    if let Some(fields) = &world.observed.remote_drift {
        let unresolved: &[String] = if drift_resolved { &[] } else { fields };
        if drift_resolved && !fields.is_empty() && desired.patched_spec_hash.is_none() {
            ctx.metrics
                .remote_drift
                .get_or_create(&Metrics::kind_action(K::KIND, "reissued"))
                .inc();
        }
        let hint = if new_status
            .current
            .as_ref()
            .is_some_and(|c| c.reissued_for_drift)
        {
            " in a token issued from the spec to replace a drifted one: Frontegg keeps them as they are, so it is not replaced again"
        } else {
            " (set spec.rotation.onRemoteDrift: Reissue to replace the token)"
        };
        if let Some(note) = status::record_drift(
            &mut new_status.conditions,
            unresolved,
            hint,
            obj.meta().generation,
        ) {
            ctx.metrics
                .remote_drift
                .get_or_create(&Metrics::kind_action(K::KIND, "reported"))
                .inc();
            notes.push(note);
        }
    }
    // The delivered JWT's next refresh: as just obtained, or as read from the Secret.
    let jwt_refresh = desired.access_token_refresh_before.and_then(|_| {
        let current = new_status.current.as_ref()?;
        ctx.jwt
            .refresh_at(&current.id)
            .or(match world.observed.access_token {
                JwtState::RefreshAt(at) => Some(at),
                _ => None,
            })
    });
    let requeue = status::finish(
        obj,
        ctx,
        &desired,
        &mut new_status,
        now,
        recovered,
        jwt_refresh,
    );
    Ok(Outcome {
        status: new_status,
        notes,
        requeue,
    })
}

/// Writes the outcome (status, Events) or the failure (Ready=False + Event) and picks the
/// requeue. Permanent failures wait for a change instead of looping.
async fn report<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    result: Result<Outcome, Error>,
    written: Option<TokenStatus>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    match result {
        Ok(outcome) => {
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
            ctx.reset_backoff(&key);
            Ok(Action::requeue(outcome.requeue))
        }
        Err(err @ (Error::Stale { .. } | Error::SecretAppeared(_))) => {
            // Another write won the race; nothing of this pass was done. Plan again on the
            // fresh resource, without a failure to report.
            tracing::debug!(object = %key, error = %err, "changed meanwhile; planning again");
            Ok(Action::requeue(Duration::from_millis(500)))
        }
        Err(err @ Error::ReissueThrottled { .. }) if ready_is_false(obj) => {
            // The condition already says what went wrong with the last create; waiting for
            // the next one must not hide it.
            tracing::debug!(object = %key, "reissue waits for --min-reissue-interval");
            Err(err)
        }
        Err(err) => {
            if let Err(e) = status::write_failure(obj, ctx, &err, written.as_ref()).await {
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
    }
}

fn ready_is_false<K: TokenResource>(obj: &K) -> bool {
    obj.token_status()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "False")
}
