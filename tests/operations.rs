//! Running the operator: leader election and failover, metrics, readiness.

mod support;

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use serde_json::json;
use support::*;

fn token(name: &str) -> String {
    json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserAccessToken","metadata":{"name": name},
           "spec":{"tenantId":"t","userId":"u"}})
    .to_string()
}

async fn holder(env: &TestEnv) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.ns);
    leases
        .get_opt("frontegg-token-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn only_the_leader_issues_and_a_standby_takes_over() {
    let mut env = TestEnv::start("failover").await;
    let standby = Operator::start_with(
        &format!("{}-b", env.ns),
        &env.operator_args,
        kubeconfig(),
        &[("POD_NAME", "operator-b")],
    );
    let leader = wait_for(Duration::from_secs(30), "a lease holder", || holder(&env)).await;
    for i in 0..4 {
        env.apply(&token(&format!("first-{i}"))).await;
    }
    for i in 0..4 {
        env.wait_ready("useraccesstokens", &format!("first-{i}"), "True", None)
            .await;
    }
    let route = "POST /identity/resources/users/access-tokens/v1";
    assert_eq!(
        env.fake.calls(route).await,
        4,
        "exactly one create per resource with two replicas"
    );
    let (leader_log, standby_log) = if leader == "operator-a" {
        (&env.operator.log, &standby.log)
    } else {
        (&standby.log, &env.operator.log)
    };
    let standby_text = std::fs::read_to_string(standby_log).expect("standby log");
    assert!(standby_text.contains("waiting for leadership"));
    assert!(
        !standby_text.contains("issued token"),
        "the standby made no writes"
    );
    assert!(
        std::fs::read_to_string(leader_log)
            .expect("leader log")
            .contains("acquired leadership")
    );

    // Kill the leader (SIGKILL: no lease release); the standby takes over after the lease expires.
    let mut standby = Some(standby);
    if leader == "operator-a" {
        env.operator.stop();
    } else {
        standby.take();
    }
    for i in 0..4 {
        env.apply(&token(&format!("second-{i}"))).await;
    }
    for i in 0..4 {
        env.wait_ready("useraccesstokens", &format!("second-{i}"), "True", None)
            .await;
    }
    let new_holder = holder(&env).await.expect("holder");
    assert_ne!(new_holder, leader, "leadership moved");
    assert_eq!(
        env.fake.calls(route).await,
        8,
        "no duplicate tokens after failover"
    );
    assert_eq!(env.fake.tokens().await.len(), 8);
    drop(standby);
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
    })
}

#[tokio::test]
async fn metrics_report_the_scenario() {
    let env = TestEnv::start("metrics").await;
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"m"},
                      "spec":{"tenantId":"t","userId":"u","expiresIn":"24h"}}).to_string()).await;
    let obj = env.wait_ready("userapitokens", "m", "True", None).await;
    let expires: jiff::Timestamp = obj["status"]["current"]["expiresAt"]
        .as_str()
        .expect("expiresAt")
        .parse()
        .expect("time");
    let http = reqwest::Client::new();
    let scrape = || async {
        http.get(format!("{}/metrics", env.operator.metrics_url))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body")
    };
    let p = "frontegg_token_operator_";
    // The per-token series are read from the operator's cache when scraped, which sees the
    // Ready status a moment after this test's own read of it: wait for the cache, not a time.
    let expiry = format!(
        "{p}token_expiry_timestamp_seconds{{kind=\"UserApiToken\",namespace=\"{}\",name=\"m\"}}",
        env.ns
    );
    let text = wait_for(Duration::from_secs(30), "the token's series", || async {
        let text = scrape().await;
        (metric(&text, &expiry) == Some(expires.as_second() as f64)).then_some(text)
    })
    .await;
    assert_eq!(
        metric(
            &text,
            &format!("{p}tokens_issued_total{{kind=\"UserApiToken\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "{p}identity_requests_total{{endpoint=\"POST user-api-tokens\",status=\"201\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("{p}identity_requests_total{{endpoint=\"POST vendor-auth\",status=\"200\"}}")
        ),
        Some(1.0)
    );
    assert!(
        metric(
            &text,
            &format!(
                "{p}identity_request_duration_seconds_count{{endpoint=\"POST user-api-tokens\"}}"
            )
        )
        .is_some_and(|n| n >= 1.0)
    );
    let managed = format!(
        "{p}tokens_managed{{kind=\"UserApiToken\",environment=\"ClusterFronteggEnvironment/{}\"}}",
        env.env_name
    );
    assert_eq!(metric(&text, &managed), Some(1.0), "{text}");
    assert!(
        metric(
            &text,
            &format!("{p}reconciles_total{{kind=\"UserApiToken\",result=\"success\"}}")
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert!(
        metric(
            &text,
            &format!("{p}reconcile_duration_seconds_count{{kind=\"UserApiToken\"}}")
        )
        .is_some_and(|n| n >= 1.0)
    );

    // Rotation on request: a new token, the old one revoked.
    let first = obj["status"]["current"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let api = dynamic_api(&env.client, Some(&env.ns), "userapitokens");
    api.patch(
        "m",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "now"}}}),
        ),
    )
    .await
    .expect("annotate");
    wait_for(Duration::from_secs(60), "rotated", || async {
        let obj = env.get("userapitokens", "m").await?;
        (obj["status"]["current"]["id"].as_str()? != first
            && obj["status"]["pendingRevocations"].is_null())
        .then_some(())
    })
    .await;
    assert!(
        env.fake.token(&first).await.is_none(),
        "old token revoked on rotation"
    );
    let pending = format!(
        "{p}pending_revocations{{kind=\"UserApiToken\",namespace=\"{}\",name=\"m\"}}",
        env.ns
    );
    let text = wait_for(
        Duration::from_secs(30),
        "the revocation in the series",
        || async {
            let text = scrape().await;
            (metric(&text, &pending) == Some(0.0)).then_some(text)
        },
    )
    .await;
    assert_eq!(
        metric(
            &text,
            &format!("{p}token_rotations_total{{kind=\"UserApiToken\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            &format!("{p}tokens_issued_total{{kind=\"UserApiToken\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("{p}token_revocations_total{{kind=\"UserApiToken\"}}")
        ),
        Some(1.0)
    );
    assert!(
        metric(&text, &format!("{p}rate_limiter_waits_total")).is_some(),
        "rate-limiter waits exposed"
    );

    // Orphan on deletion is counted.
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserAccessToken","metadata":{"name":"o"},
                      "spec":{"tenantId":"t","userId":"u","deletionPolicy":"Orphan"}}).to_string()).await;
    env.wait_ready("useraccesstokens", "o", "True", None).await;
    env.delete("useraccesstokens", "o").await;
    wait_for(Duration::from_secs(60), "orphaned", || async {
        env.get("useraccesstokens", "o")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let text = scrape().await;
    assert_eq!(
        metric(
            &text,
            &format!("{p}tokens_orphaned_total{{kind=\"UserAccessToken\"}}")
        ),
        Some(1.0)
    );

    env.delete("userapitokens", "m").await;
    wait_for(Duration::from_secs(60), "deleted", || async {
        env.get("userapitokens", "m").await.is_none().then_some(())
    })
    .await;
    // The series leave with the resource, once the operator's cache sees it go.
    let text = wait_for(Duration::from_secs(30), "the series gone", || async {
        let text = scrape().await;
        (metric(&text, &expiry).is_none() && metric(&text, &managed).is_none()).then_some(text)
    })
    .await;
    assert_eq!(
        metric(
            &text,
            &format!("{p}token_revocations_total{{kind=\"UserApiToken\"}}")
        ),
        Some(2.0),
        "one revocation from the rotation, one from the deletion"
    );
    // The metric counts what Frontegg revoked: exactly the successful DELETEs it answered.
    let deletes = env
        .fake
        .call_log()
        .await
        .into_iter()
        .filter(|c| {
            c["route"] == "DELETE /identity/resources/users/api-tokens/v1/{id}"
                && c["status"] == 200
        })
        .count();
    assert_eq!(deletes, 2);
}

#[tokio::test]
async fn readyz_turns_ready_only_after_caches_sync() {
    let client = client().await;
    install_crds(&client).await;
    let ns = format!("e2e-readyz-{}", &uuid_like()[..6]);
    create_namespace(&client, &ns).await;
    // A ServiceAccount without RBAC cannot list anything: the caches cannot sync.
    let (ok, _, err) = kubectl_run(&["-n", &ns, "create", "serviceaccount", "fto"], None);
    assert!(ok, "{err}");
    let sa_kubeconfig = service_account_kubeconfig(&ns, "fto");
    let args: Vec<String> = [
        "--watch-namespaces",
        &ns,
        "--operator-namespace",
        &ns,
        "--leader-election=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let operator = Operator::start_with(&ns, &args, &sa_kubeconfig, &[]);
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{}{path}", operator.metrics_url));
        async move { http.get(url).send().await.ok().map(|r| r.status().as_u16()) }
    };
    wait_for(Duration::from_secs(30), "/healthz", || async {
        (status("/healthz").await == Some(200)).then_some(())
    })
    .await;
    for _ in 0..5 {
        assert_eq!(
            status("/readyz").await,
            Some(503),
            "not ready before the caches sync"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let (ok, _, err) = kubectl_run(
        &[
            "create",
            "clusterrolebinding",
            &format!("{ns}-admin"),
            "--clusterrole=cluster-admin",
            &format!("--serviceaccount={ns}:fto"),
        ],
        None,
    );
    assert!(ok, "{err}");
    wait_for(
        Duration::from_secs(90),
        "/readyz 200 after sync",
        || async { (status("/readyz").await == Some(200)).then_some(()) },
    )
    .await;
    let _ = kubectl_run(
        &["delete", "clusterrolebinding", &format!("{ns}-admin")],
        None,
    );
}

#[tokio::test]
async fn sigterm_finishes_gracefully_and_hands_the_lease_over() {
    let mut env = TestEnv::start("sigterm").await;
    wait_for(Duration::from_secs(30), "operator-a leads", || async {
        (holder(&env).await.as_deref() == Some("operator-a")).then_some(())
    })
    .await;
    env.apply(&token("before")).await;
    env.wait_ready("useraccesstokens", "before", "True", None)
        .await;
    let standby = Operator::start_with(
        &format!("{}-b", env.ns),
        &env.operator_args,
        kubeconfig(),
        &[("POD_NAME", "operator-b")],
    );
    let status = env
        .operator
        .terminate(Duration::from_secs(20))
        .expect("exited after SIGTERM");
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let log = std::fs::read_to_string(&env.operator.log).expect("log");
    assert!(log.contains("shutting down"), "{log}");
    // The lease was released, so the standby takes over well before a 4 s lease would expire.
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(30), "operator-b leads", || async {
        (holder(&env).await.as_deref() == Some("operator-b")).then_some(())
    })
    .await;
    env.apply(&token("after")).await;
    env.wait_ready("useraccesstokens", "after", "True", None)
        .await;
    println!("hand-over took {:?}", started.elapsed());
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/access-tokens/v1")
            .await,
        2
    );
    drop(standby);
}

/// Metric names in a PromQL expression: every `frontegg_token_operator_*` identifier.
fn metric_names(expr: &str) -> Vec<String> {
    let prefix = "frontegg_token_operator_";
    expr.match_indices(prefix)
        .map(|(at, _)| {
            expr[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// Sample names a scrape can carry, from its `# TYPE` lines: a series need not have been
/// touched yet for its name to be real.
fn exposed_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

#[tokio::test]
async fn alerts_and_dashboard_use_metrics_the_operator_exposes() {
    let env = TestEnv::start("alerts").await;
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"a"},
                      "spec":{"tenantId":"t","userId":"u","expiresIn":"24h"}}).to_string()).await;
    let obj = env.wait_ready("userapitokens", "a", "True", None).await;
    let first = obj["status"]["current"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // An observed token that does not exist: the missing-token alert's series.
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserAccessToken","metadata":{"name":"watched"},
                      "spec":{"tenantId":"t","userId":"u","managementPolicy":"Observe","tokenId":"gone"}}).to_string()).await;
    env.wait_ready(
        "useraccesstokens",
        "watched",
        "False",
        Some("RemoteMissing"),
    )
    .await;
    // A rotation whose revocation Frontegg refuses: the alert on failing revocations must
    // have a series to fire on.
    env.fake
        .set_faults(
            json!({"errorNext": 3, "pathPrefix": "/identity/resources/users/api-tokens/v1/"}),
        )
        .await;
    dynamic_api(&env.client, Some(&env.ns), "userapitokens")
        .patch(
            "a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
    let http = reqwest::Client::new();
    let url = format!("{}/metrics", env.operator.metrics_url);
    let p = "frontegg_token_operator_";
    let observed = format!(
        "{p}observed_token_exists{{kind=\"UserAccessToken\",namespace=\"{}\",name=\"watched\"}}",
        env.ns
    );
    // The per-token series come from the operator's cache, so the observed token's series is
    // waited for together with the failure rather than assumed from the API's status.
    let text = wait_for(
        Duration::from_secs(60),
        "a failed revocation counted",
        || async {
            let text = http.get(&url).send().await.ok()?.text().await.ok()?;
            (metric(
                &text,
                &format!("{p}revocation_failures_total{{kind=\"UserApiToken\"}}"),
            )
            .is_some_and(|n| n >= 1.0)
                && metric(&text, &observed).is_some())
            .then_some(text)
        },
    )
    .await;
    assert!(env.fake.token(&first).await.is_some(), "not revoked yet");
    let environment = format!(
        "{p}environment_ready{{kind=\"ClusterFronteggEnvironment\",namespace=\"\",name=\"{}\"}}",
        env.env_name
    );
    assert_eq!(metric(&text, &environment), Some(1.0), "{text}");
    assert_eq!(metric(&text, &observed), Some(0.0), "{text}");
    for series in [
        "token_next_renewal_timestamp_seconds",
        "token_expiry_timestamp_seconds",
    ] {
        let name = format!(
            "{p}{series}{{kind=\"UserApiToken\",namespace=\"{}\",name=\"a\"}}",
            env.ns
        );
        assert!(metric(&text, &name).is_some(), "{name} in {text}");
    }

    // Every metric the chart's alerts and the dashboard use is one this operator exposes.
    let exposed = exposed_names(&text);
    let chart = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/frontegg-token-operator"
    );
    let (ok, rule, err) = helm_run(&[
        "template",
        "x",
        chart,
        "--set",
        "metrics.prometheusRule.enabled=true",
        "-s",
        "templates/prometheusrule.yaml",
    ]);
    assert!(ok, "{err}");
    let rule: serde_json::Value = serde_yaml::from_str(&rule).expect("rule yaml");
    let mut exprs: Vec<String> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| r["expr"].as_str().expect("expr").to_string())
        .collect();
    assert!(
        exprs.len() >= 5,
        "renewal, expiry, revocations, environment, errors"
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana/frontegg-token-operator.json"
        ))
        .expect("dashboard"),
    )
    .expect("dashboard json");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no operator metric in {expr}");
        for name in names {
            assert!(
                exposed.contains(&name),
                "{name} (in {expr}) is not exposed; exposed: {exposed:?}"
            );
        }
    }

    // promtool, built from the Prometheus Go module by make tools, checks the rules.
    let promtool = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.cache/tools/promtool/promtool"
    ));
    assert!(promtool.exists(), "no promtool: run make tools");
    let file = std::env::temp_dir().join(format!("fto-rules-{}.yaml", env.ns));
    let groups = json!({"groups": rule["spec"]["groups"]});
    std::fs::write(&file, serde_yaml::to_string(&groups).expect("yaml")).expect("write rules");
    let out = std::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool");
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
