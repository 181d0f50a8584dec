//! Prometheus metrics (served at `/metrics`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::identity::RequestObserver;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

/// A per-kind count split by what happened (`method` of a JWT refresh, `action` on drift).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindActionLabels {
    pub kind: String,
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ManagedLabels {
    pub kind: String,
    pub environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentLabels {
    pub kind: String,
    /// Empty for a ClusterFronteggEnvironment.
    pub namespace: String,
    pub name: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_duration: HistogramFamily<KindLabels>,
    pub identity_requests: Family<RequestLabels, Counter>,
    pub identity_latency: HistogramFamily<EndpointLabels>,
    pub rate_limiter_waits: Counter,
    pub rate_limiter_wait_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    pub tokens_managed: Family<ManagedLabels, Gauge>,
    pub token_expiry: Family<TokenLabels, Gauge>,
    pub next_renewal: Family<TokenLabels, Gauge>,
    pub issued: Family<KindLabels, Counter>,
    pub rotations: Family<KindLabels, Counter>,
    pub revocations: Family<KindLabels, Counter>,
    pub orphaned: Family<KindLabels, Counter>,
    pub pending_revocations: Family<TokenLabels, Gauge>,
    pub reconcile_panics: Family<KindLabels, Counter>,
    pub revocation_failures: Family<KindLabels, Counter>,
    pub environment_ready: Family<EnvironmentLabels, Gauge>,
    pub access_token_refreshes: Family<KindActionLabels, Counter>,
    pub remote_drift: Family<KindActionLabels, Counter>,
    pub imported: Family<KindLabels, Counter>,
    pub observed_exists: Family<TokenLabels, Gauge>,
    registry: Registry,
    /// The size of the last scrape: the next one starts with that much room, so a page of
    /// 20,000 tokens' series is not grown by doubling, holding old and new copies at once.
    last_scrape_bytes: AtomicUsize,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("frontegg_token_operator");
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(latency_histogram),
            identity_requests: Family::default(),
            identity_latency: Family::new_with_constructor(latency_histogram),
            rate_limiter_waits: Counter::default(),
            rate_limiter_wait_seconds: Counter::default(),
            tokens_managed: Family::default(),
            token_expiry: Family::default(),
            next_renewal: Family::default(),
            issued: Family::default(),
            rotations: Family::default(),
            revocations: Family::default(),
            orphaned: Family::default(),
            pending_revocations: Family::default(),
            reconcile_panics: Family::default(),
            revocation_failures: Family::default(),
            environment_ready: Family::default(),
            access_token_refreshes: Family::default(),
            remote_drift: Family::default(),
            imported: Family::default(),
            observed_exists: Family::default(),
            registry: Registry::default(),
            last_scrape_bytes: AtomicUsize::new(0),
        };
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "identity_requests",
            "Frontegg API requests by endpoint and status",
            m.identity_requests.clone(),
        );
        registry.register(
            "identity_request_duration_seconds",
            "Frontegg API request latency",
            m.identity_latency.clone(),
        );
        registry.register(
            "rate_limiter_waits",
            "Requests delayed by the client-side rate limiter or a 429 gate",
            m.rate_limiter_waits.clone(),
        );
        registry.register(
            "rate_limiter_wait_seconds",
            "Time spent waiting for the rate limiter",
            m.rate_limiter_wait_seconds.clone(),
        );
        registry.register(
            "tokens_managed",
            "Token resources with a live remote token, by kind and environment",
            m.tokens_managed.clone(),
        );
        registry.register(
            "token_expiry_timestamp_seconds",
            "Expiry of each managed token (Unix seconds)",
            m.token_expiry.clone(),
        );
        registry.register(
            "token_next_renewal_timestamp_seconds",
            "When each managed token will be replaced (Unix seconds)",
            m.next_renewal.clone(),
        );
        registry.register("tokens_issued", "Remote tokens created", m.issued.clone());
        registry.register(
            "token_rotations",
            "Tokens replaced by a new one (rotation or repair)",
            m.rotations.clone(),
        );
        registry.register(
            "token_revocations",
            "Remote tokens revoked",
            m.revocations.clone(),
        );
        registry.register(
            "tokens_orphaned",
            "Tokens left in place on deletion (deletionPolicy Orphan)",
            m.orphaned.clone(),
        );
        registry.register(
            "pending_revocations",
            "Superseded tokens still awaiting revocation",
            m.pending_revocations.clone(),
        );
        registry.register(
            "reconcile_panics",
            "Reconciles that panicked (an operator bug), caught and reported as InternalError",
            m.reconcile_panics.clone(),
        );
        registry.register(
            "revocation_failures",
            "Revocations that Frontegg refused or that failed (retried; the token stays pending)",
            m.revocation_failures.clone(),
        );
        registry.register(
            "environment_ready",
            "1 while an environment authenticates, 0 while it does not",
            m.environment_ready.clone(),
        );
        registry.register(
            "access_token_refreshes",
            "JWTs delivered into Secrets, by kind and action (refresh: from a refresh token; exchange: from the client credentials)",
            m.access_token_refreshes.clone(),
        );
        registry.register(
            "remote_drift",
            "Remote tokens found changed outside the operator, by kind and action (repaired, reported, reissued)",
            m.remote_drift.clone(),
        );
        registry.register(
            "tokens_imported",
            "Existing remote tokens taken over with spec.import",
            m.imported.clone(),
        );
        registry.register(
            "observed_token_exists",
            "1 while a token watched with managementPolicy Observe exists in Frontegg, 0 while it does not",
            m.observed_exists.clone(),
        );
        // Per-kind counters start at 0: an alert on increase() sees the first failure only
        // against a series that already existed, and a scrape shows every name from the start.
        for kind in [
            "UserApiToken",
            "UserAccessToken",
            "TenantApiToken",
            "TenantAccessToken",
        ] {
            let kind = Metrics::kind(kind);
            for family in [
                &m.issued,
                &m.rotations,
                &m.revocations,
                &m.orphaned,
                &m.reconcile_panics,
                &m.revocation_failures,
                &m.imported,
            ] {
                drop(family.get_or_create(&kind));
            }
            for (family, actions) in [
                (&m.remote_drift, &["repaired", "reported", "reissued"][..]),
                (&m.access_token_refreshes, &["refresh", "exchange"][..]),
            ] {
                for action in actions {
                    drop(family.get_or_create(&Metrics::kind_action(&kind.kind, action)));
                }
            }
        }
        Metrics { registry, ..m }
    }

    pub fn encode(&self) -> String {
        let room = self.last_scrape_bytes.load(Ordering::Relaxed);
        let mut out = String::with_capacity(room.saturating_add(room / 16));
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        self.last_scrape_bytes.store(out.len(), Ordering::Relaxed);
        out
    }

    pub fn kind_action(kind: &str, action: &str) -> KindActionLabels {
        KindActionLabels {
            kind: kind.to_string(),
            action: action.to_string(),
        }
    }

    pub fn kind(kind: &str) -> KindLabels {
        KindLabels {
            kind: kind.to_string(),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestObserver for Metrics {
    fn request(&self, endpoint: &str, status: &str, latency: Duration) {
        self.identity_requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.identity_latency
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_string(),
            })
            .observe(latency.as_secs_f64());
    }

    fn rate_limited_wait(&self, waited: Duration) {
        self.rate_limiter_waits.inc();
        self.rate_limiter_wait_seconds.inc_by(waited.as_secs_f64());
    }
}
