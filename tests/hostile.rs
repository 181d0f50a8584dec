//! Hostile input on the real control plane: token specs and environments a namespace user
//! controls, and every kind of broken answer a `baseUrl` can send. One operator process
//! serves a victim namespace (a healthy environment) and one namespace per hostile case (an
//! environment of its own, pointing at a fake with the case's fault). For every case:
//! - the operator process is still the same PID;
//! - its peak RSS (VmHWM) stays under 128 MiB;
//! - a new healthy token in the victim namespace becomes Ready within 10 s;
//! - the hostile resource costs at most one remote create.
//!
//! The matrix it prints is kept in docs/reliability.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const VM_HWM_LIMIT_KIB: u64 = 128 * 1024;
const CREATE_ROUTES: [&str; 4] = [
    "POST /identity/resources/users/api-tokens/v1",
    "POST /identity/resources/users/access-tokens/v1",
    "POST /identity/resources/tenants/api-tokens/v2",
    "POST /identity/resources/tenants/access-tokens/v1",
];

struct Victim {
    client: kube::Client,
    ns: String,
    operator: Operator,
    pid: u32,
    fake: Fake,
}

/// One hostile namespace with its own environment and fake.
struct Case {
    ns: String,
    fake: Fake,
}

impl Case {
    async fn start(client: &kube::Client, ns: &str) -> Case {
        let fake = Fake::start(&[]).await;
        apply_yaml(
            client,
            &json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "hostile-credentials", "namespace": ns,
                             "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
                "stringData": {"clientId": fake.client_id, "secret": fake.secret}
            })
            .to_string(),
        )
        .await;
        apply_yaml(client, &json!({
            "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "FronteggEnvironment",
            "metadata": {"name": "hostile", "namespace": ns},
            "spec": {"baseUrl": fake.url, "credentialsSecretRef": {"name": "hostile-credentials"}}
        }).to_string()).await;
        Case {
            ns: ns.to_string(),
            fake,
        }
    }

    /// A token manifest in this case's namespace, on its environment.
    fn token(&self, kind: &str, name: &str, extra: Value) -> Value {
        let mut spec = json!({
            "tenantId": "tenant-h",
            "environmentRef": {"kind": "FronteggEnvironment", "name": "hostile"},
        });
        if kind.starts_with("User") {
            spec["userId"] = json!("user-h");
        }
        merge(&mut spec, extra);
        json!({
            "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": kind,
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        })
    }

    /// Issues a healthy token `t` first, then counts from zero: the fault comes after.
    async fn issued(&self, client: &kube::Client, within: Duration) -> Result<(), String> {
        try_apply(client, &self.token("UserAccessToken", "t", json!({})))
            .await
            .expect("apply");
        wait_reason(
            client,
            &self.ns,
            "useraccesstokens",
            "t",
            "True",
            &["TokenReady"],
            within,
        )
        .await?;
        self.fake.reset_stats().await;
        Ok(())
    }

    async fn creates(&self) -> u64 {
        let mut n = 0;
        for route in CREATE_ROUTES {
            n += self.fake.calls(route).await;
        }
        n
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
}

/// Server-side apply that may be refused; returns the apiserver's message when it is.
async fn try_apply(client: &kube::Client, manifest: &Value) -> Result<(), String> {
    let kind = manifest["kind"].as_str().expect("kind");
    let ns = manifest["metadata"]["namespace"].as_str();
    let name = manifest["metadata"]["name"].as_str().expect("name");
    let api = dynamic_api(client, ns, &format!("{}s", kind.to_lowercase()));
    api.patch(
        name,
        &kube::api::PatchParams::apply("hostile").force(),
        &kube::api::Patch::Apply(manifest),
    )
    .await
    .map(|_| ())
    .map_err(|e| match e {
        kube::Error::Api(s) => s.message,
        other => other.to_string(),
    })
}

/// The Ready condition's (status, reason, message), once it exists.
async fn ready(
    client: &kube::Client,
    ns: &str,
    plural: &str,
    name: &str,
) -> Option<(String, String, String)> {
    let obj = get_custom(client, ns, plural, name).await?;
    let cond = obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        cond["status"].as_str()?.to_string(),
        cond["reason"].as_str()?.to_string(),
        cond["message"].as_str().unwrap_or_default().to_string(),
    ))
}

// A test helper: the 6-parameter bound (clippy.toml) is for the operator's own code.
#[allow(clippy::too_many_arguments)]
async fn wait_reason(
    client: &kube::Client,
    ns: &str,
    plural: &str,
    name: &str,
    status: &str,
    reasons: &[&str],
    within: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut last = None;
    while Instant::now() < deadline {
        last = ready(client, ns, plural, name).await;
        if let Some((s, r, m)) = &last
            && s == status
            && reasons.contains(&r.as_str())
        {
            return Ok(format!(
                "Ready={s} {r}: {}",
                m.chars().take(90).collect::<String>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("expected Ready={status} {reasons:?}, saw {last:?}"))
}

#[tokio::test]
async fn no_token_author_and_no_remote_endpoint_can_crash_loop_starve_or_bloat_the_operator() {
    let client = client().await;
    install_crds(&client).await;
    let id = &uuid_like()[..6];
    let victim_ns = format!("hostile-victim-{id}");
    create_namespace(&client, &victim_ns).await;
    let case_names = [
        "renew-overflow",
        "renew-longer",
        "key-slash",
        "label-key",
        "nested-loops",
        "retry-after",
        "vendor-lifetime",
        "huge-body",
        "never-answers",
        "commit-drop",
        "garbage",
        "wrong-types",
        "slow-drip",
        "list-omits",
        "rotate-storm",
        "panic",
    ];
    let namespaces: Vec<String> = case_names
        .iter()
        .map(|c| format!("hostile-{c}-{id}"))
        .collect();
    for ns in &namespaces {
        create_namespace(&client, ns).await;
    }

    // The victim: a healthy environment in its own namespace.
    let fake = Fake::start(&[]).await;
    apply_yaml(
        &client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "frontegg-credentials", "namespace": victim_ns,
                         "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
            "stringData": {"clientId": fake.client_id, "secret": fake.secret}
        })
        .to_string(),
    )
    .await;
    let env_name = format!("victim-{id}");
    apply_yaml(&client, &json!({
        "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "ClusterFronteggEnvironment",
        "metadata": {"name": env_name, "labels": {"e2e": victim_ns}},
        "spec": {"baseUrl": fake.url, "credentialsSecretRef": {"name": "frontegg-credentials"},
                 "allowedNamespaces": {"names": [victim_ns]}, "allowedTenants": ["*"]}
    }).to_string()).await;
    let watch: Vec<String> = std::iter::once(victim_ns.clone())
        .chain(namespaces.iter().cloned())
        .collect();
    // Production defaults for everything a hostile input meets (the reissue interval, the
    // request deadline, the inline waits); only the resync is short, so list-driven repairs
    // happen within the test.
    let args: Vec<String> = [
        "--watch-namespaces",
        &watch.join(","),
        "--operator-namespace",
        &victim_ns,
        "--cluster-environment-selector",
        &format!("e2e={victim_ns}"),
        "--default-environment",
        &format!("ClusterFronteggEnvironment/{env_name}"),
        "--resync-period",
        "3s",
        "--environment-retry",
        "1s",
        "--leader-election",
        "false",
        "--allowed-base-url",
        "http://127.0.0.1:*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut operator = Operator::start_with(&format!("hostile-{id}"), &args, kubeconfig(), &[]);
    let pid = operator.running_pid().expect("operator started");
    let mut victim = Victim {
        client: client.clone(),
        ns: victim_ns,
        operator,
        pid,
        fake,
    };
    // The first healthy token also waits out the operator's start.
    let first = json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "UserAccessToken",
        "metadata": {"name": "healthy-start", "namespace": victim.ns}, "spec": {"tenantId": "t", "userId": "u"}});
    try_apply(&client, &first).await.expect("apply");
    wait_reason(
        &client,
        &victim.ns,
        "useraccesstokens",
        "healthy-start",
        "True",
        &["TokenReady"],
        Duration::from_secs(60),
    )
    .await
    .expect("the operator serves the victim");

    let mut matrix: Vec<[String; 3]> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (i, name) in case_names.iter().enumerate() {
        let case = Case::start(&client, &namespaces[i]).await;
        let started = Instant::now();
        let (expected, observed) = run_case(name, &case, &victim).await;
        let creates = case.creates().await;
        // The victim must not notice: a new token of its own is Ready within 10 s.
        let healthy = json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "UserAccessToken",
            "metadata": {"name": format!("healthy-{name}"), "namespace": victim.ns},
            "spec": {"tenantId": "t", "userId": "u"}});
        try_apply(&client, &healthy).await.expect("apply healthy");
        let healthy_started = Instant::now();
        let healthy_ready = wait_reason(
            &client,
            &victim.ns,
            "useraccesstokens",
            &format!("healthy-{name}"),
            "True",
            &["TokenReady"],
            Duration::from_secs(10),
        )
        .await;
        let healthy_after = healthy_started.elapsed();
        let same_pid = victim.operator.running_pid() == Some(victim.pid);
        let hwm = victim.operator.peak_rss_kib().unwrap_or(u64::MAX);

        let mut problems = Vec::new();
        let observed = match observed {
            Ok(o) => o,
            Err(e) => {
                problems.push(e.clone());
                e
            }
        };
        if !same_pid {
            problems.push("the operator process exited".into());
        }
        if hwm >= VM_HWM_LIMIT_KIB {
            problems.push(format!("VmHWM {hwm} KiB"));
        }
        if let Err(e) = &healthy_ready {
            problems.push(format!("healthy token: {e}"));
        }
        if creates > 1 {
            problems.push(format!("{creates} remote creates"));
        }
        let verdict = if problems.is_empty() { "ok" } else { "FAILED" };
        matrix.push([
            name.to_string(),
            expected.to_string(),
            format!(
                "{observed}; same PID: {same_pid}; VmHWM {} MiB; healthy token Ready in {:.1} s; remote creates: {creates}; {verdict}",
                hwm / 1024,
                healthy_after.as_secs_f64()
            ),
        ]);
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
        eprintln!(
            "case {name} done in {:.1} s: {verdict}",
            started.elapsed().as_secs_f64()
        );
        if !same_pid {
            break;
        }
    }

    let mut table = String::from("| case | expected | observed |\n|---|---|---|\n");
    for [case, expected, observed] in &matrix {
        table.push_str(&format!(
            "| {case} | {expected} | {} |\n",
            observed.replace('|', "/")
        ));
    }
    println!("{table}");
    let out = std::path::PathBuf::from(REPO).join("target/hostile-matrix.md");
    std::fs::write(&out, &table).expect("write matrix");
    let log = victim.operator.log_text();
    assert!(
        !log.contains(&victim.fake.secret),
        "the vendor secret reached the log"
    );
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}

/// Cases that are one fault on the case's fake and one token of a kind: name, what should
/// happen, the fake's faults, the kind, and the Ready status and reason it should reach.
const FAULT_CASES: [(&str, &str, &str, &str, &str, &str); 7] = [
    (
        "retry-after",
        "Ready=False RateLimited; the reset is clamped to 15 min",
        r#"{"rateLimitRate": 1.0, "rateLimitRetryAfter": "999999999999", "pathPrefix": "/identity"}"#,
        "UserAccessToken",
        "False",
        "RateLimited",
    ),
    (
        "vendor-lifetime",
        "issued normally; the vendor token lifetime is clamped to 24 h",
        r#"{"vendorExpiresIn": 1e19}"#,
        "UserAccessToken",
        "True",
        "TokenReady",
    ),
    (
        "huge-body",
        "Ready=False InvalidResponse; the body is cut at 1 MiB",
        r#"{"hugeBodyNext": 1000, "pathPrefix": "/identity"}"#,
        "UserAccessToken",
        "False",
        "InvalidResponse",
    ),
    (
        "commit-drop",
        "the create is never re-sent; Ready=False FronteggUnavailable",
        r#"{"dropAfterCommitNext": 1000, "pathPrefix": "/identity/resources/users/access-tokens"}"#,
        "UserAccessToken",
        "False",
        "FronteggUnavailable",
    ),
    (
        "garbage",
        "Ready=False InvalidResponse (an HTML 200), quoting nothing",
        r#"{"garbageNext": 1000, "pathPrefix": "/identity"}"#,
        "UserAccessToken",
        "False",
        "InvalidResponse",
    ),
    (
        "wrong-types",
        "Ready=False InvalidResponse",
        r#"{"wrongTypesNext": 1000, "pathPrefix": "/identity"}"#,
        "UserApiToken",
        "False",
        "InvalidResponse",
    ),
    (
        "slow-drip",
        "Ready=False FronteggUnavailable after the 10 s deadline",
        r#"{"slowDripNext": 1000, "pathPrefix": "/identity"}"#,
        "UserAccessToken",
        "False",
        "FronteggUnavailable",
    ),
];

/// Runs one case; returns what it should do and what happened (Err: not what it should).
async fn run_case(
    name: &str,
    case: &Case,
    victim: &Victim,
) -> (&'static str, Result<String, String>) {
    let client = &victim.client;
    let ns = case.ns.as_str();
    let refused_at_admission = |manifest: Value| async move {
        match try_apply(client, &manifest).await {
            Err(message) => Ok(format!(
                "refused at admission: {}",
                message.chars().take(120).collect::<String>()
            )),
            Ok(()) => Err("admitted".to_string()),
        }
    };
    let within = Duration::from_secs(30);
    if let Some((_, expected, faults, kind, status, reason)) =
        FAULT_CASES.iter().find(|c| c.0 == name)
    {
        case.fake
            .set_faults(serde_json::from_str(faults).expect("faults"))
            .await;
        try_apply(client, &case.token(kind, "t", json!({})))
            .await
            .expect("apply");
        let plural = format!("{}s", kind.to_lowercase());
        return (
            expected,
            wait_reason(client, ns, &plural, "t", status, &[reason], within).await,
        );
    }
    match name {
        "renew-overflow" => (
            "refused at admission, no panic",
            refused_at_admission(case.token(
                "UserApiToken",
                "t",
                json!({"renewBefore": "18446744073709551615s1s"}),
            ))
            .await,
        ),
        "renew-longer" => (
            "refused at admission (renewBefore ≥ lifetime would renew forever)",
            refused_at_admission(case.token(
                "UserApiToken",
                "t",
                json!({"expiresIn": "1h", "renewBefore": "2h"}),
            ))
            .await,
        ),
        "key-slash" => (
            "refused at admission, no create",
            refused_at_admission(case.token(
                "UserApiToken",
                "t",
                json!({"secret": {"template": {"data": {"a/b": "{{ secret }}"}}}}),
            ))
            .await,
        ),
        "label-key" => (
            "refused at admission, no create",
            refused_at_admission(case.token(
                "UserApiToken",
                "t",
                json!({"secret": {"labels": {"not a key!": "v"}}}),
            ))
            .await,
        ),
        "nested-loops" => {
            let loops = "{% for a in secret %}{% for b in secret %}{% for c in secret %}{% for d in secret %}{{ a }}{{ b }}{{ c }}{{ d }}{% endfor %}{% endfor %}{% endfor %}{% endfor %}";
            try_apply(
                client,
                &case.token(
                    "UserApiToken",
                    "t",
                    json!({"secret": {"template": {"data": {"x": loops}}}}),
                ),
            )
            .await
            .expect("apply");
            (
                "Ready=False InvalidSpec before any remote call",
                wait_reason(
                    client,
                    ns,
                    "userapitokens",
                    "t",
                    "False",
                    &["InvalidSpec"],
                    within,
                )
                .await,
            )
        }
        "never-answers" => {
            case.fake.set_faults(json!({"hangNext": 100000})).await;
            for i in 0..6 {
                let kind = ["UserAccessToken", "UserApiToken", "TenantAccessToken"][i % 3];
                let mut t = case.token(kind, &format!("t{i}"), json!({}));
                if kind == "TenantAccessToken" {
                    t["spec"]["roleIds"] = json!(["r"]);
                }
                try_apply(client, &t).await.expect("apply");
            }
            // Give the hung requests time to occupy whatever they can.
            tokio::time::sleep(Duration::from_secs(3)).await;
            (
                "6 tokens wait on a host that never answers; other namespaces are served",
                wait_reason(
                    client,
                    ns,
                    "useraccesstokens",
                    "t0",
                    "False",
                    &["FronteggUnavailable"],
                    within,
                )
                .await,
            )
        }
        "list-omits" => {
            if let Err(e) = case.issued(client, within).await {
                return ("", Err(e));
            }
            case.fake.set_faults(json!({"listOmitsTokens": true})).await;
            // Several resyncs (3 s each) see the token missing.
            tokio::time::sleep(Duration::from_secs(10)).await;
            (
                "at most one reissue per --min-reissue-interval (1m)",
                Ok(format!(
                    "{} creates in 10 s of lying lists",
                    case.creates().await
                )),
            )
        }
        "rotate-storm" => {
            if let Err(e) = case.issued(client, within).await {
                return ("", Err(e));
            }
            for i in 0..10 {
                let mut t = case.token("UserAccessToken", "t", json!({}));
                t["metadata"]["annotations"] =
                    json!({"tokens.frontegg-operator.io/rotate": format!("r{i}")});
                try_apply(client, &t).await.expect("apply");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            (
                "10 rotation requests in 5 s: at most one create per interval",
                Ok(format!("{} creates", case.creates().await)),
            )
        }
        "panic" => {
            let mut t = case.token("UserAccessToken", "t", json!({}));
            t["metadata"]["annotations"] = json!({"tokens.frontegg-operator.io/test-panic": "yes"});
            try_apply(client, &t).await.expect("apply");
            (
                "a reconcile that panics (test hook) fails alone: Ready=False InternalError",
                wait_reason(
                    client,
                    ns,
                    "useraccesstokens",
                    "t",
                    "False",
                    &["InternalError"],
                    within,
                )
                .await,
            )
        }
        other => ("", Err(format!("unknown case {other}"))),
    }
}

/// A host that drips its answers holds every request to it for the whole client deadline.
/// Its tokens may hold only their environment's share of the workers: a healthy token of
/// another environment, created while more slow tokens than workers wait, becomes Ready
/// before any slow token's request has finished (each of those ends in a Ready=False status
/// when it does, so none may have a condition yet).
#[tokio::test]
async fn a_slow_drip_host_holds_only_its_share_of_the_workers() {
    let env = TestEnv::start("slow-share").await;
    let slow = Fake::start(&[]).await;
    slow.set_faults(json!({"slowDripNext": 100000, "pathPrefix": "/identity"}))
        .await;
    apply_yaml(
        &env.client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "slow-credentials", "namespace": env.ns,
                         "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
            "stringData": {"clientId": slow.client_id, "secret": slow.secret}
        })
        .to_string(),
    )
    .await;
    let slow_env = format!("slow-{}", env.ns);
    apply_yaml(&env.client, &json!({
        "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "ClusterFronteggEnvironment",
        "metadata": {"name": slow_env, "labels": {"e2e": env.ns}},
        "spec": {"baseUrl": slow.url, "credentialsSecretRef": {"name": "slow-credentials"},
                 "allowedNamespaces": {"names": [env.ns]}, "allowedTenants": ["*"]}
    }).to_string()).await;
    let token = |name: &str, environment: Option<&str>| {
        let mut spec = json!({"tenantId": "tenant-s", "userId": "user-s"});
        if let Some(e) = environment {
            spec["environmentRef"] = json!({"kind": "ClusterFronteggEnvironment", "name": e});
        }
        json!({
            "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "UserAccessToken",
            "metadata": {"name": name}, "spec": spec,
        })
    };
    // Twice as many slow tokens as the kind has workers (--concurrency 4).
    for i in 0..8 {
        env.apply_owned(token(&format!("slow-{i}"), Some(&slow_env)))
            .await;
    }
    let create = "POST /identity/resources/users/access-tokens/v1";
    wait_for(
        Duration::from_secs(60),
        "slow creates in flight",
        || async { (slow.calls(create).await >= 3).then_some(()) },
    )
    .await;
    env.apply_owned(token("healthy", None)).await;
    env.wait_ready("useraccesstokens", "healthy", "True", None)
        .await;
    let mut finished = Vec::new();
    for i in 0..8 {
        let obj = env
            .get("useraccesstokens", &format!("slow-{i}"))
            .await
            .expect("slow token");
        if obj["status"]["conditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            finished.push(format!("slow-{i}: {}", obj["status"]["conditions"]));
        }
    }
    assert!(
        finished.is_empty(),
        "slow requests finished before the healthy token was Ready: {finished:?}"
    );
    assert!(
        slow.calls(create).await <= 3,
        "the slow environment held at most 3 of the 4 workers"
    );
    // The slow ones do finish, as failures of their own environment.
    env.wait_ready(
        "useraccesstokens",
        "slow-0",
        "False",
        Some("FronteggUnavailable"),
    )
    .await;
}
