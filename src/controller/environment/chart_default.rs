//! The chart's default ClusterFronteggEnvironment, owned by the operator from the chart's
//! values (`--default-environment-manifest`). Helm cannot create a custom resource whose CRD
//! the same release installs, so 0.1 made it a Helm hook; Helm deletes and recreates a hook on
//! every upgrade, and a hook cannot carry the in-use finalizer. Applied by the operator, it is
//! an ordinary environment: upgrades leave it alone and in-use protection holds it.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::api::ClusterFronteggEnvironment;

/// The field manager of what the chart's values say.
const MANAGER: &str = "frontegg-token-operator-values";
/// What 0.1's hook left on the environment; once removed, in-use protection applies to it.
const HOOK_ANNOTATIONS: [&str; 3] = [
    "helm.sh/hook",
    "helm.sh/hook-weight",
    "helm.sh/hook-delete-policy",
];

/// Reads the manifest: a ClusterFronteggEnvironment as JSON, with a name.
pub fn parse(manifest: &str) -> Result<ClusterFronteggEnvironment, String> {
    let mut env: ClusterFronteggEnvironment = serde_json::from_str(manifest).map_err(|e| {
        format!("--default-environment-manifest is not a ClusterFronteggEnvironment: {e}")
    })?;
    if env.metadata.name.as_deref().unwrap_or_default().is_empty() {
        return Err("--default-environment-manifest has no metadata.name".into());
    }
    // Only what the values say: no status, no server fields.
    env.status = None;
    env.metadata.resource_version = None;
    env.metadata.uid = None;
    Ok(env)
}

/// Applies the environment as the values say (server-side, as its own field manager), and
/// takes it over from 0.1's hook. Returns its name.
pub async fn own(client: &Client, manifest: &str) -> Result<String, String> {
    let env = parse(manifest)?;
    let name = env.name_any();
    let api: Api<ClusterFronteggEnvironment> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&env),
    )
    .await
    .map_err(|e| format!("apply the default environment {name}: {e}"))?;
    let current = api
        .get(&name)
        .await
        .map_err(|e| format!("read the default environment {name}: {e}"))?;
    let hooked = HOOK_ANNOTATIONS
        .iter()
        .any(|a| current.annotations().contains_key(*a));
    if hooked {
        let unhook: serde_json::Map<String, serde_json::Value> = HOOK_ANNOTATIONS
            .iter()
            .map(|a| (a.to_string(), serde_json::Value::Null))
            .collect();
        let patch = json!({"metadata": {"annotations": unhook}});
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("take over the default environment {name}: {e}"))?;
        tracing::info!(environment = %name, "took the default environment over from the chart's hook");
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_must_be_a_named_environment() {
        let ok = r#"{"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"ClusterFronteggEnvironment",
            "metadata":{"name":"default","labels":{"a":"b"}},
            "spec":{"region":"eu","credentialsSecretRef":{"name":"c"}}}"#;
        assert_eq!(parse(ok).map(|e| e.name_any()), Ok("default".to_string()));
        assert!(
            parse(r#"{"metadata":{},"spec":{"region":"eu","credentialsSecretRef":{"name":"c"}}}"#)
                .is_err()
        );
        assert!(
            parse("not json")
                .unwrap_err()
                .contains("--default-environment-manifest")
        );
    }
}
