//! Revoking remote tokens: the superseded ones once their grace period is over, and any one
//! by id (recovery, cleanup). A token that is already gone counts as revoked.

use kube::runtime::events::EventType;

use super::step::{Changes, Step};
use crate::controller::environment::resolve::Resolved;
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::events::Note;
use crate::identity::{IdentityError, TokenOwner};
use crate::metrics::Metrics;

/// Revokes the superseded tokens whose grace period is over; failures stay pending.
pub async fn revoke_due<K: TokenResource>(step: &Step<'_, K>, changes: &mut Changes) {
    let (env, owner) = (&step.world.env, &step.world.owner);
    let mut still_pending = Vec::new();
    for pending in std::mem::take(&mut changes.status.pending_revocations) {
        if pending.not_before.is_some_and(|t| t > step.now) {
            still_pending.push(pending);
            continue;
        }
        match revoke::<K>(step.ctx, env, owner, &pending.id).await {
            Ok(note) => changes.notes.push(note),
            Err(e) => {
                tracing::warn!(token = %pending.id, error = %e, "revocation failed; will retry");
                still_pending.push(pending);
            }
        }
    }
    changes.status.pending_revocations = still_pending;
}

/// Revokes one remote token; one that is already gone counts as done.
pub async fn revoke<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    owner: &TokenOwner,
    id: &str,
) -> Result<Note, IdentityError> {
    let result = env.client.delete::<K::Endpoint>(owner, id).await;
    if matches!(result, Ok(()) | Err(IdentityError::NotFound)) {
        ctx.jwt.forget(id);
    }
    match result {
        Ok(()) => {
            ctx.metrics
                .revocations
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
            Ok((EventType::Normal, "Revoked", format!("revoked token {id}")))
        }
        // Already gone: done, but not a revocation of ours to count. A reconcile that runs on
        // a cached object after its cleanup finished (the owned Secret's deletion triggers one)
        // revokes again and gets a 404; counting it made the metric read 3 for 2 revocations.
        Err(IdentityError::NotFound) => Ok((
            EventType::Normal,
            "Revoked",
            format!("token {id} was already revoked"),
        )),
        Err(e) => {
            ctx.metrics
                .revocation_failures
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
            Err(e)
        }
    }
}
