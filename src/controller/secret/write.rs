//! The one place that writes, probes or deletes a token's Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;

use super::layout::is_owned_by;
use crate::api::FIELD_MANAGER;
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::error::{Error, KubeContext};

/// Creates the token's Secret, or makes the live one exactly `want` (`secret_update`).
pub async fn write(
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
pub async fn dry_run(secrets: &Api<Secret>, probe: Secret, exists: bool) -> Result<(), Error> {
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

/// Deletes the Secret `name` if `obj` owns it (the old Secret of a renamed token).
pub async fn delete_owned<K: TokenResource>(obj: &K, secrets: &Api<Secret>, name: &str) {
    if let Ok(Some(s)) = secrets.get_opt(name).await
        && is_owned_by(&s, obj)
        && let Err(e) = secrets.delete(name, &Default::default()).await
    {
        tracing::warn!(secret = name, error = %e, "could not delete the renamed token's old Secret");
    }
}
