//! Execute: carry out the one planned step, a function per `Plan` arm, and the revocations
//! that are due. Each returns the status to record and the Events to publish.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::dereference::{World, secret_digest};
use super::error::KubeContext;
use super::kinds::{SecretLayout, TokenResource};
use super::plan::{Desired, IssueReason, Recovery};
use super::resolve_environment::Resolved;
use super::secret::{self, Credential};
use super::status::FIELD_MANAGER;
use super::{Context, Error, journal, marker, test_hooks, validate};
use crate::api::{
    AttemptRecord, IssueIntent, IssuedTokenRecord, PendingRevocation, RestartTarget, TokenStatus,
    WorkloadKind,
};
use crate::identity::{IdentityError, TokenOwner};
use crate::metrics::Metrics;

pub type Note = (EventType, &'static str, String);

/// Settles an interrupted issuance: the token the Secret holds (marked as this resource's)
/// becomes current, every other marked and unrecorded token is revoked, the journal closes.
pub async fn recover<K: TokenResource>(
    ctx: &Context,
    world: &World,
    desired: &Desired,
    status: &mut TokenStatus,
    recovery: Recovery,
    now: Timestamp,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    for id in &recovery.revoke {
        notes.push(revoke::<K>(ctx, &world.env, &world.owner, id).await?);
    }
    if let (Some(id), Some(cred)) = (recovery.adopt, &world.credential) {
        if let Some(old) = status.current.take() {
            status.pending_revocations.push(PendingRevocation {
                id: old.id,
                reason: "superseded by the token an interrupted issuance left in the Secret".into(),
                not_before: now.checked_add(desired.grace_period).ok(),
            });
        }
        status.current = Some(IssuedTokenRecord {
            id: id.clone(),
            issued_at: now,
            expires_at: cred.expires_at.as_deref().and_then(|e| e.parse().ok()),
            secret_name: desired.secret_name.clone(),
            issued_spec_hash: desired.issued_spec_hash.clone(),
            patched_spec_hash: desired.patched_spec_hash.clone(),
            attempt_id: status.pending_issue.as_ref().map(|i| i.attempt_id.clone()),
            secret_digest: Some(secret_digest(cred)),
            ..IssuedTokenRecord::default()
        });
        notes.push((
            EventType::Normal,
            "Adopted",
            format!(
                "recorded token {id}, which this resource created and Secret {} holds, instead of issuing another",
                desired.secret_name
            ),
        ));
    }
    status.close_journal();
    Ok(())
}

/// Create, write the Secret, record; the superseded token stays valid for the grace period.
#[allow(clippy::too_many_arguments)]
pub async fn issue<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    world: &World,
    desired: &Desired,
    status: &mut TokenStatus,
    reason: IssueReason,
    superseded: Option<String>,
    now: Timestamp,
    notes: &mut Vec<Note>,
    written: &mut Option<TokenStatus>,
) -> Result<(), Error> {
    // The apiserver checks the Secret's shape (keys, labels, annotations, size) before a
    // token exists that could not be written anywhere.
    let probe = validate::probe_secret(obj, desired, &world.secret_context())?;
    dry_run_secret(&world.secrets, probe, world.live_secret.is_some()).await?;
    let uid = obj.meta().uid.clone().unwrap_or_default();
    if let Err(wait) = ctx.throttle.try_acquire(
        &uid,
        status.current.as_ref().map(|c| c.issued_at),
        now,
        ctx.config.min_reissue_interval,
    ) {
        // Most often a pass on a cached object that predates the status of the token just
        // issued: then plan again on fresh state, without reporting a failure.
        if journal::cache_is_behind(obj, ctx).await? {
            return Err(Error::Stale {
                action: "issue a token",
            });
        }
        return Err(Error::ReissueThrottled { wait });
    }

    // The journal, with the finalizer: durable before the create, so that a crash at any
    // later point leaves a trace the next pass settles (see `recover`).
    let attempt_id = marker::new_attempt();
    let intent = IssueIntent {
        attempt_id: attempt_id.clone(),
        started_at: now,
        operation: format!("{reason:?}"),
    };
    if let Err(e) = journal::open(obj, ctx, &intent).await {
        // Nothing was created: this attempt must not hold back the next one.
        ctx.throttle.forget(&uid);
        return Err(e);
    }
    status.pending_issue = Some(intent);
    test_hooks::exit_at("after-intent", obj);

    let description = marker::describe(obj.common().description.as_deref(), &uid, &attempt_id);
    let issued = world
        .env
        .client
        .create::<K::Endpoint>(
            &world.owner,
            &obj.create_request(desired.expires_in_minutes, description),
        )
        .await?;
    // The token exists from here on. A shared listing stamped before this moment may not
    // show it, so it must not be taken as proof the token is gone (see `remote_state`).
    let issued_at = Timestamp::now();
    test_hooks::exit_at("after-create", obj);
    ctx.metrics
        .issued
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    let rotation = obj.common().rotation.clone().unwrap_or_default();
    // One exchange serves both the verification and the JWT the Secret delivers.
    let mut access_token = None;
    if (rotation.verify || desired.access_token_refresh_before.is_some())
        && K::LAYOUT == SecretLayout::ClientCredentials
    {
        match world
            .env
            .client
            .exchange_api_token(&issued.id, &issued.secret)
            .await
        {
            Ok(grant) => {
                if let Some(before) = desired.access_token_refresh_before {
                    ctx.metrics
                        .access_token_refreshes
                        .get_or_create(&Metrics::kind_action(K::KIND, "exchange"))
                        .inc();
                    access_token = Some(ctx.jwt.keep(&issued.id, grant, before));
                }
            }
            Err(e) if rotation.verify => {
                // An unusable token: revoke it, keep the Secret, let the backoff retry.
                if revoke::<K>(ctx, &world.env, &world.owner, &issued.id)
                    .await
                    .is_ok()
                {
                    status.close_journal();
                    *written = Some(status.clone());
                }
                return Err(Error::VerificationFailed(e.reason()));
            }
            Err(e) => {
                // The credentials go into the Secret anyway; the next pass exchanges again.
                notes.push((
                    EventType::Warning,
                    "AccessTokenFailed",
                    format!(
                        "could not exchange token {} for a JWT ({}); the Secret has the client credentials, the JWT follows",
                        issued.id,
                        e.reason()
                    ),
                ));
            }
        }
    }
    let expires_at = match (issued.expires_at, desired.expires_in_minutes) {
        (Some(at), _) => Some(at),
        (None, Some(minutes)) => {
            // Reported, not silently never rotated: rotate by the lifetime we asked for.
            notes.push((
                EventType::Warning,
                "RemoteExpiryMissing",
                format!(
                    "Frontegg returned no expiry for token {}; rotating by the requested lifetime",
                    issued.id
                ),
            ));
            now.checked_add(Duration::from_secs(minutes.saturating_mul(60)))
                .ok()
        }
        (None, None) => None,
    };
    let credential = Credential {
        id: issued.id.clone(),
        secret: issued.secret,
        expires_at: expires_at.map(|t| t.to_string()),
        access_token,
    };
    let secret_written = match secret::desired_secret(
        obj,
        &desired.secret_name,
        &credential,
        &world.secret_context(),
    ) {
        Ok(want) => write_secret_object(&world.secrets, world.live_secret.as_ref(), want).await,
        Err(e) => Err(e),
    };
    if let Err(e) = secret_written {
        // Nobody can read the new token's secret: revoke it now rather than leak it. If that
        // fails too, the open journal has the next pass revoke it by its mark.
        match revoke::<K>(ctx, &world.env, &world.owner, &issued.id).await {
            Ok(_) => {
                status.close_journal();
                *written = Some(status.clone());
            }
            Err(revoke) => {
                tracing::warn!(token = %issued.id, error = %revoke, "could not revoke a token whose Secret write failed")
            }
        }
        return Err(e);
    }
    test_hooks::exit_at("after-secret", obj);
    tracing::info!(token = %issued.id, ?reason, "issued token");

    if reason == IssueReason::SecretRenamed
        && let Some(old) = &status.current
    {
        delete_owned_secret(obj, &world.secrets, &old.secret_name).await;
    }
    if reason != IssueReason::Initial {
        restart_targets(ctx, &rotation.restart_targets, obj, notes).await;
    }
    let not_before = now.checked_add(desired.grace_period).ok();
    notes.push((
        EventType::Normal,
        reason.event_reason(),
        match &superseded {
            Some(old) => format!(
                "issued token {} into Secret {}: {}; token {old} stays valid for the {}s grace period",
                issued.id,
                desired.secret_name,
                reason.describe(),
                desired.grace_period.as_secs()
            ),
            None => format!(
                "issued token {} into Secret {}: {}",
                issued.id,
                desired.secret_name,
                reason.describe()
            ),
        },
    ));
    if reason != IssueReason::Initial {
        ctx.metrics
            .rotations
            .get_or_create(&Metrics::kind(K::KIND))
            .inc();
    }
    if let Some(old) = superseded {
        status.pending_revocations.push(PendingRevocation {
            id: old,
            reason: reason.describe().into(),
            not_before,
        });
    }
    status.current = Some(IssuedTokenRecord {
        id: issued.id,
        issued_at,
        expires_at,
        secret_name: desired.secret_name.clone(),
        issued_spec_hash: desired.issued_spec_hash.clone(),
        patched_spec_hash: desired.patched_spec_hash.clone(),
        attempt_id: Some(attempt_id),
        secret_digest: Some(secret_digest(&credential)),
        reissued_for_drift: reason == IssueReason::RemoteDrift,
        ..IssuedTokenRecord::default()
    });
    status.close_journal();
    status.handled_rotation_request = desired.rotation_request.clone();
    status.last_attempt = Some(AttemptRecord {
        operation: "Issue".into(),
        result: "Succeeded".into(),
        at: now,
    });
    Ok(())
}

/// Why a token is patched in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchReason {
    /// The spec changed.
    Spec,
    /// The remote token was changed outside the operator; `fields` differed.
    Drift,
}

/// Tenant API tokens: description, roles, permissions and metadata change in place.
#[allow(clippy::too_many_arguments)]
pub async fn patch<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    world: &World,
    desired: &Desired,
    status: &mut TokenStatus,
    reason: PatchReason,
    now: Timestamp,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let Some(current) = status.current.as_mut() else {
        return Err(Error::Internal(
            "patch planned without a current token".into(),
        ));
    };
    // The mark stays on the description, or the token would no longer be recognised.
    let description = marker::describe(
        obj.common().description.as_deref(),
        &uid,
        current
            .attempt_id
            .as_deref()
            .unwrap_or(marker::UNMARKED_ATTEMPT),
    );
    let Some(body) = obj.patch_request(description) else {
        return Err(Error::Internal(
            "patch planned for a kind that cannot be patched".into(),
        ));
    };
    world
        .env
        .client
        .patch_tenant_api_token(&world.owner, &current.id, &body)
        .await?;
    current.patched_spec_hash = desired.patched_spec_hash.clone();
    // Listings fetched before this moment still show the old attributes.
    current.updated_at = Some(Timestamp::now());
    notes.push(match reason {
        PatchReason::Spec => (
            EventType::Normal,
            "Updated",
            format!("updated token {} in place", current.id),
        ),
        PatchReason::Drift => {
            ctx.metrics
                .remote_drift
                .get_or_create(&Metrics::kind_action(K::KIND, "repaired"))
                .inc();
            let fields = world
                .observed
                .remote_drift
                .as_ref()
                .map(|f| f.join(", "))
                .unwrap_or_default();
            (
                EventType::Normal,
                "DriftRepaired",
                format!(
                    "token {} was changed outside the operator ({fields}); patched it back to the spec",
                    current.id
                ),
            )
        }
    });
    status.last_attempt = Some(AttemptRecord {
        operation: "Patch".into(),
        result: "Succeeded".into(),
        at: now,
    });
    Ok(())
}

/// Rewrites the Secret (keys, labels, owner) from the credential it holds.
pub async fn rewrite_secret<K: TokenResource>(
    obj: &K,
    world: &World,
    desired: &Desired,
    notes: &mut Vec<Note>,
) -> Result<(), Error> {
    if let Some(cred) = &world.credential {
        write_credential(obj, world, desired, cred).await?;
        notes.push((
            EventType::Normal,
            "SecretUpdated",
            format!("rewrote Secret {}", desired.secret_name),
        ));
    }
    Ok(())
}

/// Replaces the JWT the Secret delivers, keeping its credential.
pub async fn refresh_access_token<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    world: &World,
    desired: &Desired,
) -> Result<(), Error> {
    let (Some(cred), Some(before)) = (&world.credential, desired.access_token_refresh_before)
    else {
        return Err(Error::Internal(
            "a JWT refresh planned without a credential".into(),
        ));
    };
    let jwt = ctx
        .jwt
        .obtain(
            &world.env.client,
            &ctx.metrics,
            K::KIND,
            &cred.id,
            &cred.secret,
            before,
        )
        .await?;
    let credential = Credential {
        access_token: Some(jwt),
        ..cred.clone()
    };
    write_credential(obj, world, desired, &credential).await?;
    tracing::debug!(token = %cred.id, "delivered a fresh JWT");
    Ok(())
}

/// Writes the token's Secret holding `cred`.
pub async fn write_credential<K: TokenResource>(
    obj: &K,
    world: &World,
    desired: &Desired,
    cred: &Credential,
) -> Result<(), Error> {
    let want = secret::desired_secret(obj, &desired.secret_name, cred, &world.secret_context())?;
    write_secret_object(&world.secrets, world.live_secret.as_ref(), want).await
}

/// Revokes the superseded tokens whose grace period is over; failures stay pending.
pub async fn revoke_due<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    owner: &TokenOwner,
    status: &mut TokenStatus,
    now: Timestamp,
    notes: &mut Vec<Note>,
) {
    let mut still_pending = Vec::new();
    for pending in std::mem::take(&mut status.pending_revocations) {
        if pending.not_before.is_some_and(|t| t > now) {
            still_pending.push(pending);
            continue;
        }
        match revoke::<K>(ctx, env, owner, &pending.id).await {
            Ok(note) => notes.push(note),
            Err(e) => {
                tracing::warn!(token = %pending.id, error = %e, "revocation failed; will retry");
                still_pending.push(pending);
            }
        }
    }
    status.pending_revocations = still_pending;
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

async fn write_secret_object(
    secrets: &Api<Secret>,
    live: Option<&Secret>,
    want: Secret,
) -> Result<(), Error> {
    match live {
        None => {
            secrets
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &want,
                )
                .await
                .context("create the token's Secret")?;
        }
        Some(live) => {
            let name = want.metadata.name.clone().unwrap_or_default();
            secrets
                .patch(
                    &name,
                    &PatchParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &Patch::Merge(&secret_update(live, &want)?),
                )
                .await
                .context("update the token's Secret")?;
        }
    }
    Ok(())
}

/// A merge patch that makes an owned Secret's data exactly the desired data. The data of a
/// Secret the operator owns is all its own: keys it no longer writes (a template key removed,
/// the JWT turned off) and keys someone added are deleted. A server-side apply would keep
/// every key another field manager, or our own create, ever set. Labels and annotations are
/// merged, so others may add their own.
fn secret_update(live: &Secret, want: &Secret) -> Result<serde_json::Value, Error> {
    fn encode<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, Error> {
        serde_json::to_value(v).map_err(|e| Error::Internal(format!("cannot encode: {e}")))
    }
    let mut data = match encode(&want.data)? {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    for key in live.data.iter().flatten().map(|(k, _)| k) {
        if !data.contains_key(key) {
            data.insert(key.clone(), serde_json::Value::Null);
        }
    }
    // `null` would delete every label or annotation: absent ones are left out instead.
    let mut metadata = serde_json::Map::new();
    if let Some(labels) = &want.metadata.labels {
        metadata.insert("labels".into(), encode(labels)?);
    }
    if let Some(annotations) = &want.metadata.annotations {
        metadata.insert("annotations".into(), encode(annotations)?);
    }
    if let Some(owners) = &want.metadata.owner_references {
        metadata.insert("ownerReferences".into(), encode(owners)?);
    }
    Ok(json!({ "metadata": metadata, "data": data }))
}

fn as_apply_patch(secret: &Secret) -> Result<serde_json::Value, Error> {
    let mut patch = serde_json::to_value(secret)
        .map_err(|e| Error::Internal(format!("cannot encode the Secret: {e}")))?;
    if let Some(map) = patch.as_object_mut() {
        map.insert("apiVersion".into(), json!("v1"));
        map.insert("kind".into(), json!("Secret"));
    }
    Ok(patch)
}

/// The API server's own validation of the Secret about to be written, with nothing stored: the
/// create when there is none, which answers 409 for a Secret this pass did not read or that
/// appeared since; otherwise the apply.
async fn dry_run_secret(secrets: &Api<Secret>, probe: Secret, exists: bool) -> Result<(), Error> {
    let name = probe.metadata.name.clone().unwrap_or_default();
    let result = if exists {
        secrets
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force().dry_run(),
                &Patch::Apply(&as_apply_patch(&probe)?),
            )
            .await
    } else {
        let params = PostParams {
            dry_run: true,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        secrets.create(&params, &probe).await
    };
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 && !exists => {
            Err(Error::SecretAppeared(name))
        }
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => Err(
            Error::SecretRejected(status.message.chars().take(500).collect()),
        ),
        Err(e) => Err(e).context("dry-run the token's Secret"),
    }
}

/// `kubectl rollout restart` for the workloads that read the credential only at start.
/// Failures are reported, not fatal: the Secret already switched, and the old token stays
/// valid for the grace period.
async fn restart_targets<K: TokenResource>(
    ctx: &Context,
    targets: &[RestartTarget],
    obj: &K,
    notes: &mut Vec<Note>,
) {
    let namespace = obj.namespace().unwrap_or_default();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": Timestamp::now().to_string()
    }}}}});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    for target in targets {
        let client = ctx.client.clone();
        let result = match target.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, &namespace)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, &namespace)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
            WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, &namespace)
                .patch(&target.name, &params, &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        };
        notes.push(match result {
            Ok(()) => (
                EventType::Normal,
                "Restarted",
                format!(
                    "restarted {:?} {} for the new credential",
                    target.kind, target.name
                ),
            ),
            Err(e) => (
                EventType::Warning,
                "RestartFailed",
                format!("could not restart {:?} {}: {e}", target.kind, target.name),
            ),
        });
    }
}

async fn delete_owned_secret<K: TokenResource>(obj: &K, secrets: &Api<Secret>, name: &str) {
    if let Ok(Some(s)) = secrets.get_opt(name).await
        && secret::is_owned_by(&s, obj)
        && let Err(e) = secrets.delete(name, &Default::default()).await
    {
        tracing::warn!(secret = name, error = %e, "could not delete the renamed token's old Secret");
    }
}
