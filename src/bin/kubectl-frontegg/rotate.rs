//! `kubectl frontegg rotate`: sets the rotate annotation, a value unique to this call, and
//! with `--wait` follows each resource until its Secret holds the new token.

use std::time::{Duration, Instant};

use frontegg_token_operator::api::ROTATE_ANNOTATION;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde::Serialize;
use serde_json::{Value, json};

use crate::kinds::{self, Kind};
use crate::status;

/// One resource asked to rotate.
pub struct Target {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The token it held when asked.
    pub before: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub resource: String,
    pub old_token_id: Option<String>,
    pub new_token_id: Option<String>,
    /// `Requested`, `Rotated` or `Failed`.
    pub result: String,
    pub reason: Option<String>,
}

/// The request: a value no earlier call used.
pub fn request_value() -> String {
    format!(
        "kubectl-frontegg-{}",
        jiff::Timestamp::now().as_nanosecond()
    )
}

pub async fn request(
    client: &kube::Client,
    target: &Target,
    value: &str,
) -> Result<(), kube::Error> {
    let patch = json!({ "metadata": { "annotations": { ROTATE_ANNOTATION: value } } });
    kinds::api(client, &target.kind, Some(&target.namespace))
        .patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

fn label(t: &Target) -> String {
    format!("{}/{}/{}", t.kind.name, t.namespace, t.name)
}

/// What one look at the resource says: `Some` once it finished, one way or the other.
/// Where a resource stands: done (rotated or failed), or still waiting, with the `Rotating`
/// condition's message when the operator said why and until when.
enum Seen {
    Done(Outcome),
    Waiting(Option<String>),
}

async fn look(client: &kube::Client, target: &Target, value: &str) -> Seen {
    let obj: Option<DynamicObject> = kinds::api(client, &target.kind, Some(&target.namespace))
        .get_opt(&target.name)
        .await
        .ok()
        .flatten();
    let Some(obj) = obj else {
        return Seen::Waiting(None);
    };
    match settled(client, target, value, &obj).await {
        Some(outcome) => Seen::Done(outcome),
        None => Seen::Waiting(scheduled(&obj)),
    }
}

/// The `Rotating` condition's message while a replacement waits for --min-reissue-interval.
fn scheduled(obj: &DynamicObject) -> Option<String> {
    let conditions = obj.data.pointer("/status/conditions")?.as_array()?;
    conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Rotating"))
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| c.get("message").and_then(Value::as_str))
        .map(str::to_string)
}

async fn settled(
    client: &kube::Client,
    target: &Target,
    value: &str,
    obj: &DynamicObject,
) -> Option<Outcome> {
    let row = status::row(&target.kind, obj);
    let handled = obj
        .data
        .pointer("/status/handledRotationRequest")
        .and_then(Value::as_str);
    let outcome = |result: &str, reason: Option<String>| Outcome {
        resource: label(target),
        old_token_id: target.before.clone(),
        new_token_id: row.token_id.clone(),
        result: result.into(),
        reason,
    };
    if handled == Some(value) && row.token_id != target.before {
        let secret = row.secret.as_deref()?;
        return secret_holds(client, &target.namespace, secret, row.token_id.as_deref()?)
            .await
            .then(|| outcome("Rotated", None));
    }
    // A permanent failure does not heal by waiting: the condition says why.
    let permanent = [
        "InvalidSpec",
        "PolicyViolation",
        "NamespaceNotAllowed",
        "TenantNotAllowed",
        "SecretConflict",
        "EnvironmentNotFound",
        "ConnectionChanged",
        "EnvironmentDeleting",
    ];
    (row.ready == "False" && permanent.contains(&row.reason.as_str()))
        .then(|| outcome("Failed", Some(format!("{}: {}", row.reason, row.message))))
}

async fn secret_holds(client: &kube::Client, namespace: &str, name: &str, id: &str) -> bool {
    let Ok(Some(secret)) = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    else {
        return false;
    };
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("tokenId"))
        .is_some_and(|v| v.0 == id.as_bytes())
}

fn report(outcome: &Outcome) {
    match &outcome.reason {
        None => eprintln!(
            "{}: rotated, token {} is in the Secret",
            outcome.resource,
            outcome.new_token_id.as_deref().unwrap_or("-")
        ),
        Some(why) => eprintln!("{}: failed: {why}", outcome.resource),
    }
}

/// Follows every target until it rotated, failed or `timeout` passed; a progress line per
/// resource on stderr, and one when the operator says a rotation waits and until when.
pub async fn wait(
    client: &kube::Client,
    targets: &[Target],
    value: &str,
    timeout: Duration,
) -> Vec<Outcome> {
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(Instant::now);
    let mut done: Vec<Option<Outcome>> = targets.iter().map(|_| None).collect();
    let mut said: Vec<Option<String>> = targets.iter().map(|_| None).collect();
    while Instant::now() < deadline && done.iter().any(Option::is_none) {
        for ((target, slot), said) in targets.iter().zip(done.iter_mut()).zip(said.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            match look(client, target, value).await {
                Seen::Done(outcome) => {
                    report(&outcome);
                    *slot = Some(outcome);
                }
                // Once per new reason: a wait of minutes must not look like a hang.
                Seen::Waiting(Some(why)) if said.as_ref() != Some(&why) => {
                    eprintln!("{}: waiting: {why}", label(target));
                    *said = Some(why);
                }
                Seen::Waiting(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    targets
        .iter()
        .zip(done)
        .map(|(t, o)| {
            o.unwrap_or_else(|| Outcome {
                resource: label(t),
                old_token_id: t.before.clone(),
                new_token_id: None,
                result: "Failed".into(),
                reason: Some(format!("not rotated within {}s", timeout.as_secs())),
            })
        })
        .collect()
}
