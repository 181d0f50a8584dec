//! `frontegg-fake`: an in-memory stand-in for Frontegg's vendor auth and identity token API,
//! held to the published OpenAPI, with fault injection and counters for tests and benchmarks.
//!
//! Frontegg routes: vendor auth, the four token families, and the API-token exchange and
//! refresh (`POST /identity/resources/auth/v2/api-token[/token/refresh]`), whose user JWTs
//! may manage only their own user's personal tokens (403 otherwise).
//!
//! Admin API (not part of Frontegg): `GET /_admin/stats`, `GET /_admin/calls`,
//! `GET /_admin/tokens`, `GET /_admin/issued-secrets`, `PUT /_admin/faults`, `POST /_admin/revoke-vendor-tokens`,
//! `POST /_admin/revoke-refresh-tokens`, `GET /_admin/refresh-tokens/{id}`,
//! `DELETE /_admin/tokens/{id}`, `PATCH /_admin/tokens/{id}` (a portal edit),
//! `POST /_admin/reset-stats`.

#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unchecked_time_subtraction,
        clippy::too_many_lines
    )
)]

mod faults;
mod jwt;
mod store;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use clap::Parser;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Value, json};

use faults::{Corruption, Faults, Injected};
use store::{ApiError, Family, Store};

#[derive(Parser, Debug)]
#[command(about = "In-memory fake of Frontegg's vendor auth and identity token API")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Accepted vendor client ID (repeat together with --secret for several pairs).
    #[arg(long = "client-id", required = true)]
    client_ids: Vec<String>,
    /// Secret of the client ID at the same position.
    #[arg(long = "secret", required = true)]
    secrets: Vec<String>,
    /// Vendor token lifetime (`expiresIn`) in seconds.
    #[arg(long, default_value_t = 3600.0)]
    token_lifetime_secs: f64,
    /// Lifetime of user JWTs from the API-token exchange, in seconds.
    #[arg(long, default_value_t = 3600.0)]
    user_jwt_lifetime_secs: f64,
    /// Append every request/response exchange as a JSON line to this file (conformance tests).
    #[arg(long)]
    record: Option<std::path::PathBuf>,
    /// Initial faults as JSON (same shape as `PUT /_admin/faults`).
    #[arg(long, default_value = "{}")]
    faults: String,
}

#[derive(Default, Serialize)]
struct Stats {
    /// Calls by "METHOD /route".
    calls: BTreeMap<String, u64>,
    /// Responses by status code.
    statuses: BTreeMap<u16, u64>,
}

#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct CallRecord {
    at: String,
    route: String,
    /// The path as sent, with its ids: what shows a request for one token at a host.
    path: String,
    status: u16,
}

struct Shared {
    store: Mutex<Store>,
    signer: jwt::Signer,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    calls: Mutex<Vec<CallRecord>>,
    qps_window: Mutex<(Instant, u32)>,
    record: Option<Mutex<std::fs::File>>,
}

type App = Arc<Shared>;

const CALL_LOG_LIMIT: usize = 10_000;
const RECORD_BODY_LIMIT: usize = 1 << 20;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.client_ids.len() != cli.secrets.len() {
        anyhow::bail!("give one --secret for every --client-id");
    }
    let faults: Faults = serde_json::from_str(&cli.faults)
        .map_err(|e| anyhow::anyhow!("--faults is not valid JSON: {e}"))?;
    let store = Store {
        credentials: cli.client_ids.into_iter().zip(cli.secrets).collect(),
        vendor_token_lifetime: Duration::from_secs_f64(cli.token_lifetime_secs),
        user_jwt_lifetime: Duration::from_secs_f64(cli.user_jwt_lifetime_secs),
        ..Store::default()
    };
    let record = match &cli.record {
        Some(path) => Some(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )),
        None => None,
    };
    let app = Arc::new(Shared {
        store: Mutex::new(store),
        signer: jwt::Signer::new(),
        faults: Mutex::new(faults),
        stats: Mutex::default(),
        calls: Mutex::default(),
        qps_window: Mutex::new((Instant::now(), 0)),
        record,
    });
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cli.listen))?;
    eprintln!(
        "frontegg-fake listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}

fn router(app: App) -> Router {
    const UAPI: &str = "/identity/resources/users/api-tokens/v1";
    const UACC: &str = "/identity/resources/users/access-tokens/v1";
    const TAPI1: &str = "/identity/resources/tenants/api-tokens/v1";
    const TAPI2: &str = "/identity/resources/tenants/api-tokens/v2";
    const TACC: &str = "/identity/resources/tenants/access-tokens/v1";
    let frontegg = Router::new()
        .route("/auth/vendor", post(vendor_auth))
        .route(
            "/identity/resources/auth/v2/api-token",
            post(exchange_api_token),
        )
        .route(
            "/identity/resources/auth/v2/api-token/token/refresh",
            post(refresh_api_token),
        )
        .route(UAPI, post(create_user_api).get(list_user_api))
        .route(&format!("{UAPI}/{{id}}"), delete(delete_user_api))
        .route(UACC, post(create_user_access).get(list_user_access))
        .route(&format!("{UACC}/{{id}}"), delete(delete_user_access))
        .route(TAPI2, post(create_tenant_api))
        .route(TAPI1, get(list_tenant_api))
        .route(
            &format!("{TAPI1}/{{id}}"),
            delete(delete_tenant_api).patch(patch_tenant_api),
        )
        .route(TACC, post(create_tenant_access).get(list_tenant_access))
        .route(&format!("{TACC}/{{id}}"), delete(delete_tenant_access))
        .route_layer(middleware::from_fn_with_state(app.clone(), inject_faults))
        .route_layer(middleware::from_fn_with_state(app.clone(), observe));
    let admin = Router::new()
        .route("/_admin/stats", get(admin_stats))
        .route("/_admin/calls", get(admin_calls))
        .route("/_admin/reset-stats", post(admin_reset_stats))
        .route(
            "/_admin/faults",
            put(admin_set_faults).get(admin_get_faults),
        )
        .route(
            "/_admin/revoke-vendor-tokens",
            post(admin_revoke_vendor_tokens),
        )
        .route(
            "/_admin/revoke-refresh-tokens",
            post(admin_revoke_refresh_tokens),
        )
        .route(
            "/_admin/refresh-tokens/{id}",
            get(admin_refresh_token_count),
        )
        .route("/_admin/tokens", get(admin_tokens))
        .route("/_admin/issued-secrets", get(admin_issued_secrets))
        .route(
            "/_admin/tokens/{id}",
            delete(admin_delete_token).patch(admin_edit_token),
        );
    frontegg.merge(admin).with_state(app)
}

fn error_response(status: u16, messages: Vec<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({ "errors": messages }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, self.messages)
    }
}

/// Counts every call, keeps a bounded call log and, with --record, writes the exchange.
async fn observe(State(app): State<App>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let route = format!("{} {}", req.method(), route);
    let sent_path = req.uri().path().to_string();
    let response = if let Some(record) = &app.record {
        let (parts, body) = req.into_parts();
        let req_bytes = to_bytes(body, RECORD_BODY_LIMIT).await.unwrap_or_default();
        let req_headers = interesting_headers(&parts.headers);
        let method = parts.method.to_string();
        let path = parts.uri.path().to_string();
        let response = next
            .run(Request::from_parts(parts, Body::from(req_bytes.clone())))
            .await;
        let (rparts, rbody) = response.into_parts();
        let resp_bytes = to_bytes(rbody, RECORD_BODY_LIMIT).await.unwrap_or_default();
        let line = json!({
            "method": method,
            "path": path,
            "requestHeaders": req_headers,
            "requestBody": String::from_utf8_lossy(&req_bytes),
            "status": rparts.status.as_u16(),
            "responseHeaders": interesting_headers(&rparts.headers),
            "responseBody": String::from_utf8_lossy(&resp_bytes),
        });
        if let Ok(mut file) = record.lock() {
            let _ = writeln!(file, "{line}");
        }
        Response::from_parts(rparts, Body::from(resp_bytes))
    } else {
        next.run(req).await
    };
    let status = response.status().as_u16();
    if let Ok(mut stats) = app.stats.lock() {
        let calls = stats.calls.entry(route.clone()).or_default();
        *calls = calls.saturating_add(1);
        let statuses = stats.statuses.entry(status).or_default();
        *statuses = statuses.saturating_add(1);
    }
    if let Ok(mut calls) = app.calls.lock()
        && calls.len() < CALL_LOG_LIMIT
    {
        calls.push(CallRecord {
            at: Timestamp::now().to_string(),
            route,
            path: sent_path,
            status,
        });
    }
    response
}

fn interesting_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            n.starts_with("frontegg-")
                || n == "content-type"
                || n == "x-rate-limit-reset"
                || n == "retry-after"
        })
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap_or("").to_string()))
        .chain(
            headers
                .get("authorization")
                // Keep the scheme, never the credential.
                .map(|v| {
                    let scheme = v
                        .to_str()
                        .unwrap_or("")
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    ("authorization".to_string(), format!("{scheme} redacted"))
                }),
        )
        .collect()
}

/// Applies the configured faults and the enforced QPS limit before a request reaches Frontegg.
async fn inject_faults(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().to_string();
    let (injected, latency, qps_limit, retry_after, huge) = match app.faults.lock() {
        Ok(mut f) => (
            f.draw(&method, &path),
            f.latency_ms,
            f.qps_limit,
            f.rate_limit_retry_after.clone(),
            f.huge_body_bytes,
        ),
        Err(_) => (Injected::None, 0, 0, String::new(), 0),
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if qps_limit > 0
        && let Some(reset_in) = over_qps(&app, qps_limit)
    {
        return rate_limited(reset_in, &retry_after);
    }
    match injected {
        Injected::None => next.run(req).await,
        Injected::RateLimited { reset_in } => rate_limited(reset_in, &retry_after),
        Injected::Corrupt(corruption) => {
            // The request is handled (a create commits), only the answer is broken.
            let _handled = next.run(req).await;
            corrupt(corruption, huge)
        }
        Injected::ServerError(code) => error_response(code, vec!["Internal server error".into()]),
        Injected::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            error_response(504, vec!["hung".into()])
        }
    }
}

fn over_qps(app: &App, limit: u32) -> Option<Duration> {
    let mut window = app.qps_window.lock().ok()?;
    let now = Instant::now();
    if now.duration_since(window.0) >= Duration::from_secs(1) {
        *window = (now, 0);
    }
    window.1 = window.1.saturating_add(1);
    (window.1 > limit).then(|| Duration::from_secs(1).saturating_sub(now.duration_since(window.0)))
}

fn rate_limited(reset_in: Duration, retry_after: &str) -> Response {
    let mut resp = error_response(429, vec!["Too many requests".into()]);
    let reset = if retry_after.is_empty() {
        Timestamp::now()
            .checked_add(reset_in)
            .unwrap_or(Timestamp::MAX)
    } else {
        if let Ok(v) = HeaderValue::from_str(retry_after) {
            resp.headers_mut().insert("retry-after", v);
        }
        Timestamp::MAX
    };
    if let Ok(v) = HeaderValue::from_str(&reset.to_string()) {
        resp.headers_mut().insert("x-rate-limit-reset", v);
    }
    resp
}

/// The broken answer that replaces a handled request's real one.
fn corrupt(corruption: Corruption, huge_body_bytes: u64) -> Response {
    const CHUNK: usize = 64 * 1024;
    let json = |body: Body| {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(body)
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match corruption {
        // The body fails before its first byte: hyper aborts the connection.
        Corruption::DropAfterCommit => json(Body::from_stream(futures::stream::once(async {
            Err::<bytes::Bytes, std::io::Error>(std::io::Error::other("dropped after commit"))
        }))),
        Corruption::HangAfterCommit => json(Body::from_stream(futures::stream::once(async {
            futures::future::pending::<()>().await;
            Ok::<bytes::Bytes, std::io::Error>(bytes::Bytes::new())
        }))),
        Corruption::HugeBody => {
            let chunk = bytes::Bytes::from(vec![b' '; CHUNK]);
            let total = if huge_body_bytes == 0 {
                200 * 1024 * 1024
            } else {
                huge_body_bytes
            };
            let chunks = usize::try_from(total.div_ceil(CHUNK as u64)).unwrap_or(usize::MAX);
            json(Body::from_stream(futures::stream::iter(
                std::iter::repeat_n(chunk, chunks).map(Ok::<_, std::io::Error>),
            )))
        }
        Corruption::Garbage => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/html")
            .body(Body::from("<html><body>502 Bad Gateway</body></html>"))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()),
        Corruption::WrongTypes => json(Body::from(
            r#"{"clientId":5,"secret":[1],"id":{},"accessToken":false,"accessTokens":"x","token":null,"expiresIn":"soon"}"#,
        )),
        Corruption::SlowDrip => json(Body::from_stream(futures::stream::unfold(
            0u32,
            |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                (n < 3600).then(|| {
                    (
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")),
                        n.saturating_add(1),
                    )
                })
            },
        ))),
    }
}

async fn vendor_auth(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let result = app
        .store
        .lock()
        .map_err(|_| poisoned())
        .and_then(|mut s| s.vendor_auth(&body));
    let reported_lifetime = app.faults.lock().ok().and_then(|f| f.vendor_expires_in);
    match result {
        Ok(mut v) => {
            if let (Some(secs), Some(obj)) = (reported_lifetime, v.as_object_mut()) {
                obj.insert("expiresIn".into(), json!(secs));
            }
            (StatusCode::OK, Json(v)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn exchange_api_token(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let mut result = parse_body(&body).and_then(|body| {
        app.store
            .lock()
            .map_err(|_| poisoned())?
            .exchange_api_token(&body, &app.signer)
    });
    let oversized = app.faults.lock().is_ok_and(|mut f| {
        let hit = f.oversized_jwt_next > 0;
        f.oversized_jwt_next = f.oversized_jwt_next.saturating_sub(1);
        hit
    });
    if oversized
        && let Ok(Value::Object(answer)) = &mut result
        && let Some(Value::String(jwt)) = answer.get_mut("access_token")
    {
        jwt.push_str(&"A".repeat(64 * 1024));
    }
    json_or_error(StatusCode::OK, result)
}

async fn refresh_api_token(State(app): State<App>, body: axum::body::Bytes) -> Response {
    let result = parse_body(&body).and_then(|body| {
        app.store
            .lock()
            .map_err(|_| poisoned())?
            .refresh_api_token(&body, &app.signer)
    });
    json_or_error(StatusCode::OK, result)
}

fn json_or_error(status: StatusCode, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(v) => (status, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn poisoned() -> ApiError {
    ApiError {
        status: 500,
        messages: vec!["internal error".into()],
    }
}

/// Vendor token and scope headers, checked in Frontegg's order: authentication first.
fn authorize(
    app: &App,
    headers: &HeaderMap,
    family: Family,
) -> Result<(String, Option<String>), ApiError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bearer = app
        .store
        .lock()
        .map_err(|_| poisoned())?
        .check_bearer(header("authorization").as_deref(), &app.signer)?;
    let tenant = header("frontegg-tenant-id")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("frontegg-tenant-id header is required"))?;
    let user = if family.user_scoped() {
        Some(
            header("frontegg-user-id")
                .filter(|u| !u.is_empty())
                .ok_or_else(|| ApiError::bad_request("frontegg-user-id header is required"))?,
        )
    } else {
        None
    };
    // A user JWT manages that user's own personal tokens, nothing else.
    if let store::Bearer::User { user_id, tenant_id } = bearer
        && (!family.user_scoped()
            || user.as_deref() != Some(user_id.as_str())
            || tenant != tenant_id)
    {
        return Err(ApiError {
            status: 403,
            messages: vec!["this token may manage only its own user's tokens".into()],
        });
    }
    Ok((tenant, user))
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("request body must be valid JSON"))
}

async fn create(app: App, headers: HeaderMap, body: axum::body::Bytes, family: Family) -> Response {
    let result = authorize(&app, &headers, family).and_then(|(tenant, user)| {
        let body = parse_body(&body)?;
        app.store
            .lock()
            .map_err(|_| poisoned())?
            .create(family, &tenant, user.as_deref(), &body)
    });
    match result {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(app: App, headers: HeaderMap, family: Family) -> Response {
    let omit = app.faults.lock().is_ok_and(|f| f.list_omits_tokens);
    let result = authorize(&app, &headers, family).and_then(|(tenant, user)| {
        let store = app.store.lock().map_err(|_| poisoned())?;
        Ok(if omit {
            store.list(family, "", None)
        } else {
            store.list(family, &tenant, user.as_deref())
        })
    });
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn remove(app: App, headers: HeaderMap, id: String, family: Family) -> Response {
    let result = authorize(&app, &headers, family).and_then(|(tenant, user)| {
        app.store
            .lock()
            .map_err(|_| poisoned())?
            .delete(family, &tenant, user.as_deref(), &id)
    });
    match result {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => e.into_response(),
    }
}

macro_rules! family_handlers {
    ($family:expr, $create:ident, $list:ident, $delete:ident) => {
        async fn $create(
            State(app): State<App>,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> Response {
            create(app, headers, body, $family).await
        }
        async fn $list(State(app): State<App>, headers: HeaderMap) -> Response {
            list(app, headers, $family).await
        }
        async fn $delete(
            State(app): State<App>,
            headers: HeaderMap,
            Path(id): Path<String>,
        ) -> Response {
            remove(app, headers, id, $family).await
        }
    };
}

family_handlers!(
    Family::UserApi,
    create_user_api,
    list_user_api,
    delete_user_api
);
family_handlers!(
    Family::UserAccess,
    create_user_access,
    list_user_access,
    delete_user_access
);
family_handlers!(
    Family::TenantApi,
    create_tenant_api,
    list_tenant_api,
    delete_tenant_api
);
family_handlers!(
    Family::TenantAccess,
    create_tenant_access,
    list_tenant_access,
    delete_tenant_access
);

async fn patch_tenant_api(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let result = authorize(&app, &headers, Family::TenantApi).and_then(|(tenant, _)| {
        let body = parse_body(&body)?;
        app.store
            .lock()
            .map_err(|_| poisoned())?
            .patch_tenant_api(&tenant, &id, &body)
    });
    match result {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn admin_stats(State(app): State<App>) -> Response {
    match app.stats.lock() {
        Ok(stats) => Json(&*stats).into_response(),
        Err(_) => poisoned().into_response(),
    }
}

async fn admin_calls(State(app): State<App>) -> Response {
    let calls = app.calls.lock().map(|c| c.clone()).unwrap_or_default();
    Json(calls).into_response()
}

async fn admin_reset_stats(State(app): State<App>) -> StatusCode {
    if let Ok(mut stats) = app.stats.lock() {
        *stats = Stats::default();
    }
    if let Ok(mut calls) = app.calls.lock() {
        calls.clear();
    }
    StatusCode::NO_CONTENT
}

async fn admin_set_faults(State(app): State<App>, Json(faults): Json<Faults>) -> StatusCode {
    if let Ok(mut current) = app.faults.lock() {
        *current = faults;
    }
    StatusCode::NO_CONTENT
}

async fn admin_get_faults(State(app): State<App>) -> Response {
    let faults = app.faults.lock().map(|f| f.clone()).unwrap_or_default();
    Json(faults).into_response()
}

async fn admin_revoke_vendor_tokens(State(app): State<App>) -> Response {
    let n = app
        .store
        .lock()
        .map(|mut s| s.revoke_vendor_tokens())
        .unwrap_or(0);
    Json(json!({ "revoked": n })).into_response()
}

async fn admin_revoke_refresh_tokens(State(app): State<App>) -> Response {
    let n = app
        .store
        .lock()
        .map(|mut s| s.revoke_refresh_tokens())
        .unwrap_or(0);
    Json(json!({ "revoked": n })).into_response()
}

async fn admin_refresh_token_count(State(app): State<App>, Path(id): Path<String>) -> Response {
    let n = app
        .store
        .lock()
        .map(|s| s.refresh_token_count(&id))
        .unwrap_or(0);
    Json(json!({ "refreshTokens": n, "limit": store::MAX_REFRESH_TOKENS })).into_response()
}

async fn admin_tokens(State(app): State<App>) -> Response {
    let tokens: Vec<_> = app
        .store
        .lock()
        .map(|s| s.tokens.values().cloned().collect())
        .unwrap_or_default();
    Json(tokens).into_response()
}

async fn admin_delete_token(State(app): State<App>, Path(id): Path<String>) -> StatusCode {
    let removed = app
        .store
        .lock()
        .map(|mut s| s.tokens.remove(&id).is_some())
        .unwrap_or(false);
    if removed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// An edit made in the portal, outside the public API: any of description, metadata,
/// roleIds and permissionIds, on any kind.
async fn admin_edit_token(
    State(app): State<App>,
    Path(id): Path<String>,
    Json(edit): Json<Value>,
) -> StatusCode {
    let Ok(mut store) = app.store.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let Some(token) = store.tokens.get_mut(&id) else {
        return StatusCode::NOT_FOUND;
    };
    let strings = |v: &Value| {
        v.as_array().map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    if let Some(d) = edit.get("description") {
        token.description = d.as_str().map(str::to_string);
    }
    if let Some(m) = edit.get("metadata") {
        token.metadata = m.as_object().cloned();
    }
    if let Some(r) = edit.get("roleIds") {
        token.role_ids = strings(r);
    }
    if let Some(p) = edit.get("permissionIds") {
        token.permission_ids = strings(p);
    }
    StatusCode::NO_CONTENT
}

async fn admin_issued_secrets(State(app): State<App>) -> Response {
    let secrets = app
        .store
        .lock()
        .map(|s| s.issued_secrets.clone())
        .unwrap_or_default();
    Json(secrets).into_response()
}
