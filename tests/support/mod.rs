//! Test support: a real control plane (started once per test process, or reused via
//! FTO_TEST_KUBECONFIG), one namespace per test, and the fake and operator binaries as child
//! processes that die with the test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::{Value, json};

pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Path of a kubeconfig for a running control plane. A watchdog tied to this process stops
/// a control plane started here, even if the test binary panics or aborts.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        if let Ok(path) = std::env::var("FTO_TEST_KUBECONFIG") {
            return PathBuf::from(path);
        }
        let dir =
            PathBuf::from(REPO).join(format!(".cache/control-plane-test-{}", std::process::id()));
        let status = Command::new(format!("{REPO}/hack/control-plane"))
            .args(["up", "--owner-pid", &std::process::id().to_string()])
            .env("FTO_CP_DIR", &dir)
            .stdout(Stdio::null())
            .status()
            .expect("run hack/control-plane");
        assert!(
            status.success(),
            "hack/control-plane up failed; see {}",
            dir.display()
        );
        dir.join("kubeconfig")
    })
}

pub fn kubectl_path() -> PathBuf {
    let versions =
        std::fs::read_to_string(format!("{REPO}/hack/versions.env")).expect("versions.env");
    let wheel = versions
        .lines()
        .find_map(|l| l.strip_prefix("KUBECTL_LAYER_WHEEL="))
        .expect("KUBECTL_LAYER_WHEEL in versions.env");
    PathBuf::from(format!("{REPO}/.cache/tools/{wheel}/bin/kubectl"))
}

pub fn helm_path() -> PathBuf {
    kubectl_path().with_file_name("helm")
}

/// Runs kubectl (admin) and returns (success, stdout, stderr).
pub fn kubectl_run(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    run_tool(&kubectl_path(), args, stdin, kubeconfig())
}

/// Runs helm (admin) and returns (success, stdout, stderr).
pub fn helm_run(args: &[&str]) -> (bool, String, String) {
    run_tool(&helm_path(), args, None, kubeconfig())
}

pub fn run_tool(
    tool: &Path,
    args: &[&str],
    stdin: Option<&str>,
    kubeconfig: &Path,
) -> (bool, String, String) {
    use std::io::Write;
    // A discovery cache of its own per call: the tests serve and withdraw API versions (the
    // chart's CRDs serve v1beta1, the harness's do not), and kubectl would otherwise ask for a
    // version another test's cache still names.
    let cache = tempfile::tempdir().expect("kubectl cache dir");
    let mut child = Command::new(tool)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("KUBECACHEDIR", cache.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A kubeconfig that authenticates as a ServiceAccount, with a token from the TokenRequest API
/// (what a Pod of that ServiceAccount would get).
pub fn service_account_kubeconfig(namespace: &str, name: &str) -> PathBuf {
    let (ok, token, err) = kubectl_run(
        &["-n", namespace, "create", "token", name, "--duration=2h"],
        None,
    );
    assert!(ok, "TokenRequest for {namespace}/{name}: {err}");
    let admin = std::fs::read_to_string(kubeconfig()).expect("admin kubeconfig");
    let server = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server")
        .to_string();
    let path = PathBuf::from(REPO).join(format!("target/e2e-logs/kubeconfig-{namespace}-{name}"));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
    std::fs::write(&path, format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\n\
         users:\n- name: sa\n  user: {{token: \"{}\"}}\ncontexts:\n- name: c\n  context: {{cluster: c, user: sa, namespace: {namespace}}}\ncurrent-context: c\n",
        token.trim()
    )).expect("write kubeconfig");
    path
}

pub async fn client() -> Client {
    let kc = Kubeconfig::read_from(kubeconfig()).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// Server-side applies the generated CRDs (idempotent) and waits until they are served.
/// Installs the CRDs as an operator outside the cluster needs them: `v1alpha1` only, with no
/// conversion webhook, which no Service would reach (a webhook that cannot be reached stalls
/// the garbage collector for every kind). A webhook a chart installed before is removed.
pub async fn install_crds(client: &Client) {
    use frontegg_token_operator::api::{Conversion, crds_with};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds_with(&Conversion::AlphaOnly) {
        let name = crd.metadata.name.clone().expect("crd name");
        let no_webhook = json!({"spec": {"conversion": {"strategy": "None", "webhook": null}}});
        // Absent on a fresh cluster: nothing to remove.
        let _ = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&no_webhook))
            .await;
        api.patch(
            &name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("apply crd");
        wait_for(
            Duration::from_secs(30),
            &format!("CRD {name} established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}

/// A manifest as the harness's CRDs take it: they serve `v1alpha1` alone (`install_crds`), so
/// a `v1beta1` one (the examples) goes through the operator's own conversion first, the one
/// the webhook serves (tests/upgrade.rs applies a `v1beta1` example through the webhook).
pub fn as_v1alpha1(manifest: Value) -> Value {
    use frontegg_token_operator::api::convert::{V1ALPHA1, V1BETA1, convert};
    if manifest["apiVersion"] == V1BETA1 {
        convert(manifest, V1ALPHA1).expect("a v1beta1 manifest converts")
    } else {
        manifest
    }
}

/// Polls `check` until it returns Some, or panics naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A child process killed when dropped.
pub struct Process(pub Child);
impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Frontegg fake with its admin API.
pub struct Fake {
    pub url: String,
    pub client_id: String,
    pub secret: String,
    http: reqwest::Client,
    _process: Process,
}

impl Fake {
    pub async fn start(extra: &[&str]) -> Fake {
        Fake::start_on("127.0.0.1", extra).await
    }

    /// On another local address, e.g. the node IP, where pods can reach it.
    pub async fn start_on(host: &str, extra: &[&str]) -> Fake {
        let port = free_port();
        let client_id = format!("vendor-{}", uuid_like());
        let secret = format!("vendor-secret-{}", uuid_like());
        let child = Command::new(env!("CARGO_BIN_EXE_frontegg-fake"))
            .args([
                "--listen",
                &format!("{host}:{port}"),
                "--client-id",
                &client_id,
                "--secret",
                &secret,
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn frontegg-fake");
        let fake = Fake {
            url: format!("http://{host}:{port}"),
            client_id,
            secret,
            http: reqwest::Client::new(),
            _process: Process(child),
        };
        let url = format!("{}/_admin/stats", fake.url);
        let http = fake.http.clone();
        wait_for(Duration::from_secs(10), "frontegg-fake to listen", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            }
        })
        .await;
        fake
    }

    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("admin get")
            .json()
            .await
            .expect("admin json")
    }

    /// Calls by "METHOD /route".
    pub async fn calls(&self, route: &str) -> u64 {
        self.get("/_admin/stats").await["calls"][route]
            .as_u64()
            .unwrap_or(0)
    }

    pub async fn identity_calls(&self) -> u64 {
        let stats = self.get("/_admin/stats").await;
        stats["calls"].as_object().map_or(0, |m| {
            m.iter()
                .filter(|(k, _)| k.contains("/identity/"))
                .map(|(_, v)| v.as_u64().unwrap_or(0))
                .sum()
        })
    }

    pub async fn tokens(&self) -> Vec<Value> {
        self.get("/_admin/tokens")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn token(&self, id: &str) -> Option<Value> {
        self.tokens().await.into_iter().find(|t| t["id"] == id)
    }

    pub async fn issued_secrets(&self) -> Vec<String> {
        self.get("/_admin/issued-secrets")
            .await
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    }

    pub async fn call_log(&self) -> Vec<Value> {
        self.get("/_admin/calls")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn set_faults(&self, faults: Value) {
        let r = self
            .http
            .put(format!("{}/_admin/faults", self.url))
            .json(&faults)
            .send()
            .await
            .expect("set faults");
        assert!(r.status().is_success());
    }

    pub async fn delete_token(&self, id: &str) {
        let r = self
            .http
            .delete(format!("{}/_admin/tokens/{id}", self.url))
            .send()
            .await
            .expect("delete token");
        assert!(r.status().is_success());
    }

    pub async fn reset_stats(&self) {
        self.http
            .post(format!("{}/_admin/reset-stats", self.url))
            .send()
            .await
            .expect("reset stats");
    }

    pub async fn revoke_refresh_tokens(&self) {
        self.http
            .post(format!("{}/_admin/revoke-refresh-tokens", self.url))
            .send()
            .await
            .expect("revoke refresh tokens");
    }

    /// How many refresh tokens API token `id` holds.
    pub async fn refresh_tokens(&self, id: &str) -> u64 {
        self.get(&format!("/_admin/refresh-tokens/{id}")).await["refreshTokens"]
            .as_u64()
            .unwrap_or(0)
    }

    /// A portal edit of a remote token (description, metadata, roleIds, permissionIds).
    pub async fn edit_token(&self, id: &str, edit: Value) {
        let r = self
            .http
            .patch(format!("{}/_admin/tokens/{id}", self.url))
            .json(&edit)
            .send()
            .await
            .expect("edit token");
        assert!(r.status().is_success(), "edit token: {}", r.status());
    }

    /// Creates a token through the public API, as the portal or Terraform would: returns the
    /// create response (`clientId` or `id`, `secret`).
    pub async fn create_remote(
        &self,
        path: &str,
        tenant: &str,
        user: Option<&str>,
        body: Value,
    ) -> Value {
        let auth: Value = self
            .http
            .post(format!("{}/auth/vendor", self.url))
            .json(&json!({ "clientId": self.client_id, "secret": self.secret }))
            .send()
            .await
            .expect("vendor auth")
            .json()
            .await
            .expect("vendor auth json");
        let mut req = self
            .http
            .post(format!("{}/identity{path}", self.url))
            .bearer_auth(auth["token"].as_str().expect("vendor token"))
            .header("frontegg-tenant-id", tenant)
            .json(&body);
        if let Some(user) = user {
            req = req.header("frontegg-user-id", user);
        }
        let r = req.send().await.expect("create remote");
        assert_eq!(r.status().as_u16(), 201, "create remote token");
        r.json().await.expect("create json")
    }

    pub async fn revoke_vendor_tokens(&self) {
        self.http
            .post(format!("{}/_admin/revoke-vendor-tokens", self.url))
            .send()
            .await
            .expect("revoke");
    }
}

/// A random-enough lowercase hex id; every prefix is as unique as the whole (callers slice it).
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    h.write_u64(std::process::id() as u64);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", h.finish())
}

/// The operator binary, run as a process against the test control plane.
pub struct Operator {
    pub log: PathBuf,
    pub metrics_url: String,
    process: Option<Process>,
}

impl Operator {
    pub fn start(name: &str, args: &[String]) -> Operator {
        Self::start_with(name, args, kubeconfig(), &[])
    }

    /// Starts the operator as `kubeconfig`'s identity with extra environment variables.
    pub fn start_with(
        name: &str,
        args: &[String],
        kubeconfig: &Path,
        envs: &[(&str, &str)],
    ) -> Operator {
        let dir = PathBuf::from(REPO).join("target/e2e-logs");
        std::fs::create_dir_all(&dir).expect("log dir");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_frontegg-token-operator"))
            .arg("run")
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,frontegg_token_operator=debug,kube=warn")
            .envs(envs.iter().copied())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            .spawn()
            .expect("spawn operator");
        Operator {
            log,
            metrics_url: format!("http://127.0.0.1:{port}"),
            process: Some(Process(child)),
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let process = self.process.as_mut()?;
        let pid = process.0.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().ok()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = process.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    pub fn stop(&mut self) {
        self.process.take();
    }

    /// The process id while the process runs; None once it has exited (or was stopped).
    pub fn running_pid(&mut self) -> Option<u32> {
        let process = self.process.as_mut()?;
        match process.0.try_wait() {
            Ok(None) => Some(process.0.id()),
            _ => None,
        }
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&mut self) -> Option<u64> {
        let pid = self.running_pid()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// One test's world: a namespace, a fake, a ClusterFronteggEnvironment for it and an operator
/// watching only that namespace (and any `extra_namespaces`).
pub struct TestEnv {
    /// The arguments the operator was started with (to start a second replica).
    pub operator_args: Vec<String>,
    pub client: Client,
    pub ns: String,
    pub env_name: String,
    pub fake: Fake,
    pub operator: Operator,
}

pub struct Options {
    pub allowed_tenants: Vec<String>,
    pub extra_namespaces: Vec<String>,
    pub resync: &'static str,
    /// Extra flags for the fake (e.g. a short JWT lifetime).
    pub fake_args: Vec<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            allowed_tenants: vec!["*".into()],
            extra_namespaces: vec![],
            resync: "3s",
            fake_args: vec![],
        }
    }
}

impl TestEnv {
    pub async fn start(name: &str) -> TestEnv {
        Self::start_with(name, Options::default()).await
    }

    pub async fn start_with(name: &str, opts: Options) -> TestEnv {
        let client = client().await;
        install_crds(&client).await;
        let ns = format!("e2e-{name}-{}", &uuid_like()[..6])
            .chars()
            .take(50)
            .collect::<String>()
            .trim_end_matches('-')
            .to_string();
        for n in std::iter::once(&ns).chain(&opts.extra_namespaces) {
            create_namespace(&client, n).await;
        }
        let fake = Fake::start(&opts.fake_args).await;
        apply_yaml(&client, &format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"frontegg-credentials","namespace":"{ns}",
               "labels":{{"tokens.frontegg-operator.io/credentials":"true"}}}},
               "stringData":{{"clientId":"{}","secret":"{}"}}}}"#, fake.client_id, fake.secret)).await;
        let env_name = ns.clone();
        let allowed: Vec<String> = std::iter::once(ns.clone()).collect();
        apply_yaml(
            &client,
            &json!({
                "apiVersion": "tokens.frontegg-operator.io/v1alpha1",
                "kind": "ClusterFronteggEnvironment",
                "metadata": { "name": env_name, "labels": { "e2e": ns } },
                "spec": {
                    "baseUrl": fake.url,
                    "credentialsSecretRef": { "name": "frontegg-credentials" },
                    "allowedNamespaces": { "names": allowed },
                    "allowedTenants": opts.allowed_tenants,
                }
            })
            .to_string(),
        )
        .await;
        let watch: Vec<String> = std::iter::once(ns.clone())
            .chain(opts.extra_namespaces.iter().cloned())
            .collect();
        let operator_args: Vec<String> = [
            "--watch-namespaces",
            &watch.join(","),
            "--operator-namespace",
            &ns,
            "--cluster-environment-selector",
            &format!("e2e={ns}"),
            "--default-environment",
            &format!("ClusterFronteggEnvironment/{env_name}"),
            "--resync-period",
            opts.resync,
            "--environment-retry",
            "1s",
            "--permanent-failure-retry",
            "10m",
            // Tests rotate and repair within seconds; the guard itself is proven in
            // tests/hostile.rs with the default interval.
            "--min-reissue-interval",
            "1s",
            // Replaced tokens are revoked at once here; grace periods have their own tests.
            "--grace-period",
            "0s",
            // The fakes listen on loopback.
            "--allowed-base-url",
            "http://127.0.0.1:*",
            "--lease-duration-seconds",
            "4",
            "--lease-grace-seconds",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let operator = Operator::start_with(
            &ns,
            &operator_args,
            kubeconfig(),
            &[("POD_NAME", "operator-a")],
        );
        TestEnv {
            operator_args,
            client,
            ns,
            env_name,
            fake,
            operator,
        }
    }

    /// Stops this test's operator and starts it again with the same arguments, `extra`
    /// (`--flag value` pairs that replace the same flags), and the extra environment variables
    /// `envs` (a crash hook, say). Its log gets `suffix`.
    pub fn restart_operator(&mut self, suffix: &str, extra: &[&str], envs: &[(&str, &str)]) {
        self.operator.stop();
        let mut args = Vec::new();
        let mut given = self.operator_args.iter();
        while let Some(flag) = given.next() {
            let value = given.next().cloned().unwrap_or_default();
            if !extra.chunks(2).any(|pair| pair[0] == flag) {
                args.extend([flag.clone(), value]);
            }
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut all_envs = vec![("POD_NAME", "operator-a")];
        all_envs.extend_from_slice(envs);
        self.operator = Operator::start_with(
            &format!("{}-{suffix}", self.ns),
            &args,
            kubeconfig(),
            &all_envs,
        );
    }

    /// Applies a manifest (YAML or JSON) into this test's namespace.
    pub async fn apply(&self, manifest: &str) -> Value {
        let mut v: Value = serde_yaml::from_str(manifest).expect("manifest");
        v["metadata"]["namespace"] = json!(self.ns);
        apply_yaml(&self.client, &v.to_string()).await
    }

    /// `apply` for a JSON value (owned, so many can run concurrently).
    pub async fn apply_owned(&self, manifest: Value) -> Value {
        self.apply(&manifest.to_string()).await
    }

    pub async fn get(&self, kind_plural: &str, name: &str) -> Option<Value> {
        get_custom(&self.client, &self.ns, kind_plural, name).await
    }

    /// Waits for the Ready condition to have `status` (and `reason` when given).
    pub async fn wait_ready(
        &self,
        plural: &str,
        name: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Value {
        wait_for(
            Duration::from_secs(60),
            &format!("{plural}/{name} Ready={status} {reason:?}"),
            || async {
                let obj = self.get(plural, name).await?;
                let cond = obj["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (cond["status"] == status && reason.is_none_or(|r| cond["reason"] == r))
                    .then_some(obj)
            },
        )
        .await
    }

    /// Waits for an Event with `reason` about `object` in this test's namespace.
    /// The reasons of every Event in this test's namespace.
    pub async fn event_reasons(&self) -> Vec<String> {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        let list = events.list(&Default::default()).await.expect("list Events");
        list.items.into_iter().filter_map(|e| e.reason).collect()
    }

    pub async fn assert_event(&self, object: &str, reason: &str) {
        let events: Api<k8s_openapi::api::core::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        wait_for(
            Duration::from_secs(30),
            &format!("Event {reason} for {object}"),
            || async {
                let list = events.list(&Default::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.involved_object.name.as_deref() == Some(object)
                            && e.reason.as_deref() == Some(reason)
                    })
                    .then_some(())
            },
        )
        .await;
    }

    /// Waits for this test's ClusterFronteggEnvironment to report Ready=`status` (and `reason`).
    pub async fn wait_environment(&self, status: &str, reason: Option<&str>) {
        let api = dynamic_api(&self.client, None, "clusterfronteggenvironments");
        wait_for(
            Duration::from_secs(30),
            &format!("environment Ready={status} {reason:?}"),
            || async {
                let obj = serde_json::to_value(api.get(&self.env_name).await.ok()?).ok()?;
                let cond = obj["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (cond["status"] == status && reason.is_none_or(|r| cond["reason"] == r))
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn secret(&self, name: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
        Api::<k8s_openapi::api::core::v1::Secret>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .expect("get secret")
    }

    pub async fn delete(&self, plural: &str, name: &str) {
        let api = dynamic_api(&self.client, Some(&self.ns), plural);
        api.delete(name, &Default::default()).await.expect("delete");
    }

    /// The operator's whole log must not contain any secret the fake ever handed out, nor the
    /// vendor secret.
    pub async fn assert_no_secrets_logged(&self) {
        let log = self.operator.log_text();
        assert!(!log.is_empty(), "operator log is empty");
        let mut secrets = self.fake.issued_secrets().await;
        secrets.push(self.fake.secret.clone());
        assert!(secrets.len() > 1, "the test issued no secrets to look for");
        for s in secrets {
            assert!(!log.contains(&s), "operator log contains a secret");
        }
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).expect("ns");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

pub fn dynamic_api(
    client: &Client,
    ns: Option<&str>,
    plural: &str,
) -> Api<kube::api::DynamicObject> {
    let (group, version, kind) = match plural {
        "secrets" => ("", "v1", "Secret"),
        "deployments" => ("apps", "v1", "Deployment"),
        "clusterfronteggenvironments" => (
            "tokens.frontegg-operator.io",
            "v1alpha1",
            "ClusterFronteggEnvironment",
        ),
        "fronteggenvironments" => (
            "tokens.frontegg-operator.io",
            "v1alpha1",
            "FronteggEnvironment",
        ),
        "userapitokens" => ("tokens.frontegg-operator.io", "v1alpha1", "UserApiToken"),
        "useraccesstokens" => ("tokens.frontegg-operator.io", "v1alpha1", "UserAccessToken"),
        "tenantapitokens" => ("tokens.frontegg-operator.io", "v1alpha1", "TenantApiToken"),
        "tenantaccesstokens" => (
            "tokens.frontegg-operator.io",
            "v1alpha1",
            "TenantAccessToken",
        ),
        other => panic!("unknown plural {other}"),
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
    let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn plural_of(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// Server-side applies one manifest and returns the result.
pub async fn apply_yaml(client: &Client, manifest: &str) -> Value {
    let v: Value = serde_yaml::from_str(manifest).expect("manifest");
    let kind = v["kind"].as_str().expect("kind");
    let name = v["metadata"]["name"].as_str().expect("name");
    let ns = v["metadata"]["namespace"].as_str();
    let api = dynamic_api(client, ns, &plural_of(kind));
    let obj = api
        .patch(name, &PatchParams::apply("e2e").force(), &Patch::Apply(&v))
        .await
        .unwrap_or_else(|e| panic!("apply {kind}/{name}: {e}"));
    serde_json::to_value(obj).expect("json")
}

pub async fn get_custom(client: &Client, ns: &str, plural: &str, name: &str) -> Option<Value> {
    let api = dynamic_api(client, Some(ns), plural);
    api.get_opt(name)
        .await
        .expect("get")
        .map(|o| serde_json::to_value(o).expect("json"))
}

/// The condition of `type_` in an object's status.
pub fn condition(obj: &Value, type_: &str) -> Option<Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// The data of a Secret as strings.
pub fn secret_data(
    s: &k8s_openapi::api::core::v1::Secret,
) -> std::collections::BTreeMap<String, String> {
    s.data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf8")))
        .collect()
}

/// The node hack/node runs (tests/in_cluster.rs and tests/upgrade.rs).
pub const NODE: &str = "fto-node";

/// The node's address: where pods reach a fake the test starts on the host.
pub async fn node_ip(client: &Client) -> String {
    use k8s_openapi::api::core::v1::Node;
    let node = Api::<Node>::all(client.clone())
        .get_opt(NODE)
        .await
        .expect("get node")
        .unwrap_or_else(|| {
            panic!("no node {NODE}: run hack/test, or hack/control-plane up --node and hack/node up target/images/*.tar")
        });
    node.status
        .and_then(|s| s.addresses)
        .into_iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address)
        .expect("node InternalIP")
}
