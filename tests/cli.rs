//! `kubectl frontegg` on the real control plane, with the operator and the fake running: each
//! command against tokens in known states, asserting on its JSON output and exit code, and
//! that no secret value appears in any output.

mod support;

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

/// One run of the CLI: (exit code, stdout, stderr).
fn cli(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kubectl-frontegg"))
        .args(args)
        .args(["-n", &env.ns])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run kubectl-frontegg");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn token(name: &str, labels: Value, spec: Value) -> String {
    let mut spec = spec;
    if spec.get("userId").is_none() {
        spec["userId"] = json!("u");
    }
    if spec.get("tenantId").is_none() {
        spec["tenantId"] = json!("t");
    }
    json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "UserApiToken",
           "metadata": {"name": name, "labels": labels}, "spec": spec})
    .to_string()
}

fn row<'a>(rows: &'a Value, name: &str) -> &'a Value {
    rows.as_array()
        .and_then(|r| r.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no row {name}: {rows}"))
}

#[tokio::test]
async fn every_command_reports_known_states_with_exit_codes_and_never_a_secret() {
    let mut env = TestEnv::start("cli").await;
    // The platform's policy admits user u only.
    apply_yaml(
        &env.client,
        &json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1",
                "kind": "ClusterFronteggEnvironment",
                "metadata": {"name": env.env_name, "labels": {"e2e": env.ns}},
                "spec": {"baseUrl": env.fake.url, "credentialsSecretRef": {"name": "frontegg-credentials"},
                         "allowedNamespaces": {"names": [env.ns]}, "allowedTenants": ["*"],
                         "policy": {"allowedUsers": ["u"]}}})
        .to_string(),
    )
    .await;
    // Before any token: the operator has seen the policy once the status describes it.
    let envs = dynamic_api(&env.client, None, "clusterfronteggenvironments");
    wait_for(Duration::from_secs(30), "the policy observed", || async {
        let e = serde_json::to_value(envs.get(&env.env_name).await.ok()?).ok()?;
        let seen = e["status"]["observedGeneration"] == e["metadata"]["generation"];
        (seen && e["spec"]["policy"]["allowedUsers"] == json!(["u"])).then_some(())
    })
    .await;
    let ok = json!({"state": "ok"});
    env.apply(&token("ready", ok.clone(), json!({}))).await;
    env.apply(&token(
        "graced",
        ok.clone(),
        json!({"rotation": {"gracePeriod": "1h"}}),
    ))
    .await;
    env.apply(&token("refused", json!({}), json!({"userId": "intruder"})))
        .await;
    env.apply(&token("edited", json!({}), json!({}))).await;
    env.apply(
        &json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "TenantApiToken",
                "metadata": {"name": "jwt", "labels": ok},
                "spec": {"tenantId": "t", "roleIds": ["r"],
                         "secret": {"accessToken": {"enabled": true, "refreshBefore": "10m"}}}})
        .to_string(),
    )
    .await;
    for name in ["ready", "graced", "edited"] {
        env.wait_ready("userapitokens", name, "True", None).await;
    }
    env.wait_ready("tenantapitokens", "jwt", "True", None).await;
    env.wait_ready("userapitokens", "refused", "False", Some("PolicyViolation"))
        .await;
    // Mid-grace: rotated, the old token waits out its hour.
    let (code, _, err) = cli(
        &env,
        &[
            "rotate",
            "userapitoken/graced",
            "--wait",
            "--timeout",
            "60s",
        ],
    );
    assert_eq!(code, 0, "{err}");
    // From here every create waits an hour: a rotation waits, an edited Secret stays edited.
    env.restart_operator("slow", &["--min-reissue-interval", "1h"], &[]);
    env.apply(&token("waiting", ok.clone(), json!({}))).await;
    env.wait_ready("userapitokens", "waiting", "True", None)
        .await;
    // --wait says why it waits and until when, instead of going quiet for the interval.
    let (code, _, err) = cli(
        &env,
        &[
            "rotate",
            "userapitoken/waiting",
            "--wait",
            "--timeout",
            "5s",
        ],
    );
    assert_eq!(code, 1, "the rotation waits an hour: {err}");
    assert!(
        err.contains("UserApiToken/")
            && err.contains("waiting: token ")
            && err.contains("min-reissue-interval"),
        "{err}"
    );
    wait_for(
        Duration::from_secs(30),
        "the Rotating condition",
        || async {
            let obj = env.get("userapitokens", "waiting").await?;
            obj["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Rotating")
                .then_some(())
        },
    )
    .await;
    let forged = "a-value-typed-by-hand-0123456789";
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .patch(
            "edited",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"secret": forged}})),
        )
        .await
        .expect("edit the Secret");

    let mut outputs = Vec::new();
    let mut run = |args: &[&str]| {
        let (code, out, err) = cli(&env, args);
        outputs.push(format!("{out}{err}"));
        (code, out, err)
    };

    // status: every row, exit 1 because one is refused.
    let (code, out, _) = run(&["status", "-o", "json"]);
    assert_eq!(code, 1, "a resource is not Ready: {out}");
    let rows = json_of(&out);
    assert_eq!(rows.as_array().map(Vec::len), Some(6), "{rows}");
    assert_eq!(row(&rows, "ready")["ready"], "True");
    assert_eq!(row(&rows, "refused")["ready"], "False");
    assert_eq!(row(&rows, "refused")["reason"], "PolicyViolation");
    let graced = row(&rows, "graced");
    assert_eq!(
        graced["pendingRevocations"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(graced["pendingRevocations"][0]["notBefore"].is_string());
    let waiting = row(&rows, "waiting");
    assert_eq!(waiting["ready"], "True", "a waiting rotation keeps Ready");
    assert!(
        waiting["rotating"]
            .as_str()
            .is_some_and(|m| m.contains("min-reissue-interval")),
        "{waiting}"
    );
    // The table, and a selector of Ready ones only: exit 0.
    let (code, table, _) = run(&["status"]);
    assert_eq!(code, 1);
    assert!(
        table.starts_with("RESOURCE")
            && table.contains("UserApiToken/refused")
            && table.contains("PolicyViolation"),
        "{table}"
    );
    let (code, out, _) = run(&["status", "-l", "state=ok", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_of(&out).as_array().map(Vec::len), Some(4));

    // status of one: what happens next.
    let (code, out, _) = run(&["status", "userapitoken/graced", "-o", "json"]);
    assert_eq!(code, 0);
    let detail = json_of(&out);
    assert!(
        detail["next"].as_array().is_some_and(|n| n.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.contains("after its grace period")))),
        "{detail}"
    );
    assert!(
        detail["environmentReady"]
            .as_str()
            .is_some_and(|e| e.contains("Ready=True")),
        "{detail}"
    );
    assert!(
        detail["events"].as_array().is_some_and(|e| !e.is_empty()),
        "{detail}"
    );
    let (code, out, _) = run(&["status", "fuapi/refused"]);
    assert_eq!(code, 1);
    assert!(out.contains("not ready: PolicyViolation"), "{out}");

    // inspect: the hand edit shows, and no value but the plain ones.
    let (code, out, _) = run(&["inspect", "secret", "edited", "-o", "json"]);
    assert_eq!(code, 1, "a Secret that differs from the status: {out}");
    let edited = json_of(&out);
    assert_eq!(edited["matchesStatus"], "differs");
    assert_eq!(edited["owner"], "UserApiToken/edited");
    assert!(
        edited["keys"]
            .as_array()
            .is_some_and(|k| k.contains(&json!("secret")))
    );
    let (code, out, _) = run(&["inspect", "secret", "ready", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let ready_secret = json_of(&out);
    assert_eq!(ready_secret["matchesStatus"], "matches");
    assert_eq!(ready_secret["tokenId"], row(&rows, "ready")["tokenId"]);

    // A delivered JWT: three claims and the time left, never the JWT.
    let (code, out, _) = run(&["inspect", "secret", "jwt", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let jwt = json_of(&out);
    assert_eq!(jwt["owner"], "TenantApiToken/jwt");
    assert_eq!(jwt["jwt"]["tenantId"], "t", "{jwt}");
    assert!(
        jwt["jwt"]["secondsLeft"].as_i64().is_some_and(|s| s > 0),
        "{jwt}"
    );
    let delivered = env.secret("jwt").await.expect("Secret");
    let bearer = secret_data(&delivered)["accessToken"].clone();
    assert!(!bearer.is_empty());

    // check: the test's ClusterFronteggEnvironment, its credentials in the test namespace.
    let (code, out, _) = run(&[
        "check",
        "environment",
        &env.env_name,
        "--operator-namespace",
        &env.ns,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let check = json_of(&out);
    assert_eq!(check["ready"], "True");
    assert_eq!(check["credentialsProblems"], json!([]));
    assert_eq!(check["inUse"], true, "tokens hold it");
    // The guard rails in text read as sentences, not JSON.
    let (_, text, _) = run(&[
        "check",
        "environment",
        &env.env_name,
        "--operator-namespace",
        &env.ns,
    ]);
    assert!(
        text.contains(&format!("Namespaces:   names: {}", env.ns)),
        "{text}"
    );
    assert!(!text.contains('{') && !text.contains('"'), "{text}");
    // An empty namespace says so, as kubectl does.
    let empty = Command::new(env!("CARGO_BIN_EXE_kubectl-frontegg"))
        .args(["status", "-n", "kube-public"])
        .env("KUBECONFIG", kubeconfig())
        .output()
        .expect("run kubectl-frontegg");
    assert_eq!(empty.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&empty.stdout).trim(),
        "No token resources found in kube-public namespace."
    );

    // Errors: exit 2, with a message.
    let (code, _, err) = run(&["status", "userapitoken/missing"]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
    let (code, _, err) = run(&["status", "pods/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a token kind"), "{err}");
    let (code, out, _) = run(&["status", "-o", "yaml"]);
    assert_eq!(code, 1);
    assert!(out.contains("name: refused"), "{out}");

    // version and completions need no cluster.
    let (code, out, _) = run(&["version"]);
    assert!(code == 0 && out.starts_with("kubectl-frontegg "), "{out}");
    let (code, out, _) = run(&["completions", "bash"]);
    assert!(code == 0 && out.contains("kubectl-frontegg"), "{out}");

    // No secret in any output.
    let mut secrets = env.fake.issued_secrets().await;
    secrets.push(forged.to_string());
    secrets.push(env.fake.secret.clone());
    secrets.push(bearer);
    for output in &outputs {
        for secret in &secrets {
            assert!(
                !output.contains(secret.as_str()),
                "a secret in the output: {output}"
            );
        }
    }
}

#[tokio::test]
async fn rotate_wait_by_selector_ends_with_new_tokens_and_the_old_ones_in_their_grace() {
    let mut env = TestEnv::start("cli-rotate").await;
    env.restart_operator("grace", &["--grace-period", "20s"], &[]);
    let team = json!({"team": "x"});
    for name in ["a", "b", "c"] {
        env.apply(&token(name, team.clone(), json!({}))).await;
    }
    env.apply(&token("other", json!({"team": "y"}), json!({})))
        .await;
    let mut old = Vec::new();
    for name in ["a", "b", "c", "other"] {
        let obj = env.wait_ready("userapitokens", name, "True", None).await;
        old.push(
            obj["status"]["current"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let create = "POST /identity/resources/users/api-tokens/v1";
    assert_eq!(env.fake.calls(create).await, 4);

    let (code, out, err) = cli(
        &env,
        &[
            "rotate",
            "-l",
            "team=x",
            "--wait",
            "--timeout",
            "90s",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let outcomes = json_of(&out);
    let outcomes = outcomes.as_array().expect("outcomes");
    assert_eq!(outcomes.len(), 3);
    for o in outcomes {
        assert_eq!(o["result"], "Rotated", "{o}");
        assert_ne!(o["newTokenId"], o["oldTokenId"]);
    }
    assert_eq!(
        err.matches("rotated, token").count(),
        3,
        "a progress line per resource: {err}"
    );
    for (name, old_id) in ["a", "b", "c"].iter().zip(&old) {
        let obj = env.get("userapitokens", name).await.expect("token");
        let new_id = obj["status"]["current"]["id"].as_str().expect("id");
        assert_ne!(new_id, old_id);
        let secret = env.secret(name).await.expect("Secret");
        assert_eq!(secret_data(&secret)["tokenId"], new_id);
        assert!(
            env.fake.token(old_id).await.is_some(),
            "the old token lives through its grace period"
        );
    }
    assert_eq!(env.fake.calls(create).await, 7, "3 creates for 3 rotations");
    let other = env.get("userapitokens", "other").await.expect("other");
    assert_eq!(
        other["status"]["current"]["id"],
        old[3].as_str(),
        "outside the selector: untouched"
    );
    // The grace period over, the old tokens go.
    for old_id in old.iter().take(3) {
        wait_for(
            Duration::from_secs(60),
            "the old token revoked after its grace period",
            || async { env.fake.token(old_id).await.is_none().then_some(()) },
        )
        .await;
    }
}
