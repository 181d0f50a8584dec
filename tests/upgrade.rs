//! Upgrades and rollbacks on the real control plane and node. The previous release
//! (hack/previous-release: its chart and its image, built from git history) holds tokens of all
//! four kinds: one mid-rotation, one observed, one imported, one in a namespaced environment.
//! `helm upgrade` to this tree, `helm rollback`, and forward again must leave every remote
//! token, Secret byte and scheduled revocation as it was, while the conversion webhook keeps
//! answering through a leader's loss and a CA rotation. Prints the matrix docs/reliability.md
//! keeps.
//!
//! One test: it owns the cluster-scoped CRDs while it runs. `hack/test` builds the previous
//! release and imports its image; run alone, it needs `hack/previous-release`,
//! `hack/control-plane up --node`, `hack/node up target/images/*.tar
//! target/previous/images/operator.tar` and FTO_TEST_KUBECONFIG.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};
use support::*;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/frontegg-token-operator"
);
const PREVIOUS_CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/target/previous/src/charts/frontegg-token-operator"
);
const ALPHA: &str = "tokens.frontegg-operator.io/v1alpha1";
const BETA: &str = "tokens.frontegg-operator.io/v1beta1";
const TENANT: &str = "t-up";
/// The rotated token's grace period: long enough to cross the upgrade, short enough to end
/// within the test.
const GRACE_SECONDS: u64 = 150;

/// The tokens the previous release holds: (plural, name).
const TOKENS: [(&str, &str); 5] = [
    ("userapitokens", "rotating"),
    ("useraccesstokens", "observed"),
    ("tenantapitokens", "imported"),
    ("tenantaccesstokens", "namespaced"),
    ("userapitokens", "plain"),
];

struct Cluster {
    client: kube::Client,
    fake: Fake,
    release: String,
    release_ns: String,
    ns: String,
    ip: String,
}

impl Cluster {
    /// The same values for every release: the previous chart ignores what it does not know
    /// only if it is not given, so the new chart's own keys come from its defaults.
    fn values(&self) -> Vec<String> {
        vec![
            "replicas=2".into(),
            "defaultEnvironment.create=true".into(),
            format!("defaultEnvironment.name={}", self.release),
            format!("defaultEnvironment.baseUrl={}", self.fake.url),
            format!("defaultEnvironment.clientId={}", self.fake.client_id),
            format!("defaultEnvironment.secret={}", self.fake.secret),
            format!("defaultEnvironment.allowedNamespaces.names={{{}}}", self.ns),
            format!("watchNamespaces={{{}}}", self.ns),
            format!(
                "operator.clusterEnvironmentSelector=app.kubernetes.io/instance={}",
                self.release
            ),
            format!("allowedBaseUrls={{http://{}:*}}", self.ip),
            "operator.minReissueInterval=1s".into(),
            "operator.resyncPeriod=10s".into(),
            "collectLeakedTokens=true".into(),
            "image.repository=fto.local/frontegg-token-operator".into(),
            "image.pullPolicy=Never".into(),
        ]
    }

    fn helm(&self, verb: &str, chart: &str, tag: &str, extra: &[&str]) {
        let mut args: Vec<String> = vec![
            verb.into(),
            self.release.clone(),
            chart.into(),
            "-n".into(),
            self.release_ns.clone(),
            "--wait".into(),
            "--timeout".into(),
            "180s".into(),
        ];
        for v in self
            .values()
            .into_iter()
            .chain([format!("image.tag={tag}")])
            .chain(extra.iter().map(|s| s.to_string()))
        {
            args.extend(["--set".into(), v]);
        }
        if verb == "install" {
            // The CRDs were applied by the test harness: the previous chart takes them over.
            // Upgrades and rollbacks never force: a conflict there would be a user's too.
            args.extend(["--take-ownership".into(), "--force-conflicts".into()]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, out, err) = helm_run(&refs);
        assert!(ok, "helm {verb}: {out}{err}");
    }

    fn fullname(&self) -> String {
        format!("{}-frontegg-token-operator", self.release)
    }
}

fn manifest(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": ALPHA, "kind": kind, "metadata": {"name": name}, "spec": spec})
}

fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
        && obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
}

/// What must not change across an upgrade or a rollback.
#[derive(Debug, PartialEq)]
struct Held {
    /// Each token's current remote token.
    current: BTreeMap<String, Value>,
    /// Each Secret the tokens own, byte for byte.
    secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

async fn held(c: &Cluster) -> Held {
    let mut current = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let api: Api<Secret> = Api::namespaced(c.client.clone(), &c.ns);
    for (plural, name) in TOKENS {
        let obj = get_custom(&c.client, &c.ns, plural, name)
            .await
            .expect("token");
        let key = format!("{plural}/{name}");
        current.insert(key.clone(), obj["status"]["current"]["id"].clone());
        if let Some(secret) = api.get_opt(name).await.expect("get secret") {
            let data = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            secrets.insert(key, data);
        }
    }
    Held { current, secrets }
}

async fn all_ready(c: &Cluster, what: &str) {
    wait_for(Duration::from_secs(120), what, || async {
        for (plural, name) in TOKENS {
            let obj = get_custom(&c.client, &c.ns, plural, name).await?;
            if !is_ready(&obj) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// Creates and deletes of remote tokens the fake has served (authentication aside).
async fn remote_writes(fake: &Fake) -> (u64, u64) {
    let stats = fake.get("/_admin/stats").await;
    let calls = stats["calls"].as_object().cloned().unwrap_or_default();
    let count = |method: &str| {
        calls
            .iter()
            .filter(|(k, _)| k.starts_with(method) && k.contains("tokens"))
            .map(|(_, v)| v.as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    (count("POST "), count("DELETE "))
}

/// Lists the token kinds as `v1beta1` with `kubectl get --raw`, one after another, which the
/// API server can only answer through the webhook, and counts the failures, until stopped.
struct ConversionProbe {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    last_error: Arc<std::sync::Mutex<String>>,
}

impl ConversionProbe {
    fn start(ns: &str) -> ConversionProbe {
        let probe = ConversionProbe {
            stop: Arc::new(AtomicBool::new(false)),
            ok: Arc::new(AtomicU64::new(0)),
            failed: Arc::new(AtomicU64::new(0)),
            last_error: Arc::new(std::sync::Mutex::new(String::new())),
        };
        let (stop, ok, failed, last) = (
            probe.stop.clone(),
            probe.ok.clone(),
            probe.failed.clone(),
            probe.last_error.clone(),
        );
        let paths: Vec<String> = ["userapitokens", "useraccesstokens", "tenantapitokens"]
            .iter()
            .map(|plural| format!("/apis/{BETA}/namespaces/{ns}/{plural}"))
            .collect();
        std::thread::spawn(move || {
            for path in paths.iter().cycle() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                match kubectl_run(&["get", "--raw", path], None) {
                    (true, out, _) if out.contains("\"items\"") => {
                        ok.fetch_add(1, Ordering::SeqCst)
                    }
                    (_, out, err) => {
                        *last.lock().expect("lock") = format!("{path}: {out}{err}");
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        probe
    }

    /// (answered, failed, the last failure) so far; stops the probe.
    fn finish(self) -> (u64, u64, String) {
        self.stop.store(true, Ordering::SeqCst);
        let last = self.last_error.lock().expect("lock").clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            last,
        )
    }
}

/// What the API server's audit log (hack/control-plane, with --node) says of the `v1beta1`
/// lists in `namespace` since `since`.
#[derive(Debug, Default)]
struct Audited {
    answered: u64,
    /// 429 "storage is (re)initializing": the API server rebuilds a CRD's storage when the CRD
    /// changes (here, its caBundle) and asks clients to retry after a second, which they do.
    retried: u64,
    /// Anything else: a conversion that failed.
    failed: u64,
}

fn audited(namespace: &str, since: jiff::Timestamp) -> Audited {
    let path = kubeconfig().with_file_name("audit.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (a control plane without the audit log?)",
            path.display()
        )
    });
    let mut seen = Audited::default();
    for event in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        let at: Option<jiff::Timestamp> = event["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse().ok());
        let ours = event["objectRef"]["apiVersion"] == "v1beta1"
            && event["objectRef"]["namespace"] == namespace
            && event["stage"] == "ResponseComplete"
            && at.is_some_and(|t| t >= since);
        if !ours {
            continue;
        }
        let status = &event["responseStatus"];
        let reinitializing = status["code"] == 429
            && status["message"]
                .as_str()
                .is_some_and(|m| m.contains("storage is (re)initializing"));
        match status["code"].as_u64() {
            Some(200) => seen.answered += 1,
            _ if reinitializing => seen.retried += 1,
            _ => seen.failed += 1,
        }
    }
    seen
}

async fn ready_pods(c: &Cluster) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.release_ns);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={}", c.release));
    pods.list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter_map(|p| p.metadata.name)
        .collect()
}

async fn two_ready_pods(c: &Cluster) {
    wait_for(
        Duration::from_secs(120),
        "two ready operator pods",
        || async { (ready_pods(c).await.len() == 2).then_some(()) },
    )
    .await;
}

/// Kills the leader's pod (a graceful delete) while the probe converts; returns what the
/// probe saw, and what the audit log says of it.
async fn kill_the_leader(c: &Cluster) -> ((u64, u64, String), Audited) {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), &c.release_ns);
    let leader = wait_for(Duration::from_secs(60), "a leader", || async {
        leases
            .get_opt(&c.fullname())
            .await
            .ok()??
            .spec?
            .holder_identity
            .filter(|h| !h.is_empty())
    })
    .await;
    two_ready_pods(c).await;
    let since = jiff::Timestamp::now();
    let probe = ConversionProbe::start(&c.ns);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.release_ns);
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader's pod");
    wait_for(Duration::from_secs(120), "the leader pod gone", || async {
        pods.get_opt(&leader)
            .await
            .ok()
            .map(|p| p.is_none())
            .filter(|gone| *gone)
    })
    .await;
    two_ready_pods(c).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = probe.finish();
    (seen, audited(&c.ns, since))
}

/// Deletes the webhook's CA Secret, which makes the replicas rotate to a new CA, and probes
/// conversion until both serve certificates from it; returns what the probe saw, and what the
/// audit log says of it.
async fn rotate_the_ca(c: &Cluster) -> ((u64, u64, String), Audited) {
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), &c.release_ns);
    let ca_name = format!("{}-conversion-ca", c.fullname());
    let old = secrets.get(&ca_name).await.expect("the CA Secret");
    let old_ca = old.data.expect("data")["ca.crt"].0.clone();
    let since = jiff::Timestamp::now();
    let probe = ConversionProbe::start(&c.ns);
    secrets
        .delete(&ca_name, &DeleteParams::default())
        .await
        .expect("delete the CA Secret");
    let new_ca = wait_for(Duration::from_secs(60), "a new CA", || async {
        let s = secrets.get_opt(&ca_name).await.ok()??;
        let ca = s.data?.get("ca.crt")?.0.clone();
        (ca != old_ca).then_some(ca)
    })
    .await;
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    wait_for(
        Duration::from_secs(60),
        "the CRDs trusting both CAs",
        || async {
            let crd = crds
                .get("userapitokens.tokens.frontegg-operator.io")
                .await
                .ok()?;
            let bundle = crd.spec.conversion?.webhook?.client_config?.ca_bundle?.0;
            let text = String::from_utf8_lossy(&bundle).to_string();
            (text.contains(String::from_utf8_lossy(&new_ca).trim())
                && text.contains(String::from_utf8_lossy(&old_ca).trim()))
            .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(90),
        "every replica serving a certificate from the new CA",
        || async { serving_from(c, &new_ca).await.then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = probe.finish();
    (seen, audited(&c.ns, since))
}

/// Whether every ready pod's webhook certificate verifies against `ca` alone.
async fn serving_from(c: &Cluster, ca: &[u8]) -> bool {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.release_ns);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, ca).expect("write ca");
    for name in ready_pods(c).await {
        let Some(ip) = pods.get(&name).await.ok().and_then(|p| p.status?.pod_ip) else {
            return false;
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {ip}:9443 -CAfile {} -verify_return_error </dev/null 2>&1",
                ca_path.display()
            ))
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains("Verify return code: 0 (ok)") {
            return false;
        }
    }
    true
}

fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl_run(args, stdin);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

fn get_raw(path: &str) -> Value {
    serde_json::from_str(&kubectl_ok(&["get", "--raw", path], None)).expect("json")
}

/// A replaced token waiting for its grace period to end.
struct Pending {
    id: String,
    not_before: jiff::Timestamp,
}

/// The previous release's tokens: every kind, one mid-rotation, one observed, one imported,
/// one through a namespaced environment. Returns the rotated-out token.
async fn tokens_of_every_kind(c: &Cluster) -> Pending {
    let apply = |m: Value| {
        let mut m = m;
        m["metadata"]["namespace"] = json!(c.ns);
        let client = c.client.clone();
        async move { apply_yaml(&client, &m.to_string()).await }
    };
    apply(manifest(
        "UserApiToken",
        "plain",
        json!({"tenantId": TENANT, "userId": "u-plain", "expiresInMinutes": 1440}),
    ))
    .await;
    apply(manifest(
        "UserApiToken",
        "rotating",
        json!({"tenantId": TENANT, "userId": "u-rot", "renewBefore": "1h", "expiresIn": "24h",
               "rotation": {"gracePeriod": format!("{GRACE_SECONDS}s")}}),
    ))
    .await;
    let observed = c
        .fake
        .create_remote(
            "/resources/users/access-tokens/v1",
            TENANT,
            Some("u-obs"),
            json!({"description": "made in the portal", "expiresInMinutes": 600}),
        )
        .await;
    apply(manifest(
        "UserAccessToken",
        "observed",
        json!({"tenantId": TENANT, "userId": "u-obs", "managementPolicy": "Observe",
               "tokenId": observed["id"]}),
    ))
    .await;
    let portal = c
        .fake
        .create_remote(
            "/resources/tenants/api-tokens/v2",
            TENANT,
            None,
            json!({"description": "made in the portal", "roleIds": ["viewer"]}),
        )
        .await;
    apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "portal"},
        "stringData": {"value": portal["secret"]}}),
    )
    .await;
    apply(manifest(
        "TenantApiToken",
        "imported",
        json!({"tenantId": TENANT, "description": "made in the portal", "roleIds": ["viewer"],
               "import": {"tokenId": portal["clientId"],
                          "secretRef": {"name": "portal", "key": "value"}}}),
    ))
    .await;
    apply(
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "local-creds",
            "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
        "stringData": {"clientId": c.fake.client_id, "secret": c.fake.secret}}),
    )
    .await;
    apply(json!({"apiVersion": ALPHA, "kind": "FronteggEnvironment",
        "metadata": {"name": "local"},
        "spec": {"baseUrl": c.fake.url, "credentialsSecretRef": {"name": "local-creds"}}}))
    .await;
    apply(manifest(
        "TenantAccessToken",
        "namespaced",
        json!({"tenantId": TENANT, "roleIds": ["viewer"], "expiresIn": "24h",
               "environmentRef": {"kind": "FronteggEnvironment", "name": "local"}}),
    ))
    .await;
    all_ready(c, "the previous release's tokens Ready").await;
    rotate(c).await
}

/// Rotates `rotating`: its old token waits in pendingRevocations for the grace period.
async fn rotate(c: &Cluster) -> Pending {
    let before = get_custom(&c.client, &c.ns, "userapitokens", "rotating")
        .await
        .expect("rotating");
    let old = before["status"]["current"]["id"].clone();
    kubectl_ok(
        &[
            "-n",
            &c.ns,
            "annotate",
            "userapitoken",
            "rotating",
            "tokens.frontegg-operator.io/rotate=1",
        ],
        None,
    );
    wait_for(Duration::from_secs(60), "the rotation", || async {
        let obj = get_custom(&c.client, &c.ns, "userapitokens", "rotating").await?;
        let pending = obj["status"]["pendingRevocations"]
            .as_array()?
            .first()?
            .clone();
        let ready = is_ready(&obj) && obj["status"]["current"]["id"] != old && pending["id"] == old;
        Some(Pending {
            id: pending["id"].as_str()?.to_string(),
            not_before: pending["notBefore"].as_str()?.parse().ok()?,
        })
        .filter(|_| ready)
    })
    .await
}

/// The checks that hold after every step: Ready, nothing created or deleted, every Secret
/// byte-identical, nothing reported leaked. Returns a matrix row.
/// `pending` is the rotated-out token: once its grace period has ended it is revoked, whichever
/// release runs then, and that one delete is expected.
async fn unchanged(
    c: &Cluster,
    step: &str,
    before: &Held,
    writes: (u64, u64),
    pending: &Pending,
) -> Vec<String> {
    all_ready(c, &format!("{step}: every token Ready")).await;
    // Two resyncs: every token passes at least once, leak detection lists every group.
    tokio::time::sleep(Duration::from_secs(25)).await;
    all_ready(c, &format!("{step}: every token still Ready")).await;
    let after = held(c).await;
    assert_eq!(&after, before, "{step}: a token or a Secret changed");
    let revoked = c.fake.token(&pending.id).await.is_none();
    assert!(
        !revoked || jiff::Timestamp::now() >= pending.not_before,
        "{step}: revoked before its grace period ended"
    );
    let expected = (writes.0, writes.1 + u64::from(revoked));
    let now = remote_writes(&c.fake).await;
    assert_eq!(now, expected, "{step}: remote creates/deletes");
    let environment = get_custom_cluster(&c.client, &c.release).await;
    let leaked = environment["status"]["leakedTokens"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(leaked, 0, "{step}: leaked tokens {environment}");
    let revocation = if revoked {
        " (+1: the grace period ended)"
    } else {
        ""
    };
    vec![
        step.to_string(),
        format!("{} Ready", after.current.len()),
        format!(
            "{} / {}{revocation}",
            now.0.saturating_sub(writes.0),
            now.1.saturating_sub(writes.1)
        ),
        format!("{} identical", after.secrets.len()),
        leaked.to_string(),
    ]
}

async fn get_custom_cluster(client: &kube::Client, name: &str) -> Value {
    let gvk = GroupVersionKind::gvk(
        "tokens.frontegg-operator.io",
        "v1alpha1",
        "ClusterFronteggEnvironment",
    );
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    serde_json::to_value(api.get(name).await.expect("environment")).expect("json")
}

/// A `v1alpha1` manifest still applies, and reads back as `v1beta1` with the new fields.
async fn alpha_manifests_still_apply(c: &Cluster, name: &str) {
    let alpha = json!({"apiVersion": ALPHA, "kind": "UserAccessToken",
        "metadata": {"name": name, "namespace": c.ns},
        "spec": {"tenantId": TENANT, "userId": format!("u-{name}"), "expiresInMinutes": 90,
                 "renewBefore": "30m"}});
    kubectl_ok(&["apply", "-f", "-"], Some(&alpha.to_string()));
    wait_for(
        Duration::from_secs(60),
        "the v1alpha1 token Ready",
        || async {
            is_ready(&get_custom(&c.client, &c.ns, "useraccesstokens", name).await?).then_some(())
        },
    )
    .await;
    let beta = get_raw(&format!(
        "/apis/{BETA}/namespaces/{}/useraccesstokens/{name}",
        c.ns
    ));
    assert_eq!(beta["spec"]["expiresIn"], "90m", "{beta}");
    assert_eq!(beta["spec"]["rotation"]["renewBefore"], "30m", "{beta}");
    assert!(beta["spec"].get("expiresInMinutes").is_none());
    assert!(
        beta["status"]["internal"]["settledAttempt"].is_string(),
        "{beta}"
    );
    assert!(beta["status"].get("settledAttempt").is_none());
}

/// The CRDs as a cluster that installed the previous release with Helm has them: the test
/// harness's own field owners dropped, so that a conflict later is one a user would meet too.
async fn helm_alone_owns_the_crds(client: &kube::Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in frontegg_token_operator::api::all_crds() {
        let name = crd.metadata.name.expect("name");
        let current = crds.get(&name).await.expect("crd");
        let helm: Vec<_> = current
            .metadata
            .managed_fields
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.manager.as_deref() == Some("helm"))
            .collect();
        assert!(!helm.is_empty(), "{name}: helm owns nothing");
        let patch = json!({"metadata": {"managedFields": helm}});
        crds.patch(&name, &Default::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("drop the harness's field owners");
    }
}

/// The chart's default environment: its UID, whether the in-use finalizer holds it, and
/// whether it is still a Helm hook.
async fn default_environment(c: &Cluster) -> (String, bool, bool) {
    let env = get_custom_cluster(&c.client, &c.release).await;
    let uid = env["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let protected = env["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f == "tokens.frontegg-operator.io/in-use"));
    let hook = env["metadata"]["annotations"]
        .as_object()
        .is_some_and(|a| a.contains_key("helm.sh/hook"));
    (uid, protected, hook)
}

/// The default environment is the one the previous release made (same UID), no longer a Helm
/// hook, and protected. Returns the matrix cell.
async fn default_environment_kept(c: &Cluster, step: &str, uid: &str) -> String {
    let (now, _, hook) = wait_for(
        Duration::from_secs(60),
        &format!("{step}: the default environment protected"),
        || async {
            let seen = default_environment(c).await;
            seen.1.then_some(seen)
        },
    )
    .await;
    assert_eq!(now, uid, "{step}: the default environment was recreated");
    assert!(!hook, "{step}: still a Helm hook");
    "same UID, protected".into()
}

/// A `v1beta1` example applies through the webhook and issues, and reads back as `v1alpha1`.
async fn beta_examples_apply(c: &Cluster) {
    let text = std::fs::read_to_string(format!("{REPO}/examples/tenant-access-token.yaml"))
        .expect("example");
    assert!(text.contains(BETA), "the example is v1beta1");
    kubectl_ok(&["-n", &c.ns, "apply", "-f", "-"], Some(&text));
    wait_for(
        Duration::from_secs(60),
        "the v1beta1 example Ready",
        || async {
            is_ready(&get_custom(&c.client, &c.ns, "tenantaccesstokens", "reporting").await?)
                .then_some(())
        },
    )
    .await;
    let alpha = get_raw(&format!(
        "/apis/{ALPHA}/namespaces/{}/tenantaccesstokens/reporting",
        c.ns
    ));
    assert_eq!(alpha["spec"]["roleIds"], json!(["role-reports"]), "{alpha}");
}

/// `kubectl frontegg migrate` with `args`; returns what it printed.
fn migrate(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-frontegg"))
        .arg("migrate")
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run kubectl-frontegg migrate");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "migrate: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// How many of the operator's objects etcd holds in each apiVersion, read from etcd itself
/// (its JSON gateway; hack/control-plane writes its URL next to the kubeconfig): what a
/// migration must leave there, which no API read can show.
async fn stored_in_etcd() -> BTreeMap<String, usize> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let path = kubeconfig().with_file_name("etcd-url");
    let url = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (hack/control-plane --node)", path.display()));
    let range = json!({"key": b64.encode("/registry/tokens.frontegg-operator.io/"),
        "range_end": b64.encode("/registry/tokens.frontegg-operator.io0")});
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/v3/kv/range", url.trim()))
        .json(&range)
        .send()
        .await
        .expect("etcd")
        .json()
        .await
        .expect("etcd's answer");
    let mut seen = BTreeMap::new();
    for kv in reply["kvs"].as_array().into_iter().flatten() {
        let raw = b64
            .decode(kv["value"].as_str().expect("value"))
            .expect("base64");
        let obj: Value = serde_json::from_slice(&raw).expect("custom resources are stored as JSON");
        let version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
        *seen.entry(version).or_insert(0) += 1;
    }
    seen
}

/// Every object in etcd is stored as `version`; returns the matrix cell.
async fn all_stored_as(version: &str) -> String {
    let seen = stored_in_etcd().await;
    let count = seen.get(version).copied().unwrap_or(0);
    assert!(
        count > 0 && seen.len() == 1,
        "etcd holds {seen:?}, not only {version}"
    );
    format!("- (etcd: {count} objects, all {version})")
}

/// Against a CRD that stores a version this release cannot read (a future `v1`), the
/// operator exits before any reconcile and names the fix. The CRD is put back after.
async fn refuses_unreadable_crds(c: &Cluster) -> String {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    let name = "tenantaccesstokens.tokens.frontegg-operator.io";
    let versions = crds.get(name).await.expect("crd").spec.versions;
    let mut future = versions
        .iter()
        .find(|v| v.storage)
        .cloned()
        .expect("storage");
    (future.name, future.served, future.storage) = ("v1".into(), false, false);
    let mut with_future = versions.clone();
    with_future.push(future);
    let set = |versions: &[_]| json!({"spec": {"versions": versions}});
    let stored = |versions: &[&str]| json!({"status": {"storedVersions": versions}});
    let merge = PatchParams::default();
    crds.patch(name, &merge, &Patch::Merge(&set(&with_future)))
        .await
        .expect("add v1");
    crds.patch_status(name, &merge, &Patch::Merge(&stored(&["v1alpha1", "v1"])))
        .await
        .expect("store v1");
    let mut operator = std::process::Command::new(env!("CARGO_BIN_EXE_frontegg-token-operator"))
        .args(["run", "--metrics-addr", "127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the operator");
    // Whatever it does, the CRD is put back before anything is asserted.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exited = loop {
        if let Some(status) = operator.try_wait().expect("the operator's status") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = operator.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = operator.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    crds.patch_status(name, &merge, &Patch::Merge(&stored(&["v1alpha1"])))
        .await
        .expect("forget v1");
    crds.patch(name, &merge, &Patch::Merge(&set(&versions)))
        .await
        .expect("remove v1");
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the operator did not refuse to start: {text}"
    );
    let expected = format!("CRD {name} has objects stored as v1, which this release cannot read");
    assert!(text.contains(&expected), "{text}");
    assert!(text.contains("kubectl frontegg migrate"), "{text}");
    expected
}

/// Every CRD lists `version` alone in `status.storedVersions`.
async fn assert_stored(c: &Cluster, version: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for crd in frontegg_token_operator::api::all_crds() {
        let name = crd.metadata.name.expect("name");
        let stored = crds
            .get(&name)
            .await
            .expect("crd")
            .status
            .and_then(|s| s.stored_versions);
        assert_eq!(stored, Some(vec![version.to_string()]), "{name}");
    }
}

/// A first issuance the previous release leaves half done: its journal written and its create
/// committed at the fake, which never answers, when the upgrade replaces the pods. Returns
/// the journal's attempt id.
async fn journal_left_open(c: &Cluster) -> String {
    c.fake
        .set_faults(json!({"hangAfterCommitNext": 1, "method": "POST",
            "pathPrefix": "/identity/resources/users/api-tokens/v1"}))
        .await;
    let mut m = manifest(
        "UserApiToken",
        "journaled",
        json!({"tenantId": TENANT, "userId": "u-journal"}),
    );
    m["metadata"]["namespace"] = json!(c.ns);
    apply_yaml(&c.client, &m.to_string()).await;
    let attempt = wait_for(Duration::from_secs(60), "the journal open", || async {
        let obj = get_custom(&c.client, &c.ns, "userapitokens", "journaled").await?;
        let journal = obj["metadata"]["annotations"]["tokens.frontegg-operator.io/issue-journal"]
            .as_str()?
            .to_string();
        let journal: Value = serde_json::from_str(&journal).ok()?;
        journal["attemptId"].as_str().map(str::to_string)
    })
    .await;
    // The create follows the journal at once; it hangs at the fake until the pod goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    attempt
}

/// The new release settles the previous one's journal as its own: the token that create left
/// at Frontegg (marked with the old attempt, in no Secret) is revoked, the journal closes, and
/// the resource ends Ready with one live token of a new attempt. Returns the remote creates
/// and deletes this took: (2, 1).
async fn journal_settled(c: &Cluster, attempt: &str) -> (u64, u64) {
    let obj = wait_for(
        Duration::from_secs(120),
        "the journaled token Ready",
        || async {
            let obj = get_custom(&c.client, &c.ns, "userapitokens", "journaled").await?;
            is_ready(&obj).then_some(obj)
        },
    )
    .await;
    let journal: Value = serde_json::from_str(
        obj["metadata"]["annotations"]["tokens.frontegg-operator.io/issue-journal"]
            .as_str()
            .unwrap_or("{}"),
    )
    .expect("journal");
    assert_eq!(
        obj["status"]["settledAttempt"], journal["attemptId"],
        "closed: {obj}"
    );
    assert_ne!(obj["status"]["current"]["attemptId"], attempt, "{obj}");
    let issued: Vec<Value> = wait_for(
        Duration::from_secs(60),
        "the old attempt's token revoked",
        || async {
            let issued: Vec<Value> = c
                .fake
                .tokens()
                .await
                .into_iter()
                .filter(|t| t["userId"] == "u-journal")
                .collect();
            (issued.len() == 1).then_some(issued)
        },
    )
    .await;
    assert_eq!(issued[0]["id"], obj["status"]["current"]["id"]);
    assert!(
        !issued[0]["description"]
            .as_str()
            .unwrap_or_default()
            .contains(attempt),
        "{issued:?}"
    );
    (2, 1)
}

/// The chart's `conversion.certManager` option, against cert-manager's contract: the chart asks
/// for a Certificate and annotates the CRDs for the CA injector; this test does what
/// cert-manager would (no cert-manager runs here): writes the Secret the Certificate names and
/// the CA into the CRDs. The pods serve the mounted certificate, and conversions go on.
async fn with_cert_manager(c: &Cluster) -> String {
    for (plural, kind) in [("certificates", "Certificate"), ("issuers", "Issuer")] {
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.cert-manager.io")},
            "spec": {"group": "cert-manager.io", "scope": "Namespaced",
                "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object",
                        "x-kubernetes-preserve-unknown-fields": true}}}]}});
        kubectl_ok(
            &["apply", "--server-side", "-f", "-"],
            Some(&crd.to_string()),
        );
    }
    kubectl_ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/certificates.cert-manager.io",
            "crd/issuers.cert-manager.io",
        ],
        None,
    );
    let service = format!("{}-conversion.{}.svc", c.fullname(), c.release_ns);
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display();
    let script = format!(
        "set -e; cd {d}; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
           -subj /CN=test-issuer -keyout ca.key -out ca.crt 2>/dev/null; \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN={service} \
           -keyout tls.key -out tls.csr 2>/dev/null; \
         printf 'subjectAltName=DNS:{service},DNS:{service}.cluster.local' > san.ext; \
         openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
           -extfile san.ext -out tls.crt 2>/dev/null"
    );
    let made = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl");
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).expect("pem");
    let (ca, crt, key) = (read("ca.crt"), read("tls.crt"), read("tls.key"));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": format!("{}-conversion-tls", c.fullname()), "namespace": c.release_ns},
        "stringData": {"tls.crt": crt, "tls.key": key, "ca.crt": ca}});
    kubectl_ok(&["apply", "-f", "-"], Some(&secret.to_string()));
    c.helm(
        "upgrade",
        CHART,
        "dev",
        &[
            "conversion.certManager.enabled=true",
            "crds.storageVersion=v1beta1",
        ],
    );
    // The old pods (the operator's own CA) must be gone, or one could write its bundle back.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), &c.release_ns);
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={}", c.release));
    wait_for(Duration::from_secs(120), "only the new pods", || async {
        let items = pods.list(&lp).await.ok()?.items;
        (items.len() == 2
            && items
                .iter()
                .all(|p| p.metadata.deletion_timestamp.is_none()))
        .then_some(())
    })
    .await;
    // The CA injector's part: the certificate's CA into every token CRD it annotates.
    let crds: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for name in frontegg_token_operator::webhook::maintain::TOKEN_CRDS {
        let crd = crds.get(name).await.expect("crd");
        let annotation = crd.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotation.get("cert-manager.io/inject-ca-from"),
            Some(&format!("{}/{}-conversion", c.release_ns, c.fullname())),
            "{name}"
        );
        let patch = json!({"spec": {"conversion": {"webhook": {"clientConfig": {
            "caBundle": k8s_openapi::ByteString(ca.clone().into_bytes())}}}}});
        crds.patch(name, &Default::default(), &kube::api::Patch::Merge(&patch))
            .await
            .expect("inject the CA");
    }
    two_ready_pods(c).await;
    wait_for(
        Duration::from_secs(60),
        "every replica serving cert-manager's certificate",
        || async { serving_from(c, ca.as_bytes()).await.then_some(()) },
    )
    .await;
    let since = jiff::Timestamp::now();
    let probe = ConversionProbe::start(&c.ns);
    tokio::time::sleep(Duration::from_secs(15)).await;
    let (ok, failed, last) = probe.finish();
    let logged = audited(&c.ns, since);
    assert_eq!(
        failed, 0,
        "conversions failed with cert-manager's certificate: {last}"
    );
    assert_eq!(logged.failed, 0, "{logged:?}");
    // Nothing of the operator's own CA is written in this mode: the CRDs keep the injected CA.
    let crd = crds
        .get(frontegg_token_operator::webhook::maintain::TOKEN_CRDS[0])
        .await
        .expect("crd");
    let bundle = crd
        .spec
        .conversion
        .and_then(|c| c.webhook?.client_config?.ca_bundle)
        .expect("bundle");
    assert_eq!(
        String::from_utf8_lossy(&bundle.0),
        ca,
        "the operator left the injected CA alone"
    );
    format!(
        "{ok} / {failed}; audit log: {} answered, {} failed (cert-manager's certificate)",
        logged.answered, logged.failed
    )
}

fn matrix_row(cells: &[&str]) -> String {
    format!("| {} |", cells.join(" | "))
}

#[tokio::test]
async fn an_upgrade_a_rollback_and_forward_again_leave_every_token_as_it_was() {
    let client = client().await;
    // From the CRDs as the other tests leave them; the previous chart takes them over.
    install_crds(&client).await;
    let ip = node_ip(&client).await;
    let id = uuid_like()[..6].to_string();
    let c = Cluster {
        fake: Fake::start_on(&ip, &[]).await,
        release: format!("up-{id}"),
        release_ns: format!("up-rel-{id}"),
        ns: format!("up-app-{id}"),
        ip,
        client,
    };
    for n in [&c.release_ns, &c.ns] {
        create_namespace(&c.client, n).await;
    }
    let mut matrix = vec![
        matrix_row(&[
            "step",
            "tokens",
            "remote creates / deletes",
            "Secrets",
            "leaked",
            "default environment",
            "conversions answered / failed",
        ]),
        matrix_row(&["---"; 7]),
    ];

    // The previous release, with tokens of every kind; one rotation mid-grace. Its requests
    // wait long enough that a create the fake never answers is still in flight at the upgrade.
    c.helm(
        "install",
        PREVIOUS_CHART,
        "previous",
        &["operator.requestTimeout=900s"],
    );
    helm_alone_owns_the_crds(&c.client).await;
    let pending = tokens_of_every_kind(&c).await;
    // 0.1 made it a Helm hook, which carried no finalizer.
    let (env_uid, protected, hook) = default_environment(&c).await;
    assert!(
        hook && !protected,
        "the previous release's hook environment"
    );
    let before = held(&c).await;
    let writes = remote_writes(&c.fake).await;
    let attempt = journal_left_open(&c).await;

    // Upgrade: nothing a token holds changes, the journal is settled, and conversion survives
    // the leader's loss.
    c.helm("upgrade", CHART, "dev", &[]);
    two_ready_pods(&c).await;
    let (created, deleted) = journal_settled(&c, &attempt).await;
    c.fake.set_faults(json!({})).await;
    let writes = (writes.0 + created, writes.1 + deleted);
    let mut row = unchanged(&c, "upgrade to this tree", &before, writes, &pending).await;
    row.push(default_environment_kept(&c, "upgrade to this tree", &env_uid).await);
    let ((ok, failed, last), logged) = kill_the_leader(&c).await;
    assert_eq!(
        failed, 0,
        "conversions failed while the leader died: {last}"
    );
    assert!(ok > 0);
    assert_eq!(
        logged.failed, 0,
        "failed lists in the audit log: {logged:?}"
    );
    assert!(
        logged.answered >= ok,
        "the audit log has every list: {logged:?}, {ok}"
    );
    row.push(format!(
        "{ok} / {failed}; audit log: {} answered, {} retried (429, storage reinitializing), {} failed (leader killed)",
        logged.answered, logged.retried, logged.failed
    ));
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    alpha_manifests_still_apply(&c, "applied-after-upgrade").await;
    beta_examples_apply(&c).await;
    let writes = (remote_writes(&c.fake).await.0, writes.1);

    // Rollback to the previous release: the same.
    let (ok_rb, out, err) = helm_run(&[
        "rollback",
        &c.release,
        "1",
        "-n",
        &c.release_ns,
        "--wait",
        "--timeout",
        "180s",
    ]);
    assert!(ok_rb, "helm rollback: {out}{err}");
    two_ready_pods(&c).await;
    let mut row = unchanged(
        &c,
        "rollback to the previous release",
        &before,
        writes,
        &pending,
    )
    .await;
    row.push(default_environment_kept(&c, "rollback to the previous release", &env_uid).await);
    row.push("- (v1alpha1 only)".into());
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    // Forward again, then a CA rotation under load.
    c.helm("upgrade", CHART, "dev", &[]);
    two_ready_pods(&c).await;
    let mut row = unchanged(&c, "forward again", &before, writes, &pending).await;
    row.push(default_environment_kept(&c, "forward again", &env_uid).await);
    let ((ok, failed, last), logged) = rotate_the_ca(&c).await;
    assert_eq!(
        failed, 0,
        "conversions failed during the CA rotation: {last}"
    );
    assert_eq!(
        logged.failed, 0,
        "failed lists in the audit log: {logged:?}"
    );
    assert!(
        logged.answered >= ok,
        "the audit log has every list: {logged:?}, {ok}"
    );
    row.push(format!(
        "{ok} / {failed}; audit log: {} answered, {} retried (429, storage reinitializing), {} failed (CA rotated)",
        logged.answered, logged.retried, logged.failed
    ));
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    // The storage switch, then `kubectl frontegg migrate`: every object is stored as v1beta1
    // and nothing a token holds changes.
    c.helm("upgrade", CHART, "dev", &["crds.storageVersion=v1beta1"]);
    two_ready_pods(&c).await;
    let text = migrate(&[]);
    assert!(text.contains("by a StorageVersionMigration"), "{text}");
    let left = kubectl_ok(&["get", "storageversionmigrations", "-o", "name"], None);
    assert_eq!(left.trim(), "", "migrations that succeeded are deleted");
    assert_stored(&c, "v1beta1").await;
    let step = "storage v1beta1, migrated (StorageVersionMigration)";
    let mut row = unchanged(&c, step, &before, writes, &pending).await;
    row.push(default_environment_kept(&c, step, &env_uid).await);
    row.push(all_stored_as(BETA).await);
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    // cert-manager instead of the operator's own CA, as the chart offers.
    let converted = with_cert_manager(&c).await;
    let mut row = unchanged(&c, "cert-manager's certificate", &before, writes, &pending).await;
    row.push(default_environment_kept(&c, "cert-manager's certificate", &env_uid).await);
    row.push(converted);
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));

    // And back to v1alpha1 storage, which the previous release reads, rewritten by the command
    // itself (`--rewrite`, its path where the cluster has no migration API).
    c.helm("upgrade", CHART, "dev", &["crds.storageVersion=v1alpha1"]);
    two_ready_pods(&c).await;
    let text = migrate(&["--rewrite"]);
    assert!(
        text.contains("(--rewrite: rewritten by this command)"),
        "{text}"
    );
    assert_stored(&c, "v1alpha1").await;
    let step = "storage v1alpha1 again, migrated (--rewrite)";
    let mut row = unchanged(&c, step, &before, writes, &pending).await;
    row.push(default_environment_kept(&c, step, &env_uid).await);
    row.push(all_stored_as(ALPHA).await);
    matrix.push(matrix_row(
        &row.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let refused = refuses_unreadable_crds(&c).await;

    // The grace period ends: the old token is revoked then, and not before.
    wait_for(
        Duration::from_secs(GRACE_SECONDS + 60),
        "the pending revocation done after its grace period",
        || async { c.fake.token(&pending.id).await.is_none().then_some(()) },
    )
    .await;
    assert!(jiff::Timestamp::now() >= pending.not_before);
    assert_eq!(remote_writes(&c.fake).await, (writes.0, writes.1 + 1));
    let table = format!(
        "{}\n\nA CRD storing a version this release cannot read: it refuses to start (\"{refused}\").",
        matrix.join("\n")
    );
    println!("\nupgrade matrix:\n{table}\n");
    std::fs::create_dir_all(format!("{REPO}/target")).expect("target dir");
    std::fs::write(format!("{REPO}/target/upgrade-matrix.md"), &table).expect("write the matrix");

    // Its protection holds: a deletion waits for the tokens issued through it.
    kubectl_ok(
        &[
            "delete",
            "clusterfronteggenvironment",
            &c.release,
            "--wait=false",
        ],
        None,
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let env = get_custom_cluster(&c.client, &c.release).await;
    assert!(env["metadata"]["deletionTimestamp"].is_string(), "{env}");

    // Delete the tokens while the operator runs, so that no later test meets them.
    let extra = [
        ("useraccesstokens", "applied-after-upgrade"),
        ("tenantaccesstokens", "reporting"),
        ("userapitokens", "journaled"),
    ];
    for (plural, name) in TOKENS.iter().chain(&extra) {
        let _ = kubectl_run(&["-n", &c.ns, "delete", plural, name, "--wait=false"], None);
    }
    wait_for(Duration::from_secs(90), "the tokens deleted", || async {
        for (plural, name) in TOKENS.iter().chain(&extra) {
            get_custom(&c.client, &c.ns, plural, name)
                .await
                .is_none()
                .then_some(())?;
        }
        Some(())
    })
    .await;
    wait_for(
        Duration::from_secs(60),
        "the default environment released once its tokens are gone",
        || async {
            let (ok, _, _) = kubectl_run(&["get", "clusterfronteggenvironment", &c.release], None);
            (!ok).then_some(())
        },
    )
    .await;
    // The CRDs are left as the next run's previous release can take them (0.1 knows no
    // v1beta1): stored as v1alpha1 alone, since the step above.
    let (ok, out, err) = helm_run(&["uninstall", &c.release, "-n", &c.release_ns, "--wait"]);
    assert!(ok, "helm uninstall: {out}{err}");
}
