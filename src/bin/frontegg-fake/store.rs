//! In-memory Frontegg: vendor tokens and the four token families, with the semantics of the
//! published OpenAPI (secrets only on create, 201 on create, 404 on a missing id, 400 with
//! `{"errors": [...]}` on invalid input).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::jwt::Signer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    UserApi,
    UserAccess,
    TenantApi,
    TenantAccess,
}

impl Family {
    pub fn user_scoped(self) -> bool {
        matches!(self, Family::UserApi | Family::UserAccess)
    }
    fn max_expires_in_minutes(self) -> Option<f64> {
        // Only CreateUserApiTokenDto declares a maximum in the spec.
        (self == Family::UserApi).then_some(5_256_000.0)
    }
}

/// One stored token. The fake keeps the secret only to show it to tests (admin API).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredToken {
    pub id: String,
    pub family: Family,
    pub tenant_id: String,
    pub user_id: Option<String>,
    pub description: Option<String>,
    pub secret: String,
    pub created_at: String,
    pub expires: Option<String>,
    pub metadata: Option<Map<String, Value>>,
    pub role_ids: Option<Vec<String>>,
    pub permission_ids: Option<Vec<String>>,
}

pub struct ApiError {
    pub status: u16,
    pub messages: Vec<String>,
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            messages: vec![msg.into()],
        }
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        ApiError {
            status: 404,
            messages: vec![msg.into()],
        }
    }
    pub fn unauthorized() -> Self {
        ApiError {
            status: 401,
            messages: vec!["Unauthorized".into()],
        }
    }
}

/// Who a bearer token speaks for.
pub enum Bearer {
    /// A vendor token: any tenant, any user.
    Vendor,
    /// A user JWT from an API-token exchange: that user of that tenant only.
    User { user_id: String, tenant_id: String },
}

/// A refresh token handed out with a user JWT.
pub(crate) struct Refresh {
    api_token: String,
    /// Order of issue, to drop the oldest past Frontegg's 100 per API token.
    serial: u64,
}

/// Frontegg keeps at most this many refresh tokens per API token, dropping the oldest.
pub const MAX_REFRESH_TOKENS: usize = 100;

#[derive(Default)]
pub struct Store {
    pub credentials: HashMap<String, String>,
    pub vendor_token_lifetime: Duration,
    pub vendor_tokens: HashMap<String, Instant>,
    /// Lifetime of user JWTs from the API-token exchange.
    pub user_jwt_lifetime: Duration,
    pub(crate) refresh_tokens: HashMap<String, Refresh>,
    pub(crate) refresh_serial: u64,
    pub tokens: HashMap<String, StoredToken>,
    /// Every token secret and vendor token ever handed out, deleted ones included, so tests
    /// can prove none of them leaked into logs.
    pub issued_secrets: Vec<String>,
}

fn now_rfc3339() -> String {
    // Millisecond precision, like Frontegg's JavaScript timestamps.
    Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Store {
    pub fn vendor_auth(&mut self, body: &Value) -> Result<Value, ApiError> {
        let client_id = body.get("clientId").and_then(Value::as_str);
        let secret = body.get("secret").and_then(Value::as_str);
        let (Some(client_id), Some(secret)) = (client_id, secret) else {
            return Err(ApiError::bad_request("clientId and secret are required"));
        };
        if self.credentials.get(client_id).map(String::as_str) != Some(secret) {
            return Err(ApiError::unauthorized());
        }
        let token = format!("vendor-{}", uuid::Uuid::new_v4().simple());
        self.vendor_tokens.insert(
            token.clone(),
            Instant::now()
                .checked_add(self.vendor_token_lifetime)
                .unwrap_or_else(Instant::now),
        );
        Ok(json!({ "token": token, "expiresIn": self.vendor_token_lifetime.as_secs_f64() }))
    }

    /// `POST /identity/resources/auth/v2/api-token`: a user or tenant API token's client
    /// credentials for a JWT and a refresh token. Expired or revoked tokens, and wrong
    /// secrets, get 401.
    pub fn exchange_api_token(&mut self, body: &Value, signer: &Signer) -> Result<Value, ApiError> {
        let client_id = body.get("clientId").and_then(Value::as_str);
        let secret = body.get("secret").and_then(Value::as_str);
        let (Some(client_id), Some(secret)) = (client_id, secret) else {
            return Err(ApiError::bad_request("clientId and secret are required"));
        };
        let now = Timestamp::now();
        let valid = self.tokens.get(client_id).is_some_and(|t| {
            matches!(t.family, Family::UserApi | Family::TenantApi)
                && t.secret == secret
                && t.expires
                    .as_deref()
                    .and_then(|e| e.parse::<Timestamp>().ok())
                    .is_none_or(|e| e > now)
        });
        if !valid {
            return Err(ApiError::unauthorized());
        }
        Ok(self.issue_jwt(client_id, signer))
    }

    /// `POST /identity/resources/auth/v2/api-token/token/refresh`: a new JWT and refresh token
    /// for a valid refresh token (which is used up). A dropped or unknown one gets 401.
    pub fn refresh_api_token(&mut self, body: &Value, signer: &Signer) -> Result<Value, ApiError> {
        let refresh = body
            .get("refreshToken")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("refreshToken is required"))?;
        let entry = self
            .refresh_tokens
            .remove(refresh)
            .ok_or_else(ApiError::unauthorized)?;
        if !self.tokens.contains_key(&entry.api_token) {
            return Err(ApiError::unauthorized());
        }
        Ok(self.issue_jwt(&entry.api_token, signer))
    }

    /// Drops every refresh token (what 100 newer exchanges, or a revocation, would do).
    pub fn revoke_refresh_tokens(&mut self) -> usize {
        let n = self.refresh_tokens.len();
        self.refresh_tokens.clear();
        n
    }

    fn issue_jwt(&mut self, api_token: &str, signer: &Signer) -> Value {
        let Some(token) = self.tokens.get(api_token) else {
            return Value::Null;
        };
        let lifetime = self.user_jwt_lifetime;
        let now = Timestamp::now();
        // `exp` is in whole seconds: round up, or a token would live up to a second less
        // than `expires_in` says.
        let exp = now
            .checked_add(lifetime)
            .ok()
            .and_then(|t| t.checked_add(Duration::from_secs(1)).ok())
            .unwrap_or(now);
        let sub = token.user_id.clone().unwrap_or_else(|| token.id.clone());
        let claims = json!({
            "sub": sub,
            "tenantId": token.tenant_id,
            "type": if token.family == Family::UserApi { "userApiToken" } else { "tenantApiToken" },
            "exp": exp.as_second(),
        });
        let access = signer.sign(&claims);
        let refresh = format!("fake-refresh-{}", uuid::Uuid::new_v4().simple());
        self.refresh_serial = self.refresh_serial.saturating_add(1);
        self.refresh_tokens.insert(
            refresh.clone(),
            Refresh {
                api_token: api_token.to_string(),
                serial: self.refresh_serial,
            },
        );
        // Frontegg keeps 100 refresh tokens per API token: the 101st drops the oldest.
        let mine: Vec<(String, u64)> = self
            .refresh_tokens
            .iter()
            .filter(|(_, r)| r.api_token == api_token)
            .map(|(k, r)| (k.clone(), r.serial))
            .collect();
        if mine.len() > MAX_REFRESH_TOKENS
            && let Some((oldest, _)) = mine.iter().min_by_key(|(_, serial)| *serial)
        {
            self.refresh_tokens.remove(oldest);
        }
        self.issued_secrets.push(access.clone());
        self.issued_secrets.push(refresh.clone());
        json!({
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": lifetime.as_secs_f64(),
            "expires": exp.to_string(),
        })
    }

    /// How many refresh tokens an API token holds (admin API, tests).
    pub fn refresh_token_count(&self, api_token: &str) -> usize {
        self.refresh_tokens
            .values()
            .filter(|r| r.api_token == api_token)
            .count()
    }

    pub fn check_bearer(
        &self,
        authorization: Option<&str>,
        signer: &Signer,
    ) -> Result<Bearer, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(expiry) = self.vendor_tokens.get(token) {
            return if Instant::now() < *expiry {
                Ok(Bearer::Vendor)
            } else {
                Err(ApiError::unauthorized())
            };
        }
        let claims = signer.verify(token).ok_or_else(ApiError::unauthorized)?;
        let claim = |name: &str| claims.get(name).and_then(Value::as_str);
        let unexpired = claims
            .get("exp")
            .and_then(Value::as_i64)
            .is_some_and(|exp| exp > Timestamp::now().as_second());
        match (claim("sub"), claim("tenantId"), claim("type")) {
            (Some(user), Some(tenant), Some("userApiToken")) if unexpired => Ok(Bearer::User {
                user_id: user.to_string(),
                tenant_id: tenant.to_string(),
            }),
            _ => Err(ApiError::unauthorized()),
        }
    }

    pub fn revoke_vendor_tokens(&mut self) -> usize {
        let n = self.vendor_tokens.len();
        self.vendor_tokens.clear();
        n
    }

    pub fn create(
        &mut self,
        family: Family,
        tenant: &str,
        user: Option<&str>,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("request body must be a JSON object"))?;
        let description = optional_string(body, "description")?;
        // Only the API-token DTOs carry metadata.
        let metadata = optional_object(body, "metadata")?
            .filter(|_| matches!(family, Family::UserApi | Family::TenantApi));
        let expires = expiry(family, body.get("expiresInMinutes"))?;
        let role_ids = optional_strings(body, "roleIds")?;
        let permission_ids = optional_strings(body, "permissionIds")?;
        if family == Family::TenantApi {
            roles_or_permissions(role_ids.as_ref(), permission_ids.as_ref())?;
        }
        let token = StoredToken {
            id: random_id(),
            family,
            tenant_id: tenant.to_string(),
            user_id: user.map(str::to_string),
            description,
            secret: uuid::Uuid::new_v4().simple().to_string(),
            created_at: now_rfc3339(),
            expires,
            metadata,
            role_ids: if family == Family::TenantApi || family == Family::TenantAccess {
                role_ids
            } else {
                None
            },
            permission_ids: if family == Family::TenantApi {
                permission_ids
            } else {
                None
            },
        };
        let view = render(&token, true);
        self.issued_secrets.push(token.secret.clone());
        self.tokens.insert(token.id.clone(), token);
        Ok(view)
    }

    pub fn list(&self, family: Family, tenant: &str, user: Option<&str>) -> Value {
        let mut items: Vec<&StoredToken> = self
            .tokens
            .values()
            .filter(|t| owned_by(t, family, tenant, user))
            .collect();
        items.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        let items: Vec<Value> = items.into_iter().map(|t| render(t, false)).collect();
        match family {
            Family::UserAccess | Family::TenantAccess => json!({ "accessTokens": items }),
            Family::UserApi | Family::TenantApi => Value::Array(items),
        }
    }

    pub fn delete(
        &mut self,
        family: Family,
        tenant: &str,
        user: Option<&str>,
        id: &str,
    ) -> Result<(), ApiError> {
        match self.tokens.get(id) {
            Some(t) if owned_by(t, family, tenant, user) => {
                self.tokens.remove(id);
                Ok(())
            }
            _ => Err(ApiError::not_found(format!("token {id} not found"))),
        }
    }

    pub fn patch_tenant_api(
        &mut self,
        tenant: &str,
        id: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        let body = body
            .as_object()
            .ok_or_else(|| ApiError::bad_request("request body must be a JSON object"))?;
        let description = optional_string(body, "description")?;
        let role_ids = optional_strings(body, "roleIds")?;
        let permission_ids = optional_strings(body, "permissionIds")?;
        let metadata = optional_object(body, "metadata")?;
        let token = match self.tokens.get_mut(id) {
            Some(t) if owned_by(t, Family::TenantApi, tenant, None) => t,
            _ => return Err(ApiError::not_found(format!("token {id} not found"))),
        };
        if description.is_some() {
            token.description = description;
        }
        if metadata.is_some() {
            token.metadata = metadata;
        }
        // As the DTO says, roleIds override permissionIds.
        if role_ids.is_some() {
            token.role_ids = role_ids;
            token.permission_ids = None;
        } else if permission_ids.is_some() {
            token.permission_ids = permission_ids;
            token.role_ids = None;
        }
        Ok(render(token, false))
    }
}

fn owned_by(t: &StoredToken, family: Family, tenant: &str, user: Option<&str>) -> bool {
    t.family == family
        && t.tenant_id == tenant
        && (!family.user_scoped() || t.user_id.as_deref() == user)
}

fn optional_string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

fn optional_object(
    body: &Map<String, Value>,
    key: &str,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
    }
}

fn optional_strings(body: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    ApiError::bad_request(format!("{key} must be an array of strings"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::bad_request(format!(
            "{key} must be an array of strings"
        ))),
    }
}

/// The JSON a response carries for a token, shaped per family as in the OpenAPI schemas.
fn render(t: &StoredToken, with_secret: bool) -> Value {
    let mut v = match t.family {
        // CreateUserApiTokenResponseDto / GetUserApiTokensResponseDto
        Family::UserApi => json!({
            "clientId": t.id,
            "description": t.description.clone().unwrap_or_default(),
            "metadata": t.metadata.clone().unwrap_or_default(),
            "createdAt": t.created_at,
        }),
        // UserAccessTokenResponse
        Family::UserAccess => json!({
            "id": t.id,
            "description": t.description.clone().unwrap_or_default(),
            "createdAt": t.created_at,
        }),
        // CreateTenantApiTokenResponseDto / GetTenantApiTokensResponse
        Family::TenantApi => json!({
            "clientId": t.id,
            "description": t.description,
            "tenantId": t.tenant_id,
            "createdByUserId": null,
            "metadata": t.metadata.clone().unwrap_or_default(),
            "createdAt": t.created_at,
            "roleIds": t.role_ids.clone().unwrap_or_default(),
            "permissionIds": t.permission_ids.clone().unwrap_or_default(),
        }),
        // TenantAccessTokenResponse
        Family::TenantAccess => json!({
            "id": t.id,
            "description": t.description.clone().unwrap_or_default(),
            "createdAt": t.created_at,
            "roleIds": t.role_ids.clone().unwrap_or_default(),
            "createdByUserId": null,
        }),
    };
    if let Some(obj) = v.as_object_mut() {
        // A token without expiry has no `expires`: the spec says an undefined expiresInMinutes
        // means "never expires", although GetTenantApiTokensResponse lists `expires` as
        // required. The conformance test documents this one relaxation.
        if let Some(expires) = &t.expires {
            obj.insert("expires".into(), json!(expires));
        }
        if with_secret {
            obj.insert("secret".into(), json!(t.secret));
        }
    }
    v
}
/// `expiresInMinutes`, within the family's bounds, as the expiry Frontegg returns.
fn expiry(family: Family, value: Option<&Value>) -> Result<Option<String>, ApiError> {
    let minutes = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ApiError::bad_request("expiresInMinutes must be a number"))?,
    };
    if minutes < 1.0 {
        return Err(ApiError::bad_request(
            "expiresInMinutes must not be less than 1",
        ));
    }
    if let Some(max) = family.max_expires_in_minutes()
        && minutes > max
    {
        return Err(ApiError::bad_request(format!(
            "expiresInMinutes must not be greater than {max}"
        )));
    }
    let at = Timestamp::now()
        .checked_add(Duration::from_secs_f64(minutes.min(1e9) * 60.0))
        .unwrap_or(Timestamp::MAX);
    Ok(Some(
        at.round(jiff::Unit::Millisecond)
            .map(|t| t.to_string())
            .unwrap_or_default(),
    ))
}

/// A tenant API token takes roles or permissions, exactly one of them.
fn roles_or_permissions(
    role_ids: Option<&Vec<String>>,
    permission_ids: Option<&Vec<String>>,
) -> Result<(), ApiError> {
    match (role_ids, permission_ids) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "provide either roleIds or permissionIds, not both",
        )),
        (None, None) => Err(ApiError::bad_request(
            "either roleIds or permissionIds must be provided",
        )),
        _ => Ok(()),
    }
}
