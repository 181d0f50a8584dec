//! Import (`spec.import`): take over a remote token created elsewhere (the portal, Terraform)
//! instead of issuing one. From then on it is rotated and revoked like any token the operator
//! issued. The source Secret is read once and never changed.
//!
//! Taking over a token means revoking it one day, so an import must prove it concerns this
//! resource's token: it exists for the resource's tenant (and user), carries no other
//! resource's mark, and, for API tokens, the given secret authenticates it.

use kube::ResourceExt;
use kube::runtime::events::EventType;

use super::step::{Changes, Step};
use crate::api::{AttemptRecord, ImportSpec, IssuedTokenRecord};
use crate::controller::kinds::{SecretLayout, TokenResource};
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::secret::credential::{AccessJwt, Credential, secret_digest};
use crate::controller::steps::dereference::fresh_listing;
use crate::controller::steps::{journal, marker};
use crate::identity::{IdentityError, RemoteToken, SecretString, TokenOwner};
use crate::metrics::Metrics;

/// Longest secret value taken from the source Secret.
const MAX_IMPORTED_SECRET: usize = 16 * 1024;

pub async fn import<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
) -> Result<(), Error> {
    let Some(spec) = &step.obj.common().import else {
        return Err(Error::Internal(
            "an import planned without spec.import".into(),
        ));
    };
    let remote = remote_token(step, &spec.token_id).await?;
    let secret = source_secret(step, spec).await?;
    let access_token = prove(step, spec, &secret).await?;
    let credential = Credential {
        id: spec.token_id.clone(),
        secret,
        expires_at: remote.expires_at.map(|t| t.to_string()),
        access_token,
    };
    // Recording the token makes its revocation this resource's job: the finalizer first.
    journal::ensure_finalizer(step.obj, step.ctx).await?;
    step.write_credential(&credential).await?;
    record(step, changes, &credential, &remote, &spec.secret_ref.name);
    Ok(())
}

/// The token to take over, listed for this resource's tenant (and user), and not marked as
/// another resource's.
async fn remote_token<K: TokenResource>(
    step: &Step<'_, K>,
    id: &str,
) -> Result<RemoteToken, Error> {
    let world = step.world;
    let tokens = fresh_listing::<K>(step.ctx, &world.env, &world.owner).await?;
    let Some(remote) = tokens.iter().find(|t| t.id == id) else {
        return Err(Error::ImportFailed(format!(
            "token {id} does not exist for {}",
            describe_owner(&world.owner)
        )));
    };
    let uid = step.uid();
    if let Some((marked, _)) = remote.description.as_deref().and_then(marker::parse)
        && marked != uid
    {
        return Err(Error::ImportFailed(format!(
            "token {id} is managed by another resource (its description carries that resource's mark)"
        )));
    }
    Ok(remote.clone())
}

/// The secret value from the source Secret, which is read once and never changed.
async fn source_secret<K: TokenResource>(
    step: &Step<'_, K>,
    spec: &ImportSpec,
) -> Result<SecretString, Error> {
    let (name, key) = (&spec.secret_ref.name, &spec.secret_ref.key);
    let source = step
        .world
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
    Ok(SecretString::from(value.to_string()))
}

/// For API tokens, the exchange proves the secret is this token's, and gives the first JWT
/// when one is delivered.
async fn prove<K: TokenResource>(
    step: &Step<'_, K>,
    spec: &ImportSpec,
    secret: &SecretString,
) -> Result<Option<AccessJwt>, Error> {
    if K::LAYOUT != SecretLayout::ClientCredentials {
        return Ok(None);
    }
    let (id, ctx) = (&spec.token_id, step.ctx);
    match step.world.env.client.exchange_api_token(id, secret).await {
        Ok(grant) => Ok(step.desired.access_token_refresh_before.map(|before| {
            ctx.metrics
                .access_token_refreshes
                .get_or_create(&Metrics::kind_action(K::KIND, "exchange"))
                .inc();
            ctx.jwt.keep(id, grant, before)
        })),
        Err(IdentityError::Unauthorized | IdentityError::Invalid { .. }) => {
            Err(Error::ImportFailed(format!(
                "the value of key {} in Secret {} does not authenticate token {id}",
                spec.secret_ref.key, spec.secret_ref.name
            )))
        }
        Err(e) => Err(e.into()),
    }
}

fn record<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
    credential: &Credential,
    remote: &RemoteToken,
    source: &str,
) {
    let (id, desired, now) = (&credential.id, step.desired, step.now);
    changes.status.current = Some(IssuedTokenRecord {
        id: id.clone(),
        // Its real creation time is not listed; renewal counts its remaining life from now.
        issued_at: now,
        expires_at: remote.expires_at,
        secret_name: desired.secret_name.clone(),
        issued_spec_hash: desired.issued_spec_hash.clone(),
        // A tenant API token is then patched to the spec (and so gets the operator's mark).
        patched_spec_hash: None,
        attempt_id: None,
        secret_digest: Some(secret_digest(credential)),
        updated_at: None,
        imported: true,
        reissued_for_drift: false,
        connection: Some(step.world.env.connection()),
    });
    changes.status.last_attempt = Some(AttemptRecord {
        operation: "Import".into(),
        result: "Succeeded".into(),
        at: now,
    });
    step.ctx
        .metrics
        .imported
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    tracing::info!(token = %id, object = %step.obj.name_any(), "imported token");
    changes.notes.push((
        EventType::Normal,
        "Imported",
        format!(
            "took over token {id} into Secret {}; Secret {source} was read and left as it is",
            desired.secret_name
        ),
    ));
}

fn describe_owner(owner: &TokenOwner) -> String {
    match &owner.user_id {
        Some(user) => format!("user {user} of tenant {}", owner.tenant_id),
        None => format!("tenant {}", owner.tenant_id),
    }
}
