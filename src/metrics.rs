//! Prometheus metrics (served at `/metrics`).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::identity::{Priority, RequestObserver};

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
pub struct EnvironmentLabels {
    pub kind: String,
    /// Empty for a ClusterFronteggEnvironment.
    pub namespace: String,
    pub name: String,
}

/// An environment (its key, as in `environment_ready`'s tokens: `FronteggEnvironment/ns/name`
/// or `ClusterFronteggEnvironment/name`) and a token kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeakLabels {
    pub environment: String,
    pub kind: String,
}

/// One environment, by its key (as in `LeakLabels`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EnvironmentKeyLabels {
    pub environment: String,
}

/// A priority of the Frontegg budget: urgent, interactive or background.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PriorityLabels {
    pub priority: String,
}

type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

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
    pub issued: Family<KindLabels, Counter>,
    pub rotations: Family<KindLabels, Counter>,
    pub revocations: Family<KindLabels, Counter>,
    pub orphaned: Family<KindLabels, Counter>,
    pub reconcile_panics: Family<KindLabels, Counter>,
    pub revocation_failures: Family<KindLabels, Counter>,
    pub environment_ready: Family<EnvironmentLabels, Gauge>,
    pub leaked_remote_tokens: Family<LeakLabels, Gauge>,
    pub access_token_refreshes: Family<KindActionLabels, Counter>,
    pub remote_drift: Family<KindActionLabels, Counter>,
    pub imported: Family<KindLabels, Counter>,
    pub budget_turns: Family<PriorityLabels, Counter>,
    pub budget_wait_seconds: Family<PriorityLabels, FloatCounter>,
    pub drift_period_seconds: Family<EnvironmentKeyLabels, Gauge>,
    pub drift_groups: Family<EnvironmentKeyLabels, Gauge>,
    pub budget_used_percent: Family<EnvironmentKeyLabels, Gauge>,
    /// Where the per-token series come from at scrape time (the token caches).
    token_sources: Arc<TokenSeries>,
    /// Every family whose size does not grow with the number of tokens.
    registry: Registry,
    /// The per-token families alone, which a scrape streams (`crate::server`): a page of
    /// 20,000 tokens' series is about 8 MiB, and the process would hold it whole at each scrape.
    token_registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            reconciles: Family::default(),
            reconcile_duration: Family::new_with_constructor(latency_histogram),
            identity_requests: Family::default(),
            identity_latency: Family::new_with_constructor(latency_histogram),
            rate_limiter_waits: Counter::default(),
            rate_limiter_wait_seconds: Counter::default(),
            issued: Family::default(),
            rotations: Family::default(),
            revocations: Family::default(),
            orphaned: Family::default(),
            reconcile_panics: Family::default(),
            revocation_failures: Family::default(),
            environment_ready: Family::default(),
            leaked_remote_tokens: Family::default(),
            access_token_refreshes: Family::default(),
            remote_drift: Family::default(),
            imported: Family::default(),
            budget_turns: Family::default(),
            budget_wait_seconds: Family::default(),
            drift_period_seconds: Family::default(),
            drift_groups: Family::default(),
            budget_used_percent: Family::default(),
            token_sources: Arc::default(),
            registry: Registry::default(),
            token_registry: Registry::default(),
        };
        let registry = m.registered();
        let mut token_registry = Registry::with_prefix("frontegg_token_operator");
        token_registry.register_collector(Box::new(m.token_sources.clone()));
        m.start_at_zero();
        Metrics {
            registry,
            token_registry,
            ..m
        }
    }

    /// The registry of every family but the per-token ones.
    fn registered(&self) -> Registry {
        let mut registry = Registry::with_prefix("frontegg_token_operator");
        let r = &mut registry;
        r.register(
            "reconciles",
            "Reconciles by kind and result",
            self.reconciles.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Reconcile duration by kind",
            self.reconcile_duration.clone(),
        );
        r.register(
            "identity_requests",
            "Frontegg API requests by endpoint and status",
            self.identity_requests.clone(),
        );
        r.register(
            "identity_request_duration_seconds",
            "Frontegg API request latency",
            self.identity_latency.clone(),
        );
        r.register(
            "rate_limiter_waits",
            "Requests delayed by the client-side rate limiter or a 429 gate",
            self.rate_limiter_waits.clone(),
        );
        r.register(
            "rate_limiter_wait_seconds",
            "Time spent waiting for the rate limiter",
            self.rate_limiter_wait_seconds.clone(),
        );
        self.register_outcomes(r);
        self.register_budget(r);
        registry
    }

    /// How each environment's request budget is shared, and how its drift checks keep up.
    fn register_budget(&self, r: &mut Registry) {
        r.register(
            "budget_turns",
            "Turns of the Frontegg request budgets given, by priority (urgent, interactive, background)",
            self.budget_turns.clone(),
        );
        r.register(
            "budget_wait_seconds",
            "Time requests waited for a turn of the Frontegg request budget, by priority",
            self.budget_wait_seconds.clone(),
        );
        r.register(
            "drift_period_seconds",
            "The drift period an environment's background listings achieve",
            self.drift_period_seconds.clone(),
        );
        r.register(
            "drift_groups",
            "Groups (kind, tenant, user) an environment's drift checks list",
            self.drift_groups.clone(),
        );
        r.register(
            "budget_used_percent",
            "Percent of an environment's request budget used between two health checks",
            self.budget_used_percent.clone(),
        );
        for p in Priority::ALL {
            let labels = PriorityLabels {
                priority: p.as_str().into(),
            };
            drop(self.budget_turns.get_or_create(&labels));
            drop(self.budget_wait_seconds.get_or_create(&labels));
        }
    }

    /// What happened to tokens and environments, in the page's order.
    fn register_outcomes(&self, r: &mut Registry) {
        r.register(
            "tokens_issued",
            "Remote tokens created",
            self.issued.clone(),
        );
        r.register(
            "token_rotations",
            "Tokens replaced by a new one (rotation or repair)",
            self.rotations.clone(),
        );
        r.register(
            "token_revocations",
            "Remote tokens revoked",
            self.revocations.clone(),
        );
        r.register(
            "tokens_orphaned",
            "Tokens left in place on deletion (deletionPolicy Orphan)",
            self.orphaned.clone(),
        );
        r.register(
            "reconcile_panics",
            "Reconciles that panicked (an operator bug), caught and reported as InternalError",
            self.reconcile_panics.clone(),
        );
        r.register(
            "revocation_failures",
            "Revocations that Frontegg refused or that failed (retried; the token stays pending)",
            self.revocation_failures.clone(),
        );
        r.register(
            "environment_ready",
            "1 while an environment authenticates, 0 while it does not",
            self.environment_ready.clone(),
        );
        r.register(
            "leaked_remote_tokens",
            "Remote tokens this installation created whose resource no longer exists (a finalizer removed by hand), by environment and kind",
            self.leaked_remote_tokens.clone(),
        );
        r.register(
            "access_token_refreshes",
            "JWTs delivered into Secrets, by kind and action (refresh: from a refresh token; exchange: from the client credentials)",
            self.access_token_refreshes.clone(),
        );
        r.register(
            "remote_drift",
            "Remote tokens found changed outside the operator, by kind and action (repaired, reported, reissued)",
            self.remote_drift.clone(),
        );
        r.register(
            "tokens_imported",
            "Existing remote tokens taken over with spec.import",
            self.imported.clone(),
        );
    }

    /// Per-kind counters start at 0: an alert on increase() sees the first failure only
    /// against a series that already existed, and a scrape shows every name from the start.
    fn start_at_zero(&self) {
        for kind in [
            "UserApiToken",
            "UserAccessToken",
            "TenantApiToken",
            "TenantAccessToken",
        ] {
            let kind = Metrics::kind(kind);
            for family in [
                &self.issued,
                &self.rotations,
                &self.revocations,
                &self.orphaned,
                &self.reconcile_panics,
                &self.revocation_failures,
                &self.imported,
            ] {
                drop(family.get_or_create(&kind));
            }
            for (family, actions) in [
                (
                    &self.remote_drift,
                    &["repaired", "reported", "reissued"][..],
                ),
                (&self.access_token_refreshes, &["refresh", "exchange"][..]),
            ] {
                for action in actions {
                    drop(family.get_or_create(&Metrics::kind_action(&kind.kind, action)));
                }
            }
        }
    }

    /// The whole page at once, which the tests compare the streamed page with; `/metrics`
    /// itself streams it (`crate::server`).
    #[cfg(test)]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if self
            .encode_head(&mut out)
            .and_then(|()| self.encode_tokens(&mut out))
            .is_err()
        {
            out.clear();
        }
        out
    }

    /// The page's first part, whose size does not grow with the number of tokens.
    pub fn encode_head(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
    }

    /// The rest of the page: the per-token families, read from the caches as they are
    /// written, then the end marker. It takes no lock that a reconcile waits on, so a
    /// client that reads it slowly holds up nothing but itself.
    pub fn encode_tokens(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &self.token_registry)?;
        prometheus_client::encoding::text::encode_eof(out)
    }

    /// Adds a source of per-token series: a scrape reads the token caches themselves, so
    /// that the series cost no memory of their own and leave with the resource.
    pub fn add_token_source(&self, source: Arc<dyn TokenSource>) {
        if let Ok(mut sources) = self.token_sources.sources.write() {
            sources.push(source);
        }
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

    fn scheduled(&self, priority: Priority, waited: Duration) {
        let labels = PriorityLabels {
            priority: priority.as_str().into(),
        };
        self.budget_turns.get_or_create(&labels).inc();
        self.budget_wait_seconds
            .get_or_create(&labels)
            .inc_by(waited.as_secs_f64());
    }
}

/// What a scrape reads of one token resource.
#[derive(Debug, Default)]
pub struct TokenSample<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    /// The environment key of a resource that holds a live token (None: it holds none).
    pub managed_in: Option<String>,
    pub expiry: Option<i64>,
    pub next_renewal: Option<i64>,
    /// Superseded tokens awaiting revocation, for a resource that manages a token.
    pub pending_revocations: Option<usize>,
    /// Whether an observed token exists, for managementPolicy Observe.
    pub observed_exists: Option<bool>,
}

/// A set of token resources whose series a scrape encodes.
pub trait TokenSource: Send + Sync {
    fn visit(&self, f: &mut dyn FnMut(&TokenSample<'_>));
}

#[derive(Default)]
struct TokenSeries {
    sources: RwLock<Vec<Arc<dyn TokenSource>>>,
}

impl std::fmt::Debug for TokenSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSeries")
    }
}

type Gauge64 = prometheus_client::metrics::gauge::ConstGauge<i64>;

impl TokenSeries {
    fn each(&self, f: &mut dyn FnMut(&TokenSample<'_>)) {
        // A copy of the list, so that a stalled scrape never holds the lock.
        let sources = match self.sources.read() {
            Ok(sources) => sources.clone(),
            Err(_) => return,
        };
        for source in &sources {
            source.visit(f);
        }
    }

    /// One gauge family over every token `value` gives a value for.
    fn gauge(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: fn(&TokenSample<'_>) -> Option<i64>,
    ) -> Result<(), std::fmt::Error> {
        let mut family =
            encoder.encode_descriptor(name, help, None, Gauge64::new(0).metric_type())?;
        let mut result = Ok(());
        self.each(&mut |t| {
            if let (Some(v), Ok(())) = (value(t), &result) {
                let labels = [
                    ("kind", t.kind),
                    ("namespace", t.namespace),
                    ("name", t.name),
                ];
                result = family
                    .encode_family(&labels)
                    .and_then(|m| Gauge64::new(v).encode(m));
            }
        });
        result
    }
}

impl Collector for TokenSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut managed: BTreeMap<(String, String), i64> = BTreeMap::new();
        self.each(&mut |t| {
            if let Some(env) = &t.managed_in {
                let n = managed
                    .entry((t.kind.to_string(), env.clone()))
                    .or_default();
                *n = n.saturating_add(1);
            }
        });
        let mut family = encoder.encode_descriptor(
            "tokens_managed",
            "Token resources with a live remote token, by kind and environment",
            None,
            Gauge64::new(0).metric_type(),
        )?;
        for ((kind, environment), n) in &managed {
            let labels = [
                ("kind", kind.as_str()),
                ("environment", environment.as_str()),
            ];
            Gauge64::new(*n).encode(family.encode_family(&labels)?)?;
        }
        self.gauge(
            &mut encoder,
            "token_expiry_timestamp_seconds",
            "Expiry of each managed or observed token (Unix seconds)",
            |t| t.expiry,
        )?;
        self.gauge(
            &mut encoder,
            "token_next_renewal_timestamp_seconds",
            "When each managed token will be replaced (Unix seconds)",
            |t| t.next_renewal,
        )?;
        self.gauge(
            &mut encoder,
            "pending_revocations",
            "Superseded tokens still awaiting revocation",
            |t| {
                t.pending_revocations
                    .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            },
        )?;
        self.gauge(
            &mut encoder,
            "observed_token_exists",
            "1 while a token watched with managementPolicy Observe exists in Frontegg, 0 while it does not",
            |t| t.observed_exists.map(i64::from),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(
        Vec<(
            &'static str,
            &'static str,
            Option<&'static str>,
            Option<i64>,
        )>,
    );

    impl TokenSource for Fixed {
        fn visit(&self, f: &mut dyn FnMut(&TokenSample<'_>)) {
            for (kind, name, env, expiry) in &self.0 {
                f(&TokenSample {
                    kind,
                    namespace: "ns",
                    name,
                    managed_in: env.map(String::from),
                    expiry: *expiry,
                    pending_revocations: env.map(|_| 0),
                    observed_exists: env.is_none().then_some(false),
                    ..TokenSample::default()
                });
            }
        }
    }

    #[test]
    fn per_token_series_are_read_from_the_sources_at_scrape_time() {
        let metrics = Metrics::new();
        let before = metrics.encode();
        assert!(
            !before.contains("kind=\"UserApiToken\",namespace"),
            "{before}"
        );
        metrics.add_token_source(Arc::new(Fixed(vec![
            (
                "UserApiToken",
                "a",
                Some("ClusterFronteggEnvironment/e"),
                Some(100),
            ),
            (
                "UserApiToken",
                "b",
                Some("ClusterFronteggEnvironment/e"),
                None,
            ),
            ("UserAccessToken", "w", None, Some(7)),
        ])));
        let text = metrics.encode();
        let p = "frontegg_token_operator_";
        for line in [
            format!(
                "{p}tokens_managed{{kind=\"UserApiToken\",environment=\"ClusterFronteggEnvironment/e\"}} 2"
            ),
            format!(
                "{p}token_expiry_timestamp_seconds{{kind=\"UserApiToken\",namespace=\"ns\",name=\"a\"}} 100"
            ),
            format!(
                "{p}token_expiry_timestamp_seconds{{kind=\"UserAccessToken\",namespace=\"ns\",name=\"w\"}} 7"
            ),
            format!(
                "{p}pending_revocations{{kind=\"UserApiToken\",namespace=\"ns\",name=\"b\"}} 0"
            ),
            format!(
                "{p}observed_token_exists{{kind=\"UserAccessToken\",namespace=\"ns\",name=\"w\"}} 0"
            ),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        assert!(
            !text.lines().any(|l| l.starts_with(&format!("{p}token_expiry_timestamp_seconds{{kind=\"UserApiToken\",namespace=\"ns\",name=\"b\""))),
            "no expiry series for a token without one: {text}"
        );
        assert_eq!(
            text.matches("# TYPE frontegg_token_operator_tokens_managed gauge")
                .count(),
            1
        );
    }
}
