//! The Kubernetes Secret a token is written to: its keys by kind, template keys, labels and
//! owner reference (pure: it builds objects, it writes nothing).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use secrecy::{ExposeSecret, SecretString};

use super::credential::{
    ACCESS_TOKEN_EXPIRES_KEY, ACCESS_TOKEN_KEY, AccessJwt, Credential, SecretContext,
};
use super::template;
use crate::api::{KIND_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::controller::kinds::{SecretLayout, TokenResource};
use crate::controller::runtime::error::Error;

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

/// The Secret a token would get, with a placeholder credential, for the apiserver's dry run.
pub fn probe_secret<K: TokenResource>(
    obj: &K,
    name: &str,
    ctx: &SecretContext<'_>,
) -> Result<Secret, Error> {
    desired_secret(obj, name, &probe_credential(), ctx)
}

/// A stand-in credential shaped like Frontegg's (a UUID id, a 64-character secret).
pub fn probe_credential() -> Credential {
    Credential {
        id: "00000000-0000-0000-0000-000000000000".into(),
        secret: SecretString::from("x".repeat(64)),
        expires_at: Some("2000-01-01T00:00:00Z".into()),
        // A JWT of typical size, for the Secrets that deliver one.
        access_token: Some(AccessJwt {
            token: SecretString::from("x".repeat(1024)),
            expires_at: "2000-01-01T00:00:00Z".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretTemplate, UserApiToken};
    use crate::controller::runtime::fixtures::{
        CONTEXT as CTX, credential as cred, user_api_token,
    };
    use crate::controller::secret::credential::read_credential;

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
