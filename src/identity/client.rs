use std::num::NonZeroU32;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use jiff::Timestamp;
use reqwest::{Method, StatusCode, header::HeaderMap};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::sync::{Mutex, Semaphore};

use super::breaker::Breaker;
use super::budget::{Budget, Priority};
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
    /// What the client ID and secret are.
    pub auth: AuthMode,
}

/// How an environment authenticates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Vendor credentials at `POST /auth/vendor`: any tenant, any user.
    #[default]
    Vendor,
    /// One user's API token, exchanged at `POST /identity/resources/auth/v2/api-token` for a
    /// user JWT (refreshed at `…/token/refresh`): that user's personal tokens only.
    UserApiToken,
}

/// The user and tenant a user JWT speaks for (its `sub` and `tenantId` claims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserIdentity {
    pub user_id: String,
    pub tenant_id: String,
}

/// Tuning knobs; the defaults suit production. Every wait a caller can see is bounded by one
/// of them, because a reconcile worker held by one environment is a worker other tenants lack.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Deadline of one exchange, from connecting until the last byte of the body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Larger response bodies are refused (Frontegg's answers are a few KiB).
    pub max_body_bytes: usize,
    /// Retries of transient failures of idempotent requests (not creates, not timeouts).
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// The longest a caller waits in place: for the rate limiter, a 429 reset, a slot among
    /// the in-flight requests, or another caller's authentication. Longer waits are returned
    /// as `RateLimited` or `Throttled` so the caller can requeue instead of holding a worker.
    pub max_inline_wait: Duration,
    /// The longest background work (drift listings) waits for its share of the budget. It
    /// waits outside the reconcile workers, so this only bounds how stale a turn may get.
    pub max_background_wait: Duration,
    /// Requests in flight to this environment at once.
    pub max_in_flight: usize,
    /// A 429's reset time is believed up to this far ahead.
    pub max_rate_limit_wait: Duration,
    /// After a failure the environment is paused this long, doubling up to the maximum; one
    /// request then probes it.
    pub breaker_min_cooldown: Duration,
    pub breaker_max_cooldown: Duration,
    pub qps: NonZeroU32,
    pub burst: NonZeroU32,
    /// How long a failed vendor authentication is remembered, so a bad credential costs one
    /// auth call per period instead of one per reconcile.
    pub auth_failure_ttl: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_body_bytes: 1 << 20,
            max_retries: 2,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            max_inline_wait: Duration::from_secs(2),
            max_background_wait: Duration::from_secs(30),
            max_in_flight: 4,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            breaker_min_cooldown: Duration::from_secs(2),
            breaker_max_cooldown: Duration::from_secs(30),
            qps: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
            auth_failure_ttl: Duration::from_secs(30),
        }
    }
}

/// Vendor tokens are trusted for at least this long (a zero lifetime would mean one
/// authentication per call) and at most this long (a lifetime of 1e19 s must not overflow).
const MIN_VENDOR_TOKEN_LIFETIME: Duration = Duration::from_secs(2);
const MAX_VENDOR_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Who the token belongs to: the `frontegg-tenant-id` and `frontegg-user-id` headers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TokenOwner {
    pub tenant_id: String,
    pub user_id: Option<String>,
}

/// Receives one call per HTTP exchange and per rate-limiter wait (for metrics).
pub trait RequestObserver: Send + Sync {
    fn request(&self, endpoint: &str, status: &str, latency: Duration);
    fn rate_limited_wait(&self, waited: Duration);
    /// A turn of the budget given at `priority` after `waited`.
    fn scheduled(&self, _priority: Priority, _waited: Duration) {}
}

/// Where a request stands in the environment's budget, and how long it may wait for a turn.
#[derive(Clone, Copy, Debug)]
struct Turn {
    priority: Priority,
    max_wait: Duration,
}

enum VendorToken {
    Valid {
        token: Arc<SecretString>,
        refresh_at: Instant,
        /// A user JWT's refresh token: the next one comes from it, not a new exchange
        /// (Frontegg keeps only 100 refresh tokens per API token).
        refresh: Option<SecretString>,
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

/// `ApiTokenAuthV2Response`.
#[derive(Deserialize)]
struct ApiTokenAuthResponse {
    access_token: SecretString,
    refresh_token: SecretString,
    expires_in: f64,
    /// Required by the spec; `expires_in` says the same.
    #[allow(dead_code)]
    expires: String,
}

/// Longest JWT or refresh token accepted from an API-token exchange.
const MAX_JWT_LEN: usize = 16 * 1024;

/// A JWT from an API-token exchange or refresh. Both tokens stay wrapped (`SecretString`'s
/// `Debug` prints nothing of them).
#[derive(Debug)]
pub struct ApiTokenGrant {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// `expiresIn`, clamped to 2 s – 24 h.
    pub lifetime: Duration,
}

/// A bearer from an authentication, with how long to trust it.
struct Authenticated {
    token: SecretString,
    lifetime: Duration,
    refresh: Option<SecretString>,
}

/// `expiresIn` seconds, refused when not positive and clamped to a sane range.
fn token_lifetime(expires_in: f64) -> Result<Duration, IdentityError> {
    if !expires_in.is_finite() || expires_in <= 0.0 {
        return Err(IdentityError::Decode(
            "expiresIn is not a positive number of seconds".into(),
        ));
    }
    Ok(Duration::try_from_secs_f64(expires_in)
        .unwrap_or(MAX_VENDOR_TOKEN_LIFETIME)
        .clamp(MIN_VENDOR_TOKEN_LIFETIME, MAX_VENDOR_TOKEN_LIFETIME))
}

/// The `sub` and `tenantId` claims of a JWT. The payload is read, not verified: the token
/// came straight from the environment it authenticates to, over the connection just used.
fn jwt_identity(jwt: &SecretString) -> Option<UserIdentity> {
    use base64::Engine;
    let payload = jwt.expose_secret().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    // The claims reach the environment's status and condition messages: a hostile server
    // must not be able to put a megabyte or control characters there.
    let claim = |name: &str| {
        claims
            .get(name)?
            .as_str()
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= crate::api::limits::MAX_ID_LEN
                    && !v.chars().any(char::is_control)
            })
            .map(str::to_string)
    };
    Some(UserIdentity {
        user_id: claim("sub")?,
        tenant_id: claim("tenantId")?,
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// A client for one Frontegg environment. Share one per environment: it owns the vendor token
/// cache, the rate limiter, the 429 gate, the in-flight limit and the breaker that every
/// reconcile using the environment obeys.
pub struct IdentityClient {
    http: reqwest::Client,
    env: EnvironmentConfig,
    options: ClientOptions,
    vendor_token: Mutex<Option<VendorToken>>,
    /// The environment's request budget, handed out by priority.
    budget: Budget,
    /// Frontegg said "no calls before this" (429); every caller waits for it.
    rate_gate: SyncMutex<Option<Timestamp>>,
    in_flight: Semaphore,
    breaker: Breaker,
    /// Whom the current user JWT speaks for (user-token environments).
    identity: SyncMutex<Option<UserIdentity>>,
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

/// A response that arrived whole: status, content type and a body no larger than the cap.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
}

/// Why one exchange failed, as far as retrying is concerned.
struct Failure {
    error: IdentityError,
    /// The request never left this process (no connection): safe to retry even a create.
    not_sent: bool,
    /// The deadline passed: the host is slow or dead; waiting again would hold the worker.
    timed_out: bool,
}

impl From<IdentityError> for Failure {
    fn from(error: IdentityError) -> Self {
        Failure {
            error,
            not_sent: false,
            timed_out: false,
        }
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
            .connect_timeout(options.connect_timeout.min(options.timeout))
            // A hostile base URL must not bounce requests (and the bearer token) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "frontegg-token-operator/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| IdentityError::Transient(format!("could not build HTTP client: {e}")))?;
        let budget = Budget::new(options.qps.get(), options.burst.get());
        Ok(IdentityClient {
            http,
            env,
            in_flight: Semaphore::new(options.max_in_flight.max(1)),
            options,
            vendor_token: Mutex::new(None),
            budget,
            rate_gate: SyncMutex::new(None),
            breaker: Breaker::default(),
            identity: SyncMutex::new(None),
            observer,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.env.base_url
    }

    /// The client ID it authenticates with (not a secret).
    pub fn client_id(&self) -> &str {
        &self.env.client_id
    }

    /// The user and tenant of a user-token environment, once it authenticated.
    pub fn user_identity(&self) -> Option<UserIdentity> {
        self.identity.lock().ok().and_then(|i| i.clone())
    }

    pub fn auth_mode(&self) -> AuthMode {
        self.env.auth
    }

    /// Whether recent failures paused this environment.
    pub fn is_paused(&self) -> bool {
        self.breaker.is_open()
    }

    /// Authenticates (or reuses the cached vendor token): used to report environment health.
    /// While the environment is paused this is the probe that resumes it: a fresh
    /// authentication that bypasses the pause.
    pub async fn check_credentials(&self) -> Result<(), IdentityError> {
        if self.breaker.is_open() {
            let mut cached = self.lock_vendor_token().await?;
            let result = self.authenticate(None).await;
            return self.store_vendor_token(&mut cached, result).map(|_| ());
        }
        self.bearer().await.map(|_| ())
    }

    /// Exchanges an API token's client credentials for a JWT at
    /// `POST /identity/resources/auth/v2/api-token`, which also proves the token works.
    pub async fn exchange_api_token(
        &self,
        client_id: &str,
        secret: &SecretString,
    ) -> Result<ApiTokenGrant, IdentityError> {
        let url = format!("{}/identity/resources/auth/v2/api-token", self.env.base_url);
        let body = VendorAuthRequest {
            client_id,
            secret: secret.expose_secret(),
        };
        self.grant("POST api-token-auth", &url, &body).await
    }

    /// A new JWT from the refresh token of an earlier grant, at
    /// `POST /identity/resources/auth/v2/api-token/token/refresh`. The refresh token is used up.
    pub async fn refresh_api_token(
        &self,
        refresh: &SecretString,
    ) -> Result<ApiTokenGrant, IdentityError> {
        let url = format!(
            "{}/identity/resources/auth/v2/api-token/token/refresh",
            self.env.base_url
        );
        let body = serde_json::json!({ "refreshToken": refresh.expose_secret() });
        self.grant("POST api-token-refresh", &url, &body).await
    }

    async fn grant<B: Serialize>(
        &self,
        endpoint: &'static str,
        url: &str,
        body: &B,
    ) -> Result<ApiTokenGrant, IdentityError> {
        // Each exchange or refresh opens a refresh token (Frontegg keeps 100 per API token):
        // never repeated in place unless it never left this process.
        let answer = self
            .with_retries(
                endpoint,
                false,
                false,
                self.turn(Priority::Interactive),
                || async {
                    let req = self.http.post(url).json(body);
                    self.send_once(endpoint, req).await.map_err(Retry::Fail)
                },
            )
            .await?;
        let resp: ApiTokenAuthResponse = decode_answer(&answer)?;
        // The JWT goes into a Secret that workloads send as a header: a hostile server must
        // not be able to put megabytes or control characters there.
        let jwt = resp.access_token.expose_secret();
        if jwt.is_empty()
            || jwt.len() > MAX_JWT_LEN
            || !jwt.bytes().all(|b| b.is_ascii_graphic())
            || resp.refresh_token.expose_secret().len() > MAX_JWT_LEN
        {
            return Err(IdentityError::Decode(
                "the access token is empty, too long or not printable ASCII".into(),
            ));
        }
        Ok(ApiTokenGrant {
            lifetime: token_lifetime(resp.expires_in)?,
            access_token: resp.access_token,
            refresh_token: resp.refresh_token,
        })
    }

    pub async fn create<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
        body: &E::Create,
    ) -> Result<IssuedToken, IdentityError> {
        let turn = self.turn(Priority::Interactive);
        let answer = self
            .request::<E, _>(
                Method::POST,
                E::CREATE_PATH.to_string(),
                scope,
                Some(body),
                turn,
            )
            .await?;
        decode_answer::<E::Created>(&answer).map(Into::into)
    }

    /// A listing someone waits for (a recovery, an import, an observed token).
    pub async fn list<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
    ) -> Result<Vec<RemoteToken>, IdentityError> {
        self.list_as::<E>(scope, self.turn(Priority::Interactive))
            .await
    }

    /// A drift listing: background work, which waits for what foreground work leaves. Only
    /// the background listers call it, never a reconcile worker.
    pub async fn list_in_background<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
    ) -> Result<Vec<RemoteToken>, IdentityError> {
        let turn = Turn {
            priority: Priority::Background,
            max_wait: self.options.max_background_wait,
        };
        self.list_as::<E>(scope, turn).await
    }

    async fn list_as<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
        turn: Turn,
    ) -> Result<Vec<RemoteToken>, IdentityError> {
        let path = E::COLLECTION_PATH.to_string();
        let answer = self
            .request::<E, ()>(Method::GET, path, scope, None, turn)
            .await?;
        decode_answer::<E::Listed>(&answer).map(E::remote_tokens)
    }

    /// A revocation: urgent, a credential that should be dead is alive.
    pub async fn delete<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
        id: &str,
    ) -> Result<(), IdentityError> {
        self.delete_as::<E>(scope, id, Priority::Urgent).await
    }

    /// A revocation at another priority (leaked tokens are collected in the background).
    pub async fn delete_as<E: TokenEndpoint>(
        &self,
        scope: &TokenOwner,
        id: &str,
        priority: Priority,
    ) -> Result<(), IdentityError> {
        let path = format!("{}/{}", E::COLLECTION_PATH, encode_path_segment(id));
        self.request::<E, ()>(Method::DELETE, path, scope, None, self.turn(priority))
            .await
            .map(|_| ())
    }

    /// The budget's turns given so far, per priority (`Priority::ALL` order), and its rate.
    pub fn budget_use(&self) -> ([u64; 3], f64) {
        (self.budget.granted(), self.budget.qps())
    }

    /// A turn at `priority` that a reconcile may wait for: at most the inline wait.
    fn turn(&self, priority: Priority) -> Turn {
        Turn {
            priority,
            max_wait: self.options.max_inline_wait,
        }
    }

    /// Tenant API tokens are the only kind Frontegg can change in place.
    pub async fn patch_tenant_api_token(
        &self,
        scope: &TokenOwner,
        id: &str,
        body: &UpdateTenantApiToken,
    ) -> Result<RemoteToken, IdentityError> {
        let path = format!(
            "{}/{}",
            TenantApiTokens::COLLECTION_PATH,
            encode_path_segment(id)
        );
        let turn = self.turn(Priority::Interactive);
        let answer = self
            .request::<TenantApiTokens, _>(Method::PATCH, path, scope, Some(body), turn)
            .await?;
        decode_answer::<super::endpoints::ListedTenantApiToken>(&answer).map(Into::into)
    }

    async fn request<E: TokenEndpoint, B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        scope: &TokenOwner,
        body: Option<&B>,
        turn: Turn,
    ) -> Result<Answer, IdentityError> {
        if E::USER_SCOPED && scope.user_id.is_none() {
            return Err(IdentityError::Invalid {
                messages: vec![format!("{} needs a user id", E::NAME)],
            });
        }
        let url = format!("{}/identity{}", self.env.base_url, path);
        let endpoint = format!("{} {}", method, E::NAME);
        // A create the server may have committed must not be sent again: that would be a
        // second token. Only creates that never left this process, or met a 429, are retried.
        let idempotent = method != Method::POST;
        let reauthenticated = std::sync::atomic::AtomicBool::new(false);
        let reauthenticated = &reauthenticated;
        self.with_retries(&endpoint, idempotent, false, turn, || async {
            // Authentication has its own retries and breaker accounting; its failure is final.
            let bearer = self.bearer().await.map_err(Retry::Auth)?;
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
                Err(f)
                    if f.error == IdentityError::Unauthorized
                        && !reauthenticated.swap(true, std::sync::atomic::Ordering::Relaxed) =>
                {
                    self.invalidate(&bearer).await;
                    Err(Retry::Now)
                }
                other => other.map_err(Retry::Fail),
            }
        })
        .await
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the bounded retries and inline
    /// waits run out. Each attempt takes a turn of the budget. `admitted` skips the breaker:
    /// the caller already passed it (an authentication inside a request), or is the health
    /// check that may resume it.
    async fn with_retries<F, Fut>(
        &self,
        endpoint: &str,
        idempotent: bool,
        admitted: bool,
        turn: Turn,
        mut attempt: F,
    ) -> Result<Answer, IdentityError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Answer, Retry>>,
    {
        let mut attempts = Attempts {
            backoff: ExponentialBuilder::default()
                .with_min_delay(self.options.min_backoff)
                .with_max_delay(self.options.max_backoff)
                .with_max_times(self.options.max_retries)
                .with_jitter()
                .build(),
            rate_limit_waits: 0,
            idempotent,
        };
        loop {
            if !admitted {
                self.breaker.admit(self.options.timeout)?;
            }
            self.wait_for_turn(turn).await?;
            let failure = match attempt().await {
                Ok(answer) => {
                    self.breaker.succeeded();
                    return Ok(answer);
                }
                Err(Retry::Now) => continue,
                Err(Retry::Auth(e)) => return Err(e),
                Err(Retry::Fail(f)) => f,
            };
            if let Some(delay) = self.after_failure(endpoint, failure, &mut attempts)? {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// What a failed attempt leads to: another one after a delay (`Some`), another one once
    /// the 429 gate opens (`None`), or the error.
    fn after_failure(
        &self,
        endpoint: &str,
        failure: Failure,
        attempts: &mut Attempts<impl Iterator<Item = Duration>>,
    ) -> Result<Option<Duration>, IdentityError> {
        match failure.error {
            IdentityError::RateLimited { reset } => {
                // Frontegg answered: it is up, only busy.
                self.breaker.succeeded();
                self.close_gate(reset);
                attempts.rate_limit_waits = attempts.rate_limit_waits.saturating_add(1);
                if duration_until(reset) > self.options.max_inline_wait
                    || attempts.rate_limit_waits > self.options.max_retries
                {
                    return Err(IdentityError::RateLimited { reset });
                }
                tracing::debug!(endpoint, "rate limited by Frontegg; waiting for the reset");
                Ok(None)
            }
            // Our own limits: nothing is wrong with the host, the caller requeues.
            e @ IdentityError::Throttled(_) => Err(e),
            e if e.is_retryable() => {
                let retry = !failure.timed_out && (attempts.idempotent || failure.not_sent);
                match attempts.backoff.next().filter(|_| retry) {
                    Some(delay) => {
                        tracing::debug!(endpoint, ?delay, error = %e, "transient failure; backing off");
                        Ok(Some(delay))
                    }
                    None => {
                        self.breaker.failed(
                            self.options.breaker_min_cooldown,
                            self.options.breaker_max_cooldown,
                        );
                        Err(e)
                    }
                }
            }
            e => {
                // Any other answer (4xx, a body we refuse) still proves the host is up.
                self.breaker.succeeded();
                Err(e)
            }
        }
    }

    /// One exchange, with its own deadline covering the body, inside the in-flight limit.
    async fn send_once(
        &self,
        endpoint: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Answer, Failure> {
        let _permit = tokio::time::timeout(self.options.max_inline_wait, self.in_flight.acquire())
            .await
            // Every slot taken for this long means the host is slow, not that we are busy.
            .map_err(|_| {
                Failure::from(IdentityError::Unavailable(
                    "requests to this environment take too long; all in-flight slots are held"
                        .into(),
                ))
            })?
            .map_err(|_| Failure::from(throttled("the client is shutting down")))?;
        let started = Instant::now();
        let result = tokio::time::timeout(self.options.timeout, self.exchange(req)).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure {
                error: IdentityError::Transient(format!("timed out: {}", self.describe_target())),
                not_sent: false,
                timed_out: true,
            }),
        };
        let status_label = match &outcome {
            Ok(answer) => answer.status.as_u16().to_string(),
            Err(f) if f.timed_out => "timeout".to_string(),
            Err(f) => match &f.error {
                IdentityError::Transient(_) => "error".to_string(),
                other => other.reason().to_lowercase(),
            },
        };
        if let Some(observer) = &self.observer {
            observer.request(endpoint, &status_label, started.elapsed());
        }
        let answer = outcome?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(Failure::from(classify(
                answer.status,
                &answer.headers,
                &answer.body,
                self.options.max_rate_limit_wait,
            )))
        }
    }

    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<Answer, Failure> {
        let mut resp = req.send().await.map_err(|e| Failure {
            not_sent: e.is_connect(),
            timed_out: e.is_timeout(),
            error: IdentityError::Transient(describe_reqwest_error(&e)),
        })?;
        let max = self.options.max_body_bytes;
        let too_large = || {
            Failure::from(IdentityError::Decode(format!(
                "the response body is larger than {} KiB",
                max / 1024
            )))
        };
        if resp
            .content_length()
            .is_some_and(|len| len > u64::try_from(max).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let status = resp.status();
        let headers = std::mem::take(resp.headers_mut());
        let mut body = bytes::BytesMut::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len().saturating_add(chunk.len()) > max {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => {
                    return Err(Failure {
                        not_sent: false,
                        timed_out: e.is_timeout(),
                        error: IdentityError::Transient(describe_reqwest_error(&e)),
                    });
                }
            }
        }
        Ok(Answer {
            status,
            headers,
            body: body.freeze(),
        })
    }

    fn describe_target(&self) -> String {
        match reqwest::Url::parse(&self.env.base_url) {
            Ok(url) => format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
            Err(_) => "the environment's base URL".into(),
        }
    }

    /// Returns a valid vendor token, authenticating at most once for all concurrent callers:
    /// the lock is held across the auth call, so waiters reuse its result (single flight).
    async fn bearer(&self) -> Result<Arc<SecretString>, IdentityError> {
        let mut cached = self.lock_vendor_token().await?;
        let now = Instant::now();
        let refresh = match cached.as_ref() {
            Some(VendorToken::Valid {
                token, refresh_at, ..
            }) if now < *refresh_at => return Ok(token.clone()),
            Some(VendorToken::Failed { error, until }) if now < *until => return Err(error.clone()),
            Some(VendorToken::Valid { refresh, .. }) => refresh
                .as_ref()
                .map(|r| SecretString::from(r.expose_secret().to_string())),
            _ => None,
        };
        // Only ever called from inside an admitted request or the health check.
        let result = self.authenticate(refresh).await;
        self.store_vendor_token(&mut cached, result)
    }

    /// Waits (boundedly) for another caller's authentication to finish.
    async fn lock_vendor_token(
        &self,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<VendorToken>>, IdentityError> {
        tokio::time::timeout(self.options.max_inline_wait, self.vendor_token.lock())
            .await
            .map_err(|_| {
                IdentityError::Unavailable(
                    "authentication with Frontegg is taking longer than the inline wait".into(),
                )
            })
    }

    fn store_vendor_token(
        &self,
        cached: &mut Option<VendorToken>,
        result: Result<Authenticated, IdentityError>,
    ) -> Result<Arc<SecretString>, IdentityError> {
        let now = Instant::now();
        match result {
            Ok(Authenticated {
                token,
                lifetime,
                refresh,
            }) => {
                // Refresh a little early so no request goes out with a token about to expire.
                let margin = lifetime
                    .checked_div(10)
                    .unwrap_or_default()
                    .min(Duration::from_secs(60));
                let token = Arc::new(token);
                *cached = Some(VendorToken::Valid {
                    token: token.clone(),
                    refresh_at: now
                        .checked_add(lifetime.saturating_sub(margin))
                        .unwrap_or(now),
                    refresh,
                });
                Ok(token)
            }
            Err(error) => {
                if !error.is_retryable() {
                    *cached = Some(VendorToken::Failed {
                        error: error.clone(),
                        until: now
                            .checked_add(self.options.auth_failure_ttl)
                            .unwrap_or(now),
                    });
                }
                Err(error)
            }
        }
    }

    /// Expires `seen` if it is still the cached token (another caller may already have
    /// refreshed). A user JWT's refresh token is kept: the next bearer comes from it.
    async fn invalidate(&self, seen: &Arc<SecretString>) {
        let mut cached = self.vendor_token.lock().await;
        if let Some(VendorToken::Valid {
            token, refresh_at, ..
        }) = cached.as_mut()
            && Arc::ptr_eq(token, seen)
        {
            *refresh_at = Instant::now();
        }
    }

    /// A fresh bearer: vendor authentication, or for a user-token environment a refresh of the
    /// user JWT (falling back to a new exchange when the refresh token is refused).
    async fn authenticate(
        &self,
        refresh: Option<SecretString>,
    ) -> Result<Authenticated, IdentityError> {
        if self.env.auth == AuthMode::UserApiToken {
            if let Some(refresh) = refresh {
                match self.user_jwt(Some(&refresh)).await {
                    Err(IdentityError::Unauthorized | IdentityError::Invalid { .. }) => {
                        tracing::debug!(
                            "the refresh token was refused; exchanging the API token again"
                        );
                    }
                    other => return other,
                }
            }
            return self.user_jwt(None).await;
        }
        let url = format!("{}/auth/vendor", self.env.base_url);
        let body = VendorAuthRequest {
            client_id: &self.env.client_id,
            secret: self.env.secret.expose_secret(),
        };
        let answer = self
            .with_retries(
                "POST vendor-auth",
                true,
                true,
                self.turn(Priority::Interactive),
                || async {
                    let req = self.http.post(&url).json(&body);
                    self.send_once("POST vendor-auth", req)
                        .await
                        .map_err(Retry::Fail)
                },
            )
            .await?;
        let resp: VendorAuthResponse = decode_answer(&answer)?;
        Ok(Authenticated {
            token: resp.token,
            lifetime: token_lifetime(resp.expires_in)?,
            refresh: None,
        })
    }

    /// Exchanges the environment's user API token (or refreshes its JWT) and records whom the
    /// JWT speaks for.
    async fn user_jwt(
        &self,
        refresh: Option<&SecretString>,
    ) -> Result<Authenticated, IdentityError> {
        let (endpoint, url, body) = match refresh {
            Some(r) => (
                "POST api-token-refresh",
                format!(
                    "{}/identity/resources/auth/v2/api-token/token/refresh",
                    self.env.base_url
                ),
                serde_json::json!({ "refreshToken": r.expose_secret() }),
            ),
            None => (
                "POST api-token-auth",
                format!("{}/identity/resources/auth/v2/api-token", self.env.base_url),
                serde_json::json!({
                    "clientId": self.env.client_id,
                    "secret": self.env.secret.expose_secret(),
                }),
            ),
        };
        // Each exchange or refresh opens a refresh token: never repeated in place unless it
        // never left this process.
        let answer = self
            .with_retries(
                endpoint,
                false,
                true,
                self.turn(Priority::Interactive),
                || async {
                    let req = self.http.post(&url).json(&body);
                    self.send_once(endpoint, req).await.map_err(Retry::Fail)
                },
            )
            .await?;
        let resp: ApiTokenAuthResponse = decode_answer(&answer)?;
        let identity = jwt_identity(&resp.access_token).ok_or_else(|| {
            IdentityError::Decode("the user JWT has no sub and tenantId claims".into())
        })?;
        if let Ok(mut current) = self.identity.lock() {
            *current = Some(identity);
        }
        Ok(Authenticated {
            token: resp.access_token,
            lifetime: token_lifetime(resp.expires_in)?,
            refresh: Some(resp.refresh_token),
        })
    }

    /// Waits for the 429 gate and a turn of the budget, each at most the turn's wait.
    async fn wait_for_turn(&self, turn: Turn) -> Result<(), IdentityError> {
        let bound = turn.max_wait;
        let gate = self.rate_gate.lock().ok().and_then(|g| *g);
        let mut waited = Duration::ZERO;
        if let Some(reset) = gate {
            let wait = duration_until(reset);
            if wait > bound {
                return Err(IdentityError::RateLimited { reset });
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                waited = wait;
            }
        }
        let queued = self
            .budget
            .acquire(turn.priority, bound)
            .await
            .map_err(|_| {
                throttled("the environment's request budget is taken by more urgent work")
            })?;
        waited = waited.saturating_add(queued);
        if let Some(observer) = &self.observer {
            observer.scheduled(turn.priority, queued);
            if waited >= Duration::from_millis(1) {
                observer.rate_limited_wait(waited);
            }
        }
        Ok(())
    }

    fn close_gate(&self, reset: Timestamp) {
        if let Ok(mut gate) = self.rate_gate.lock() {
            *gate = Some(gate.map_or(reset, |current| current.max(reset)));
        }
    }
}

fn throttled(why: &str) -> IdentityError {
    IdentityError::Throttled(why.into())
}

/// Outcome of one attempt inside `with_retries`.
/// The retry budget of one request.
struct Attempts<B> {
    backoff: B,
    rate_limit_waits: usize,
    /// Whether the request may be sent again after it may have reached Frontegg.
    idempotent: bool,
}

enum Retry {
    /// Try again immediately (after a vendor token refresh).
    Now,
    /// Getting a vendor token failed; already retried and accounted for.
    Auth(IdentityError),
    Fail(Failure),
}

impl From<IdentityError> for Retry {
    fn from(e: IdentityError) -> Self {
        Retry::Fail(Failure::from(e))
    }
}

/// Decodes a successful answer, which must say it is JSON.
fn decode_answer<T: DeserializeOwned>(answer: &Answer) -> Result<T, IdentityError> {
    let content_type = answer
        .headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        return Err(IdentityError::Decode(format!(
            "the response is not JSON (content type {:?})",
            printable(content_type, 64)
        )));
    }
    decode(&answer.body)
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Decodes JSON. serde_json's own message quotes the offending value ("invalid type: string
/// \"...\""), which may be a token secret: keep only the category and position.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, IdentityError> {
    serde_json::from_slice(bytes).map_err(|e| {
        IdentityError::Decode(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Frontegg's `errors` messages go into conditions and Events: at most a few, short, and
/// without control characters, whatever the remote sends.
const MAX_ERROR_MESSAGES: usize = 3;
const MAX_ERROR_MESSAGE_CHARS: usize = 200;

fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    max_rate_limit_wait: Duration,
) -> IdentityError {
    let messages = || {
        serde_json::from_slice::<ErrorBody>(body)
            .map(|b| {
                b.errors
                    .into_iter()
                    .take(MAX_ERROR_MESSAGES)
                    .map(|v| match v {
                        serde_json::Value::String(s) => printable(&s, MAX_ERROR_MESSAGE_CHARS),
                        other => printable(&other.to_string(), MAX_ERROR_MESSAGE_CHARS),
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
            reset: rate_limit_reset(headers, Timestamp::now(), max_rate_limit_wait),
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

/// At most `max` characters of `text`, without control characters.
fn printable(text: &str, max: usize) -> String {
    text.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// When a 429 lifts, never more than `max_wait` ahead. Frontegg's live API sends
/// `X-Rate-Limit-Reset` as an RFC 3339 time (the published OpenAPI does not document 429s);
/// `Retry-After` (seconds or HTTP date) is the standard fallback, and 60 s is assumed when
/// neither header is usable.
pub fn rate_limit_reset(headers: &HeaderMap, now: Timestamp, max_wait: Duration) -> Timestamp {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let after = |wait: Duration| now.checked_add(wait.min(max_wait)).unwrap_or(now);
    let latest = after(max_wait);
    let reset = if let Some(reset) =
        header("x-rate-limit-reset").and_then(|v| v.parse::<Timestamp>().ok())
    {
        reset
    } else if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<u64>() {
            after(Duration::from_secs(secs))
        } else if let Ok(date) = jiff::fmt::rfc2822::parse(value) {
            date.timestamp()
        } else {
            after(Duration::from_secs(60))
        }
    } else {
        after(Duration::from_secs(60))
    };
    reset.clamp(now, latest)
}

fn duration_until(t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
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
    } else if e.is_redirect() {
        "redirected"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!(
            "{kind}: {}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or(""),
            printable(url.path(), 200)
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
        let max = Duration::from_secs(900);
        let mut h = HeaderMap::new();
        assert_eq!(
            rate_limit_reset(&h, now, max),
            now + Duration::from_secs(60)
        );
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_reset(&h, now, max), now + Duration::from_secs(7));
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_static("2026-01-01T00:00:42Z"),
        );
        assert_eq!(
            rate_limit_reset(&h, now, max),
            "2026-01-01T00:00:42Z".parse().unwrap()
        );
        let mut h = HeaderMap::new();
        h.insert(
            "retry-after",
            HeaderValue::from_static("Thu, 01 Jan 2026 00:01:00 GMT"),
        );
        assert_eq!(
            rate_limit_reset(&h, now, max),
            "2026-01-01T00:01:00Z".parse().unwrap()
        );
    }

    #[test]
    fn absurd_rate_limit_resets_are_clamped() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let max = Duration::from_secs(900);
        for (name, value) in [
            ("retry-after", "999999999999"),
            ("retry-after", "18446744073709551615"),
            ("x-rate-limit-reset", "9999-12-30T00:00:00Z"),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            assert_eq!(rate_limit_reset(&h, now, max), now + max, "{name}: {value}");
        }
        let mut h = HeaderMap::new();
        h.insert(
            "x-rate-limit-reset",
            HeaderValue::from_static("1970-01-01T00:00:00Z"),
        );
        assert_eq!(
            rate_limit_reset(&h, now, max),
            now,
            "a reset in the past is now"
        );
    }

    #[test]
    fn errors_body_becomes_invalid_messages() {
        let max = Duration::from_secs(900);
        let e = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            br#"{"errors":["expiresInMinutes must not be greater than 5256000"]}"#,
            max,
        );
        assert_eq!(
            e,
            IdentityError::Invalid {
                messages: vec!["expiresInMinutes must not be greater than 5256000".into()]
            }
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"", max),
            IdentityError::Transient("HTTP 502".into())
        );
        // A hostile errors array is cut to a few short, printable messages.
        let long = format!(
            r#"{{"errors":["{}","b\u0007","c","d"]}}"#,
            "x".repeat(10_000)
        );
        let IdentityError::Invalid { messages } = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            long.as_bytes(),
            max,
        ) else {
            panic!("not Invalid");
        };
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0].len(), 200);
        assert_eq!(messages[1], "b");
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

    #[test]
    fn fuzz_response_decoding() {
        use crate::identity::*;
        use proptest::prelude::*;
        const MARKER: &str = "s3cr3t-marker-0123456789";
        let json_value = prop_oneof![
            Just(json_marker()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            Just("null".to_string()),
            "[a-zA-Z0-9 ]{0,12}".prop_map(|s| format!("\"{s}\"")),
        ];
        fn json_marker() -> String {
            format!("\"{MARKER}\"")
        }
        let field = prop::sample::select(vec![
            "clientId",
            "secret",
            "id",
            "accessToken",
            "accessTokens",
            "expires",
            "expiresIn",
            "token",
            "description",
            "errors",
            "roleIds",
            "metadata",
            "createdAt",
        ]);
        let object = prop::collection::vec((field, json_value), 0..8).prop_map(|fields| {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", body.join(","))
        });
        let bodies = prop_oneof![
            object.clone(),
            object.prop_map(|o| format!("[{o}]")),
            prop::collection::vec(any::<u8>(), 0..256)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            "[\\[\\]{}\":,0-9a-z .eE+-]{0,120}",
        ];
        let inputs = (bodies, any::<u16>(), "[ -~]{0,40}", "[ -~]{0,40}");
        let cases = crate::fuzz::fuzz_for(
            "response-decoding",
            inputs,
            crate::fuzz::BUDGET,
            |(body, status, retry_after, reset)| {
                let bytes = body.as_bytes();
                let quiet = |e: IdentityError| {
                    prop_assert!(!e.to_string().contains(MARKER), "{e}");
                    Ok(())
                };
                macro_rules! each {
                ($($t:ty),*) => {$(
                    if let Err(e) = decode::<$t>(bytes) { quiet(e)?; }
                )*};
            }
                each!(
                    CreatedUserApiToken,
                    Vec<ListedUserApiToken>,
                    CreatedTenantApiToken,
                    Vec<ListedTenantApiToken>,
                    CreatedAccessToken,
                    AccessTokenList,
                    VendorAuthResponse
                );
                let mut headers = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&retry_after) {
                    headers.insert("retry-after", v);
                }
                if let Ok(v) = HeaderValue::from_str(&reset) {
                    headers.insert("x-rate-limit-reset", v);
                }
                let now = Timestamp::now();
                let max = Duration::from_secs(900);
                let at = rate_limit_reset(&headers, now, max);
                prop_assert!(at >= now && at <= now + max);
                // Frontegg's own `errors` messages are shown by design, but only a few, short ones.
                if let Ok(status) = StatusCode::from_u16(status.clamp(100, 999)) {
                    let e = classify(status, &headers, bytes, max);
                    prop_assert!(e.to_string().chars().count() <= 700, "{e}");
                }
                Ok(())
            },
        );
        assert!(cases > 0);
    }

    #[test]
    fn jwt_claims_are_read_only_when_short_and_printable() {
        use base64::Engine;
        let jwt = |claims: serde_json::Value| {
            let payload =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
            SecretString::from(format!("e30.{payload}.sig"))
        };
        assert_eq!(
            jwt_identity(&jwt(serde_json::json!({"sub": "svc-1", "tenantId": "t1"}))),
            Some(UserIdentity {
                user_id: "svc-1".into(),
                tenant_id: "t1".into()
            })
        );
        for bad in [
            serde_json::json!({"sub": "x".repeat(257), "tenantId": "t1"}),
            serde_json::json!({"sub": "svc\n1", "tenantId": "t1"}),
            serde_json::json!({"sub": "", "tenantId": "t1"}),
            serde_json::json!({"sub": 5, "tenantId": "t1"}),
            serde_json::json!({"sub": "svc-1"}),
        ] {
            assert_eq!(jwt_identity(&jwt(bad.clone())), None, "{bad}");
        }
        assert_eq!(jwt_identity(&SecretString::from("not-a-jwt")), None);
    }
}
