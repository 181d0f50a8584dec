//! Refreshing what the Secret holds without a new token: its keys, labels and owner
//! (`Plan::WriteSecret`), or the JWT it delivers (`Plan::RefreshAccessToken`).

use kube::runtime::events::EventType;

use super::step::{Changes, Step};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::error::Error;
use crate::controller::secret::credential::Credential;

/// Rewrites the Secret (keys, labels, owner) from the credential it holds.
pub async fn rewrite_secret<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
) -> Result<(), Error> {
    if let Some(cred) = &step.world.credential {
        step.write_credential(cred).await?;
        changes.notes.push((
            EventType::Normal,
            "SecretUpdated",
            format!("rewrote Secret {}", step.desired.secret_name),
        ));
    }
    Ok(())
}

/// Replaces the JWT the Secret delivers, keeping its credential.
pub async fn refresh_access_token<K: TokenResource>(step: &Step<'_, K>) -> Result<(), Error> {
    let (Some(cred), Some(before)) = (
        &step.world.credential,
        step.desired.access_token_refresh_before,
    ) else {
        return Err(Error::Internal(
            "a JWT refresh planned without a credential".into(),
        ));
    };
    let jwt = step
        .ctx
        .jwt
        .obtain(
            &step.world.env.client,
            &step.ctx.metrics,
            K::KIND,
            cred,
            before,
        )
        .await?;
    let credential = Credential {
        access_token: Some(jwt),
        ..cred.clone()
    };
    step.write_credential(&credential).await?;
    tracing::debug!(token = %cred.id, "delivered a fresh JWT");
    Ok(())
}
