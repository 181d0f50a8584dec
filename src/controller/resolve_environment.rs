//! Resolving a token's environment: the guard rails first (namespace, tenant, this instance's
//! selector, the allowed base URLs), so a disallowed resource never causes a remote call; then
//! the credentials, read only from a Secret labelled as credentials; then a shared client.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::ListParams;
use kube::core::{Selector, SelectorExt};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use wildmatch::WildMatch;

use super::error::KubeContext;
use super::{Context, Error};
use crate::api::{
    AuthModeSpec, CREDENTIALS_LABEL, ClusterFronteggEnvironment, EnvironmentConnection,
    EnvironmentKind, EnvironmentRef, FronteggEnvironment, TokenPolicy,
};
use crate::identity::{AuthMode, ClientOptions, EnvironmentConfig, IdentityClient};

/// An environment a token may use, with its shared client.
pub struct Resolved {
    /// Stable identity of the environment (metrics label, drift-cache key).
    pub key: String,
    pub client: Arc<IdentityClient>,
    /// A ClusterFronteggEnvironment's name and token policy.
    pub policy: Option<(String, TokenPolicy)>,
}

/// Why an environment is resolved: issuing checks every guard rail; revoking a token the
/// operator recorded itself needs no permission (a narrowed policy must not strand tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Issue,
    Revoke,
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
    purpose: Purpose,
) -> Result<Resolved, Error> {
    let key = environment_key(env_ref, namespace);
    match env_ref.kind {
        EnvironmentKind::FronteggEnvironment => {
            let env = match ctx.caches.environment(namespace, &env_ref.name) {
                Some(env) => (*env).clone(),
                None => Api::<FronteggEnvironment>::namespaced(ctx.client.clone(), namespace)
                    .get_opt(&env_ref.name)
                    .await
                    .context("read the FronteggEnvironment")?
                    .ok_or_else(|| Error::EnvironmentNotFound {
                        kind: "FronteggEnvironment",
                        name: format!("{namespace}/{}", env_ref.name),
                    })?,
            };
            let client = client_for(ctx, &key, &env.spec.connection, namespace).await?;
            Ok(Resolved {
                key,
                client,
                policy: None,
            })
        }
        EnvironmentKind::ClusterFronteggEnvironment => {
            let env = cluster_environment(ctx, &env_ref.name).await?;
            if purpose == Purpose::Issue {
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
            }
            let client = client_for(
                ctx,
                &key,
                &env.spec.connection,
                &ctx.config.operator_namespace,
            )
            .await?;
            Ok(Resolved {
                key,
                client,
                policy: Some((env_ref.name.clone(), env.spec.policy)),
            })
        }
    }
}

/// The named ClusterFronteggEnvironment, if this instance serves it: with
/// --cluster-environment-selector the apiserver picks it by name and labels.
async fn cluster_environment(
    ctx: &Context,
    name: &str,
) -> Result<ClusterFronteggEnvironment, Error> {
    // The cache holds only the environments this instance serves (the same selector).
    if let Some(env) = ctx.caches.cluster_environment(name) {
        return Ok((*env).clone());
    }
    let api: Api<ClusterFronteggEnvironment> = Api::all(ctx.client.clone());
    let not_found = || Error::EnvironmentNotFound {
        kind: "ClusterFronteggEnvironment",
        name: name.to_string(),
    };
    let Some(selector) = &ctx.config.cluster_environment_selector else {
        return api
            .get_opt(name)
            .await
            .context("read the ClusterFronteggEnvironment")?
            .ok_or_else(not_found);
    };
    let params = ListParams::default()
        .labels(selector)
        .fields(&format!("metadata.name={name}"));
    match api
        .list(&params)
        .await
        .context("read the ClusterFronteggEnvironment")?
        .items
        .pop()
    {
        Some(env) => Ok(env),
        None => match api
            .get_opt(name)
            .await
            .context("read the ClusterFronteggEnvironment")?
        {
            Some(_) => Err(Error::EnvironmentNotServed(name.to_string())),
            None => Err(not_found()),
        },
    }
}

/// Whether `base_url` (already normalised to `scheme://host[:port]`) matches an allowed glob.
pub fn base_url_allowed(base_url: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|pattern| WildMatch::new(pattern).matches(base_url))
}

/// `scheme://host[:port]` of a base URL, or None for anything with a path, a query, a
/// fragment or credentials (none of which a Frontegg base URL has).
pub fn normalise_base_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let plain = matches!(parsed.scheme(), "http" | "https")
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.path() == "/";
    let host = parsed.host_str()?;
    plain.then(|| match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
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
    // `selector: {}` would match everything in Kubernetes; here it allows nothing (see the
    // field's documentation): a guard rail opens only on purpose.
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|e| e.is_empty())
    {
        return Ok(false);
    }
    let selector: Selector = selector.clone().try_into().map_err(|e| {
        Error::InvalidSpec(format!(
            "ClusterFronteggEnvironment allowedNamespaces.selector: {e}"
        ))
    })?;
    let labels = match ctx.caches.namespace(namespace) {
        Some(ns) => ns.metadata.labels.clone(),
        None => Api::<Namespace>::all(ctx.client.clone())
            .get_opt(namespace)
            .await
            .context("read the token's Namespace")?
            .and_then(|n| n.metadata.labels),
    }
    .unwrap_or_default();
    Ok(selector.matches(&labels))
}

/// Reads the credentials Secret and returns the (possibly cached) client for them.
pub async fn client_for(
    ctx: &Context,
    key: &str,
    conn: &EnvironmentConnection,
    secret_namespace: &str,
) -> Result<Arc<IdentityClient>, Error> {
    let resolved = conn.resolved_base_url();
    let base_url = normalise_base_url(&resolved)
        .filter(|url| base_url_allowed(url, &ctx.config.allowed_base_urls))
        .ok_or_else(|| Error::BaseUrlNotAllowed {
            url: resolved.chars().take(200).collect(),
        })?;
    let secret_ref = &conn.credentials_secret_ref;
    let secret = match ctx.caches.credentials(secret_namespace, &secret_ref.name) {
        Some(secret) => secret,
        // Also where an unmarked Secret is found, and refused below with its reason.
        None => Arc::new(
            Api::<Secret>::namespaced(ctx.client.clone(), secret_namespace)
                .get_opt(&secret_ref.name)
                .await
                .context("read the environment's credentials Secret")?
                .ok_or_else(|| {
                    Error::CredentialsInvalid(format!(
                        "Secret {secret_namespace}/{} not found",
                        secret_ref.name
                    ))
                })?,
        ),
    };
    // Only a Secret someone marked as credentials: otherwise any namespace user could point
    // an environment at an unrelated Secret (a database password) and have it sent out.
    let marked = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(CREDENTIALS_LABEL))
        .is_some_and(|v| v == "true");
    if !marked {
        return Err(Error::CredentialsNotMarked {
            secret: format!("{secret_namespace}/{}", secret_ref.name),
        });
    }
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
    hasher.update(format!("{qps}/{burst}/{:?}", conn.auth_mode()));
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
            auth: match conn.auth_mode() {
                AuthModeSpec::Vendor => AuthMode::Vendor,
                AuthModeSpec::UserApiToken => AuthMode::UserApiToken,
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        [
            "https://api.frontegg.com",
            "https://api.us.frontegg.com",
            "https://*.frontegg.com",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn base_urls_are_normalised_then_matched() {
        let allowed = defaults();
        let ok = |u: &str| normalise_base_url(u).is_some_and(|n| base_url_allowed(&n, &allowed));
        assert!(ok("https://api.frontegg.com"));
        assert!(ok("https://api.frontegg.com/"));
        assert!(ok("https://acme.frontegg.com"));
        for refused in [
            "http://api.frontegg.com",
            "https://evil.com",
            "https://frontegg.com.evil.com",
            "https://acme.frontegg.com.evil.com",
            "https://user:pw@acme.frontegg.com",
            "https://acme.frontegg.com/path",
            "https://acme.frontegg.com?x=1",
            "https://acme.frontegg.com:8443",
            "ftp://api.frontegg.com",
            "not a url",
        ] {
            assert!(!ok(refused), "{refused}");
        }
        let local = vec!["http://127.0.0.1:*".to_string()];
        assert!(
            normalise_base_url("http://127.0.0.1:8787")
                .is_some_and(|n| base_url_allowed(&n, &local))
        );
        assert!(
            !normalise_base_url("http://127.0.0.2:8787")
                .is_some_and(|n| base_url_allowed(&n, &local))
        );
    }
}
