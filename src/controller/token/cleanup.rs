//! Cleanup, when the resource is deleted: revoke every token it still holds, or orphan them.
//! Revoking never needs permission, and never waits for a grace period.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{
    DeletionPolicy, EnvironmentKind, EnvironmentRef, IssuedTokenRecord, ManagementPolicy,
    ORPHANED_FROM_LABEL, TokenStatus,
};
use crate::controller::environment::reference::{effective_ref, environment_key};
use crate::controller::environment::resolve::{self, Origin, Purpose, Resolved};
use crate::controller::issuance::revoke::revoke;
use crate::controller::kinds::{TokenResource, object_key};
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::events::Note;
use crate::controller::runtime::holders::EnvironmentId;
use crate::controller::runtime::test_hooks;
use crate::controller::secret::layout;
use crate::controller::steps::dereference::{self, marked_by_uid};
use crate::controller::steps::journal;
use crate::identity::TokenOwner;
use crate::metrics::Metrics;

pub async fn cleanup<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Vec<Note>, Error> {
    if obj.common().management_policy == ManagementPolicy::Observe {
        // An observed token was never ours: nothing to revoke or release.
        return Ok(Vec::new());
    }
    let status = journal::status_of(obj);
    let notes = match (obj.common().deletion_policy, &status.current) {
        (DeletionPolicy::Orphan, Some(current)) => orphan(obj, ctx, current).await?,
        (DeletionPolicy::Orphan, None) => Vec::new(),
        (DeletionPolicy::Delete, _) => revoke_held(obj, ctx, &status).await?,
    };
    finished(obj, ctx);
    Ok(notes)
}

/// Leaves the token and its Secret in place; without the owner reference the garbage
/// collector leaves the Secret alone.
async fn orphan<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    current: &IssuedTokenRecord,
) -> Result<Vec<Note>, Error> {
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    if let Some(s) = secrets
        .get_opt(&current.secret_name)
        .await
        .context("read the token's Secret")?
        && layout::is_owned_by(&s, obj)
    {
        // The label tells leak detection this token was left on purpose.
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let patch = json!({ "metadata": {
            "ownerReferences": [],
            "labels": { ORPHANED_FROM_LABEL: uid },
        }});
        secrets
            .patch(
                &current.secret_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .context("release the orphaned Secret")?;
    }
    ctx.metrics
        .orphaned
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    Ok(vec![(
        EventType::Normal,
        "Orphaned",
        format!(
            "left token {} and Secret {} in place",
            current.id, current.secret_name
        ),
    )])
}

/// Revokes the current token, the superseded ones, and any an interrupted issuance left.
async fn revoke_held<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
) -> Result<Vec<Note>, Error> {
    let mut ids: Vec<String> = status
        .current
        .iter()
        .map(|c| c.id.clone())
        .chain(status.pending_revocations.iter().map(|p| p.id.clone()))
        .collect();
    if ids.is_empty() && status.pending_issue.is_none() {
        return Ok(Vec::new());
    }
    let failed = |e: Error| Error::RevocationFailed { cause: Box::new(e) };
    let env = resolve_for_cleanup(obj, ctx, status)
        .await
        .map_err(failed)?;
    env.serves_all(status).map_err(failed)?;
    let owner = dereference::owner(obj);
    if status.pending_issue.is_some() {
        // An interrupted issuance may have left a token nobody recorded: find it by its mark.
        let tokens = dereference::fresh_listing::<K>(ctx, &env, &owner)
            .await
            .map_err(failed)?;
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        let unrecorded: Vec<String> = marked_by_uid(&tokens)
            .filter(|(id, owner)| *owner == uid && !ids.iter().any(|i| i == id))
            .map(|(id, _)| id.to_string())
            .collect();
        ids.extend(unrecorded);
    }
    revoke_all::<K>(obj, ctx, &env, &owner, ids).await
}

async fn revoke_all<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    env: &Resolved,
    owner: &TokenOwner,
    ids: Vec<String>,
) -> Result<Vec<Note>, Error> {
    let mut notes = Vec::new();
    for id in ids {
        match revoke::<K>(ctx, env, owner, &id).await {
            Ok(note) => notes.push(note),
            Err(e) => {
                return Err(Error::RevocationFailed {
                    cause: Box::new(e.into()),
                });
            }
        }
        test_hooks::exit_at("mid-deletion", obj);
    }
    Ok(notes)
}

fn finished<K: TokenResource>(obj: &K, ctx: &Context) {
    ctx.forget(&object_key(obj), obj.meta().uid.as_deref());
}

/// The environment the current token was issued through (the operator's default may have
/// changed since). In-use protection keeps it until this cleanup is done; a client built
/// from it earlier, still in memory, serves where it went anyway (an older operator, or a
/// finalizer removed by hand).
async fn resolve_for_cleanup<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
) -> Result<Resolved, Error> {
    let common = obj.common();
    let namespace = obj.namespace().unwrap_or_default();
    let recorded = status
        .current
        .as_ref()
        .and_then(|c| c.connection.as_ref())
        .map(|c| EnvironmentRef {
            kind: c.environment_kind,
            name: c.environment_name.clone(),
        });
    let env_ref = recorded.as_ref().unwrap_or(effective_ref(
        common.environment_ref.as_ref(),
        &ctx.config.default_environment,
    ));
    match resolve::resolve(ctx, &namespace, env_ref, &common.tenant_id, Purpose::Revoke).await {
        Ok(env) => Ok(env),
        Err(e @ (Error::EnvironmentNotFound { .. } | Error::CredentialsInvalid(_))) => {
            let key = environment_key(env_ref, &namespace);
            let namespace =
                (env_ref.kind == EnvironmentKind::FronteggEnvironment).then_some(namespace);
            let origin = Origin {
                environment: EnvironmentId {
                    kind: env_ref.kind,
                    namespace,
                    name: env_ref.name.clone(),
                },
                credentials: None,
                deleting: None,
                uid: None,
            };
            ctx.clients
                .cached(&key)
                .map(|client| Resolved {
                    key,
                    client,
                    policy: None,
                    origin,
                })
                .ok_or(e)
        }
        Err(e) => Err(e),
    }
}
