//! The `Context` every reconcile gets, and the operator's settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::caches::Caches;
use super::events::EventPublisher;
use super::holders::Reported;
use super::jitter::jitter;
use super::leaks::Leaks;
use super::listings::DriftCache;
use super::registry::ClientRegistry;
use super::shares::WorkerShares;
use super::throttle::IssueThrottle;
use crate::api::EnvironmentRef;
use crate::controller::secret::sessions::JwtSessions;
use crate::metrics::{EnvironmentLabels, Metrics};

/// Operator settings (flags and environment variables).
#[derive(Clone, Debug)]
pub struct Config {
    /// Where ClusterFronteggEnvironment credentials Secrets live.
    pub operator_namespace: String,
    /// Environment for tokens without spec.environmentRef.
    pub default_environment: EnvironmentRef,
    /// Drift check and steady-state requeue period.
    pub resync: Duration,
    /// How long a permanently failed resource waits before a retry without any change.
    pub permanent_retry: Duration,
    /// How often an environment whose credentials fail is checked again.
    pub environment_retry: Duration,
    pub qps: u32,
    pub burst: u32,
    pub request_timeout: Duration,
    /// At most one remote create per resource per this interval.
    pub min_reissue_interval: Duration,
    /// The longest wait between failed issuances of one resource (they double from
    /// `min_reissue_interval`).
    pub max_reissue_backoff: Duration,
    /// How long a replaced token keeps working, unless the resource says otherwise.
    pub grace_period: Duration,
    /// Globs over `scheme://host[:port]` that an environment's base URL must match.
    pub allowed_base_urls: Vec<String>,
    /// The label selector of the ClusterFronteggEnvironments this instance serves.
    pub cluster_environment_selector: Option<String>,
    /// This installation, in the mark of every token it creates (`steps::marker`); `None`
    /// when the cluster's identity could not be read, and then no token is taken for leaked.
    pub installation_id: Option<String>,
    /// Revoke leaked tokens (marked by this installation, their resource gone), not only
    /// report them.
    pub collect_leaked_tokens: bool,
    /// Concurrent reconciles per kind: what each environment gets a share of.
    pub concurrency: u16,
}

/// Everything a reconcile needs, shared by all controllers.
pub struct Context {
    pub client: kube::Client,
    pub events: EventPublisher,
    pub clients: ClientRegistry,
    pub drift: DriftCache,
    pub throttle: IssueThrottle,
    /// Each environment's share of the reconcile workers.
    pub shares: WorkerShares,
    /// Refresh tokens of the JWTs delivered into Secrets.
    pub jwt: JwtSessions,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// Environments, namespace labels and credentials Secrets, served from watches.
    pub caches: Caches,
    /// Leaked tokens the group listings found.
    pub leaks: Leaks,
    /// The in-use Events sent for credentials Secrets being deleted.
    pub reported: Reported,
    /// Environments with an environment_ready series, so that deleted ones lose theirs.
    pub environments_seen: Mutex<std::collections::HashSet<EnvironmentLabels>>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: kube::Client,
        events: EventPublisher,
        config: Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        Context {
            client,
            events,
            clients: ClientRegistry::default(),
            drift: DriftCache::default(),
            throttle: IssueThrottle::default(),
            shares: WorkerShares::default(),
            jwt: JwtSessions::default(),
            config,
            metrics,
            caches: Caches::default(),
            leaks: Leaks::default(),
            reported: Reported::default(),
            environments_seen: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Exponential per-resource backoff for transient failures: 1s, 2s, 4s ... 5 min.
    pub fn next_backoff(&self, key: &str) -> Duration {
        let n = self
            .failures
            .lock()
            .map(|mut f| {
                let n = f.entry(key.to_string()).or_default();
                *n = n.saturating_add(1);
                *n
            })
            .unwrap_or(1);
        let base = Duration::from_secs(1).saturating_mul(1u32 << n.saturating_sub(1).min(9));
        base.min(Duration::from_secs(300)).mul_f64(jitter(0.8, 1.2))
    }

    /// Forgets everything kept in memory about a deleted resource.
    pub fn forget(&self, key: &str, uid: Option<&str>) {
        self.reset_backoff(key);
        if let Some(uid) = uid {
            self.throttle.forget(uid);
        }
    }

    pub fn reset_backoff(&self, key: &str) {
        if let Ok(mut f) = self.failures.lock() {
            f.remove(key);
        }
    }
}
