//! `kubectl frontegg inspect secret`: what a token Secret holds, with nothing secret printed.
//! Values are shown only for keys that are not secret (the token id, its expiry, the base
//! URL); of a delivered JWT only three claims.

use std::collections::BTreeMap;

use base64::Engine;
use frontegg_token_operator::controller::SecretLayout;
use frontegg_token_operator::controller::secret::credential::{read_credential, secret_digest};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde::Serialize;
use serde_json::Value;

use crate::kinds;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub secret: String,
    /// Every key, values never.
    pub keys: Vec<String>,
    /// `Kind/name` of the controller owner, if any.
    pub owner: Option<String>,
    pub token_id: Option<String>,
    pub expires_at: Option<String>,
    pub base_url: Option<String>,
    pub jwt: Option<JwtClaims>,
    /// Whether the credential is the one the owner's status records (its id and the digest of
    /// its secret): `matches`, `differs` or `unknown`.
    pub matches_status: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtClaims {
    pub sub: Option<String>,
    pub tenant_id: Option<String>,
    pub exp: Option<i64>,
    pub seconds_left: Option<i64>,
}

const PLAIN_KEYS: [&str; 3] = ["tokenId", "expiresAt", "baseUrl"];

fn plain(data: &BTreeMap<String, k8s_openapi::ByteString>, key: &str) -> Option<String> {
    if !PLAIN_KEYS.contains(&key) {
        return None;
    }
    data.get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
}

/// The three claims of a JWT's payload; the signature is not checked and nothing else read.
pub fn claims(jwt: &str, now: i64) -> Option<JwtClaims> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp").and_then(Value::as_i64);
    Some(JwtClaims {
        sub: v.get("sub").and_then(Value::as_str).map(str::to_string),
        tenant_id: v
            .get("tenantId")
            .and_then(Value::as_str)
            .map(str::to_string),
        exp,
        seconds_left: exp.map(|e| e.saturating_sub(now)),
    })
}

pub async fn secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Inspection, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("cannot read Secret {namespace}/{name}: {e}"))?
        .ok_or_else(|| format!("Secret {namespace}/{name} not found"))?;
    let data = secret.data.clone().unwrap_or_default();
    let owner = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()));
    let now = jiff::Timestamp::now().as_second();
    let jwt = data
        .get("accessToken")
        .and_then(|v| std::str::from_utf8(&v.0).ok())
        .and_then(|t| claims(t, now));
    Ok(Inspection {
        secret: format!("{namespace}/{name}"),
        keys: data.keys().cloned().collect(),
        owner: owner.as_ref().map(|(k, n)| format!("{k}/{n}")),
        token_id: plain(&data, "tokenId"),
        expires_at: plain(&data, "expiresAt"),
        base_url: plain(&data, "baseUrl"),
        jwt,
        matches_status: matches_status(client, namespace, owner, &secret).await,
    })
}

async fn matches_status(
    client: &kube::Client,
    namespace: &str,
    owner: Option<(String, String)>,
    secret: &Secret,
) -> String {
    let Some((kind, name)) = owner else {
        return "unknown".into();
    };
    let Some(kind) = kinds::find(&kind) else {
        return "unknown".into();
    };
    let Ok(Some(obj)) = kinds::api(client, &kind, Some(namespace))
        .get_opt(&name)
        .await
    else {
        return "unknown".into();
    };
    let layout = if kind.name.ends_with("ApiToken") {
        SecretLayout::ClientCredentials
    } else {
        SecretLayout::AccessToken
    };
    let recorded = |key: &str| {
        obj.data
            .pointer(&format!("/status/current/{key}"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    match (
        read_credential(secret, layout),
        recorded("id"),
        recorded("secretDigest"),
    ) {
        (Some(cred), Some(id), Some(digest)) => {
            if cred.id == id && secret_digest(&cred) == digest {
                "matches".into()
            } else {
                "differs".into()
            }
        }
        _ => "unknown".into(),
    }
}

pub fn describe(i: &Inspection) -> String {
    let mut out = format!("Secret {}\n", i.secret);
    out.push_str(&format!(
        "  Owner:      {}\n",
        i.owner.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!("  Keys:       {}\n", i.keys.join(", ")));
    out.push_str(&format!(
        "  Token:      {}\n",
        i.token_id.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  Expires:    {}\n",
        i.expires_at.as_deref().unwrap_or("-")
    ));
    out.push_str(&format!(
        "  Base URL:   {}\n",
        i.base_url.as_deref().unwrap_or("-")
    ));
    if let Some(j) = &i.jwt {
        out.push_str(&format!(
            "  JWT:        sub {}, tenantId {}, exp {} ({}s left)\n",
            j.sub.as_deref().unwrap_or("-"),
            j.tenant_id.as_deref().unwrap_or("-"),
            j.exp.map_or_else(|| "-".into(), |e| e.to_string()),
            j.seconds_left.map_or_else(|| "-".into(), |s| s.to_string())
        ));
    }
    out.push_str(&format!(
        "  Status:     the credential {} the status's record\n",
        match i.matches_status.as_str() {
            "matches" => "matches",
            "differs" => "DIFFERS FROM",
            _ => "cannot be compared with",
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_claims_of_a_jwt_are_read() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"u1","tenantId":"t1","exp":1100,"secretish":"x"}"#);
        let c = claims(&format!("h.{payload}.sig"), 1000).unwrap();
        assert_eq!(c.sub.as_deref(), Some("u1"));
        assert_eq!(c.tenant_id.as_deref(), Some("t1"));
        assert_eq!((c.exp, c.seconds_left), (Some(1100), Some(100)));
        assert!(claims("not a jwt", 0).is_none());
    }
}
