//! Import (`spec.import`): take over a remote token created elsewhere (the portal, Terraform)
//! instead of issuing one. From then on it is rotated and revoked like any token the operator
//! issued. The source Secret is read once and never changed.
//!
//! Taking over a token means revoking it one day, so an import must prove it concerns this
//! resource's token: it exists for the resource's tenant (and user), carries no other
//! resource's mark, and, for API tokens, the given secret authenticates it.

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::dereference::{World, fresh_listing, secret_digest};
use super::error::KubeContext;
use super::execute::{Note, write_credential};
use super::kinds::{SecretLayout, TokenResource};
use super::plan::Desired;
use super::secret::Credential;
use super::{Context, Error, journal, marker};
use crate::api::{AttemptRecord, IssuedTokenRecord, TokenStatus};
use crate::identity::{IdentityError, SecretString, TokenOwner};
use crate::metrics::Metrics;

/// Longest secret value taken from the source Secret.
const MAX_IMPORTED_SECRET: usize = 16 * 1024;

pub async fn import<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    world: &World,
    desired: &Desired,
    status: &mut TokenStatus,
    now: Timestamp,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    let Some(spec) = &obj.common().import else {
        return Err(Error::Internal(
            "an import planned without spec.import".into(),
        ));
    };
    let id = &spec.token_id;
    let tokens = fresh_listing::<K>(ctx, &world.env, &world.owner).await?;
    let Some(remote) = tokens.iter().find(|t| &t.id == id) else {
        return Err(Error::ImportFailed(format!(
            "token {id} does not exist for {}",
            describe_owner(&world.owner)
        )));
    };
    let uid = obj.meta().uid.as_deref().unwrap_or_default();
    if let Some((marked, _)) = remote.description.as_deref().and_then(marker::parse)
        && marked != uid
    {
        return Err(Error::ImportFailed(format!(
            "token {id} is managed by another resource (its description carries that resource's mark)"
        )));
    }
    let (name, key) = (&spec.secret_ref.name, &spec.secret_ref.key);
    let source = world
        .secrets
        .get_opt(name)
        .await
        .context("read the import's source Secret")?
        .ok_or_else(|| Error::ImportFailed(format!("Secret {name} does not exist")))?;
    let value = source
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        // `kubectl create secret --from-file` keeps a trailing newline.
        .map(str::trim)
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_IMPORTED_SECRET && !v.chars().any(char::is_control)
        })
        .ok_or_else(|| {
            Error::ImportFailed(format!(
                "Secret {name} has no usable key {key} (missing, empty, not text, or longer than {MAX_IMPORTED_SECRET} bytes)"
            ))
        })?;
    let secret = SecretString::from(value.to_string());
    let mut access_token = None;
    if K::LAYOUT == SecretLayout::ClientCredentials {
        // Proves the secret is this token's, and gives the first JWT when one is delivered.
        match world.env.client.exchange_api_token(id, &secret).await {
            Ok(grant) => {
                if let Some(before) = desired.access_token_refresh_before {
                    ctx.metrics
                        .access_token_refreshes
                        .get_or_create(&Metrics::kind_action(K::KIND, "exchange"))
                        .inc();
                    access_token = Some(ctx.jwt.keep(id, grant, before));
                }
            }
            Err(IdentityError::Unauthorized | IdentityError::Invalid { .. }) => {
                return Err(Error::ImportFailed(format!(
                    "the value of key {key} in Secret {name} does not authenticate token {id}"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let credential = Credential {
        id: id.clone(),
        secret,
        expires_at: remote.expires_at.map(|t| t.to_string()),
        access_token,
    };
    // Recording the token makes its revocation this resource's job: the finalizer first.
    journal::ensure_finalizer(obj, ctx).await?;
    write_credential(obj, world, desired, &credential).await?;
    status.current = Some(IssuedTokenRecord {
        id: id.clone(),
        // Its real creation time is not listed; renewal counts its remaining life from now.
        issued_at: now,
        expires_at: remote.expires_at,
        secret_name: desired.secret_name.clone(),
        issued_spec_hash: desired.issued_spec_hash.clone(),
        // A tenant API token is then patched to the spec (and so gets the operator's mark).
        patched_spec_hash: None,
        attempt_id: None,
        secret_digest: Some(secret_digest(&credential)),
        updated_at: None,
        imported: true,
        reissued_for_drift: false,
    });
    status.last_attempt = Some(AttemptRecord {
        operation: "Import".into(),
        result: "Succeeded".into(),
        at: now,
    });
    ctx.metrics
        .imported
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    tracing::info!(token = %id, object = %obj.name_any(), "imported token");
    notes.push((
        EventType::Normal,
        "Imported",
        format!(
            "took over token {id} into Secret {}; Secret {name} was read and left as it is",
            desired.secret_name
        ),
    ));
    Ok(())
}

fn describe_owner(owner: &TokenOwner) -> String {
    match &owner.user_id {
        Some(user) => format!("user {user} of tenant {}", owner.tenant_id),
        None => format!("tenant {}", owner.tenant_id),
    }
}
