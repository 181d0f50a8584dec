//! Patching a tenant API token in place (`Plan::Patch`, `Plan::RepairDrift`): description,
//! roles, permissions and metadata change without a new token.

use kube::runtime::events::EventType;

use super::step::{Changes, Step};
use crate::api::AttemptRecord;
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::events::Note;
use crate::controller::steps::marker;
use crate::metrics::Metrics;

/// Why a token is patched in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchReason {
    /// The spec changed.
    Spec,
    /// The remote token was changed outside the operator.
    Drift,
}

pub async fn patch<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
    reason: PatchReason,
) -> Result<(), Error> {
    let uid = step.uid();
    let Some(current) = changes.status.current.as_mut() else {
        return Err(Error::Internal(
            "patch planned without a current token".into(),
        ));
    };
    // The mark stays on the description, or the token would no longer be recognised.
    let description = marker::describe(
        step.obj.common().description.as_deref(),
        step.ctx.config.installation_id.as_deref(),
        &uid,
        current
            .attempt_id
            .as_deref()
            .unwrap_or(marker::UNMARKED_ATTEMPT),
    );
    let Some(body) = step.obj.patch_request(description) else {
        return Err(Error::Internal(
            "patch planned for a kind that cannot be patched".into(),
        ));
    };
    let world = step.world;
    world
        .env
        .client
        .patch_tenant_api_token(&world.owner, &current.id, &body)
        .await?;
    current.patched_spec_hash = step.desired.patched_spec_hash.clone();
    // Listings fetched before this moment still show the old attributes.
    current.updated_at = Some(jiff::Timestamp::now());
    let note = patched(step, &current.id, reason);
    changes.notes.push(note);
    changes.status.last_attempt = Some(AttemptRecord {
        operation: "Patch".into(),
        result: "Succeeded".into(),
        at: step.now,
    });
    Ok(())
}

/// The Event of a patch, counted as a repair when it patched drift back.
fn patched<K: TokenResource>(step: &Step<'_, K>, id: &str, reason: PatchReason) -> Note {
    match reason {
        PatchReason::Spec => (
            EventType::Normal,
            "Updated",
            format!("updated token {id} in place"),
        ),
        PatchReason::Drift => {
            step.ctx
                .metrics
                .remote_drift
                .get_or_create(&Metrics::kind_action(K::KIND, "repaired"))
                .inc();
            let fields = step
                .world
                .observed
                .remote_drift
                .as_ref()
                .map(|f| f.join(", "))
                .unwrap_or_default();
            (
                EventType::Normal,
                "DriftRepaired",
                format!(
                    "token {id} was changed outside the operator ({fields}); patched it back to the spec"
                ),
            )
        }
    }
}
