//! Settles an interrupted issuance (`Plan::Recover`): the token the Secret holds (marked as
//! this resource's) becomes current, every other marked and unrecorded token is revoked, and
//! the journal closes.

use kube::runtime::events::EventType;

use super::revoke::revoke;
use super::step::{Changes, Step};
use crate::api::{IssuedTokenRecord, PendingRevocation};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::error::Error;
use crate::controller::secret::credential::secret_digest;
use crate::controller::steps::plan::Recovery;

pub async fn recover<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
    recovery: Recovery,
) -> Result<(), Error> {
    let (world, desired) = (step.world, step.desired);
    for id in &recovery.revoke {
        changes
            .notes
            .push(revoke::<K>(step.ctx, &world.env, &world.owner, id).await?);
    }
    if let (Some(id), Some(cred)) = (recovery.adopt, &world.credential) {
        let status = &mut changes.status;
        if let Some(old) = status.current.take() {
            status.pending_revocations.push(PendingRevocation {
                id: old.id,
                reason: "superseded by the token an interrupted issuance left in the Secret".into(),
                not_before: step.now.checked_add(desired.grace_period).ok(),
                connection: old.connection,
            });
        }
        status.current = Some(IssuedTokenRecord {
            id: id.clone(),
            issued_at: step.now,
            expires_at: cred.expires_at.as_deref().and_then(|e| e.parse().ok()),
            secret_name: desired.secret_name.clone(),
            issued_spec_hash: desired.issued_spec_hash.clone(),
            patched_spec_hash: desired.patched_spec_hash.clone(),
            attempt_id: status.pending_issue.as_ref().map(|i| i.attempt_id.clone()),
            secret_digest: Some(secret_digest(cred)),
            connection: Some(world.env.connection()),
            ..IssuedTokenRecord::default()
        });
        changes.notes.push((
            EventType::Normal,
            "Adopted",
            format!(
                "recorded token {id}, which this resource created and Secret {} holds, instead of issuing another",
                desired.secret_name
            ),
        ));
    }
    changes.status.close_journal();
    Ok(())
}
