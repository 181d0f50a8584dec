//! One zero-sized type per Frontegg token endpoint family, with the request and response
//! shapes from the published OpenAPI. The generic client methods take one of these.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A freshly created remote token. The only place a token secret ever appears.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    /// Token ID (`clientId` for API tokens, `id` for access tokens).
    pub id: String,
    pub secret: SecretString,
    pub expires_at: Option<Timestamp>,
}

/// A remote token as lists return it: never with its secret.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteToken {
    pub id: String,
    pub description: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub role_ids: Vec<String>,
    pub permission_ids: Vec<String>,
    pub metadata: Option<Map<String, Value>>,
}

/// How one token family is created, listed and deleted.
pub trait TokenEndpoint: Send + Sync + 'static {
    /// Metrics label and log name.
    const NAME: &'static str;
    /// Path (below `/identity`) that creates tokens.
    const CREATE_PATH: &'static str;
    /// Path that lists tokens; `{COLLECTION_PATH}/{id}` deletes (and patches) one.
    const COLLECTION_PATH: &'static str;
    /// Whether requests carry `frontegg-user-id`.
    const USER_SCOPED: bool;
    type Create: Serialize + std::fmt::Debug + Send + Sync;
    type Created: DeserializeOwned + Into<IssuedToken>;
    type Listed: DeserializeOwned;
    fn remote_tokens(listed: Self::Listed) -> Vec<RemoteToken>;
}

fn parse_time(value: Option<&str>) -> Option<Timestamp> {
    value.and_then(|v| v.parse().ok())
}

// ---- user API tokens: /resources/users/api-tokens/v1 --------------------------------------

/// `CreateUserApiTokenDto`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUserApiToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// `CreateUserApiTokenResponseDto`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedUserApiToken {
    pub client_id: String,
    pub secret: SecretString,
    #[serde(default)]
    pub expires: Option<String>,
}

impl From<CreatedUserApiToken> for IssuedToken {
    fn from(t: CreatedUserApiToken) -> Self {
        IssuedToken {
            expires_at: parse_time(t.expires.as_deref()),
            id: t.client_id,
            secret: t.secret,
        }
    }
}

/// `GetUserApiTokensResponseDto`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedUserApiToken {
    pub client_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub expires: Option<String>,
}

pub struct UserApiTokens;
impl TokenEndpoint for UserApiTokens {
    const NAME: &'static str = "user-api-tokens";
    const CREATE_PATH: &'static str = "/resources/users/api-tokens/v1";
    const COLLECTION_PATH: &'static str = "/resources/users/api-tokens/v1";
    const USER_SCOPED: bool = true;
    type Create = CreateUserApiToken;
    type Created = CreatedUserApiToken;
    type Listed = Vec<ListedUserApiToken>;
    fn remote_tokens(listed: Self::Listed) -> Vec<RemoteToken> {
        listed
            .into_iter()
            .map(|t| RemoteToken {
                expires_at: parse_time(t.expires.as_deref()),
                id: t.client_id,
                description: t.description,
                role_ids: vec![],
                permission_ids: vec![],
                metadata: t.metadata,
            })
            .collect()
    }
}

// ---- access tokens (user and tenant) ----------------------------------------------------

/// `CreateUserAccessTokenRequest`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateUserAccessToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u64>,
}

/// `CreateTenantAccessTokenRequest`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTenantAccessToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_ids: Option<Vec<String>>,
}

/// `UserAccessTokenResponse` and `TenantAccessTokenResponse` (the latter adds roleIds).
/// `secret` is present only in create responses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenResponse {
    pub id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub role_ids: Option<Vec<String>>,
}

/// An access-token create response; a response without `secret` fails to decode.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedAccessToken {
    pub id: String,
    pub secret: SecretString,
    #[serde(default)]
    pub expires: Option<String>,
}

impl From<CreatedAccessToken> for IssuedToken {
    fn from(t: CreatedAccessToken) -> Self {
        IssuedToken {
            expires_at: parse_time(t.expires.as_deref()),
            id: t.id,
            secret: t.secret,
        }
    }
}

/// `GetUserAccessTokensResponse` / `GetTenantAccessTokensResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenList {
    pub access_tokens: Vec<AccessTokenResponse>,
}

fn access_tokens(listed: AccessTokenList) -> Vec<RemoteToken> {
    listed
        .access_tokens
        .into_iter()
        .map(|t| RemoteToken {
            expires_at: parse_time(t.expires.as_deref()),
            id: t.id,
            description: t.description,
            role_ids: t.role_ids.unwrap_or_default(),
            permission_ids: vec![],
            metadata: None,
        })
        .collect()
}

pub struct UserAccessTokens;
impl TokenEndpoint for UserAccessTokens {
    const NAME: &'static str = "user-access-tokens";
    const CREATE_PATH: &'static str = "/resources/users/access-tokens/v1";
    const COLLECTION_PATH: &'static str = "/resources/users/access-tokens/v1";
    const USER_SCOPED: bool = true;
    type Create = CreateUserAccessToken;
    type Created = CreatedAccessToken;
    type Listed = AccessTokenList;
    fn remote_tokens(listed: Self::Listed) -> Vec<RemoteToken> {
        access_tokens(listed)
    }
}

pub struct TenantAccessTokens;
impl TokenEndpoint for TenantAccessTokens {
    const NAME: &'static str = "tenant-access-tokens";
    const CREATE_PATH: &'static str = "/resources/tenants/access-tokens/v1";
    const COLLECTION_PATH: &'static str = "/resources/tenants/access-tokens/v1";
    const USER_SCOPED: bool = false;
    type Create = CreateTenantAccessToken;
    type Created = CreatedAccessToken;
    type Listed = AccessTokenList;
    fn remote_tokens(listed: Self::Listed) -> Vec<RemoteToken> {
        access_tokens(listed)
    }
}

// ---- tenant API tokens: create at v2, list/patch/delete at v1 -----------------------------

/// `CreateTenantApiTokenDto` (v2). Frontegg takes roleIds or permissionIds, never both.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTenantApiToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in_minutes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_ids: Option<Vec<String>>,
}

/// `UpdateApiTokenDto`: the fields a tenant API token can change in place.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateTenantApiToken {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_ids: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission_ids: Option<Vec<String>>,
}

/// `CreateTenantApiTokenResponseDto`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTenantApiToken {
    pub client_id: String,
    pub secret: SecretString,
    #[serde(default)]
    pub expires: Option<String>,
}

impl From<CreatedTenantApiToken> for IssuedToken {
    fn from(t: CreatedTenantApiToken) -> Self {
        IssuedToken {
            expires_at: parse_time(t.expires.as_deref()),
            id: t.client_id,
            secret: t.secret,
        }
    }
}

/// `GetTenantApiTokensResponse` and `UpdateTenantApiTokenResponseDto`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedTenantApiToken {
    pub client_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default)]
    pub role_ids: Option<Vec<String>>,
    #[serde(default)]
    pub permission_ids: Option<Vec<String>>,
    #[serde(default)]
    pub expires: Option<String>,
}

impl From<ListedTenantApiToken> for RemoteToken {
    fn from(t: ListedTenantApiToken) -> Self {
        RemoteToken {
            expires_at: parse_time(t.expires.as_deref()),
            id: t.client_id,
            description: t.description,
            role_ids: t.role_ids.unwrap_or_default(),
            permission_ids: t.permission_ids.unwrap_or_default(),
            metadata: t.metadata,
        }
    }
}

pub struct TenantApiTokens;
impl TokenEndpoint for TenantApiTokens {
    const NAME: &'static str = "tenant-api-tokens";
    const CREATE_PATH: &'static str = "/resources/tenants/api-tokens/v2";
    const COLLECTION_PATH: &'static str = "/resources/tenants/api-tokens/v1";
    const USER_SCOPED: bool = false;
    type Create = CreateTenantApiToken;
    type Created = CreatedTenantApiToken;
    type Listed = Vec<ListedTenantApiToken>;
    fn remote_tokens(listed: Self::Listed) -> Vec<RemoteToken> {
        listed.into_iter().map(RemoteToken::from).collect()
    }
}
