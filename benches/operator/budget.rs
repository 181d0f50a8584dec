//! The budget point: the shape personal tokens have. `users` UserApiTokens of as many users
//! (one drift group each) in one environment, at the operator's default qps (10), burst (20)
//! and resync (5m): the drift checks need more listings per period than the budget has. In
//! that steady state, what users wait for (new tokens, requested rotations) must take as
//! long as on an idle environment, and the budget must hold throughout.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::{Value, json};

use super::{CLIENTS, Fake, NAMESPACES, Operator, all_ready, percentile};

const KIND: &str = "UserApiToken";
const PLURAL: &str = "userapitokens";
const LIST: &str = "GET /identity/resources/users/api-tokens/v1";
/// The operator's defaults, which this point keeps.
const QPS: f64 = 10.0;
const BURST: f64 = 20.0;
const RESYNC_SECS: u64 = 300;

fn tokens(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("tokens.frontegg-operator.io", "v1alpha1", KIND);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, PLURAL),
    )
}

async fn create(client: &kube::Client, ns: &str, name: &str, user: &str) {
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": KIND,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"tenantId": format!("t-{ns}"), "userId": user, "expiresIn": "720h"},
    }))
    .expect("object");
    tokens(client, ns)
        .create(&PostParams::default(), &obj)
        .await
        .expect("create token");
}

/// Polls until `name` is Ready and `done` holds for it; returns how long that took.
async fn until_ready(
    client: &kube::Client,
    ns: &str,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> f64 {
    let t = Instant::now();
    loop {
        if let Ok(obj) = tokens(client, ns).get(name).await {
            let v = serde_json::to_value(obj).expect("json");
            let ready = v["status"]["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            if ready && done(&v) {
                return t.elapsed().as_secs_f64();
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(300),
            "{ns}/{name} never Ready"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(mut secs: Vec<f64>) -> Value {
    secs.sort_by(f64::total_cmp);
    json!({"p50": percentile(&secs, 0.5), "p99": percentile(&secs, 0.99),
        "max": percentile(&secs, 1.0)})
}

/// Every call the fake logged: when, and its route.
async fn calls(fake: &Fake) -> Vec<(Timestamp, String)> {
    let log: Value = reqwest::get(format!("{}/_admin/calls", fake.url))
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    log.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let at: Timestamp = c["at"].as_str()?.parse().ok()?;
            Some((at, c["route"].as_str()?.to_string()))
        })
        .collect()
}

/// The most calls within any `window` seconds, and what the budget allows there.
fn busiest(times: &[Timestamp], window: f64) -> (usize, f64) {
    let span = jiff::SignedDuration::from_secs_f64(window);
    let mut most = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while t.duration_since(times[start]) > span {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    (most, BURST + QPS * window)
}

async fn environment_status(client: &kube::Client) -> Value {
    let gvk = GroupVersionKind::gvk(
        "tokens.frontegg-operator.io",
        "v1alpha1",
        "ClusterFronteggEnvironment",
    );
    let api = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "clusterfronteggenvironments"),
    );
    let env = api.get("bench").await.expect("environment");
    serde_json::to_value(env).expect("json")["status"].clone()
}

pub async fn point(admin: &kube::Client, fake: &Fake, kubeconfig: &PathBuf, users: usize) -> Value {
    let op = Operator::start(kubeconfig, RESYNC_SECS, 4, 0);
    op.wait_ready().await;
    let ready = tokio::spawn(all_ready(admin.clone(), users, Duration::from_secs(3600)));
    let t0 = Instant::now();
    stream::iter(0..users)
        .map(|i| {
            let client = admin.clone();
            async move {
                let ns = format!("bench-{}", i % NAMESPACES);
                create(&client, &ns, &format!("u-{i}"), &format!("user-{i}")).await;
            }
        })
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await;
    ready.await.expect("ready watcher");
    let issued_in = t0.elapsed().as_secs_f64();
    // Steady state: every group registered, the background listers using what is left.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let steady_from = Timestamp::now();
    let mut new_tokens = Vec::new();
    for i in 0..20 {
        let name = format!("new-{i}");
        let t = Instant::now();
        create(admin, "bench-trickle", &name, &format!("new-user-{i}")).await;
        until_ready(admin, "bench-trickle", &name, |_| true).await;
        new_tokens.push(t.elapsed().as_secs_f64());
    }
    let mut rotations = Vec::new();
    for i in 0..10 {
        let (ns, name) = (format!("bench-{}", i % NAMESPACES), format!("u-{i}"));
        let before = tokens(admin, &ns).get(&name).await.expect("token");
        let before = serde_json::to_value(before).expect("json")["status"]["current"]["id"].clone();
        let t = Instant::now();
        tokens(admin, &ns)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {
                    "tokens.frontegg-operator.io/rotate": format!("bench-{i}")}}})),
            )
            .await
            .expect("rotate");
        until_ready(admin, &ns, &name, |v| {
            v["status"]["current"]["id"] != before
        })
        .await;
        rotations.push(t.elapsed().as_secs_f64());
    }
    // The drift checks keep going meanwhile: a minute more of them.
    tokio::time::sleep(Duration::from_secs(60)).await;
    report(
        admin,
        fake,
        &op,
        (users, issued_in),
        steady_from,
        (new_tokens, rotations),
    )
    .await
}

async fn report(
    admin: &kube::Client,
    fake: &Fake,
    op: &Operator,
    (users, issued_in): (usize, f64),
    steady_from: Timestamp,
    (new_tokens, rotations): (Vec<f64>, Vec<f64>),
) -> Value {
    let log = calls(fake).await;
    let mut times: Vec<Timestamp> = log.iter().map(|(t, _)| *t).collect();
    times.sort();
    let steady: Vec<&(Timestamp, String)> = log.iter().filter(|(t, _)| *t >= steady_from).collect();
    let steady_secs = Timestamp::now().duration_since(steady_from).as_secs_f64();
    let listings = steady.iter().filter(|(_, r)| r == LIST).count();
    let (most_1s, allowed_1s) = busiest(&times, 1.0);
    let (most_10s, allowed_10s) = busiest(&times, 10.0);
    let (hwm, cpu) = op.usage();
    let status = environment_status(admin).await;
    json!({
        "budgetUsers": users,
        "issuance": {"allReadySecs": issued_in, "tokensPerSec": users as f64 / issued_in},
        "newTokenSecs": summary(new_tokens),
        "rotationSecs": summary(rotations),
        "drift": {
            "configuredSecs": RESYNC_SECS,
            "achievedSecs": status["driftChecks"]["achievedPeriodSeconds"],
            "groups": status["driftChecks"]["groups"],
            "groupsThatFit": status["driftChecks"]["groupsThatFit"],
            "condition": status["conditions"].as_array().and_then(|c| {
                c.iter().find(|c| c["type"] == "DriftOnSchedule").map(|c| c["reason"].clone())
            }),
        },
        "steady": {"secs": steady_secs, "listingsPerSec": listings as f64 / steady_secs,
            "callsPerSec": steady.len() as f64 / steady_secs},
        "budget": {"qps": QPS, "burst": BURST, "busiest1s": most_1s, "allowed1s": allowed_1s,
            "busiest10s": most_10s, "allowed10s": allowed_10s,
            "held": most_1s as f64 <= allowed_1s && most_10s as f64 <= allowed_10s},
        "vmHwmKiB": hwm,
        "cpuSecs": cpu,
    })
}
