//! The kill matrix, on the real control plane. For each kind and each crash point the operator
//! exits at once, without cleanup (a test-only hook, `FTO_TEST_EXIT_AT`, compiled only with the
//! `test-hooks` feature). A new operator process then takes over, and the test checks:
//! - exactly one live remote token per resource, plus any still inside their grace period;
//! - the Secret holds that token's working secret;
//! - zero unrecorded marked tokens once the grace period is over;
//! - `Ready=True` (or, for a crash during deletion, the resource gone and nothing left).
//!
//! The matrix it prints is kept in docs/reliability.md.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const GRACE: &str = "3s";

const KINDS: [(&str, &str, &str); 4] = [
    ("UserApiToken", "userapitokens", "secret"),
    ("UserAccessToken", "useraccesstokens", "token"),
    ("TenantApiToken", "tenantapitokens", "secret"),
    ("TenantAccessToken", "tenantaccesstokens", "token"),
];

// The finalizer is written with the journal, so "after-intent" is also the first moment a
// finalizer exists.
const STEPS: [&str; 6] = [
    "after-intent",
    "after-create",
    "after-secret",
    "after-status",
    "mid-grace",
    "mid-deletion",
];

fn manifest(kind: &str, name: &str) -> Value {
    let mut spec = json!({"tenantId": "tenant-k", "expiresIn": "24h"});
    match kind {
        "UserApiToken" | "UserAccessToken" => spec["userId"] = json!("user-k"),
        _ => spec["roleIds"] = json!(["role-k"]),
    }
    json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": kind,
           "metadata": {"name": name}, "spec": spec})
}

/// Remote tokens carrying the mark of resource `uid`.
async fn marked(env: &TestEnv, uid: &str) -> Vec<Value> {
    env.fake
        .tokens()
        .await
        .into_iter()
        .filter(|t| {
            t["description"]
                .as_str()
                .and_then(|d| d.rsplit(" [k8s:").next())
                // ` [k8s:<installation>/<uid>/<attempt>]`: the uid is next to last.
                .is_some_and(|mark| mark.split('/').rev().nth(1) == Some(uid))
        })
        .collect()
}

/// Runs one (step, kind) scenario in its own namespace; Ok(observed) or Err(what went wrong).
async fn scenario(step: &str, kind: &str, plural: &str, key: &str) -> Result<String, String> {
    let mut env = TestEnv::start(&format!("crash-{}", plural.trim_end_matches('s'))).await;
    let name = "victim";
    let grace = ["--grace-period", GRACE, "--leader-election", "false"];
    let hook = format!("{step}:{name}");
    // Steps that happen after issuance first need a Ready token.
    let late = matches!(step, "mid-grace" | "mid-deletion");
    if late {
        env.restart_operator("setup", &grace, &[]);
        env.apply_owned(manifest(kind, name)).await;
        env.wait_ready(plural, name, "True", None).await;
    }
    env.restart_operator("doomed", &grace, &[("FTO_TEST_EXIT_AT", &hook)]);
    match step {
        "mid-grace" => {
            let mut m = manifest(kind, name);
            m["metadata"]["annotations"] = json!({"tokens.frontegg-operator.io/rotate": "now"});
            env.apply_owned(m).await;
        }
        "mid-deletion" => env.delete(plural, name).await,
        _ => {
            env.apply_owned(manifest(kind, name)).await;
        }
    }
    let exited = wait_for(Duration::from_secs(30), &format!("exit at {hook}"), || {
        let running = env.operator.running_pid().is_some();
        async move { (!running).then_some(()) }
    })
    .await;
    let _: () = exited;
    let uid_before = env
        .get(plural, name)
        .await
        .and_then(|o| o["metadata"]["uid"].as_str().map(str::to_string));
    env.restart_operator("recovered", &grace, &[]);

    if step == "mid-deletion" {
        wait_for(Duration::from_secs(60), "resource deleted", || async {
            env.get(plural, name).await.is_none().then_some(())
        })
        .await;
        let uid = uid_before.ok_or("the resource vanished before the restart")?;
        let left = marked(&env, &uid).await;
        return if left.is_empty() {
            Ok("deleted; 0 remote tokens left".into())
        } else {
            Err(format!("{} remote tokens left after deletion", left.len()))
        };
    }

    let obj = env
        .wait_ready(plural, name, "True", Some("TokenReady"))
        .await;
    let uid = obj["metadata"]["uid"].as_str().ok_or("uid")?.to_string();
    let current = obj["status"]["current"]["id"]
        .as_str()
        .ok_or("no current token")?
        .to_string();
    let in_grace = marked(&env, &uid).await.len();
    // After the grace period only the current token may be left.
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        let live = marked(&env, &uid).await;
        if live.len() <= 1 || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let ids: Vec<&str> = live.iter().filter_map(|t| t["id"].as_str()).collect();
    if ids != [current.as_str()] {
        return Err(format!("live marked tokens {ids:?}, current {current}"));
    }
    let secret = env.secret(name).await.ok_or("no Secret")?;
    let data = secret_data(&secret);
    if data.get(key).map(String::as_str) != live[0]["secret"].as_str() {
        return Err("the Secret does not hold the live token's secret".into());
    }
    let creates = env
        .fake
        .call_log()
        .await
        .iter()
        .filter(|c| {
            c["route"]
                .as_str()
                .is_some_and(|r| r.starts_with("POST /identity/"))
        })
        .count();
    Ok(format!(
        "Ready; 1 live token (the Secret's); {in_grace} marked right after the restart; {creates} creates in all"
    ))
}

#[tokio::test]
async fn a_crash_at_any_step_leaks_nothing_and_loses_no_secret() {
    let mut rows: Vec<[String; 4]> = Vec::new();
    let mut failures = Vec::new();
    for step in STEPS {
        let runs = KINDS.iter().map(|(kind, plural, key)| async move {
            (kind, scenario(step, kind, plural, key).await)
        });
        for (kind, result) in futures::future::join_all(runs).await {
            let (verdict, observed) = match result {
                Ok(o) => ("ok", o),
                Err(e) => {
                    failures.push(format!("{kind} at {step}: {e}"));
                    ("FAILED", e)
                }
            };
            rows.push([
                kind.to_string(),
                step.to_string(),
                observed,
                verdict.to_string(),
            ]);
        }
    }
    let mut table =
        String::from("| kind | crash point | observed after the restart | |\n|---|---|---|---|\n");
    for [kind, step, observed, verdict] in &rows {
        table.push_str(&format!("| {kind} | {step} | {observed} | {verdict} |\n"));
    }
    println!("{table}");
    std::fs::write(
        std::path::PathBuf::from(REPO).join("target/crash-matrix.md"),
        &table,
    )
    .expect("write matrix");
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
