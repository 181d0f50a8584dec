//! `kubectl frontegg check environment`: why an environment can or cannot serve tokens, from
//! what the cluster holds (its status, its credentials Secret's metadata, its spec).

use frontegg_token_operator::api::{
    CREDENTIALS_LABEL, ClusterFronteggEnvironment, FronteggEnvironment, IN_USE_FINALIZER,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub environment: String,
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub base_url: Option<String>,
    /// The Secret the credentials are read from, and what is wrong with it, if anything.
    pub credentials: String,
    pub credentials_problems: Vec<String>,
    pub in_use: bool,
    pub tokens_in_use: Option<u64>,
    pub leaked_tokens: usize,
    /// A ClusterFronteggEnvironment's guard rails and policy, as written.
    pub allowed_namespaces: Option<Value>,
    pub allowed_tenants: Option<Value>,
    pub policy: Option<Value>,
}

fn s(v: &Value, pointer: &str) -> Option<String> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The FronteggEnvironment `name` in `namespace`, or else the ClusterFronteggEnvironment.
async fn find(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(String, DynamicObject, String), String> {
    let namespaced = ApiResource::erase::<FronteggEnvironment>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &namespaced);
    if let Some(env) = api.get_opt(name).await.map_err(|e| e.to_string())? {
        return Ok((
            format!("FronteggEnvironment {namespace}/{name}"),
            env,
            namespace.into(),
        ));
    }
    let cluster = ApiResource::erase::<ClusterFronteggEnvironment>(&());
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster);
    match api.get_opt(name).await.map_err(|e| e.to_string())? {
        // Its credentials are in the operator's namespace, which its status does not name:
        // the caller says it (--operator-namespace), default frontegg-token-operator.
        Some(env) => Ok((
            format!("ClusterFronteggEnvironment {name}"),
            env,
            String::new(),
        )),
        None => Err(format!(
            "no FronteggEnvironment {namespace}/{name} and no ClusterFronteggEnvironment {name}"
        )),
    }
}

pub async fn environment(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    operator_namespace: &str,
) -> Result<Check, String> {
    let (label, env, secret_ns) = find(client, namespace, name).await?;
    let secret_ns = if secret_ns.is_empty() {
        operator_namespace.to_string()
    } else {
        secret_ns
    };
    let data = &env.data;
    let ready = data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let secret_name = s(data, "/spec/credentialsSecretRef/name").unwrap_or_default();
    let keys = [
        s(data, "/spec/credentialsSecretRef/clientIdKey").unwrap_or_else(|| "clientId".into()),
        s(data, "/spec/credentialsSecretRef/secretKey").unwrap_or_else(|| "secret".into()),
    ];
    let problems = credentials_problems(client, &secret_ns, &secret_name, &keys).await;
    Ok(Check {
        environment: label,
        ready: s(&ready, "/status").unwrap_or_else(|| "Unknown".into()),
        reason: s(&ready, "/reason").unwrap_or_default(),
        message: s(&ready, "/message").unwrap_or_default(),
        base_url: s(data, "/status/baseUrl"),
        credentials: format!("{secret_ns}/{secret_name}"),
        credentials_problems: problems,
        in_use: env
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == IN_USE_FINALIZER),
        tokens_in_use: data.pointer("/status/tokensInUse").and_then(Value::as_u64),
        leaked_tokens: data
            .pointer("/status/leakedTokens")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        allowed_namespaces: data.pointer("/spec/allowedNamespaces").cloned(),
        allowed_tenants: data.pointer("/spec/allowedTenants").cloned(),
        policy: data.pointer("/spec/policy").cloned(),
    })
}

/// What keeps the Secret from serving as credentials; its values are never read out.
async fn credentials_problems(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    keys: &[String],
) -> Vec<String> {
    let secret = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(secret)) => secret,
        Ok(None) => return vec![format!("Secret {namespace}/{name} does not exist")],
        Err(e) => return vec![format!("cannot read Secret {namespace}/{name}: {e}")],
    };
    let mut problems = Vec::new();
    let marked = frontegg_token_operator::api::marked_as_credentials(&secret.metadata);
    if !marked {
        problems.push(format!("it lacks the label {CREDENTIALS_LABEL}: \"true\""));
    }
    for key in keys {
        let present = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .is_some_and(|v| !v.0.is_empty());
        if !present {
            problems.push(format!("it has no key {key}"));
        }
    }
    problems
}

pub fn describe(c: &Check) -> String {
    let mut out = format!("{}\n", c.environment);
    out.push_str(&format!(
        "  Ready:        {} {}: {}\n",
        c.ready, c.reason, c.message
    ));
    out.push_str(&format!(
        "  Base URL:     {}\n",
        c.base_url.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!("  Credentials:  Secret {}", c.credentials));
    if c.credentials_problems.is_empty() {
        out.push_str(" (labelled, keys present)\n");
    } else {
        out.push_str(&format!(": {}\n", c.credentials_problems.join("; ")));
    }
    out.push_str(&format!(
        "  In use:       {}{}\n",
        if c.in_use {
            "yes (protected by the in-use finalizer)"
        } else {
            "no"
        },
        c.tokens_in_use.map_or_else(String::new, |n| format!(
            "; deletion waits for {n} token resource(s)"
        ))
    ));
    if c.leaked_tokens > 0 {
        out.push_str(&format!(
            "  Leaked:       {} token(s), see status.leakedTokens\n",
            c.leaked_tokens
        ));
    }
    for (label, v) in [
        ("Namespaces", &c.allowed_namespaces),
        ("Tenants", &c.allowed_tenants),
        ("Policy", &c.policy),
    ] {
        if let Some(v) = v {
            out.push_str(&format!(
                "  {label}:{}{}\n",
                " ".repeat(13usize.saturating_sub(label.len())),
                readable(v)
            ));
        }
    }
    out
}

/// A spec value as a line a person reads: lists joined with commas, maps as `key: value`
/// pairs, label maps as `key=value`. `-o json` keeps the value as written.
fn readable(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "(none)".into(),
        Value::Array(items) => items.iter().map(readable).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "(none)".into(),
        Value::Object(map) if map.values().all(Value::is_string) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", readable(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", readable(v)))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guard_rails_read_as_sentences_not_json() {
        let namespaces = json!({"names": ["team-a", "team-b"],
            "selector": {"matchLabels": {"tier": "prod"}}});
        assert_eq!(
            readable(&namespaces),
            "names: team-a, team-b; selector: matchLabels: tier=prod"
        );
        assert_eq!(readable(&json!(["*"])), "*");
        assert_eq!(
            readable(&json!({"maxLifetime": "720h", "roles": []})),
            "maxLifetime: 720h; roles: (none)"
        );
    }
}
