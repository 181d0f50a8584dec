//! The chart's pod on a real node (hack/node: containerd, runc, the kubelet, kube-scheduler and
//! kube-proxy), running the image `make image` builds: its probes, its security context, its
//! in-cluster config and its ServiceAccount. A workload pod consumes the Secret it writes,
//! through a rotation, a `helm upgrade`, a pod deletion and `helm uninstall`.
//!
//! `hack/test` starts the node and imports target/images/*.tar; run alone, this test needs
//! `hack/control-plane up --node`, `hack/node up target/images/*.tar` and
//! FTO_TEST_KUBECONFIG.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use support::*;

const CHART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/frontegg-token-operator"
);
/// Longer than the kubelet takes to refresh a mounted Secret (its syncFrequency is 10s in
/// hack/node), so the consumer must have moved on before the old token is revoked.
const GRACE: &str = "40s";

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The one operator pod that is Ready, once every other pod of the release is gone.
async fn sole_ready_pod(pods: &Api<Pod>, release: &str, not: Option<&str>) -> Pod {
    let lp = ListParams::default().labels(&format!("app.kubernetes.io/instance={release}"));
    wait_for(
        Duration::from_secs(120),
        "the operator pod Ready through its readiness probe",
        || async {
            let list = match pods.list(&lp).await {
                Ok(l) => l.items,
                Err(e) => {
                    eprintln!("listing the operator pods: {e}");
                    return None;
                }
            };
            let [pod] = list.as_slice() else { return None };
            (is_ready(pod) && pod.metadata.name.as_deref() != not).then(|| pod.clone())
        },
    )
    .await
}

/// The host's view of the operator container's main process: who it runs as, what it may do.
fn container_process(lease_name: &str) -> BTreeMap<&'static str, String> {
    for entry in std::fs::read_dir("/proc").expect("/proc") {
        let dir = entry.expect("entry").path();
        let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().map(String::as_str) != Some("/usr/local/bin/frontegg-token-operator")
            || !args.contains(&format!("--lease-name={lease_name}"))
        {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        let mountinfo = std::fs::read_to_string(dir.join("mountinfo")).expect("mountinfo");
        let root_options = mountinfo
            .lines()
            .map(|l| l.split(' ').collect::<Vec<_>>())
            .find(|f| f.get(4) == Some(&"/"))
            .and_then(|f| f.get(5).map(|o| o.to_string()))
            .unwrap_or_default();
        return BTreeMap::from([
            ("uid", field("Uid:")),
            ("gid", field("Gid:")),
            ("capabilities", field("CapEff:")),
            ("no_new_privs", field("NoNewPrivs:")),
            ("seccomp", field("Seccomp:")),
            ("root", root_options),
        ]);
    }
    panic!("no frontegg-token-operator process with --lease-name={lease_name} on this host");
}

async fn metric_sum(url: &str, name: &str) -> Option<f64> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(&format!("frontegg_token_operator_{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum(),
    )
}

/// The consumer's request lines, (clientId, ok), read through `kubectl logs` (the apiserver
/// asks the kubelet); None while the container has not started.
fn consumer_requests(ns: &str) -> Option<Vec<(String, bool)>> {
    let (ok, out, err) = kubectl_run(&["-n", ns, "logs", "consumer"], None);
    if !ok {
        assert!(
            err.contains("waiting to start"),
            "kubectl logs consumer: {err}"
        );
        return None;
    }
    let lines = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "request")
        .map(|v| {
            (
                v["clientId"].as_str().unwrap_or_default().to_string(),
                v["ok"] == true,
            )
        })
        .collect();
    Some(lines)
}

fn token(kind: &str, name: &str, ns: &str, spec: Value) -> Value {
    json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

async fn ready_id(client: &kube::Client, ns: &str, plural: &str, name: &str) -> String {
    wait_for(
        Duration::from_secs(60),
        &format!("{plural}/{name} Ready"),
        || async {
            let obj = get_custom(client, ns, plural, name).await?;
            let ready = obj["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready
                .then(|| obj["status"]["current"]["id"].as_str().map(str::to_string))
                .flatten()
        },
    )
    .await
}

#[tokio::test]
async fn the_charts_pod_runs_on_a_node_and_a_consumer_survives_rotation() {
    let client = client().await;
    install_crds(&client).await;
    let ip = node_ip(&client).await;
    let id = &uuid_like()[..6];
    let (release_ns, ns) = (format!("ic-rel-{id}"), format!("ic-app-{id}"));
    for n in [&release_ns, &ns] {
        create_namespace(&client, n).await;
    }
    // On the node IP: the operator (host network) and the consumer (pod network, through the
    // node's bridge) both reach it, and nothing leaves the machine.
    let fake = Fake::start_on(&ip, &[]).await;
    let release = format!("ic-{id}");
    let fullname = format!("{release}-frontegg-token-operator");
    let metrics_port = free_port();
    let values = [
        "image.repository=fto.local/frontegg-token-operator".to_string(),
        "image.tag=dev".into(),
        // Imported with ctr: there is no registry to pull from.
        "image.pullPolicy=Never".into(),
        "hostNetwork=true".into(),
        format!("metrics.port={metrics_port}"),
        format!("watchNamespaces={{{ns}}}"),
        "defaultEnvironment.create=true".into(),
        format!("defaultEnvironment.name=ic-{id}"),
        format!("defaultEnvironment.baseUrl={}", fake.url),
        format!("defaultEnvironment.clientId={}", fake.client_id),
        format!("defaultEnvironment.secret={}", fake.secret),
        format!("defaultEnvironment.allowedNamespaces.names={{{ns}}}"),
        format!("operator.clusterEnvironmentSelector=app.kubernetes.io/instance={release}"),
        format!("allowedBaseUrls={{http://{ip}:*}}"),
        "operator.minReissueInterval=1s".into(),
    ];
    let mut args = vec![
        "install",
        &release,
        CHART,
        "-n",
        &release_ns,
        "--take-ownership",
        // The CRDs were applied by the test harness (v1alpha1 only): the chart takes them over.
        "--force-conflicts",
    ];
    for v in &values {
        args.extend(["--set", v.as_str()]);
    }
    let (ok, out, err) = helm_run(&args);
    assert!(ok, "helm install: {out}{err}");

    // Ready only through the kubelet running the real readiness probe against the image.
    let pods = Api::<Pod>::namespaced(client.clone(), &release_ns);
    let first = sole_ready_pod(&pods, &release, None).await;
    let first_name = first.metadata.name.clone().expect("name");
    assert_eq!(
        first.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(NODE)
    );
    let process = container_process(&fullname);
    assert_eq!(process["uid"], "65532 65532 65532 65532", "{process:?}");
    assert_eq!(process["gid"], "65532 65532 65532 65532", "{process:?}");
    assert_eq!(process["capabilities"], "0000000000000000", "{process:?}");
    assert_eq!(process["no_new_privs"], "1", "{process:?}");
    assert_eq!(process["seccomp"], "2", "seccomp filter mode: {process:?}");
    assert!(
        process["root"].split(',').any(|o| o == "ro"),
        "read-only root filesystem: {process:?}"
    );

    // Every kind, reconciled by the pod as the chart's ServiceAccount via in-cluster config.
    let spec_user = json!({"tenantId": "t-ic", "userId": "u-ic", "expiresIn": "24h"});
    let manifests = [
        token("UserApiToken", "user-api", &ns, spec_user.clone()),
        token("UserAccessToken", "user-access", &ns, spec_user),
        token(
            "TenantApiToken",
            "tenant-api",
            &ns,
            json!({"tenantId": "t-ic", "description": "consumed by a pod", "roleIds": ["role-reader"],
                "rotation": {"gracePeriod": GRACE}}),
        ),
        token(
            "TenantAccessToken",
            "tenant-access",
            &ns,
            json!({"tenantId": "t-ic", "expiresIn": "24h", "roleIds": ["role-reader"]}),
        ),
    ];
    for m in &manifests {
        apply_yaml(&client, &m.to_string()).await;
    }
    let plurals = [
        ("userapitokens", "user-api"),
        ("useraccesstokens", "user-access"),
        ("tenantapitokens", "tenant-api"),
        ("tenantaccesstokens", "tenant-access"),
    ];
    for (plural, name) in plurals {
        let token_id = ready_id(&client, &ns, plural, name).await;
        assert!(fake.token(&token_id).await.is_some(), "{plural}/{name}");
    }
    let creates_after_issue = fake.tokens().await.len();
    assert_eq!(creates_after_issue, 4, "one token per resource");

    // A workload in the pod network mounts the TenantApiToken's Secret and uses it.
    let consumer = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "consumer", "namespace": ns},
        "spec": {
            "automountServiceAccountToken": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "consumer", "image": "fto.local/credential-consumer:dev",
                "imagePullPolicy": "Never", "args": ["--interval", "200ms"],
                "securityContext": {"allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "credential", "mountPath": "/var/run/frontegg",
                    "readOnly": true}]}],
            "volumes": [{"name": "credential", "secret": {"secretName": "tenant-api"}}]}});
    let (ok, _, err) = kubectl_run(&["apply", "-f", "-"], Some(&consumer.to_string()));
    assert!(ok, "consumer pod: {err}");
    let old_id = ready_id(&client, &ns, "tenantapitokens", "tenant-api").await;
    wait_for(
        Duration::from_secs(60),
        "the consumer exchanging the mounted credential",
        || async {
            consumer_requests(&ns)?
                .iter()
                .any(|(c, ok)| *ok && *c == old_id)
                .then_some(())
        },
    )
    .await;

    // Rotation: the Secret switches at once, the kubelet refreshes the mount within its sync
    // period, and the old token is revoked only after the grace period.
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &ns,
            "annotate",
            "tenantapitoken",
            "tenant-api",
            "tokens.frontegg-operator.io/rotate=1",
        ],
        None,
    );
    assert!(ok, "annotate: {err}");
    let new_id = wait_for(Duration::from_secs(60), "the rotated token", || async {
        let id = ready_id(&client, &ns, "tenantapitokens", "tenant-api").await;
        (id != old_id).then_some(id)
    })
    .await;
    wait_for(
        Duration::from_secs(60),
        "the consumer using the new credential",
        || async {
            consumer_requests(&ns)?
                .iter()
                .any(|(c, ok)| *ok && *c == new_id)
                .then_some(())
        },
    )
    .await;
    wait_for(
        Duration::from_secs(90),
        "the old token revoked after its grace period",
        || async { fake.token(&old_id).await.is_none().then_some(()) },
    )
    .await;
    let at_revocation = consumer_requests(&ns).expect("consumer running").len();
    wait_for(
        Duration::from_secs(30),
        "consumer requests after the revocation",
        || async { (consumer_requests(&ns)?.len() > at_revocation + 10).then_some(()) },
    )
    .await;
    let requests = consumer_requests(&ns).expect("consumer running");
    let failed: Vec<_> = requests.iter().filter(|(_, ok)| !ok).collect();
    assert!(
        failed.is_empty(),
        "the consumer never fails a request through the rotation: {failed:?}"
    );
    let last_old = requests.iter().rposition(|(c, _)| *c == old_id);
    let first_new = requests.iter().position(|(c, _)| *c == new_id);
    assert!(
        last_old < first_new && requests[at_revocation..].iter().all(|(c, _)| *c == new_id),
        "the consumer switched once, before the revocation"
    );
    assert_eq!(fake.tokens().await.len(), 4, "the replaced token is gone");

    // helm upgrade rolls the pod; the new one takes over without issuing anything.
    let (ok, out, err) = helm_run(&[
        "upgrade",
        &release,
        CHART,
        "-n",
        &release_ns,
        "--reuse-values",
        "--set",
        "podAnnotations.rollout=2",
    ]);
    assert!(ok, "helm upgrade: {out}{err}");
    let metrics = format!("http://{ip}:{metrics_port}/metrics");
    let rolled = sole_ready_pod(&pods, &release, Some(&first_name)).await;
    let rolled_name = rolled.metadata.name.clone().expect("name");
    let all_managed =
        || async { (metric_sum(&metrics, "tokens_managed").await? >= 4.0).then_some(()) };
    wait_for(
        Duration::from_secs(60),
        "the rolled pod managing all four tokens",
        all_managed,
    )
    .await;

    // Deleting the pod: the Deployment starts a fresh one, which adopts everything as is.
    pods.delete(&rolled_name, &Default::default())
        .await
        .expect("delete pod");
    sole_ready_pod(&pods, &release, Some(&rolled_name)).await;
    wait_for(
        Duration::from_secs(60),
        "the restarted pod managing all four tokens",
        all_managed,
    )
    .await;
    assert_eq!(
        metric_sum(&metrics, "tokens_issued").await,
        Some(0.0),
        "the restarted pod issued nothing"
    );
    let live: Vec<String> = fake
        .tokens()
        .await
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        live.len(),
        4,
        "no duplicate token after upgrade and restart: {live:?}"
    );
    assert!(live.contains(&new_id));

    // helm uninstall: the pod goes, CRDs, tokens and Secrets stay.
    let (ok, out, err) = helm_run(&["uninstall", &release, "-n", &release_ns, "--wait"]);
    assert!(ok, "helm uninstall: {out}{err}");
    wait_for(Duration::from_secs(60), "the operator pod gone", || async {
        pods.list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    for (plural, name) in plurals {
        assert!(
            get_custom(&client, &ns, plural, name).await.is_some(),
            "{plural}/{name} kept"
        );
    }
    let (ok, crds, _) = kubectl_run(&["get", "crd", "-o", "name"], None);
    assert!(
        ok && crds.matches("tokens.frontegg-operator.io").count() >= 6,
        "{crds}"
    );
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns);
    assert!(secrets.get_opt("tenant-api").await.expect("get").is_some());
    assert_eq!(fake.tokens().await.len(), 4, "uninstall revokes nothing");

    // Tokens without their operator keep their finalizer; release them so the namespace goes.
    // With no operator, nothing converts: v1alpha1, the stored version, is named explicitly.
    for (plural, name) in plurals {
        let resource = format!("{plural}.v1alpha1.tokens.frontegg-operator.io");
        let (ok, _, err) = kubectl_run(
            &[
                "-n",
                &ns,
                "patch",
                &resource,
                name,
                "--type=merge",
                "-p",
                r#"{"metadata":{"finalizers":null}}"#,
            ],
            None,
        );
        assert!(ok, "{err}");
    }
    for n in [&ns, &release_ns] {
        let _ = kubectl_run(&["delete", "namespace", n, "--wait=false"], None);
    }
}
