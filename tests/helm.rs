//! The Helm chart on the real control plane: lint, server-side validation, install, the
//! operator running as the chart's ServiceAccount, RBAC limits, uninstall and bad values.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/frontegg-token-operator"
);

#[tokio::test]
async fn chart_lints_and_renders_what_the_apiserver_accepts() {
    let (ok, out, err) = helm_run(&["lint", CHART, "--strict"]);
    assert!(ok, "helm lint: {out}{err}");
    let client = client().await;
    install_crds(&client).await;
    let ns = format!("e2e-chart-{}", &uuid_like()[..6]);
    let watched = [format!("{ns}-a"), format!("{ns}-b")];
    for n in std::iter::once(&ns).chain(&watched) {
        create_namespace(&client, n).await;
    }
    let value_sets: [Vec<String>; 2] = [
        vec![],
        vec![
            "--set".into(),
            format!("watchNamespaces={{{},{}}}", watched[0], watched[1]),
            "--set".into(),
            "replicas=2".into(),
            "--set".into(),
            "defaultEnvironment.create=true".into(),
            "--set".into(),
            format!("defaultEnvironment.name={ns}"),
            "--set".into(),
            "defaultEnvironment.clientId=id".into(),
            "--set".into(),
            "defaultEnvironment.secret=not-a-real-secret".into(),
        ],
    ];
    for values in value_sets {
        let mut args: Vec<&str> = vec!["template", "fto", CHART, "-n", &ns];
        args.extend(values.iter().map(String::as_str));
        let (ok, rendered, err) = helm_run(&args);
        assert!(ok, "helm template: {err}");
        let (ok, out, err) = kubectl_run(
            &[
                "apply",
                "--dry-run=server",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
            ],
            Some(&rendered),
        );
        assert!(ok, "apiserver rejected the rendered chart: {err}\n{out}");
        let kinds: Vec<&str> = rendered
            .lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .collect();
        for kind in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "Deployment",
            "ClusterRole",
            "Service",
        ] {
            assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
        }
        if values.is_empty() {
            assert!(
                !kinds.contains(&"PodDisruptionBudget"),
                "no PDB with one replica"
            );
            assert!(
                rendered.contains("helm.sh/resource-policy: keep"),
                "CRDs kept by default"
            );
        } else {
            assert!(kinds.contains(&"PodDisruptionBudget") && kinds.contains(&"Role"));
            // The default environment is the operator's to apply, not a chart resource.
            assert!(!kinds.contains(&"ClusterFronteggEnvironment"));
            assert!(rendered.contains("--default-environment-manifest="));
        }
    }
}

#[test]
fn optional_service_monitor_renders_when_enabled() {
    // The ServiceMonitor CRD (Prometheus Operator) is not on the test cluster, so this one is
    // checked as rendered output only.
    let (ok, rendered, err) = helm_run(&[
        "template",
        "fto",
        CHART,
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.labels.release=prom",
    ]);
    assert!(ok, "{err}");
    let monitor: Value = rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .find(|d| d["kind"] == "ServiceMonitor")
        .expect("ServiceMonitor rendered");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let (_, default, _) = helm_run(&["template", "fto", CHART]);
    assert!(!default.contains("kind: ServiceMonitor"), "off by default");
}

/// The chart Deployment's ServiceAccount and container args, as its Pod would run them.
fn deployment_args(manifest: &str, namespace: &str) -> (String, Vec<String>) {
    let deployment: Value = manifest
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .find(|d| d["kind"] == "Deployment")
        .expect("Deployment in the release");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName")
        .to_string();
    let args = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| {
            a.as_str()
                .expect("arg")
                .replace("$(POD_NAMESPACE)", namespace)
        })
        .filter(|a| a != "run" && !a.starts_with("--metrics-addr"))
        .collect();
    (service_account, args)
}

/// A release of the chart with a default environment at `fake`, watching `watched`, and the
/// operator binary run with the Deployment's own args as the chart's ServiceAccount.
async fn install_with_operator(
    release: &str,
    release_ns: &str,
    watched: &str,
    env_name: &str,
    fake: &Fake,
) -> (Operator, std::path::PathBuf) {
    let (release, release_ns, watched, env_name) = (
        release.to_string(),
        release_ns.to_string(),
        watched.to_string(),
        env_name.to_string(),
    );
    let (ok, out, err) = helm_run(&[
        "install",
        &release,
        CHART,
        "-n",
        &release_ns,
        "--take-ownership",
        // The CRDs were applied by the test harness (v1alpha1 only): the chart takes them over.
        "--force-conflicts",
        // This test runs the operator as a local process; the Deployment's pod must not pull
        // an image over the network if a node is running (tests/in_cluster.rs runs the image).
        "--set",
        "image.pullPolicy=Never",
        // A local process is behind no Service: the CRDs serve v1alpha1 alone, with no webhook
        // (tests/upgrade.rs runs the webhook in the pod).
        "--set",
        "conversion.webhook=false",
        "--set",
        &format!("watchNamespaces={{{watched}}}"),
        "--set",
        "defaultEnvironment.create=true",
        "--set",
        &format!("defaultEnvironment.name={env_name}"),
        "--set",
        &format!("defaultEnvironment.baseUrl={}", fake.url),
        "--set",
        &format!("defaultEnvironment.clientId={}", fake.client_id),
        "--set",
        &format!("defaultEnvironment.secret={}", fake.secret),
        "--set",
        &format!("defaultEnvironment.allowedNamespaces.names={{{watched}}}"),
        "--set",
        &format!("operator.clusterEnvironmentSelector=app.kubernetes.io/instance={release}"),
        "--set",
        "operator.resyncPeriod=3s",
        "--set",
        "operator.environmentRetry=1s",
        "--set",
        "allowedBaseUrls={http://127.0.0.1:*}",
    ]);
    assert!(ok, "helm install: {out}{err}");
    assert!(
        out.contains("Next steps") || out.contains("NOTES"),
        "NOTES.txt shown: {out}"
    );

    // The operator binary, with the Deployment's own args, as the chart's ServiceAccount.
    let (ok, manifest, err) = helm_run(&["get", "manifest", &release, "-n", &release_ns]);
    assert!(
        manifest.contains("- --allowed-base-url=http://127.0.0.1:*"),
        "the Deployment carries allowedBaseUrls: {manifest}"
    );
    assert!(
        manifest.contains("tokens.frontegg-operator.io/credentials: \"true\""),
        "the default environment's Secret is marked as credentials"
    );
    assert!(ok, "{err}");
    let (service_account, args) = deployment_args(&manifest, &release_ns);
    let sa_kubeconfig = service_account_kubeconfig(&release_ns, &service_account);
    let operator = Operator::start_with(
        &format!("{release}-sa"),
        &args,
        &sa_kubeconfig,
        &[("POD_NAME", "chart-pod")],
    );

    (operator, sa_kubeconfig)
}

#[tokio::test]
async fn operator_runs_as_the_charts_service_account_and_uninstall_keeps_crds_and_tokens() {
    let client = client().await;
    install_crds(&client).await;
    let id = &uuid_like()[..6];
    let (release_ns, watched, other) = (
        format!("e2e-rel-{id}"),
        format!("e2e-watched-{id}"),
        format!("e2e-unwatched-{id}"),
    );
    for n in [&release_ns, &watched, &other] {
        create_namespace(&client, n).await;
    }
    let fake = Fake::start(&[]).await;
    let release = format!("fto-{id}");
    let env_name = format!("default-{id}");
    let (operator, sa_kubeconfig) =
        install_with_operator(&release, &release_ns, &watched, &env_name, &fake).await;

    let token = json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken",
        "metadata":{"name":"via-chart","namespace": watched},"spec":{"tenantId":"t","userId":"u","expiresIn":"24h"}});
    apply_yaml(&client, &token.to_string()).await;
    let obj = wait_for(
        Duration::from_secs(90),
        "token Ready under the chart's RBAC",
        || async {
            let obj = get_custom(&client, &watched, "userapitokens", "via-chart").await?;
            (obj["status"]["conditions"][0]["status"] == "True").then_some(obj)
        },
    )
    .await;
    let token_id = obj["status"]["current"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(fake.token(&token_id).await.is_some());
    let secrets =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &watched);
    assert!(
        secrets.get_opt("via-chart").await.expect("get").is_some(),
        "Secret written under the chart's RBAC"
    );
    dynamic_api(&client, Some(&watched), "userapitokens")
        .delete("via-chart", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(60), "revoked and deleted", || async {
        get_custom(&client, &watched, "userapitokens", "via-chart")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        fake.token(&token_id).await.is_none(),
        "revoked under the chart's RBAC"
    );

    // Outside its RBAC the ServiceAccount is denied.
    let kubectl_sa = |args: &[&str]| run_tool(&kubectl_path(), args, None, &sa_kubeconfig);
    let (ok, _, err) = kubectl_sa(&[
        "-n",
        &other,
        "create",
        "secret",
        "generic",
        "nope",
        "--from-literal=a=b",
    ]);
    assert!(
        !ok && err.contains("forbidden"),
        "a Secret in an unwatched namespace must be denied: {err}"
    );
    let (_, can, _) = kubectl_sa(&["auth", "can-i", "list", "secrets", "-n", &other]);
    assert_eq!(can.trim(), "no");
    let (_, can, _) = kubectl_sa(&["auth", "can-i", "create", "secrets", "-n", &watched]);
    assert_eq!(can.trim(), "yes");
    let (_, can, _) = kubectl_sa(&[
        "auth",
        "can-i",
        "delete",
        "userapitokens.tokens.frontegg-operator.io",
        "-n",
        &watched,
    ]);
    assert_eq!(
        can.trim(),
        "no",
        "the operator never needs to delete token resources"
    );
    drop(operator);

    // Uninstall keeps the CRDs (resource-policy: keep) and the users' resources.
    apply_yaml(
        &client,
        &json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"TenantAccessToken",
        "metadata":{"name":"survivor","namespace": watched},"spec":{"tenantId":"t"}})
        .to_string(),
    )
    .await;
    let (ok, out, err) = helm_run(&["uninstall", &release, "-n", &release_ns]);
    assert!(ok, "helm uninstall: {out}{err}");
    let (ok, _, err) = kubectl_run(
        &[
            "get",
            "crd",
            "userapitokens.tokens.frontegg-operator.io",
            "tenantaccesstokens.tokens.frontegg-operator.io",
        ],
        None,
    );
    assert!(ok, "CRDs kept: {err}");
    assert!(
        get_custom(&client, &watched, "tenantaccesstokens", "survivor")
            .await
            .is_some(),
        "users' resources kept"
    );
    let (ok, _, _) = kubectl_run(&["-n", &release_ns, "get", "deployment", &release], None);
    assert!(!ok, "the release's own objects are gone");
}

#[tokio::test]
async fn bad_values_fail_helm_install_with_a_schema_message() {
    let cases = [
        (vec!["--set", "replicas=two"], "replicas"),
        (vec!["--set", "defaultEnvironment.region=mars"], "region"),
        (vec!["--set", "operator.resyncPeriod=soon"], "resyncPeriod"),
        (vec!["--set", "replicaz=2"], "replicaz"),
    ];
    for (set, field) in cases {
        let mut args = vec!["install", "bad-values", CHART, "-n", "default"];
        args.extend(set.iter().copied());
        let (ok, out, err) = helm_run(&args);
        assert!(!ok, "accepted {set:?}: {out}");
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{err}"
        );
        assert!(err.contains(field), "message names {field}: {err}");
    }
    let (ok, _, _) = helm_run(&["status", "bad-values", "-n", "default"]);
    assert!(!ok, "nothing was installed");
}

/// docs/operations.md#uninstalling, in its order: the tokens deleted with the operator running,
/// then the environments and their credentials, then `helm uninstall`. Nothing is left: no
/// remote token, no token resource, and nothing terminating on a finalizer. (The last step,
/// deleting the CRDs, is left out: other tests share this control plane's CRDs.)
#[tokio::test]
async fn the_documented_uninstall_order_leaves_no_remote_token_and_nothing_terminating() {
    let client = client().await;
    install_crds(&client).await;
    let id = &uuid_like()[..6];
    let (release_ns, watched) = (format!("e2e-unrel-{id}"), format!("e2e-unw-{id}"));
    for n in [&release_ns, &watched] {
        create_namespace(&client, n).await;
    }
    let fake = Fake::start(&[]).await;
    let (release, env_name) = (format!("fto-{id}"), format!("default-{id}"));
    let (operator, _) =
        install_with_operator(&release, &release_ns, &watched, &env_name, &fake).await;
    for (kind, name, spec) in [
        (
            "UserApiToken",
            "api",
            json!({"tenantId": "t", "userId": "u"}),
        ),
        ("TenantAccessToken", "access", json!({"tenantId": "t"})),
    ] {
        let token = json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind": kind,
            "metadata":{"name": name,"namespace": watched},"spec": spec});
        apply_yaml(&client, &token.to_string()).await;
    }
    for (plural, name) in [("userapitokens", "api"), ("tenantaccesstokens", "access")] {
        wait_for(Duration::from_secs(90), "token Ready", || async {
            let obj = get_custom(&client, &watched, plural, name).await?;
            (obj["status"]["conditions"][0]["status"] == "True").then_some(())
        })
        .await;
    }
    assert_eq!(fake.tokens().await.len(), 2);
    let secrets =
        kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &release_ns);
    let held = wait_for(
        Duration::from_secs(30),
        "the credentials protected",
        || async {
            let s = secrets.list(&Default::default()).await.ok()?;
            s.items.into_iter().find(|s| {
                s.metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == "tokens.frontegg-operator.io/in-use")
            })
        },
    )
    .await;
    let credentials = held.metadata.name.expect("name");

    // 1. The tokens, with the operator running.
    let (ok, _, err) = kubectl_run(
        &[
            "delete",
            "userapitokens,useraccesstokens,tenantapitokens,tenantaccesstokens",
            "--all",
            "-n",
            &watched,
            "--wait",
            "--timeout=60s",
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(fake.tokens().await.is_empty(), "every remote token revoked");
    // 2. The environment and its credentials Secret: no longer in use, they go at once.
    let (ok, _, err) = kubectl_run(
        &[
            "delete",
            "clusterfronteggenvironment",
            &env_name,
            "--wait",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &release_ns,
            "delete",
            "secret",
            &credentials,
            "--wait",
            "--timeout=30s",
        ],
        None,
    );
    assert!(ok, "{err}");
    // 3. The release.
    drop(operator);
    let (ok, out, err) = helm_run(&["uninstall", &release, "-n", &release_ns, "--wait"]);
    assert!(ok, "helm uninstall: {out}{err}");
    assert!(fake.tokens().await.is_empty());
    for ns in [&watched, &release_ns] {
        let (ok, out, err) = kubectl_run(
            &[
                "-n",
                ns,
                "get",
                "userapitokens,useraccesstokens,tenantapitokens,tenantaccesstokens,fronteggenvironments,secrets",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
            ],
            None,
        );
        assert!(ok, "{err}");
        assert!(
            !out.lines().any(|l| l.split_whitespace().count() > 1),
            "nothing terminating in {ns}: {out}"
        );
    }
    let (ok, _, _) = kubectl_run(&["get", "clusterfronteggenvironment", &env_name], None);
    assert!(!ok, "the default environment is gone");
}
