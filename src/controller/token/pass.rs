//! The apply pass, generic over the four kinds. It runs, in order:
//! 1. validate (`steps/validate.rs`, no client): the spec against its bounds;
//! 2. dereference (`steps/dereference.rs`): environment, Secret, credential, remote state,
//!    and what an interrupted issuance left;
//! 3. plan (`steps/plan.rs`, pure): the one next step;
//! 4. execute (`issuance/execute.rs`): that step, then the revocations that are due;
//! 5. status (`steps/status.rs`, pure): Ready, drift, the next renewal, the requeue.
//!
//! `report.rs` then writes the outcome.

use std::time::Duration;

use jiff::Timestamp;

use super::observe::observe;
use super::report::{Outcome, ready_is_false};
use crate::api::{ManagementPolicy, TokenStatus};
use crate::controller::issuance::execute::execute;
use crate::controller::issuance::step::{Changes, Step};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::test_hooks;
use crate::controller::secret::jwt::JwtState;
use crate::controller::steps::dereference::{SecretRead, World, dereference};
use crate::controller::steps::plan::{self, IssueReason, Plan};
use crate::controller::steps::{journal, status, validate};
use crate::metrics::Metrics;

/// A pass that changed nothing of its own and asks for another one soon.
const AGAIN: Duration = Duration::from_millis(500);

/// Runs the pass; once more, reading the Secret, if the first found one it had not read.
/// `written` receives the status of a pass that fails after closing its journal.
pub async fn apply<K: TokenResource>(
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
        return observe(obj, ctx).await;
    }
    let status = journal::status_of(obj);
    if let Some(outcome) = restore_finalizer(obj, ctx, &status).await? {
        return Ok(outcome);
    }
    // validate (no client required)
    let desired = validate::desired_state(obj, ctx.config.grace_period)?;
    // dereference
    let world = dereference(obj, ctx, &desired, &status, read).await?;
    let now = Timestamp::now();
    let mut changes = Changes::new(with_remote_expiry(&status, &world));
    // plan (pure)
    let resync = ctx.config.resync;
    let next = plan::plan(&desired, &changes.status, &world.observed, now, resync);
    tracing::debug!(?next, "planned");
    if stale_recovery(obj, ctx, &next).await? {
        return Ok(Outcome::quiet(status, AGAIN));
    }
    let (recovered, drift_resolved) = (matches!(next, Plan::Recover(_)), resolves_drift(&next));
    let polite = live_replacement(&next).filter(|_| !ready_is_false(obj));
    // execute
    let step = Step {
        obj,
        ctx,
        world: &world,
        desired: &desired,
        now,
    };
    let executed = execute(&step, next, &mut changes).await;
    *written = changes.written.take();
    match (executed, polite) {
        (Err(Error::ReissueThrottled { wait }), Some(reason)) => {
            return Ok(scheduled(&step, changes, reason, wait));
        }
        (executed, _) => executed?,
    }
    // status: a pass that only settled an interrupted issuance keeps the condition that says
    // why (the failure that interrupted it), and the next pass decides at once.
    let requeue = match recovered {
        true => Duration::ZERO,
        false => record_status(&step, &mut changes, drift_resolved),
    };
    Ok(Outcome::of(changes, requeue))
}

/// Someone removed the finalizer from a resource that holds tokens: a deletion must still
/// revoke them, even while the spec is invalid, so this comes before validation. The write
/// changes the resource; the next pass goes on from there.
async fn restore_finalizer<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
) -> Result<Option<Outcome>, Error> {
    let holds_tokens = status.current.is_some()
        || status.pending_issue.is_some()
        || !status.pending_revocations.is_empty();
    if journal::has_finalizer(obj) || !holds_tokens {
        return Ok(None);
    }
    journal::ensure_finalizer(obj, ctx).await?;
    Ok(Some(Outcome::quiet(status.clone(), AGAIN)))
}

/// The status the pass starts from: Frontegg's own expiry is the truth for renewal.
fn with_remote_expiry(status: &TokenStatus, world: &World) -> TokenStatus {
    let mut status = status.clone();
    if let (Some(current), Some(remote)) = (status.current.as_mut(), world.remote_expires) {
        current.expires_at = Some(remote);
    }
    status
}

/// Creating a remote token is the one step that cannot be repeated safely. A reconcile
/// triggered by our own Secret write can see a cached object that predates our status write;
/// a recovery decides again on fresh state instead of issuing a second token. An issue checks
/// this for free: its journal write carries the cached resourceVersion (`journal::open`).
async fn stale_recovery<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    step: &Plan,
) -> Result<bool, Error> {
    if !matches!(step, Plan::Recover(_)) || !journal::cache_is_behind(obj, ctx).await? {
        return Ok(false);
    }
    tracing::debug!("cache behind the API server; re-planning");
    Ok(true)
}

/// The reason of a replacement while the Secret holds a live credential (the token expires
/// later, was asked to rotate, or no longer matches the spec). Waiting for such a one is not
/// a failure; a Secret that is missing, emptied or edited has nothing live to wait with.
fn live_replacement(step: &Plan) -> Option<IssueReason> {
    match step {
        Plan::Issue {
            reason:
                reason @ (IssueReason::Expiring
                | IssueReason::RotationRequested
                | IssueReason::SpecChanged
                | IssueReason::SecretRenamed
                | IssueReason::RemoteDrift),
            revoke: Some(_),
        } => Some(*reason),
        _ => None,
    }
}

/// A live replacement that waits for `--min-reissue-interval`: Ready as any successful pass
/// records it, the `Rotating` condition and its Normal Event, and a look again when the
/// interval ends.
fn scheduled<K: TokenResource>(
    step: &Step<'_, K>,
    mut changes: Changes,
    reason: IssueReason,
    wait: Duration,
) -> Outcome {
    let requeue = record_status(step, &mut changes, false);
    let at = step.now.checked_add(wait).unwrap_or(step.now);
    let status = &mut changes.status;
    let current = status
        .current
        .as_ref()
        .map(|c| c.id.clone())
        .unwrap_or_default();
    let generation = step.obj.meta().generation;
    let note = status::record_waiting(&mut status.conditions, &current, reason, at, generation);
    changes.notes.extend(note);
    tracing::debug!(?reason, "replacement waits for --min-reissue-interval");
    let retry = wait.saturating_add(Duration::from_millis(100));
    Outcome::of(changes, requeue.min(retry))
}

fn resolves_drift(step: &Plan) -> bool {
    matches!(
        step,
        Plan::RepairDrift
            | Plan::Issue {
                reason: IssueReason::RemoteDrift,
                ..
            }
    )
}

/// status: drift, then Ready, the next renewal and the requeue.
fn record_status<K: TokenResource>(
    input: &Step<'_, K>,
    changes: &mut Changes,
    drift_resolved: bool,
) -> Duration {
    record_drift(input, changes, drift_resolved);
    let status = &mut changes.status;
    // The delivered JWT's next refresh: as just obtained, or as read from the Secret.
    let jwt_refresh = input.desired.access_token_refresh_before.and_then(|_| {
        let current = status.current.as_ref()?;
        let read = match input.world.observed.access_token {
            JwtState::RefreshAt(at) => Some(at),
            JwtState::NotWanted | JwtState::Missing => None,
        };
        input.ctx.jwt.refresh_at(&current.id).or(read)
    });
    let resync = input.ctx.config.resync;
    status::finish(
        input.obj,
        input.desired,
        status,
        input.now,
        resync,
        jwt_refresh,
    )
}

/// The RemoteDrift condition from what the listing showed, unless this pass resolved it.
fn record_drift<K: TokenResource>(input: &Step<'_, K>, changes: &mut Changes, resolved: bool) {
    let Some(fields) = &input.world.observed.remote_drift else {
        return;
    };
    let metrics = &input.ctx.metrics;
    if resolved && !fields.is_empty() && input.desired.patched_spec_hash.is_none() {
        metrics
            .remote_drift
            .get_or_create(&Metrics::kind_action(K::KIND, "reissued"))
            .inc();
    }
    let unresolved: &[String] = if resolved { &[] } else { fields };
    let status = &mut changes.status;
    let hint = if status
        .current
        .as_ref()
        .is_some_and(|c| c.reissued_for_drift)
    {
        " in a token issued from the spec to replace a drifted one: Frontegg keeps them as they are, so it is not replaced again"
    } else {
        " (set spec.rotation.onRemoteDrift: Reissue to replace the token)"
    };
    let generation = input.obj.meta().generation;
    if let Some(note) = status::record_drift(&mut status.conditions, unresolved, hint, generation) {
        metrics
            .remote_drift
            .get_or_create(&Metrics::kind_action(K::KIND, "reported"))
            .inc();
        changes.notes.push(note);
    }
}
