//! The Kubernetes Secret a token is written to: its keys by kind, template keys, labels and
//! owner reference, and reading the credential back out of it.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use secrecy::{ExposeSecret, SecretString};

use super::kinds::{SecretLayout, TokenResource};
use super::{Error, template};
use crate::api::{KIND_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// A credential as stored in a Secret. The secret value stays wrapped until serialized.
#[derive(Clone, Debug)]
pub struct Credential {
    pub id: String,
    pub secret: SecretString,
    pub expires_at: Option<String>,
    /// The JWT exchanged from an API token (`spec.secret.accessToken`).
    pub access_token: Option<AccessJwt>,
}

/// A bearer JWT as the Secret carries it.
#[derive(Clone, Debug)]
pub struct AccessJwt {
    pub token: SecretString,
    /// RFC 3339.
    pub expires_at: String,
}

/// Secret keys of the delivered JWT.
pub const ACCESS_TOKEN_KEY: &str = "accessToken";
pub const ACCESS_TOKEN_EXPIRES_KEY: &str = "accessTokenExpiresAt";

/// Everything the template may use besides the credential itself.
pub struct SecretContext<'a> {
    pub base_url: &'a str,
    pub tenant_id: &'a str,
    pub user_id: Option<&'a str>,
}

fn credential_key(layout: SecretLayout) -> &'static str {
    match layout {
        SecretLayout::ClientCredentials => "secret",
        SecretLayout::AccessToken => "token",
    }
}

pub fn owner_reference<K: TokenResource>(obj: &K) -> Option<OwnerReference> {
    obj.controller_owner_ref(&())
}

/// Whether `secret` was written for `obj` (controller owner reference with its UID).
pub fn is_owned_by<K: TokenResource>(secret: &Secret, obj: &K) -> bool {
    let uid = obj.meta().uid.as_deref();
    secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid && o.kind == K::KIND)
}

/// Reads the credential back from a Secret we own (for re-rendering without a new token).
pub fn read_credential(secret: &Secret, layout: SecretLayout) -> Option<Credential> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|s| !s.is_empty())
    };
    let access_token = match (text(ACCESS_TOKEN_KEY), text(ACCESS_TOKEN_EXPIRES_KEY)) {
        (Some(token), Some(expires_at)) => Some(AccessJwt {
            token: SecretString::from(token),
            expires_at,
        }),
        _ => None,
    };
    Some(Credential {
        id: text("tokenId")?,
        secret: SecretString::from(text(credential_key(layout))?),
        expires_at: text("expiresAt"),
        access_token,
    })
}

/// The complete desired Secret for `obj` holding `cred`.
pub fn desired_secret<K: TokenResource>(
    obj: &K,
    name: &str,
    cred: &Credential,
    ctx: &SecretContext<'_>,
) -> Result<Secret, Error> {
    let target = &obj.common().secret;
    let mut data: BTreeMap<String, String> = BTreeMap::new();
    if let Some(template) = &target.template {
        data.extend(template::render(&template.data, K::LAYOUT, cred, ctx)?);
    }
    // Fixed keys win over template keys of the same name.
    match K::LAYOUT {
        SecretLayout::ClientCredentials => {
            data.insert("clientId".into(), cred.id.clone());
            data.insert("secret".into(), cred.secret.expose_secret().to_string());
        }
        SecretLayout::AccessToken => {
            data.insert("token".into(), cred.secret.expose_secret().to_string());
        }
    }
    data.insert("tokenId".into(), cred.id.clone());
    data.insert("baseUrl".into(), ctx.base_url.to_string());
    if let Some(expires) = &cred.expires_at {
        data.insert("expiresAt".into(), expires.clone());
    }
    if delivers_access_token(obj)
        && let Some(jwt) = &cred.access_token
    {
        data.insert(
            ACCESS_TOKEN_KEY.into(),
            jwt.token.expose_secret().to_string(),
        );
        data.insert(ACCESS_TOKEN_EXPIRES_KEY.into(), jwt.expires_at.clone());
    }
    let mut labels = target.labels.clone();
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    labels.insert(KIND_LABEL.into(), K::KIND.into());
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: obj.meta().namespace.clone(),
            labels: Some(labels),
            annotations: (!target.annotations.is_empty()).then(|| target.annotations.clone()),
            owner_references: owner_reference(obj).map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// Whether the Secret carries a JWT exchanged from the API token.
pub fn delivers_access_token<K: TokenResource>(obj: &K) -> bool {
    K::LAYOUT == SecretLayout::ClientCredentials
        && obj
            .common()
            .secret
            .access_token
            .as_ref()
            .is_some_and(|a| a.enabled)
}

/// Whether the live Secret already matches the desired one in everything we manage.
pub fn matches(live: &Secret, desired: &Secret) -> bool {
    let subset = |want: &Option<BTreeMap<String, String>>,
                  have: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    live.data == desired.data
        && subset(&desired.metadata.labels, &live.metadata.labels)
        && subset(&desired.metadata.annotations, &live.metadata.annotations)
        && live.metadata.owner_references == desired.metadata.owner_references
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretTemplate, UserApiToken};
    use crate::controller::fixtures::{CONTEXT as CTX, credential as cred, user_api_token};

    fn token() -> UserApiToken {
        user_api_token(|_| {})
    }

    #[test]
    fn api_token_secret_has_client_credentials_keys_labels_and_owner() {
        let s = desired_secret(&token(), "ci", &cred(), &CTX).unwrap();
        let data = s.data.as_ref().unwrap();
        let keys: Vec<_> = data.keys().cloned().collect();
        assert_eq!(keys, ["baseUrl", "clientId", "secret", "tokenId"]);
        assert_eq!(data["secret"].0, b"s3cr3t-value");
        let labels = s.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(labels[KIND_LABEL], "UserApiToken");
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.uid.as_str(), owner.controller),
            ("uid-1", Some(true))
        );
        assert!(is_owned_by(&s, &token()));
        let back = read_credential(&s, SecretLayout::ClientCredentials).unwrap();
        assert_eq!(back.id, "cid");
        assert_eq!(back.secret.expose_secret(), "s3cr3t-value");
    }

    #[test]
    fn template_renders_env_and_json_and_rejects_unknown_variables() {
        let mut t = token();
        t.spec.common.secret.template = Some(SecretTemplate {
            data: [
                (
                    ".env".to_string(),
                    "CLIENT_ID={{ clientId }}\nCLIENT_SECRET={{ secret }}".to_string(),
                ),
                (
                    "creds.json".to_string(),
                    "{{ {'id': clientId, 'secret': secret} | tojson }}".to_string(),
                ),
            ]
            .into(),
        });
        let s = desired_secret(&t, "ci", &cred(), &CTX).unwrap();
        let data = s.data.unwrap();
        assert_eq!(data[".env"].0, b"CLIENT_ID=cid\nCLIENT_SECRET=s3cr3t-value");
        let json: serde_json::Value = serde_json::from_slice(&data["creds.json"].0).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "cid", "secret": "s3cr3t-value"})
        );

        t.spec.common.secret.template = Some(SecretTemplate {
            data: [("x".to_string(), "{{ clientSecret }}".to_string())].into(),
        });
        let err = desired_secret(&t, "ci", &cred(), &CTX).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        assert!(!err.to_string().contains("s3cr3t-value"));
    }

    #[test]
    fn foreign_secret_is_not_ours() {
        let foreign = Secret {
            metadata: ObjectMeta {
                name: Some("ci".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!is_owned_by(&foreign, &token()));
    }
}
