//! `kubectl rollout restart` for the workloads that read the credential only at start
//! (`spec.rotation.restartTargets`), after a replacement token is in the Secret.

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, RestartTarget, WorkloadKind};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::events::Note;

/// Failures are reported, not fatal: the Secret already switched, and the old token stays
/// valid for the grace period.
pub async fn restart_targets<K: TokenResource>(
    ctx: &Context,
    targets: &[RestartTarget],
    obj: &K,
    notes: &mut Vec<Note>,
) {
    let namespace = obj.namespace().unwrap_or_default();
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": Timestamp::now().to_string()
    }}}}});
    for target in targets {
        let result = restart(ctx.client.clone(), &namespace, target, &patch).await;
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

async fn restart(
    client: kube::Client,
    namespace: &str,
    target: &RestartTarget,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let patch = Patch::Merge(patch);
    match target.kind {
        WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, namespace)
            .patch(&target.name, &params, &patch)
            .await
            .map(|_| ()),
        WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, namespace)
            .patch(&target.name, &params, &patch)
            .await
            .map(|_| ()),
        WorkloadKind::DaemonSet => Api::<DaemonSet>::namespaced(client, namespace)
            .patch(&target.name, &params, &patch)
            .await
            .map(|_| ()),
    }
}
