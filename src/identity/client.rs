use std::num::NonZeroU32;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jiff::Timestamp;
use reqwest::{Method, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::Mutex;

use super::endpoints::{
    IssuedToken, RemoteToken, TenantApiTokens, TokenEndpoint, UpdateTenantApiToken,
};
use super::error::IdentityError;

/// Where and as whom to reach one Frontegg environment.
#[derive(Clone, Debug)]
pub struct EnvironmentConfig {
    /// Scheme and host, no trailing slash (e.g. `https://api.frontegg.com`).
    pub base_url: String,
    pub client_id: String,
    pub secret: SecretString,
    /// Sent as `frontegg-environment-id` when set.
    pub environment_id: Option<String>,
}

/// Tuning knobs; the defaults suit production.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub timeout: Duration,
    /// Retries of transient failures (5xx, timeouts, connection errors).
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A 429 whose reset is at most this far away is waited out in place; a later one is
    /// returned as `RateLimited` so the caller can requeue instead of holding a worker.
    pub max_inline_rate_limit_wait: Duration,
    pub qps: NonZeroU32,
    pub burst: NonZeroU32,
    /// How long a failed vendor authentication is remembered, so a bad credential costs one
    /// auth call per period instead of one per reconcile.
    pub auth_failure_ttl: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(15),
            max_retries: 4,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            max_inline_rate_limit_wait: Duration::from_secs(30),
            qps: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            auth_failure_ttl: Duration::from_secs(30),
        }
    }
}

/// Who the token belongs to: the `frontegg-tenant-id` and `frontegg-user-id` headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    pub tenant_id: String,
    pub user_id: Option<String>,
}

/// Receives one call per HTTP exchange and per rate-limiter wait (for metrics).
pub trait RequestObserver: Send + Sync {
    fn request(&self, endpoint: &str, status: &str, latency: Duration);
    fn rate_limited_wait(&self, waited: Duration);
}

enum VendorToken {
    Valid {
        token: Arc<SecretString>,
        refresh_at: Instant,
    },
    Failed {
        error: IdentityError,
        until: Instant,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VendorAuthRequest<'a> {
    client_id: &'a str,
    secret: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VendorAuthResponse {
    token: SecretString,
    expires_in: f64,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// A client for one Frontegg environment. Share one per environment: it owns the vendor token
/// cache, the rate limiter and the 429 gate that every reconcile using the environment obeys.
pub struct IdentityClient {
    http: reqwest::Client,
    env: EnvironmentConfig,
    options: ClientOptions,
    vendor_token: Mutex<Option<VendorToken>>,
    limiter: DefaultDirectRateLimiter,
    /// Frontegg said "no calls before this" (429); every caller waits for it.
    rate_gate: SyncMutex<Option<Timestamp>>,
    observer: Option<Arc<dyn RequestObserver>>,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("env", &self.env)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    pub fn new(
        env: EnvironmentConfig,
        options: ClientOptions,
        observer: Option<Arc<dyn RequestObserver>>,
    ) -> Result<Self, IdentityError> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .user_agent(concat!(
                "frontegg-token-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| IdentityError::Transient(format!("could not build HTTP client: {e}")))?;
        let limiter =
            RateLimiter::direct(Quota::per_second(options.qps).allow_burst(options.burst));
        Ok(IdentityClient {
            http,
            env,
            options,
            vendor_token: Mutex::new(None),
            limiter,
            rate_gate: SyncMutex::new(None),
            observer,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.env.base_url
    }

    /// Authenticates (or reuses the cached vendor token): used to report environment health.
    pub async fn check_credentials(&self) -> Result<(), IdentityError> {
        self.bearer().await.map(|_| ())
    }

    pub async fn create<E: TokenEndpoint>(
        &self,
        scope: &Scope,
        body: &E::Create,
    ) -> Result<IssuedToken, IdentityError> {
        let bytes = self
            .request::<E, _>(Method::POST, E::CREATE_PATH.to_string(), scope, Some(body))
            .await?;
        decode::<E::Created>(&bytes).map(Into::into)
    }

    pub async fn list<E: TokenEndpoint>(
        &self,
        scope: &Scope,
    ) -> Result<Vec<RemoteToken>, IdentityError> {
        let bytes = self
            .request::<E, ()>(Method::GET, E::COLLECTION_PATH.to_string(), scope, None)
            .await?;
        decode::<E::Listed>(&bytes).map(E::remote_tokens)
    }

    pub async fn delete<E: TokenEndpoint>(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<(), IdentityError> {
        let path = format!("{}/{}", E::COLLECTION_PATH, encode_path_segment(id));
        self.request::<E, ()>(Method::DELETE, path, scope, None)
            .await
            .map(|_| ())
    }

    /// Tenant API tokens are the only kind Frontegg can change in place.
    pub async fn patch_tenant_api_token(
        &self,
        scope: &Scope,
        id: &str,
        body: &UpdateTenantApiToken,
    ) -> Result<RemoteToken, IdentityError> {
        let path = format!(
            "{}/{}",
            TenantApiTokens::COLLECTION_PATH,
            encode_path_segment(id)
        );
        let bytes = self
            .request::<TenantApiTokens, _>(Method::PATCH, path, scope, Some(body))
            .await?;
        decode::<super::endpoints::ListedTenantApiToken>(&bytes).map(Into::into)
    }

    async fn request<E: TokenEndpoint, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        scope: &Scope,
        body: Option<&B>,
    ) -> Result<bytes::Bytes, IdentityError> {
        if E::USER_SCOPED && scope.user_id.is_none() {
            return Err(IdentityError::Invalid {
                messages: vec![format!("{} needs a user id", E::NAME)],
            });
        }
        let url = format!("{}/identity{}", self.env.base_url, path);
        let endpoint = format!("{} {}", method, E::NAME);
        let reauthenticated = std::sync::atomic::AtomicBool::new(false);
        let reauthenticated = &reauthenticated;
        self.with_retries(&endpoint, || async {
            let bearer = self.bearer().await?;
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(bearer.expose_secret())
                .header("frontegg-tenant-id", &scope.tenant_id);
            if let Some(user) = &scope.user_id {
                req = req.header("frontegg-user-id", user);
            }
            if let Some(env_id) = &self.env.environment_id {
                req = req.header("frontegg-environment-id", env_id);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            match self.send_once(&endpoint, req).await {
                // A 401 means the vendor token expired or was revoked: refresh once, retry once.
                Err(IdentityError::Unauthorized)
                    if !reauthenticated.swap(true, std::sync::atomic::Ordering::Relaxed) =>
                {
                    self.invalidate(&bearer).await;
                    Err(Retry::Now)
                }
                other => other.map_err(Retry::from),
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails permanently, or retries run out. Transient
    /// failures back off exponentially with jitter; 429s wait for Frontegg's reset time.
    async fn with_retries<F, Fut>(
        &self,
        endpoint: &str,
        mut attempt: F,
    ) -> Result<bytes::Bytes, IdentityError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bytes::Bytes, Retry>>,
    {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.options.min_backoff)
            .with_max_delay(self.options.max_backoff)
            .with_max_times(self.options.max_retries)
            .with_jitter()
            .build();
        let mut rate_limit_waits = 0;
        loop {
            self.wait_for_turn().await;
            match attempt().await {
                Ok(bytes) => return Ok(bytes),
                Err(Retry::Now) => continue,
                Err(Retry::Fail(IdentityError::RateLimited { reset })) => {
                    self.close_gate(reset);
                    let wait = duration_until(reset);
                    rate_limit_waits += 1;
                    if wait > self.options.max_inline_rate_limit_wait
                        || rate_limit_waits > self.options.max_retries
                    {
                        return Err(IdentityError::RateLimited { reset });
                    }
                    tracing::debug!(
                        endpoint,
                        ?wait,
                        "rate limited by Frontegg; waiting for the reset"
                    );
                }
                Err(Retry::Fail(e)) if e.is_retryable() => match backoff.next() {
                    Some(delay) => {
                        tracing::debug!(endpoint, ?delay, error = %e, "transient failure; backing off");
                        tokio::time::sleep(delay).await;
                    }
                    None => return Err(e),
                },
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
    }

    async fn send_once(
        &self,
        endpoint: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<bytes::Bytes, IdentityError> {
        let started = Instant::now();
        let result = req.send().await;
        let (status_label, outcome) = match result {
            Err(e) => {
                let label = if e.is_timeout() { "timeout" } else { "error" };
                (
                    label.to_string(),
                    Err(IdentityError::Transient(describe_reqwest_error(&e))),
                )
            }
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = resp.bytes().await;
                let outcome = match body {
                    Err(e) => Err(IdentityError::Transient(describe_reqwest_error(&e))),
                    Ok(body) if status.is_success() => Ok(body),
                    Ok(body) => Err(classify(status, &headers, &body)),
                };
                (status.as_u16().to_string(), outcome)
            }
        };
        if let Some(observer) = &self.observer {
            observer.request(endpoint, &status_label, started.elapsed());
        }
        outcome
    }

    /// Returns a valid vendor token, authenticating at most once for all concurrent callers:
    /// the lock is held across the auth call, so waiters reuse its result (single flight).
    async fn bearer(&self) -> Result<Arc<SecretString>, IdentityError> {
        let mut cached = self.vendor_token.lock().await;
        let now = Instant::now();
        match cached.as_ref() {
            Some(VendorToken::Valid { token, refresh_at }) if now < *refresh_at => {
                return Ok(token.clone());
            }
            Some(VendorToken::Failed { error, until }) if now < *until => return Err(error.clone()),
            _ => {}
        }
        match self.authenticate().await {
            Ok((token, lifetime)) => {
                // Refresh a little early so no request goes out with a token about to expire.
                let margin = (lifetime / 10).min(Duration::from_secs(60));
                let token = Arc::new(token);
                *cached = Some(VendorToken::Valid {
                    token: token.clone(),
                    refresh_at: now + lifetime - margin,
                });
                Ok(token)
            }
            Err(error) => {
                if !error.is_retryable() {
                    *cached = Some(VendorToken::Failed {
                        error: error.clone(),
                        until: now + self.options.auth_failure_ttl,
                    });
                }
                Err(error)
            }
        }
    }

    /// Forgets `seen` if it is still the cached token (another caller may already have refreshed).
    async fn invalidate(&self, seen: &Arc<SecretString>) {
        let mut cached = self.vendor_token.lock().await;
        if let Some(VendorToken::Valid { token, .. }) = cached.as_ref()
            && Arc::ptr_eq(token, seen)
        {
            *cached = None;
        }
    }

    async fn authenticate(&self) -> Result<(SecretString, Duration), IdentityError> {
        let url = format!("{}/auth/vendor", self.env.base_url);
        let body = VendorAuthRequest {
            client_id: &self.env.client_id,
            secret: self.env.secret.expose_secret(),
        };
        let bytes = self
            .with_retries("POST vendor-auth", || async {
                let req = self.http.post(&url).json(&body);
                self.send_once("POST vendor-auth", req)
                    .await
                    .map_err(Retry::from)
            })
            .await?;
        let resp: VendorAuthResponse = decode(&bytes)?;
        let lifetime = Duration::try_from_secs_f64(resp.expires_in).map_err(|_| {
            IdentityError::Decode("vendor auth expiresIn is not a valid number of seconds".into())
        })?;
        Ok((resp.token, lifetime))
    }

    async fn wait_for_turn(&self) {
        let gate = self.rate_gate.lock().ok().and_then(|g| *g);
        let mut waited = Duration::ZERO;
        if let Some(reset) = gate {
            let wait = duration_until(reset);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                waited += wait;
            }
        }
        let started = Instant::now();
        self.limiter.until_ready().await;
        waited += started.elapsed();
        if waited >= Duration::from_millis(1)
            && let Some(observer) = &self.observer
        {
            observer.rate_limited_wait(waited);
        }
    }

    fn close_gate(&self, reset: Timestamp) {
        if let Ok(mut gate) = self.rate_gate.lock() {
            *gate = Some(gate.map_or(reset, |current| current.max(reset)));
        }
    }
}

/// Outcome of one attempt inside `with_retries`.
enum Retry {
    /// Try again immediately (after a vendor token refresh).
    Now,
    Fail(IdentityError),
}

impl From<IdentityError> for Retry {
    fn from(e: IdentityError) -> Self {
        Retry::Fail(e)
    }
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IdentityError> {
    // serde_json's own message quotes the offending value ("invalid type: string \"...\""),
    // which may be a token secret: keep only the category and position.
    serde_json::from_slice(bytes).map_err(|e| {
        IdentityError::Decode(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> IdentityError {
    let messages = || {
        serde_json::from_slice::<ErrorBody>(body)
            .map(|b| {
                b.errors
                    .into_iter()
                    .map(|v| match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    match status {
        StatusCode::UNAUTHORIZED => IdentityError::Unauthorized,
        StatusCode::FORBIDDEN => IdentityError::Forbidden {
            message: messages().join("; "),
        },
        StatusCode::NOT_FOUND => IdentityError::NotFound,
        StatusCode::TOO_MANY_REQUESTS => IdentityError::RateLimited {
            reset: rate_limit_reset(headers, Timestamp::now()),
        },
        s if s.is_client_error() => {
            let mut messages = messages();
            if messages.is_empty() {
                messages.push(format!("HTTP {}", s.as_u16()));
            }
            IdentityError::Invalid { messages }
        }
        s => IdentityError::Transient(format!("HTTP {}", s.as_u16())),
    }
}

/// When a 429 lifts. Frontegg's live API sends `X-Rate-Limit-Reset` as an RFC 3339 time (the
/// published OpenAPI does not document 429s); `Retry-After` (seconds or HTTP date) is the
/// standard fallback, and 60 s is assumed when neither header is usable.
pub(crate) fn rate_limit_reset(headers: &HeaderMap, now: Timestamp) -> Timestamp {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(reset) = header("x-rate-limit-reset").and_then(|v| v.parse::<Timestamp>().ok()) {
        return reset;
    }
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            return now + Duration::from_secs(secs);
        }
        if let Ok(date) = jiff::fmt::rfc2822::parse(value) {
            return date.timestamp();
        }
    }
    now + Duration::from_secs(60)
}

fn duration_until(t: Timestamp) -> Duration {
    let now = Timestamp::now();
    if t <= now {
        Duration::ZERO
    } else {
        Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
    }
}

fn describe_reqwest_error(e: &reqwest::Error) -> String {
    // Without the URL's query (there is none with secrets, but stay defensive) and without the
    // body: the kind of failure is what an operator needs.
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!(
            "{kind}: {}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            url.path()
        ),
        None => kind.to_string(),
    }
}

fn encode_path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn rate_limit_reset_prefers_frontegg_header_then_retry_after_then_sixty_seconds() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_reset(&h, now), now + Duration::from_secs(60));
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_reset(&h, now), now + Duration::from_secs(7));
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_static("2026-01-01T00:00:42Z"),
        );
        assert_eq!(
            rate_limit_reset(&h, now),
            "2026-01-01T00:00:42Z".parse().unwrap()
        );
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Thu, 01 Jan 2026 00:01:00 GMT"),
        );
        assert_eq!(
            rate_limit_reset(&h, now),
            "2026-01-01T00:01:00Z".parse().unwrap()
        );
    }

    #[test]
    fn errors_body_becomes_invalid_messages() {
        let e = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"errors":["expiresInMinutes must not be greater than 5256000"]}"#,
        );
        assert_eq!(
            e,
            IdentityError::Invalid {
                messages: vec!["expiresInMinutes must not be greater than 5256000".into()]
            }
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b""),
            IdentityError::Transient("HTTP 502".into())
        );
    }

    #[test]
    fn decode_errors_never_quote_the_response() {
        // A secret of the wrong type would be quoted by serde_json's own message.
        let body = br#"{"clientId":"c","secret":1234567890123,"description":"","metadata":{},"createdAt":"x"}"#;
        let err = decode::<crate::identity::CreatedUserApiToken>(body).unwrap_err();
        assert!(
            matches!(&err, IdentityError::Decode(m) if m.starts_with("Data error at line 1")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("1234567890123"), "{err}");
        let err = decode::<crate::identity::CreatedUserApiToken>(br#"{"secret": "s3cr3t-value""#)
            .unwrap_err();
        assert!(!err.to_string().contains("s3cr3t-value"), "{err}");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(encode_path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(encode_path_segment("3f2a-11"), "3f2a-11");
    }
}
