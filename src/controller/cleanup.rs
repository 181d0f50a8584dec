//! Cleanup, when the resource is deleted: revoke every token it still holds, or orphan them.
//! Revoking never needs permission, and never waits for a grace period.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::dereference::{self, marked_by_uid};
use super::error::KubeContext;
use super::execute::{Note, revoke};
use super::kinds::TokenResource;
use super::resolve_environment::{self, Purpose, Resolved, effective_ref};
use super::{Context, Error, journal, secret, test_hooks};
use crate::api::{DeletionPolicy, ManagementPolicy};
use crate::metrics::Metrics;

pub async fn cleanup<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Vec<Note>, Error> {
    if obj.common().management_policy == ManagementPolicy::Observe {
        // An observed token was never ours: nothing to revoke or release.
        return Ok(Vec::new());
    }
    let status = journal::status_of(obj);
    let namespace = obj.namespace().unwrap_or_default();
    let mut notes = Vec::new();
    match obj.common().deletion_policy {
        DeletionPolicy::Orphan => {
            if let Some(current) = &status.current {
                let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
                if let Some(s) = secrets
                    .get_opt(&current.secret_name)
                    .await
                    .context("read the token's Secret")?
                    && secret::is_owned_by(&s, obj)
                {
                    // Without the owner reference the garbage collector leaves the Secret alone.
                    let patch = json!({ "metadata": { "ownerReferences": [] } });
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
                notes.push((
                    EventType::Normal,
                    "Orphaned",
                    format!(
                        "left token {} and Secret {} in place",
                        current.id, current.secret_name
                    ),
                ));
            }
        }
        DeletionPolicy::Delete => {
            let mut ids: Vec<String> = status
                .current
                .iter()
                .map(|c| c.id.clone())
                .chain(status.pending_revocations.iter().map(|p| p.id.clone()))
                .collect();
            if !ids.is_empty() || status.pending_issue.is_some() {
                let failed = |e: Error| Error::RevocationFailed { cause: Box::new(e) };
                let env = resolve_for_cleanup(obj, ctx, &namespace)
                    .await
                    .map_err(failed)?;
                let owner = dereference::owner(obj);
                if status.pending_issue.is_some() {
                    // An interrupted issuance may have left a token nobody recorded: find it
                    // by its mark.
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
                return revoke_all::<K>(obj, ctx, &env, &owner, ids, notes).await;
            }
        }
    }
    finished(obj, ctx);
    Ok(notes)
}

async fn revoke_all<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    env: &Resolved,
    owner: &crate::identity::TokenOwner,
    ids: Vec<String>,
    mut notes: Vec<Note>,
) -> Result<Vec<Note>, Error> {
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
    finished(obj, ctx);
    Ok(notes)
}

fn finished<K: TokenResource>(obj: &K, ctx: &Context) {
    ctx.forget(&super::status::object_key(obj), obj.meta().uid.as_deref());
}

/// During namespace deletion the environment or its credentials Secret may already be gone;
/// the client built from them earlier still works, so fall back to it.
async fn resolve_for_cleanup<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    namespace: &str,
) -> Result<Resolved, Error> {
    let common = obj.common();
    let env_ref = effective_ref(
        common.environment_ref.as_ref(),
        &ctx.config.default_environment,
    );
    match resolve_environment::resolve(ctx, namespace, env_ref, &common.tenant_id, Purpose::Revoke)
        .await
    {
        Ok(env) => Ok(env),
        Err(e @ (Error::EnvironmentNotFound { .. } | Error::CredentialsInvalid(_))) => {
            let key = resolve_environment::environment_key(env_ref, namespace);
            ctx.clients
                .cached(&key)
                .map(|client| Resolved {
                    key,
                    client,
                    policy: None,
                })
                .ok_or(e)
        }
        Err(e) => Err(e),
    }
}
