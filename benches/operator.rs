//! One measurement of the operator itself (release build) on a real control plane with the
//! Frontegg fake. `hack/bench` starts a fresh control plane with `--audit` for each
//! measurement, runs this, and aggregates the medians into docs/benchmarks.md.
//!
//! It prints one JSON object: the apiserver's raw create rate (the ceiling), issuance time,
//! the operator's own Kubernetes requests per token from the audit log (its user is
//! `frontegg-token-operator`), identity calls per token from the fake, peak RSS and CPU, the
//! CR→Secret latency at a 10/s trickle, and optionally the steady state, a restart and a
//! rate-limited remote.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[path = "operator/budget.rs"]
mod budget;

const NAMESPACES: usize = 50;
const CLIENTS: usize = 16;
const OPERATOR_NS: &str = "fto-system";
const KINDS: [(&str, &str); 4] = [
    ("UserApiToken", "userapitokens"),
    ("UserAccessToken", "useraccesstokens"),
    ("TenantApiToken", "tenantapitokens"),
    ("TenantAccessToken", "tenantaccesstokens"),
];

#[derive(Parser)]
struct Args {
    /// Token resources to issue, across 50 namespaces and the four kinds.
    #[arg(long, default_value_t = 1000)]
    tokens: usize,
    /// Foreign 2 KiB Secrets created before the operator starts.
    #[arg(long, default_value_t = 0)]
    foreign_secrets: usize,
    /// Tokens created at 10/s afterwards, for the CR→Secret latency.
    #[arg(long, default_value_t = 200)]
    trickle: usize,
    /// Measure 3 resync periods of steady state.
    #[arg(long)]
    steady: bool,
    /// Restart the operator and measure its way back.
    #[arg(long)]
    restart: bool,
    /// The fake answers 429 above this many requests per second (0: no limit); the
    /// environment's client-side limit is set to the same rate.
    #[arg(long, default_value_t = 0)]
    remote_qps: u32,
    /// The restarted operator's resync period, over 3 of which the steady state is measured
    /// (issuance runs with the default 5m).
    #[arg(long, default_value_t = 20)]
    resync_secs: u64,
    /// The operator's --concurrency (reconciles per kind at once).
    #[arg(long, default_value_t = 4)]
    concurrency: u16,
    /// API tokens with `spec.secret.accessToken`, created after the rest, whose JWT refreshes
    /// are measured over 3 JWT lifetimes (0: none).
    #[arg(long, default_value_t = 0)]
    jwt_tokens: usize,
    /// The fake's JWT lifetime for that measurement; the tokens refresh a third of it early.
    #[arg(long, default_value_t = 60)]
    jwt_lifetime_secs: u64,
    /// ConfigMaps created to measure the apiserver's raw create rate.
    #[arg(long, default_value_t = 2000)]
    ceiling_objects: usize,
    /// The budget point instead of the rest: this many UserApiTokens of as many users (one
    /// drift group each) in one environment at the default qps, burst and resync; then 20
    /// new tokens and 10 requested rotations in that steady state (0: not this point).
    #[arg(long, default_value_t = 0)]
    budget_users: usize,
    /// Ignored: `cargo bench` passes it.
    #[arg(long, hide = true)]
    bench: bool,
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set; run make bench")),
    )
}

async fn client_from(path: &PathBuf) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    // The load generator must not be what limits the apiserver.
    config.read_timeout = Some(Duration::from_secs(60));
    kube::Client::try_from(config).expect("client")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn release_bin(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/release")
        .join(name)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Fake {
    url: String,
    http: reqwest::Client,
    _child: Killed,
}

impl Fake {
    async fn start(remote_qps: u32, jwt_lifetime_secs: u64) -> Fake {
        let port = free_port();
        let faults = json!({"qpsLimit": remote_qps}).to_string();
        let child = Command::new(release_bin("frontegg-fake"))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--client-id",
                "bench",
                "--user-jwt-lifetime-secs",
                &jwt_lifetime_secs.to_string(),
            ])
            .args(["--secret", "bench-vendor-secret", "--faults", &faults])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the release frontegg-fake (make release)");
        let fake = Fake {
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _child: Killed(child),
        };
        for _ in 0..100 {
            if fake.stats().await.is_some() {
                return fake;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the fake did not start");
    }

    async fn stats(&self) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}/_admin/stats", self.url))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    async fn reset(&self) {
        let url = format!("{}/_admin/reset-stats", self.url);
        self.http.post(url).send().await.expect("reset stats");
    }

    /// Calls of one "METHOD /route" since the last reset.
    async fn route(&self, route: &str) -> u64 {
        let s = self.stats().await.expect("stats");
        s["calls"][route].as_u64().unwrap_or(0)
    }

    /// (identity calls, creates, 429s) since the last reset.
    async fn counts(&self) -> (u64, u64, u64) {
        let s = self.stats().await.expect("stats");
        let calls = s["calls"].as_object().cloned().unwrap_or_default();
        let sum = |f: &dyn Fn(&str) -> bool| -> u64 {
            calls
                .iter()
                .filter(|(k, _)| f(k))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        };
        let identity = sum(&|k| k.contains(" /identity/"));
        let creates = sum(&|k| k.starts_with("POST /identity/resources/") && !k.contains("/auth/"));
        (
            identity,
            creates,
            s["statuses"]["429"].as_u64().unwrap_or(0),
        )
    }
}

struct Operator {
    child: Killed,
    metrics: String,
    log: PathBuf,
}

impl Operator {
    fn start(kubeconfig: &PathBuf, resync: u64, concurrency: u16, run: usize) -> Operator {
        let port = free_port();
        let log = std::env::temp_dir().join(format!(
            "fto-bench-operator-{}-{run}.log",
            std::process::id()
        ));
        // FTO_BENCH_OPERATOR_WRAPPER (e.g. "heaptrack -o /tmp/fto") runs the operator under a
        // profiler; that run's RSS and CPU figures are then the wrapper's, not the operator's.
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = match std::env::var("FTO_BENCH_OPERATOR_WRAPPER") {
            Ok(wrapper) if !wrapper.trim().is_empty() => {
                let mut parts = wrapper.split_whitespace();
                let mut c = Command::new(parts.next().unwrap());
                c.args(parts).arg(release_bin("frontegg-token-operator"));
                c
            }
            _ => Command::new(release_bin("frontegg-token-operator")),
        };
        let child = command
            .args(["run", "--operator-namespace", OPERATOR_NS])
            .args(["--default-environment", "ClusterFronteggEnvironment/bench"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            // One replica: lease renewals would be writes that say nothing about tokens.
            .args(["--leader-election", "false", "--log-format", "json"])
            .args(["--allowed-base-url", "http://127.0.0.1:*"])
            .args(["--resync-period", &format!("{resync}s")])
            .args(["--concurrency", &concurrency.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "warn")
            // The operator logs to stdout, a crash to stderr: both for "see the operator log".
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .expect("start the release operator (make release)");
        Operator {
            child: Killed(child),
            metrics: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    async fn wait_ready(&self) -> Duration {
        let t = Instant::now();
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.metrics)).await
                && r.status().is_success()
            {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < Duration::from_secs(120),
                "operator not ready; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.metrics))
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        let prefix = format!("frontegg_token_operator_{name}");
        text.lines()
            .filter(|l| l.starts_with(&prefix) && l[prefix.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// (VmHWM in KiB, CPU seconds).
    fn usage(&self) -> (u64, f64) {
        let pid = self.child.0.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let hwm = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after_comm = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = after_comm.split(' ').collect();
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        (hwm, ticks / clock_ticks())
    }

    fn stop(mut self) {
        // SIGTERM: the operator finishes in-flight work, as on a rolling restart.
        let _ = Command::new("kill")
            .arg(self.child.0.id().to_string())
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// CPU seconds a process has used so far (utime + stime).
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    Some(
        (fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
            / clock_ticks(),
    )
}

/// Where the machine's CPU went during a window: the control plane's processes (from
/// hack/control-plane's pid files), the fake and this load generator.
struct CpuProfile {
    pids: Vec<(&'static str, u32)>,
}

impl CpuProfile {
    fn new(fake: &Fake) -> CpuProfile {
        let mut pids = vec![
            ("benchmark client", std::process::id()),
            ("frontegg-fake", fake._child.0.id()),
        ];
        if let Ok(dir) = std::env::var("FTO_CP_DIR") {
            for name in ["kube-apiserver", "etcd"] {
                if let Some(pid) = std::fs::read_to_string(format!("{dir}/{name}.pid"))
                    .ok()
                    .and_then(|p| p.trim().parse().ok())
                {
                    pids.push((name, pid));
                }
            }
        }
        CpuProfile { pids }
    }

    fn sample(&self) -> BTreeMap<&'static str, f64> {
        self.pids
            .iter()
            .filter_map(|(n, p)| Some((*n, cpu_secs(*p)?)))
            .collect()
    }
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100.0)
}

/// The operator's requests in the audit log since `offset`: by "verb resource".
struct Audit {
    path: PathBuf,
}

impl Audit {
    fn len(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    fn since(&self, offset: u64) -> BTreeMap<String, u64> {
        let mut file = std::fs::File::open(&self.path).expect("audit log");
        file.seek(std::io::SeekFrom::Start(offset)).expect("seek");
        let mut counts = BTreeMap::new();
        for line in std::io::BufReader::new(file).lines() {
            let Ok(v) = serde_json::from_str::<Value>(&line.expect("line")) else {
                continue;
            };
            if v["stage"] != "ResponseComplete"
                || v["user"]["username"] != "frontegg-token-operator"
            {
                continue;
            }
            let resource = v["objectRef"]["resource"].as_str().unwrap_or("-");
            let sub = v["objectRef"]["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            // A server-side dry run is validated and discarded, never stored: not a write.
            let dry = if v["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("dryRun=All"))
            {
                "dry-run "
            } else {
                ""
            };
            *counts
                .entry(format!(
                    "{dry}{} {resource}{sub}",
                    v["verb"].as_str().unwrap_or("-")
                ))
                .or_insert(0) += 1;
        }
        counts
    }
}

fn is_write(key: &str) -> bool {
    ["create ", "update ", "patch ", "delete "]
        .iter()
        .any(|v| key.starts_with(v))
}

/// Writes other than Events, and Events, in a window of audit counts.
fn writes(counts: &BTreeMap<String, u64>) -> (u64, u64) {
    let of = |events: bool| {
        counts
            .iter()
            .filter(|(k, _)| is_write(k) && k.ends_with(" events") == events)
            .map(|(_, v)| v)
            .sum()
    };
    (of(false), of(true))
}

fn reads(counts: &BTreeMap<String, u64>) -> u64 {
    counts
        .iter()
        .filter(|(k, _)| k.starts_with("get ") || k.starts_with("list "))
        .map(|(_, v)| v)
        .sum()
}

fn api(client: &kube::Client, ns: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tokens.frontegg-operator.io", "v1alpha1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn token_manifest(i: usize, ns: &str, name: &str) -> (usize, Value) {
    let k = i % KINDS.len();
    let tenant = format!("t-{}", i % NAMESPACES);
    let mut spec = json!({"tenantId": tenant, "expiresIn": "720h"});
    if KINDS[k].0.starts_with("User") {
        spec["userId"] = json!(format!("u-{}", i % 20));
    }
    if KINDS[k].0.starts_with("Tenant") {
        spec["roleIds"] = json!(["role-bench"]);
    }
    let obj = json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": KINDS[k].0,
        "metadata": {"name": name, "namespace": ns}, "spec": spec});
    (k, obj)
}

async fn create_token(client: &kube::Client, i: usize, ns: &str, name: &str) {
    let (k, obj) = token_manifest(i, ns, name);
    let obj: DynamicObject = serde_json::from_value(obj).expect("object");
    api(client, ns, KINDS[k].0, KINDS[k].1)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create token");
}

async fn setup(client: &kube::Client, fake: &Fake, remote_qps: u32) {
    let nss: Vec<String> = std::iter::once(OPERATOR_NS.to_string())
        .chain((0..NAMESPACES).map(|i| format!("bench-{i}")))
        .chain(std::iter::once("bench-trickle".to_string()))
        .collect();
    let api_ns = Api::<Namespace>::all(client.clone());
    for ns in nss {
        let obj = serde_json::from_value(json!({"metadata": {"name": ns,
            "labels": {"fto-bench": "true"}}}))
        .unwrap();
        api_ns
            .create(&PostParams::default(), &obj)
            .await
            .expect("namespace");
    }
    let secret = serde_json::from_value(json!({"metadata": {"name": "bench-credentials",
        "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
        "stringData": {"clientId": "bench", "secret": "bench-vendor-secret"}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("credentials");
    // The client-side limit matches the remote one when there is one; otherwise it is set
    // out of the way, since issuance against the apiserver is what is measured. The budget
    // point (remote_qps = u32::MAX) keeps the operator's defaults.
    let rate = match remote_qps {
        u32::MAX => Value::Null,
        0 => json!({"qps": 1000, "burst": 1000}),
        qps => json!({"qps": qps, "burst": 1}),
    };
    let env: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "ClusterFronteggEnvironment",
        "metadata": {"name": "bench"},
        "spec": {"baseUrl": fake.url, "rateLimit": rate,
            "credentialsSecretRef": {"name": "bench-credentials", "namespace": OPERATOR_NS},
            "allowedNamespaces": {"selector": {"matchLabels": {"fto-bench": "true"}}}, "allowedTenants": ["*"]}}))
    .unwrap();
    let gvk = GroupVersionKind::gvk(
        "tokens.frontegg-operator.io",
        "v1alpha1",
        "ClusterFronteggEnvironment",
    );
    Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "clusterfronteggenvironments"),
    )
    .create(&PostParams::default(), &env)
    .await
    .expect("environment");
}

/// Creates `count` objects with CLIENTS concurrent requests; returns the elapsed time.
async fn create_concurrently<F, Fut>(count: usize, make: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let t = Instant::now();
    stream::iter(0..count)
        .map(make)
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await;
    t.elapsed()
}

async fn foreign_secrets(client: &kube::Client, count: usize) {
    let payload = "x".repeat(2048);
    create_concurrently(count, |i| {
        let (client, payload) = (client.clone(), payload.clone());
        async move {
            let ns = format!("bench-{}", i % NAMESPACES);
            let s = serde_json::from_value(json!({"metadata": {"name": format!("foreign-{i}")},
                "stringData": {"data": payload}}))
            .unwrap();
            Api::<Secret>::namespaced(client, &ns)
                .create(&PostParams::default(), &s)
                .await
                .expect("foreign secret");
        }
    })
    .await;
}

/// The apiserver's raw create rate for small objects, from a tight client.
async fn ceiling(client: &kube::Client, count: usize) -> f64 {
    let elapsed = create_concurrently(count, |i| {
        let client = client.clone();
        async move {
            let cm = serde_json::from_value(json!({"metadata": {"name": format!("ceiling-{i}")},
                "data": {"k": "v"}}))
            .unwrap();
            Api::<ConfigMap>::namespaced(client, &format!("bench-{}", i % NAMESPACES))
                .create(&PostParams::default(), &cm)
                .await
                .expect("configmap");
        }
    })
    .await;
    count as f64 / elapsed.as_secs_f64()
}

/// Resolves when `want` token resources report Ready=True.
async fn all_ready(client: kube::Client, want: usize, timeout: Duration) -> Duration {
    let t = Instant::now();
    let streams = KINDS.iter().enumerate().map(|(k, (kind, plural))| {
        let gvk = GroupVersionKind::gvk("tokens.frontegg-operator.io", "v1alpha1", kind);
        let api = Api::<DynamicObject>::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        );
        watcher(api, watcher::Config::default())
            .map_ok(move |e| (k, e))
            .boxed()
    });
    let mut events = stream::select_all(streams);
    let mut ready = HashSet::new();
    let mut progress = Instant::now();
    while ready.len() < want {
        // A misconfigured run stalls; it must say so rather than wait out the whole timeout.
        assert!(
            progress.elapsed() < Duration::from_secs(120),
            "no token became Ready for 120 s ({} of {want}); see the operator log",
            ready.len()
        );
        let next = tokio::time::timeout(
            timeout
                .saturating_sub(t.elapsed())
                .min(Duration::from_secs(10)),
            events.try_next(),
        )
        .await;
        if next.is_err() && t.elapsed() < timeout {
            continue;
        }
        let (kind, event) = match next {
            Ok(Ok(Some(e))) => e,
            Ok(Ok(None)) => panic!("watch ended"),
            Ok(Err(e)) => {
                eprintln!("watch error (retrying): {e}");
                continue;
            }
            Err(_) => panic!(
                "only {} of {want} tokens Ready after {timeout:?}",
                ready.len()
            ),
        };
        if let watcher::Event::Apply(o) | watcher::Event::InitApply(o) = event {
            let is_ready = o.data["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if is_ready
                && ready.insert((kind, o.metadata.namespace.clone(), o.metadata.name.clone()))
            {
                progress = Instant::now();
            }
        }
    }
    t.elapsed()
}

/// JWT delivery: API tokens with `spec.secret.accessToken`, then 3 JWT lifetimes of refreshes.
/// Each token should cost one identity call and one Secret write per refresh interval (the
/// JWT lifetime less `refreshBefore`), and a fresh exchange only for its first JWT.
async fn jwt_refreshes(
    admin: &kube::Client,
    fake: &Fake,
    op: &Operator,
    audit: &Audit,
    args: &Args,
) -> Value {
    let n = args.jwt_tokens;
    let lifetime = args.jwt_lifetime_secs;
    let refresh_before = lifetime / 3;
    create_concurrently(n, |i| {
        let client = admin.clone();
        async move {
            let ns = format!("bench-{}", i % NAMESPACES);
            let (kind, plural) = if i % 2 == 0 { KINDS[0] } else { KINDS[2] };
            let mut spec = json!({"tenantId": format!("t-{}", i % NAMESPACES), "expiresIn": "720h",
                "secret": {"accessToken": {"enabled": true, "refreshBefore": format!("{refresh_before}s")}}});
            if i % 2 == 0 {
                spec["userId"] = json!(format!("u-{}", i % 20));
            } else {
                spec["roleIds"] = json!(["role-bench"]);
            }
            let obj: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": kind,
                "metadata": {"name": format!("jwt-{i}"), "namespace": ns}, "spec": spec}))
            .expect("object");
            api(&client, &ns, kind, plural)
                .create(&PostParams::default(), &obj)
                .await
                .expect("create token");
        }
    })
    .await;
    all_ready(
        admin.clone(),
        args.tokens + args.trickle + n,
        Duration::from_secs(600),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = audit.len();
    fake.reset().await;
    let (_, cpu_before) = op.usage();
    let window = Duration::from_secs(3 * lifetime);
    tokio::time::sleep(window).await;
    let requests = audit.since(mark);
    let (writes_k8s, events) = writes(&requests);
    let refreshes = fake
        .route("POST /identity/resources/auth/v2/api-token/token/refresh")
        .await;
    let exchanges = fake
        .route("POST /identity/resources/auth/v2/api-token")
        .await;
    let (identity, creates, throttled) = fake.counts().await;
    let (_, cpu) = op.usage();
    // A JWT obtained at t is refreshed at t + lifetime - refreshBefore.
    let interval = (lifetime - refresh_before) as f64;
    let intervals = n as f64 * window.as_secs_f64() / interval;
    json!({
        "tokens": n, "jwtLifetimeSecs": lifetime, "refreshBeforeSecs": refresh_before,
        "windowSecs": window.as_secs_f64(), "refreshIntervalSecs": interval,
        "refreshCalls": refreshes, "exchangeCalls": exchanges, "identityCalls": identity,
        "identityCreates": creates, "remote429s": throttled,
        "callsPerTokenPerInterval": (refreshes + exchanges) as f64 / intervals,
        "writes": writes_k8s, "events": events,
        "writesPerRefresh": writes_k8s as f64 / (refreshes + exchanges).max(1) as f64,
        "cpuSecs": cpu - cpu_before,
        "requests": requests,
    })
}

/// CR create → Secret present, for `count` tokens created at 10/s: sorted milliseconds.
async fn trickle_latency(client: &kube::Client, count: usize) -> Vec<f64> {
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let secrets = Api::<Secret>::namespaced(client.clone(), "bench-trickle");
    let cfg =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=frontegg-token-operator");
    let watch = {
        let (created, seen) = (created.clone(), seen.clone());
        tokio::spawn(async move {
            let mut w = watcher(secrets, cfg).boxed();
            while let Ok(Some(e)) = w.try_next().await {
                if let watcher::Event::Apply(s) | watcher::Event::InitApply(s) = e {
                    let name = s.metadata.name.unwrap_or_default();
                    if let Some(t0) = created.lock().await.remove(&name) {
                        seen.lock().await.push(t0.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        })
    };
    // Let the watch establish before the first create.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..count {
        tick.tick().await;
        let name = format!("trickle-{i}");
        created.lock().await.insert(name.clone(), Instant::now());
        let client = client.clone();
        tokio::spawn(async move { create_token(&client, i, "bench-trickle", &name).await });
    }
    let t = Instant::now();
    while seen.lock().await.len() < count {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "trickle Secrets missing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let mut v = seen.lock().await.clone();
    v.sort_by(f64::total_cmp);
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let admin = client_from(&env_path("FTO_BENCH_KUBECONFIG")).await;
    let operator_kubeconfig = env_path("FTO_BENCH_OPERATOR_KUBECONFIG");
    let audit = Audit {
        path: env_path("FTO_BENCH_AUDIT_LOG"),
    };
    let fake = Fake::start(args.remote_qps, args.jwt_lifetime_secs).await;
    if args.budget_users > 0 {
        setup(&admin, &fake, u32::MAX).await;
        let out = budget::point(&admin, &fake, &operator_kubeconfig, args.budget_users).await;
        println!("{out}");
        return;
    }
    setup(&admin, &fake, args.remote_qps).await;
    let mut out = json!({"tokens": args.tokens, "foreignSecrets": args.foreign_secrets,
        "remoteQps": args.remote_qps, "concurrency": args.concurrency});
    if args.foreign_secrets > 0 {
        foreign_secrets(&admin, args.foreign_secrets).await;
    }
    if args.remote_qps == 0 && args.tokens > 0 {
        out["ceilingCreatesPerSec"] = json!(ceiling(&admin, args.ceiling_objects).await);
    }

    let op = Operator::start(&operator_kubeconfig, 300, args.concurrency, 0);
    op.wait_ready().await;
    // Environment health and the caches settle before the window opens.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mark = audit.len();
    fake.reset().await;
    let (_, cpu_before) = op.usage();
    let profile = CpuProfile::new(&fake);
    let others_before = profile.sample();

    let ready = tokio::spawn(all_ready(
        admin.clone(),
        args.tokens,
        Duration::from_secs(1800),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t0 = Instant::now();
    create_concurrently(args.tokens, |i| {
        let client = admin.clone();
        async move {
            let ns = format!("bench-{}", i % NAMESPACES);
            create_token(&client, i, &ns, &format!("tok-{i}")).await;
        }
    })
    .await;
    let created_in = t0.elapsed();
    ready.await.expect("ready watcher");
    let issued_in = t0.elapsed();
    // Events and status writes that trail the last Ready condition.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let window = audit.since(mark);
    let (writes_k8s, events) = writes(&window);
    let (identity, creates, throttled) = fake.counts().await;
    let (hwm, cpu) = op.usage();
    let window_secs = t0.elapsed().as_secs_f64();
    let n = args.tokens as f64;
    let mut cpu_by_process: BTreeMap<&str, f64> = profile
        .sample()
        .into_iter()
        .map(|(k, v)| (k, v - others_before.get(k).copied().unwrap_or(0.0)))
        .collect();
    cpu_by_process.insert("operator", cpu - cpu_before);
    out["issuance"] = json!({
        "createdInSecs": created_in.as_secs_f64(),
        "allReadySecs": issued_in.as_secs_f64(),
        "tokensPerSec": n / issued_in.as_secs_f64(),
        "writesPerToken": writes_k8s as f64 / n,
        "eventsPerToken": events as f64 / n,
        "readsPerToken": reads(&window) as f64 / n,
        "identityCallsPerToken": identity as f64 / n,
        "identityCreatesPerToken": creates as f64 / n,
        "remote429s": throttled,
        "cpuSecs": cpu - cpu_before,
        "cpuSecsByProcess": cpu_by_process,
        // What the machine could give over the same window (from the first create to the
        // samples), to compare the per-process seconds with.
        "machineCpuSecs": window_secs * std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        "requests": window,
    });
    out["vmHwmKiB"] = json!(hwm);

    if args.trickle > 0 {
        let lat = trickle_latency(&admin, args.trickle).await;
        out["trickleMs"] = json!({"p50": percentile(&lat, 0.5), "p95": percentile(&lat, 0.95),
            "p99": percentile(&lat, 0.99), "max": percentile(&lat, 1.0)});
    }

    let (hwm, _) = op.usage();
    out["vmHwmKiB"] = json!(hwm);

    if args.jwt_tokens > 0 {
        out["jwt"] = jwt_refreshes(&admin, &fake, &op, &audit, &args).await;
    }

    // The restart, and then the steady state on the restarted process with a short resync:
    // issuance ran with the default resync, since a short one makes thousands of Ready
    // tokens resync while the rest are still being issued, which measures the resync.
    if args.restart || args.steady {
        // Every token reconciles once after a start: the window ends when all have.
        let managed = op.metric("tokens_managed").await;
        op.stop();
        fake.reset().await;
        let mark = audit.len();
        let t = Instant::now();
        let op2 = Operator::start(&operator_kubeconfig, args.resync_secs, args.concurrency, 1);
        let ready_in = op2.wait_ready().await;
        while op2.metric("reconciles_total").await < managed {
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "restarted operator never caught up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caught_up = t.elapsed();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let window = audit.since(mark);
        let (writes_k8s, events) = writes(&window);
        let (identity, creates, _) = fake.counts().await;
        let (hwm, _) = op2.usage();
        out["restart"] = json!({
            "readySecs": ready_in.as_secs_f64(), "allReconciledSecs": caught_up.as_secs_f64(),
            "identityCalls": identity, "identityCreates": creates,
            "writes": writes_k8s, "events": events, "reads": reads(&window), "vmHwmKiB": hwm,
        });

        if args.steady {
            let mark = audit.len();
            fake.reset().await;
            let (_, cpu_before) = op2.usage();
            let periods = 3;
            tokio::time::sleep(Duration::from_secs(args.resync_secs * periods)).await;
            let window = audit.since(mark);
            let (writes_k8s, events) = writes(&window);
            let (identity, creates, _) = fake.counts().await;
            let (_, cpu) = op2.usage();
            // Tokens of one (kind, tenant, user) share a remote listing.
            let groups: HashSet<(usize, usize, usize)> = (0..args.tokens)
                .map(|i| {
                    (
                        i % KINDS.len(),
                        i % NAMESPACES,
                        if i % KINDS.len() < 2 { i % 20 } else { 0 },
                    )
                })
                .collect();
            out["steady"] = json!({
                "periods": periods, "resyncSecs": args.resync_secs,
                "writes": writes_k8s, "events": events, "reads": reads(&window),
                "identityCalls": identity, "identityCreates": creates,
                "groups": groups.len(),
                "identityCallsPerGroupPerPeriod": identity as f64 / (groups.len() as f64 * periods as f64),
                "cpuSecsPerPeriod": (cpu - cpu_before) / periods as f64,
            });
        }
    }
    println!("{out}");
}
