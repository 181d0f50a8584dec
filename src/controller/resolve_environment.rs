//! Resolving a token's environment: allowed namespace and tenant first (so a disallowed
//! resource never causes a remote call), then credentials, then a shared client.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::core::{Selector, SelectorExt};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::error::KubeContext;
use super::{Context, Error};
use crate::api::{
    ClusterFronteggEnvironment, EnvironmentConnection, EnvironmentKind, EnvironmentRef,
    FronteggEnvironment,
};
use crate::identity::{ClientOptions, EnvironmentConfig, IdentityClient};

/// An environment a token may use, with its shared client.
pub struct Resolved {
    /// Stable identity of the environment (metrics label, drift-cache key).
    pub key: String,
    pub client: Arc<IdentityClient>,
}

/// One client per environment, replaced when its connection or credentials change, so the
/// vendor token cache, rate limiter and 429 gate are shared by every token of the environment.
#[derive(Default)]
pub struct ClientRegistry {
    clients: Mutex<HashMap<String, (String, Arc<IdentityClient>)>>,
}

impl ClientRegistry {
    pub fn cached(&self, key: &str) -> Option<Arc<IdentityClient>> {
        self.clients.lock().ok()?.get(key).map(|(_, c)| c.clone())
    }

    pub fn get_or_create(
        &self,
        key: &str,
        fingerprint: String,
        make: impl FnOnce() -> Result<IdentityClient, Error>,
    ) -> Result<Arc<IdentityClient>, Error> {
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Error::CredentialsInvalid("client registry poisoned".into()))?;
        if let Some((fp, client)) = clients.get(key)
            && *fp == fingerprint
        {
            return Ok(client.clone());
        }
        let client = Arc::new(make()?);
        clients.insert(key.to_string(), (fingerprint, client.clone()));
        Ok(client)
    }
}

pub fn effective_ref<'a>(
    explicit: Option<&'a EnvironmentRef>,
    default: &'a EnvironmentRef,
) -> &'a EnvironmentRef {
    explicit.unwrap_or(default)
}

pub fn environment_key(r: &EnvironmentRef, namespace: &str) -> String {
    match r.kind {
        EnvironmentKind::ClusterFronteggEnvironment => {
            format!("ClusterFronteggEnvironment/{}", r.name)
        }
        EnvironmentKind::FronteggEnvironment => {
            format!("FronteggEnvironment/{namespace}/{}", r.name)
        }
    }
}

/// Resolves the environment for a token in `namespace` acting on `tenant`.
pub async fn resolve(
    ctx: &Context,
    namespace: &str,
    env_ref: &EnvironmentRef,
    tenant: &str,
) -> Result<Resolved, Error> {
    let key = environment_key(env_ref, namespace);
    match env_ref.kind {
        EnvironmentKind::FronteggEnvironment => {
            let api: Api<FronteggEnvironment> = Api::namespaced(ctx.client.clone(), namespace);
            let env = api
                .get_opt(&env_ref.name)
                .await
                .context("read the FronteggEnvironment")?
                .ok_or_else(|| Error::EnvironmentNotFound {
                    kind: "FronteggEnvironment",
                    name: format!("{namespace}/{}", env_ref.name),
                })?;
            let client = client_for(ctx, &key, &env.spec.connection, namespace).await?;
            Ok(Resolved { key, client })
        }
        EnvironmentKind::ClusterFronteggEnvironment => {
            let api: Api<ClusterFronteggEnvironment> = Api::all(ctx.client.clone());
            let env = api
                .get_opt(&env_ref.name)
                .await
                .context("read the ClusterFronteggEnvironment")?
                .ok_or_else(|| Error::EnvironmentNotFound {
                    kind: "ClusterFronteggEnvironment",
                    name: env_ref.name.clone(),
                })?;
            if !namespace_allowed(ctx, &env, namespace).await? {
                return Err(Error::NamespaceNotAllowed {
                    namespace: namespace.into(),
                    environment: env_ref.name.clone(),
                });
            }
            if !env
                .spec
                .allowed_tenants
                .iter()
                .any(|t| t == "*" || t == tenant)
            {
                return Err(Error::TenantNotAllowed {
                    tenant: tenant.into(),
                    environment: env_ref.name.clone(),
                });
            }
            let client = client_for(
                ctx,
                &key,
                &env.spec.connection,
                &ctx.config.operator_namespace,
            )
            .await?;
            Ok(Resolved { key, client })
        }
    }
}

async fn namespace_allowed(
    ctx: &Context,
    env: &ClusterFronteggEnvironment,
    namespace: &str,
) -> Result<bool, Error> {
    let allowed = &env.spec.allowed_namespaces;
    if allowed.names.iter().any(|n| n == namespace) {
        return Ok(true);
    }
    let Some(selector) = &allowed.selector else {
        return Ok(false);
    };
    let selector: Selector = selector.clone().try_into().map_err(|e| {
        Error::InvalidSpec(format!(
            "ClusterFronteggEnvironment allowedNamespaces.selector: {e}"
        ))
    })?;
    let ns = Api::<Namespace>::all(ctx.client.clone())
        .get_opt(namespace)
        .await
        .context("read the token's Namespace")?;
    let labels = ns.and_then(|n| n.metadata.labels).unwrap_or_default();
    Ok(selector.matches(&labels))
}

/// Reads the credentials Secret and returns the (possibly cached) client for them.
pub async fn client_for(
    ctx: &Context,
    key: &str,
    conn: &EnvironmentConnection,
    secret_namespace: &str,
) -> Result<Arc<IdentityClient>, Error> {
    let secret_ref = &conn.credentials_secret_ref;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), secret_namespace)
        .get_opt(&secret_ref.name)
        .await
        .context("read the environment's credentials Secret")?
        .ok_or_else(|| {
            Error::CredentialsInvalid(format!(
                "Secret {secret_namespace}/{} not found",
                secret_ref.name
            ))
        })?;
    let read = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::CredentialsInvalid(format!(
                    "Secret {secret_namespace}/{} has no key {k}",
                    secret_ref.name
                ))
            })
    };
    let client_id = read(&secret_ref.client_id_key)?;
    let client_secret = read(&secret_ref.secret_key)?;
    let base_url = conn.resolved_base_url();
    let (qps, burst) = conn
        .rate_limit
        .as_ref()
        .map_or((ctx.config.qps, ctx.config.burst), |r| (r.qps, r.burst));
    // The fingerprint decides when to build a new client; it holds only a digest of the secret.
    let mut hasher = Sha256::new();
    for part in [
        base_url.as_str(),
        &client_id,
        &client_secret,
        conn.environment_id.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update(format!("{qps}/{burst}"));
    let fingerprint = format!("{:x}", hasher.finalize());
    ctx.clients.get_or_create(key, fingerprint, || {
        let options = ClientOptions {
            qps: NonZeroU32::new(qps).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
            timeout: ctx.config.request_timeout,
            ..ClientOptions::default()
        };
        let env = EnvironmentConfig {
            base_url,
            client_id,
            secret: SecretString::from(client_secret),
            environment_id: conn.environment_id.clone(),
        };
        IdentityClient::new(env, options, Some(ctx.metrics.clone())).map_err(Error::Identity)
    })
}

/// Parses `Kind/name` for the --default-environment flag.
pub fn parse_environment_ref(value: &str) -> Result<EnvironmentRef, String> {
    let (kind, name) = value
        .split_once('/')
        .ok_or_else(|| format!("{value:?}: expected Kind/name"))?;
    let kind = match kind {
        "ClusterFronteggEnvironment" => EnvironmentKind::ClusterFronteggEnvironment,
        "FronteggEnvironment" => EnvironmentKind::FronteggEnvironment,
        other => {
            return Err(format!(
                "{other:?} is not FronteggEnvironment or ClusterFronteggEnvironment"
            ));
        }
    };
    Ok(EnvironmentRef {
        kind,
        name: name.to_string(),
    })
}
