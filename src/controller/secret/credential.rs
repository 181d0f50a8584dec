//! The credential a token's Secret holds, and what a template may read besides it. The secret
//! values stay wrapped (`SecretString`): their `Debug` is redacted and they have no `Display`.

use k8s_openapi::api::core::v1::Secret;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::controller::kinds::SecretLayout;

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

/// A digest of a credential's secret, for tamper detection without storing the secret.
pub fn secret_digest(cred: &Credential) -> String {
    format!(
        "{:x}",
        Sha256::digest(cred.secret.expose_secret().as_bytes())
    )
}
