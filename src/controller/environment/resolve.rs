//! Resolving a token's environment: the guard rails first (namespace, tenant, this instance's
//! selector, the allowed base URLs), so a disallowed resource never causes a remote call; then
//! the credentials, read only from a Secret labelled as credentials; then a shared client.

use std::num::NonZeroU32;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta};
use kube::core::{Selector, SelectorExt};
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::reference::{base_url_allowed, environment_key, normalise_base_url};
use crate::api::{
    AuthModeSpec, ClusterFronteggEnvironment, EnvironmentConnection, EnvironmentKind,
    EnvironmentRef, FronteggEnvironment, IssuedConnection, TokenPolicy, TokenStatus,
};
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::holders::EnvironmentId;
use crate::identity::{AuthMode, ClientOptions, EnvironmentConfig, IdentityClient};

/// An environment a token may use, with its shared client.
pub struct Resolved {
    /// Stable identity of the environment (metrics label, drift-cache key).
    pub key: String,
    pub client: Arc<IdentityClient>,
    /// A ClusterFronteggEnvironment's name and token policy.
    pub policy: Option<(String, TokenPolicy)>,
    pub origin: Origin,
}

/// The objects a token issued through this environment depends on: what in-use protection
/// guards (`protection.rs`).
#[derive(Clone, Debug)]
pub struct Origin {
    pub environment: EnvironmentId,
    /// The credentials Secret's namespace and name; unknown for a client kept in memory from
    /// before the environment was deleted.
    pub credentials: Option<(String, String)>,
    /// The environment's deletion has begun, as this read saw it.
    pub deleting: Option<String>,
    pub uid: Option<String>,
}

impl Origin {
    fn of(env: EnvironmentId, meta: &ObjectMeta, conn: &EnvironmentConnection, ns: &str) -> Self {
        let deleting = meta.deletion_timestamp.is_some().then(|| env.to_string());
        Origin {
            environment: env,
            credentials: Some((ns.to_string(), conn.credentials_secret_ref.name.clone())),
            deleting,
            uid: meta.uid.clone(),
        }
    }
}

impl Resolved {
    /// What a token issued now records as its connection.
    pub fn connection(&self) -> IssuedConnection {
        let auth_mode = match self.client.auth_mode() {
            AuthMode::Vendor => AuthModeSpec::Vendor,
            AuthMode::UserApiToken => AuthModeSpec::UserApiToken,
        };
        IssuedConnection {
            environment_kind: self.origin.environment.kind,
            environment_name: self.origin.environment.name.clone(),
            environment_uid: self.origin.uid.clone(),
            base_url: self.client.base_url().to_string(),
            auth_mode,
            // A user token's host is the account's own sub-domain, and its client ID changes
            // with every rotation of that user token.
            client_id_digest: (auth_mode == AuthModeSpec::Vendor)
                .then(|| client_id_digest(self.client.client_id())),
        }
    }

    /// Refuses a token whose recorded connection is not this environment's: a request for
    /// its id would go to a host (or an account) that did not issue it. The environment
    /// object may have been recreated; what must match is where the requests go.
    pub fn serves(&self, token: &str, recorded: Option<&IssuedConnection>) -> Result<(), Error> {
        let Some(recorded) = recorded else {
            return Ok(());
        };
        let now = self.connection();
        let same = now.base_url == recorded.base_url
            && now.auth_mode == recorded.auth_mode
            && now.client_id_digest == recorded.client_id_digest;
        if same {
            return Ok(());
        }
        Err(Error::ConnectionChanged {
            token: token.to_string(),
            issued: describe(recorded),
            environment: self.origin.environment.to_string(),
            now: describe(&now),
        })
    }

    /// Every token `status` records: none may be asked about through another connection.
    pub fn serves_all(&self, status: &TokenStatus) -> Result<(), Error> {
        if let Some(current) = &status.current {
            self.serves(&current.id, current.connection.as_ref())?;
        }
        for pending in &status.pending_revocations {
            self.serves(&pending.id, pending.connection.as_ref())?;
        }
        Ok(())
    }
}

fn describe(c: &IssuedConnection) -> String {
    match &c.client_id_digest {
        Some(digest) => format!(
            "{} (the vendor account whose client ID digests to {digest})",
            c.base_url
        ),
        None => format!("{} ({:?})", c.base_url, c.auth_mode),
    }
}

/// 16 hex digits of the client ID's SHA-256: enough to tell accounts apart, without
/// publishing the ID in a status any namespace user may read.
fn client_id_digest(client_id: &str) -> String {
    Sha256::digest(client_id.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why an environment is resolved: issuing checks every guard rail; revoking a token the
/// operator recorded itself needs no permission (a narrowed policy must not strand tokens).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Issue,
    Revoke,
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
            namespaced(ctx, namespace, &env_ref.name, key).await
        }
        EnvironmentKind::ClusterFronteggEnvironment => {
            let env = cluster_environment(ctx, &env_ref.name).await?;
            if purpose == Purpose::Issue {
                admit(ctx, &env, namespace, tenant).await?;
            }
            let credentials_namespace = &ctx.config.operator_namespace;
            let client = client_for(ctx, &key, &env.spec.connection, credentials_namespace).await?;
            let id = EnvironmentId {
                kind: EnvironmentKind::ClusterFronteggEnvironment,
                namespace: None,
                name: env_ref.name.clone(),
            };
            let conn = &env.spec.connection;
            Ok(Resolved {
                key,
                client,
                origin: Origin::of(id, &env.metadata, conn, credentials_namespace),
                policy: Some((env_ref.name.clone(), env.spec.policy)),
            })
        }
    }
}

async fn namespaced(
    ctx: &Context,
    namespace: &str,
    name: &str,
    key: String,
) -> Result<Resolved, Error> {
    let env = match ctx.caches.environment(namespace, name) {
        Some(env) => (*env).clone(),
        None => Api::<FronteggEnvironment>::namespaced(ctx.client.clone(), namespace)
            .get_opt(name)
            .await
            .context("read the FronteggEnvironment")?
            .ok_or_else(|| Error::EnvironmentNotFound {
                kind: "FronteggEnvironment",
                name: format!("{namespace}/{name}"),
            })?,
    };
    let client = client_for(ctx, &key, &env.spec.connection, namespace).await?;
    let id = EnvironmentId {
        kind: EnvironmentKind::FronteggEnvironment,
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    };
    Ok(Resolved {
        key,
        client,
        origin: Origin::of(id, &env.metadata, &env.spec.connection, namespace),
        policy: None,
    })
}

/// A ClusterFronteggEnvironment's guard rails for issuing: the namespace, then the tenant.
async fn admit(
    ctx: &Context,
    env: &ClusterFronteggEnvironment,
    namespace: &str,
    tenant: &str,
) -> Result<(), Error> {
    let name = env.metadata.name.clone().unwrap_or_default();
    if !namespace_allowed(ctx, env, namespace).await? {
        return Err(Error::NamespaceNotAllowed {
            namespace: namespace.into(),
            environment: name,
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
            environment: name,
        });
    }
    Ok(())
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
    let base_url = allowed_base_url(ctx, conn)?;
    let secret = credentials_secret(ctx, conn, secret_namespace).await?;
    let secret_name = format!("{secret_namespace}/{}", conn.credentials_secret_ref.name);
    let (client_id, client_secret) = read_credentials(&secret, conn, &secret_name)?;
    let (qps, burst) = conn
        .rate_limit
        .as_ref()
        .map_or((ctx.config.qps, ctx.config.burst), |r| (r.qps, r.burst));
    let parts = [
        base_url.as_str(),
        &client_id,
        &client_secret,
        conn.environment_id.as_deref().unwrap_or(""),
    ];
    let fingerprint = fingerprint(&parts, &format!("{qps}/{burst}/{:?}", conn.auth_mode()));
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

/// The connection's base URL as `scheme://host[:port]`, if the operator may call it.
fn allowed_base_url(ctx: &Context, conn: &EnvironmentConnection) -> Result<String, Error> {
    let resolved = conn.resolved_base_url();
    normalise_base_url(&resolved)
        .filter(|url| base_url_allowed(url, &ctx.config.allowed_base_urls))
        .ok_or_else(|| Error::BaseUrlNotAllowed {
            url: resolved.chars().take(200).collect(),
        })
}

/// The credentials Secret, from the cache or the API server, if it is marked as credentials.
async fn credentials_secret(
    ctx: &Context,
    conn: &EnvironmentConnection,
    namespace: &str,
) -> Result<Arc<Secret>, Error> {
    let name = &conn.credentials_secret_ref.name;
    let secret = match ctx.caches.credentials(namespace, name) {
        Some(secret) => secret,
        // Also where an unmarked Secret is found, and refused below with its reason.
        None => Arc::new(
            Api::<Secret>::namespaced(ctx.client.clone(), namespace)
                .get_opt(name)
                .await
                .context("read the environment's credentials Secret")?
                .ok_or_else(|| {
                    Error::CredentialsInvalid(format!("Secret {namespace}/{name} not found"))
                })?,
        ),
    };
    // Only a Secret someone marked as credentials: otherwise any namespace user could point
    // an environment at an unrelated Secret (a database password) and have it sent out.
    let marked = crate::api::marked_as_credentials(&secret.metadata);
    if !marked {
        return Err(Error::CredentialsNotMarked {
            secret: format!("{namespace}/{name}"),
        });
    }
    Ok(secret)
}

/// The client id and secret, trimmed; a missing or empty key is named, its value never.
fn read_credentials(
    secret: &Secret,
    conn: &EnvironmentConnection,
    secret_name: &str,
) -> Result<(String, String), Error> {
    let read = |k: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                Error::CredentialsInvalid(format!("Secret {secret_name} has no key {k}"))
            })
    };
    let keys = &conn.credentials_secret_ref;
    Ok((read(&keys.client_id_key)?, read(&keys.secret_key)?))
}

/// Decides when to build a new client; it holds only a digest of the secret.
fn fingerprint(parts: &[&str], settings: &str) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update(settings);
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(base_url: &str, client_id: &str, auth: AuthMode) -> Resolved {
        let config = EnvironmentConfig {
            base_url: base_url.into(),
            client_id: client_id.into(),
            secret: SecretString::from("not-used"),
            environment_id: None,
            auth,
        };
        let client = IdentityClient::new(config, ClientOptions::default(), None).unwrap();
        Resolved {
            key: "k".into(),
            client: Arc::new(client),
            policy: None,
            origin: Origin {
                environment: EnvironmentId {
                    kind: EnvironmentKind::FronteggEnvironment,
                    namespace: Some("ns".into()),
                    name: "env".into(),
                },
                credentials: None,
                deleting: None,
                uid: Some("uid-1".into()),
            },
        }
    }

    #[test]
    fn a_token_is_served_only_through_the_connection_that_issued_it() {
        let recorded = resolved("https://a.example", "vendor-1", AuthMode::Vendor).connection();
        let digest = recorded.client_id_digest.clone().unwrap();
        assert_eq!(digest.len(), 16);
        assert!(
            !digest.contains("vendor-1"),
            "the client ID itself is not recorded"
        );
        assert_eq!(recorded.environment_uid.as_deref(), Some("uid-1"));

        let mut recreated = resolved("https://a.example", "vendor-1", AuthMode::Vendor);
        recreated.origin.uid = Some("uid-2".into());
        assert!(
            recreated.serves("t", Some(&recorded)).is_ok(),
            "the object recreated, the requests go where they went"
        );

        let moved = resolved("https://b.example", "vendor-1", AuthMode::Vendor);
        let err = moved.serves("t", Some(&recorded)).unwrap_err();
        assert_eq!(err.reason(), "ConnectionChanged");
        let message = err.to_string();
        assert!(message.contains("https://a.example") && message.contains("https://b.example"));
        let other_account = resolved("https://a.example", "vendor-2", AuthMode::Vendor);
        assert!(other_account.serves("t", Some(&recorded)).is_err());

        assert!(
            moved.serves("t", None).is_ok(),
            "a record from an earlier version carries no connection"
        );

        let user = resolved("https://acme.example", "key-1", AuthMode::UserApiToken).connection();
        assert_eq!(user.client_id_digest, None);
        let rotated = resolved("https://acme.example", "key-2", AuthMode::UserApiToken);
        assert!(
            rotated.serves("t", Some(&user)).is_ok(),
            "a user API token's client ID changes with its rotation"
        );
    }
}
