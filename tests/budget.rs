//! One environment's Frontegg budget, scheduled, on a real control plane: personal tokens of
//! many users (one drift group each) outgrow what the budget can list per resync period, and
//! what users wait for still goes first; failed issuances back off across restarts.
//!
//! Every bound here is an ordering (fewer listings than one full drift pass, a create no
//! earlier than the recorded backoff), never a wall-clock time: speed is `make bench`'s.

mod support;

use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const GROUP: &str = "tokens.frontegg-operator.io/v1alpha1";
const USERS: usize = 600;
const LIST_ROUTE: &str = "GET /identity/resources/users/access-tokens/v1";

fn personal_token(ns: &str, name: &str, user: &str) -> Value {
    json!({
        "apiVersion": GROUP, "kind": "UserAccessToken",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"tenantId": "tenant-a", "userId": user, "expiresIn": "24h"},
    })
}

fn is_ready(obj: &Value) -> bool {
    condition(obj, "Ready").is_some_and(|c| c["status"] == "True")
}

/// How many of the namespace's personal tokens are Ready.
async fn ready_count(client: &kube::Client, ns: &str) -> usize {
    let api = dynamic_api(client, Some(ns), "useraccesstokens");
    let list = api.list(&Default::default()).await.expect("list tokens");
    list.items
        .iter()
        .filter(|o| is_ready(&serde_json::to_value(o).expect("json")))
        .count()
}

/// When each call the fake logged was made, and its route.
async fn calls(fake: &Fake) -> Vec<(Timestamp, String)> {
    fake.call_log()
        .await
        .iter()
        .map(|c| {
            let at: Timestamp = c["at"].as_str().expect("at").parse().expect("timestamp");
            (at, c["route"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

/// The most calls in any window of `window` (the log is in arrival order).
fn most_in_window(times: &[Timestamp], window: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for (end, t) in times.iter().enumerate() {
        while t.duration_since(times[start])
            > jiff::SignedDuration::try_from(window).expect("window")
        {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

/// The environment's default budget (`--qps 10`, `--burst 20`) holds over every window: a
/// token bucket allows at most burst + qps × window. Two calls of slack for the time between
/// a turn and the fake's stamp.
fn assert_within_budget(log: &[(Timestamp, String)]) {
    let mut times: Vec<Timestamp> = log.iter().map(|(t, _)| *t).collect();
    times.sort();
    for secs in [1u64, 5, 30] {
        let most = most_in_window(&times, Duration::from_secs(secs));
        let allowed = 20 + 10 * secs as usize + 2;
        assert!(
            most <= allowed,
            "{most} calls within {secs} s; the budget allows {allowed}"
        );
    }
}

#[tokio::test]
async fn personal_tokens_of_600_users_all_issue_and_new_tokens_never_wait_for_a_drift_pass() {
    let other = format!("budget-other-{}", &uuid_like()[..6]);
    let env = TestEnv::start_with(
        "budget",
        Options {
            resync: "20s",
            extra_namespaces: vec![other.clone()],
            ..Options::default()
        },
    )
    .await;
    // The environment serves the other namespace too: one environment, one budget.
    apply_yaml(
        &env.client,
        &json!({
            "apiVersion": GROUP, "kind": "ClusterFronteggEnvironment",
            "metadata": {"name": env.env_name, "labels": {"e2e": env.ns}},
            "spec": {"baseUrl": env.fake.url,
                     "credentialsSecretRef": {"name": "frontegg-credentials"},
                     "allowedNamespaces": {"names": [env.ns, other]},
                     "allowedTenants": ["*"]},
        })
        .to_string(),
    )
    .await;

    // 600 users' tokens at once: 600 drift groups, 30 listings/s at a 20 s resync, three
    // times the budget of 10/s.
    futures::stream::iter(0..USERS)
        .map(|i| {
            env.apply_owned(personal_token(
                &env.ns,
                &format!("t-{i}"),
                &format!("user-{i}"),
            ))
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    wait_for(Duration::from_secs(900), "all 600 tokens Ready", || async {
        (ready_count(&env.client, &env.ns).await == USERS).then_some(())
    })
    .await;
    assert_eq!(
        env.fake.tokens().await.len(),
        USERS,
        "one token per resource"
    );

    // Steady state: the drift checks fall behind and say so, with what would fit.
    let environment = wait_for(
        Duration::from_secs(300),
        "the environment to report its drift checks behind",
        || async {
            let envs = dynamic_api(&env.client, None, "clusterfronteggenvironments");
            let obj = serde_json::to_value(envs.get(&env.env_name).await.ok()?).ok()?;
            let behind = condition(&obj, "DriftOnSchedule")
                .is_some_and(|c| c["status"] == "False" && c["reason"] == "Behind");
            (behind && obj["status"]["driftChecks"]["groups"] == USERS as u64).then_some(obj)
        },
    )
    .await;
    let checks = &environment["status"]["driftChecks"];
    println!("drift checks at {USERS} groups: {checks}");
    assert_eq!(checks["configuredPeriodSeconds"], 20);
    assert!(checks["achievedPeriodSeconds"].as_u64().expect("achieved") > 40);
    assert!(checks["groupsThatFit"].as_u64().expect("fit") < USERS as u64);
    // Behind, the background listings use what the budget has.
    assert!(checks["budgetUsedPercent"].as_u64().expect("used") > 50);

    // New tokens in another namespace, one after another: each is Ready before a full drift
    // pass (600 listings) could have gone by.
    for n in 0..5 {
        let name = format!("new-{n}");
        let before = calls(&env.fake).await.len();
        apply_yaml(
            &env.client,
            &personal_token(&other, &name, &format!("new-user-{n}")).to_string(),
        )
        .await;
        wait_for(
            Duration::from_secs(120),
            &format!("{name} Ready"),
            || async {
                let obj = get_custom(&env.client, &other, "useraccesstokens", &name).await?;
                is_ready(&obj).then_some(())
            },
        )
        .await;
        let log = calls(&env.fake).await;
        let listings = log[before..]
            .iter()
            .filter(|(_, r)| r == LIST_ROUTE)
            .count();
        println!("{name}: Ready after {listings} background listings");
        assert!(
            listings < USERS,
            "{name} waited for {listings} listings, a full drift pass"
        );
    }
    // Behind, the drift checks still reach every group, oldest first.
    wait_for(Duration::from_secs(300), "a full drift pass", || async {
        let log = calls(&env.fake).await;
        (log.iter().filter(|(_, r)| r == LIST_ROUTE).count() >= USERS + 5).then_some(())
    })
    .await;
    assert_within_budget(&calls(&env.fake).await);
    env.assert_no_secrets_logged().await;
}

/// How long before its create a failed pass may have started: the backoff counts from then.
const TOLERANCE: jiff::SignedDuration = jiff::SignedDuration::from_millis(500);

const EXCHANGE_PREFIX: &str = "/identity/resources/auth/v2/api-token";
const USER_CREATES: &str = "POST /identity/resources/users/api-tokens/v1";

/// The creates of user API tokens the fake saw, in order.
async fn user_creates(fake: &Fake) -> Vec<Timestamp> {
    calls(fake)
        .await
        .into_iter()
        .filter(|(_, r)| r == USER_CREATES)
        .map(|(t, _)| t)
        .collect()
}

async fn backoff_of(env: &TestEnv, name: &str) -> Option<Value> {
    let obj = env.get("userapitokens", name).await?;
    Some(obj["status"]["issuanceBackoff"].clone()).filter(|b| !b.is_null())
}

#[tokio::test]
async fn failed_issuances_back_off_exponentially_across_a_restart_and_spare_healthy_tokens() {
    let mut env = TestEnv::start("backoff").await;
    let flags = [
        "--min-reissue-interval",
        "4s",
        "--max-reissue-backoff",
        "32s",
    ];
    env.restart_operator("backoff", &flags, &[]);
    // A healthy token, of a kind whose issuance needs no exchange.
    env.apply_owned(json!({
        "apiVersion": GROUP, "kind": "TenantApiToken", "metadata": {"name": "healthy"},
        "spec": {"tenantId": "tenant-a", "roleIds": ["role-a"]},
    }))
    .await;
    let healthy = env
        .wait_ready("tenantapitokens", "healthy", "True", None)
        .await;
    // Every exchange fails from now on: a token with rotation.verify is created, fails its
    // verification and is revoked again, every time.
    env.fake
        .set_faults(json!({"errorNext": 100000, "pathPrefix": EXCHANGE_PREFIX}))
        .await;
    env.apply_owned(json!({
        "apiVersion": GROUP, "kind": "UserApiToken", "metadata": {"name": "failing"},
        "spec": {"tenantId": "tenant-a", "userId": "user-f", "rotation": {"verify": true}},
    }))
    .await;
    let third = wait_for(
        Duration::from_secs(90),
        "three failed issuances",
        || async {
            backoff_of(&env, "failing")
                .await
                .filter(|b| b["failures"] == 3)
        },
    )
    .await;
    let creates = user_creates(&env.fake).await;
    assert_eq!(creates.len(), 3, "one create per failed issuance");
    // 4 s, then 8 s between the creates; the fourth waits 16 s. (The wait counts from the
    // start of the failed pass, a moment before its create.)
    let gap = |a: Timestamp, b: Timestamp| b.duration_since(a);
    let at_least = |secs: i64| jiff::SignedDuration::from_secs(secs) - TOLERANCE;
    assert!(gap(creates[0], creates[1]) >= at_least(4), "{creates:?}");
    assert!(gap(creates[1], creates[2]) >= at_least(8), "{creates:?}");
    let next: Timestamp = third["nextAttemptAt"]
        .as_str()
        .expect("next")
        .parse()
        .expect("ts");
    assert!(
        gap(creates[2], next) >= at_least(16),
        "16 s after the third"
    );
    assert_eq!(third["lastFailure"], "VerificationFailed");
    // `kubectl frontegg status` says so, and when the next try comes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubectl-frontegg"))
        .args(["status", "userapitoken/failing", "-n", &env.ns])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run kubectl-frontegg");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3 failed issuance(s) in a row (last: VerificationFailed)"),
        "{text}"
    );

    // A restart forgets nothing: the fourth create waits for the recorded time.
    env.restart_operator("backoff-restarted", &flags, &[]);
    // Meanwhile a healthy token rotates at once, untouched by the other's backoff.
    let api = dynamic_api(&env.client, Some(&env.ns), "tenantapitokens");
    api.patch(
        "healthy",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {
            "tokens.frontegg-operator.io/rotate": "1"}}})),
    )
    .await
    .expect("request a rotation");
    wait_for(
        Duration::from_secs(60),
        "the healthy token rotated",
        || async {
            let obj = env.get("tenantapitokens", "healthy").await?;
            (obj["status"]["current"]["id"] != healthy["status"]["current"]["id"] && is_ready(&obj))
                .then_some(obj)
        },
    )
    .await;
    assert_eq!(
        user_creates(&env.fake).await.len(),
        3,
        "the healthy rotation came before the failing token's next attempt"
    );
    let fourth = wait_for(Duration::from_secs(90), "the fourth failure", || async {
        backoff_of(&env, "failing")
            .await
            .filter(|b| b["failures"] == 4)
    })
    .await;
    let creates = user_creates(&env.fake).await;
    assert_eq!(creates.len(), 4);
    assert!(
        creates[3] >= next,
        "the fourth create ({}) came before the recorded backoff ({next})",
        creates[3]
    );
    // The fifth waits 32 s, the cap.
    let fifth: Timestamp = fourth["nextAttemptAt"]
        .as_str()
        .expect("next")
        .parse()
        .expect("ts");
    assert!(gap(creates[3], fifth) >= at_least(32));
    assert!(gap(creates[3], fifth) <= jiff::SignedDuration::from_secs(32));
    assert!(
        env.get("tenantapitokens", "healthy")
            .await
            .expect("healthy")["status"]["issuanceBackoff"]
            .is_null()
    );

    // The cause fixed and the spec changed: the failures no longer count, the token issues
    // at once and the backoff is gone.
    env.fake.set_faults(json!({})).await;
    env.apply_owned(json!({
        "apiVersion": GROUP, "kind": "UserApiToken", "metadata": {"name": "failing"},
        "spec": {"tenantId": "tenant-a", "userId": "user-f", "rotation": {"verify": true},
                 "description": "fixed"},
    }))
    .await;
    let fixed = env
        .wait_ready("userapitokens", "failing", "True", None)
        .await;
    assert!(fixed["status"]["issuanceBackoff"].is_null());
    assert!(
        Timestamp::now() < fifth,
        "issued before the old backoff ended"
    );
}
