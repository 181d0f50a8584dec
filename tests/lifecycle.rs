//! No remote token outlives its resource, on the real control plane: what happens to remote
//! tokens when the objects around them go, in the orders GitOps tools and people delete them.
//! Each case is checked against the fake's request log and prints a row (case, expected,
//! observed); `target/lifecycle-matrix/` collects them, and docs/reliability.md keeps the
//! table.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use serde_json::{Value, json};
use support::*;

const API_VERSION: &str = "tokens.frontegg-operator.io/v1alpha1";
const IN_USE: &str = "tokens.frontegg-operator.io/in-use";

/// Prints the row and keeps it for the matrix; fails the test on an unexpected observation.
fn record(case: &str, expected: &str, observed: Result<String, String>) {
    let (mark, text) = match &observed {
        Ok(o) => ("✔", o.clone()),
        Err(e) => ("✘", e.clone()),
    };
    let row = format!("| {case} | {expected} | {mark} {text} |");
    println!("{row}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/lifecycle-matrix");
    let _ = std::fs::create_dir_all(&dir);
    let file: String = case
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let _ = std::fs::write(dir.join(format!("{file}.md")), format!("{row}\n"));
    if let Err(e) = observed {
        panic!("{case}: {e}");
    }
}

/// One namespace of a team: a FronteggEnvironment `env` (at `fake`) with its credentials
/// Secret `creds`, and three tokens of different kinds issued through it.
struct Team {
    ns: String,
    ids: Vec<String>,
}

const TOKENS: [(&str, &str, &str); 3] = [
    ("UserApiToken", "userapitokens", "api"),
    ("UserAccessToken", "useraccesstokens", "access"),
    ("TenantApiToken", "tenantapitokens", "tenant"),
];

async fn environment(client: &kube::Client, ns: &str, name: &str, fake: &Fake, secret: &str) {
    apply_yaml(
        client,
        &json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret, "namespace": ns,
                         "labels": {"tokens.frontegg-operator.io/credentials": "true"}},
            "stringData": {"clientId": fake.client_id, "secret": fake.secret}})
        .to_string(),
    )
    .await;
    apply_yaml(
        client,
        &json!({"apiVersion": API_VERSION, "kind": "FronteggEnvironment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"baseUrl": fake.url, "credentialsSecretRef": {"name": secret}}})
        .to_string(),
    )
    .await;
}

fn token(ns: &str, kind: &str, name: &str, env: &str) -> String {
    let mut spec =
        json!({"tenantId": "t", "environmentRef": {"kind": "FronteggEnvironment", "name": env}});
    if kind.starts_with("User") {
        spec["userId"] = json!("u");
    }
    if kind == "TenantApiToken" {
        spec["roleIds"] = json!(["reader"]);
    }
    json!({"apiVersion": API_VERSION, "kind": kind,
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
    .to_string()
}

/// Waits for Ready=True and returns the current token id.
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
            let id = obj["status"]["current"]["id"].as_str()?.to_string();
            ready.then_some(id)
        },
    )
    .await
}

fn in_use(meta: &kube::api::ObjectMeta) -> bool {
    meta.finalizers.iter().flatten().any(|f| f == IN_USE)
}

async fn env_meta(client: &kube::Client, ns: &str, name: &str) -> Option<Value> {
    get_custom(client, ns, "fronteggenvironments", name).await
}

async fn secret_meta(client: &kube::Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get Secret")
}

/// A team in namespace `ns` with its three tokens Ready, the environment and its credentials
/// protected.
async fn team(client: &kube::Client, ns: &str, fake: &Fake) -> Team {
    environment(client, ns, "env", fake, "creds").await;
    for (kind, _, name) in TOKENS {
        apply_yaml(client, &token(ns, kind, name, "env")).await;
    }
    let mut ids = Vec::new();
    for (_, plural, name) in TOKENS {
        ids.push(ready_id(client, ns, plural, name).await);
    }
    wait_for(
        Duration::from_secs(30),
        "the environment and its credentials protected",
        || async {
            let env = env_meta(client, ns, "env").await?;
            let env_held = env["metadata"]["finalizers"]
                .as_array()?
                .iter()
                .any(|f| f == IN_USE);
            let secret = secret_meta(client, ns, "creds").await?;
            (env_held && in_use(&secret.metadata)).then_some(())
        },
    )
    .await;
    // Three tokens of a new environment protect it at once: no write of theirs may fail.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), ns);
    let failures: Vec<String> = events
        .list(&Default::default())
        .await
        .expect("events")
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.message)
        .collect();
    assert!(failures.is_empty(), "Warnings while issuing: {failures:?}");
    Team {
        ns: ns.to_string(),
        ids,
    }
}

/// A second namespace the test's operator watches.
async fn world(name: &str) -> (TestEnv, String) {
    let extra = format!("lc-{name}-{}", &uuid_like()[..6]);
    let env = TestEnv::start_with(
        name,
        Options {
            extra_namespaces: vec![extra.clone()],
            ..Options::default()
        },
    )
    .await;
    (env, extra)
}

async fn delete_namespace(client: &kube::Client, ns: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(ns, &Default::default())
        .await
        .expect("delete namespace");
}

/// How long the namespace took to go, if it went within 60 s.
async fn namespace_gone(
    client: &kube::Client,
    ns: &str,
    since: Instant,
) -> Result<Duration, String> {
    let api = Api::<Namespace>::all(client.clone());
    while since.elapsed() < Duration::from_secs(60) {
        if api.get_opt(ns).await.expect("get namespace").is_none() {
            return Ok(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!("namespace {ns} still there after 60 s"))
}

/// How many of `ids` the fake still holds, and how many revocations it answered with 2xx.
async fn left_at_fake(fake: &Fake, ids: &[String]) -> (usize, usize) {
    let mut left = 0;
    for id in ids {
        if fake.token(id).await.is_some() {
            left += 1;
        }
    }
    let revoked = fake
        .call_log()
        .await
        .iter()
        .filter(|c| {
            c["route"]
                .as_str()
                .is_some_and(|r| r.starts_with("DELETE "))
                && c["status"].as_u64().is_some_and(|s| s < 300)
        })
        .count();
    (left, revoked)
}

/// Every revocation fails with a 500 until the faults are cleared: a deletion in the middle.
async fn fail_revocations(fake: &Fake) {
    fake.set_faults(json!({"errorRate": 1.0, "pathPrefix": "/identity/resources"}))
        .await;
}

/// Waits until the fake has refused a revocation: the operator is mid-cleanup.
async fn a_revocation_failed(fake: &Fake) {
    wait_for(
        Duration::from_secs(30),
        "a revocation attempted and refused",
        || async {
            fake.call_log()
                .await
                .iter()
                .any(|c| {
                    c["route"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("DELETE "))
                        && c["status"] == 500
                })
                .then_some(())
        },
    )
    .await;
}

/// What a prune case observed.
async fn pruned(env: &TestEnv, team: &Team, since: Instant) -> Result<String, String> {
    let took = namespace_gone(&env.client, &team.ns, since).await?;
    let (left, revoked) = left_at_fake(&env.fake, &team.ids).await;
    if left == 0 {
        Ok(format!(
            "namespace gone in {:.1} s; the fake holds 0 of 3 tokens ({revoked} revocations)",
            took.as_secs_f64()
        ))
    } else {
        Err(format!("the fake still holds {left} of 3 tokens"))
    }
}

#[tokio::test]
async fn a_pruned_namespace_goes_with_every_token_revoked() {
    let (env, ns) = world("prune").await;
    let team = team(&env.client, &ns, &env.fake).await;
    let since = Instant::now();
    delete_namespace(&env.client, &ns).await;
    record(
        "namespace prune: environment, credentials and 3 tokens deleted at once",
        "namespace gone within 60 s; 0 of 3 tokens left at the fake",
        pruned(&env, &team, since).await,
    );
}

/// Whether the environment and its Secret are both being deleted.
async fn both_deleting(client: &kube::Client, ns: &str) -> Option<()> {
    let env = env_meta(client, ns, "env").await?;
    let secret = secret_meta(client, ns, "creds").await?;
    (!env["metadata"]["deletionTimestamp"].is_null()
        && secret.metadata.deletion_timestamp.is_some())
    .then_some(())
}

/// The namespace controller has asked both to go; the caller then stops the operator.
async fn deletion_under_way(client: &kube::Client, ns: &str) {
    wait_for(
        Duration::from_secs(30),
        "the environment and its Secret being deleted",
        || both_deleting(client, ns),
    )
    .await;
}

/// With no operator running, the environment and its Secret are still there, being deleted:
/// what the in-use finalizer keeps for a later revocation.
async fn terminating(client: &kube::Client, ns: &str) -> Result<(), String> {
    tokio::time::sleep(Duration::from_secs(2)).await;
    both_deleting(client, ns).await.ok_or_else(|| {
        "the environment or its Secret went while tokens still needed it".to_string()
    })
}

#[tokio::test]
async fn a_pruned_namespace_goes_when_the_operator_restarts_in_the_middle() {
    let (mut env, ns) = world("prune-restart").await;
    let team = team(&env.client, &ns, &env.fake).await;
    fail_revocations(&env.fake).await;
    delete_namespace(&env.client, &ns).await;
    a_revocation_failed(&env.fake).await;
    deletion_under_way(&env.client, &ns).await;
    env.operator.stop();
    let held = terminating(&env.client, &ns).await;
    env.fake.set_faults(json!({})).await;
    let since = Instant::now();
    env.restart_operator("restarted", &[], &[]);
    let observed = match held {
        Ok(()) => pruned(&env, &team, since).await.map(|o| {
            format!(
                "operator killed mid-deletion, environment and Secret held; after the restart: {o}"
            )
        }),
        Err(e) => Err(e),
    };
    record(
        "namespace prune, the operator killed and restarted in the middle",
        "namespace gone within 60 s of the restart; 0 of 3 tokens left",
        observed,
    );
}

async fn lease_holder(env: &TestEnv) -> Option<String> {
    Api::<Lease>::namespaced(env.client.clone(), &env.ns)
        .get_opt("frontegg-token-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn a_pruned_namespace_goes_when_the_leader_fails_over_in_the_middle() {
    let (mut env, ns) = world("prune-failover").await;
    let mut standby = Operator::start_with(
        &format!("{}-b", env.ns),
        &env.operator_args,
        kubeconfig(),
        &[("POD_NAME", "operator-b")],
    );
    let leader = wait_for(Duration::from_secs(30), "a lease holder", || {
        lease_holder(&env)
    })
    .await;
    let team = team(&env.client, &ns, &env.fake).await;
    fail_revocations(&env.fake).await;
    delete_namespace(&env.client, &ns).await;
    a_revocation_failed(&env.fake).await;
    deletion_under_way(&env.client, &ns).await;
    // Killed, not stopped: the lease is not released and must expire (4 s here).
    if leader == "operator-a" {
        env.operator.stop();
    } else {
        standby.stop();
    }
    let held = terminating(&env.client, &ns).await;
    env.fake.set_faults(json!({})).await;
    let since = Instant::now();
    let observed = match held {
        Ok(()) => pruned(&env, &team, since)
            .await
            .map(|o| format!("leader {leader} killed mid-deletion, the standby took over: {o}")),
        Err(e) => Err(e),
    };
    record(
        "namespace prune, a leader failover in the middle (two replicas)",
        "namespace gone within 60 s; 0 of 3 tokens left",
        observed,
    );
    drop(standby);
}

#[tokio::test]
async fn an_environment_deleted_first_waits_for_its_token_across_a_restart() {
    let (mut env, ns) = world("env-first").await;
    let client = env.client.clone();
    environment(&client, &ns, "env", &env.fake, "creds").await;
    apply_yaml(&client, &token(&ns, "UserApiToken", "t", "env")).await;
    let id = ready_id(&client, &ns, "userapitokens", "t").await;
    wait_for(
        Duration::from_secs(30),
        "the environment protected",
        || async {
            let e = env_meta(&client, &ns, "env").await?;
            e["metadata"]["finalizers"]
                .as_array()?
                .iter()
                .any(|f| f == IN_USE)
                .then_some(())
        },
    )
    .await;
    dynamic_api(&client, Some(&ns), "fronteggenvironments")
        .delete("env", &Default::default())
        .await
        .expect("delete environment");
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("creds", &Default::default())
        .await
        .expect("delete Secret");
    wait_for(
        Duration::from_secs(30),
        "the environment reports its holder",
        || async {
            let e = env_meta(&client, &ns, "env").await?;
            (e["status"]["tokensInUse"] == 1).then_some(())
        },
    )
    .await;
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns);
    let note = wait_for(Duration::from_secs(30), "an InUse Event", || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("InUse"))
            .and_then(|e| e.message)
    })
    .await;
    deletion_under_way(&client, &ns).await;
    env.operator.stop();
    let held = terminating(&client, &ns).await;
    env.restart_operator("restarted", &[], &[]);
    dynamic_api(&client, Some(&ns), "userapitokens")
        .delete("t", &Default::default())
        .await
        .expect("delete token");
    wait_for(
        Duration::from_secs(60),
        "the token, environment and Secret gone",
        || async {
            let token = get_custom(&client, &ns, "userapitokens", "t").await;
            let e = env_meta(&client, &ns, "env").await;
            let s = secret_meta(&client, &ns, "creds").await;
            (token.is_none() && e.is_none() && s.is_none()).then_some(())
        },
    )
    .await;
    let revoked = env.fake.token(&id).await.is_none();
    let observed = match held {
        Ok(()) if revoked && note.contains("UserApiToken") => Ok(format!(
            "environment and Secret held (status.tokensInUse 1, Event \"{note}\"); after the restart the token was revoked, then both went"
        )),
        Ok(()) => Err(format!("revoked: {revoked}; Event: {note}")),
        Err(e) => Err(e),
    };
    record(
        "environment and credentials deleted first, operator restarted, then the token deleted",
        "the token is revoked; the environment and Secret go after it",
        observed,
    );
}

#[tokio::test]
async fn a_token_moves_to_another_environment_by_a_new_resource_then_deleting_the_old() {
    let (env, ns) = world("move").await;
    let client = env.client.clone();
    let (a, b) = (&env.fake, Fake::start(&[]).await);
    environment(&client, &ns, "a", a, "a-creds").await;
    environment(&client, &ns, "b", &b, "b-creds").await;
    apply_yaml(&client, &token(&ns, "UserApiToken", "old", "a")).await;
    let old_id = ready_id(&client, &ns, "userapitokens", "old").await;
    let mut new =
        serde_json::from_str::<Value>(&token(&ns, "UserApiToken", "new", "b")).expect("json");
    new["spec"]["secret"] = json!({"name": "new"});
    apply_yaml(&client, &new.to_string()).await;
    let new_id = ready_id(&client, &ns, "userapitokens", "new").await;
    dynamic_api(&client, Some(&ns), "userapitokens")
        .delete("old", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(30), "the old resource gone", || async {
        get_custom(&client, &ns, "userapitokens", "old")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let create = "POST /identity/resources/users/api-tokens/v1";
    let delete = "DELETE /identity/resources/users/api-tokens/v1/{id}";
    let at_b = b.call_log().await;
    let old_at_b = at_b
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.contains(&old_id)))
        .count();
    let (b_creates, a_deletes) = (b.calls(create).await, a.calls(delete).await);
    let observed = if b_creates == 1
        && a_deletes == 1
        && old_at_b == 0
        && a.token(&old_id).await.is_none()
        && b.token(&new_id).await.is_some()
    {
        Ok(format!(
            "fake B: {b_creates} create, 0 requests naming {old_id}; fake A: {a_deletes} delete, the old token gone"
        ))
    } else {
        Err(format!(
            "B creates {b_creates}, A deletes {a_deletes}, requests for the old id at B {old_at_b}"
        ))
    };
    record(
        "a token moved from environment A (fake A) to B (fake B): a new resource through B, then the old one deleted",
        "fake B sees 1 create and no request for A's token id; fake A sees 1 delete",
        observed,
    );
}

#[tokio::test]
async fn an_environment_cannot_change_host_while_its_tokens_exist() {
    let (env, ns) = world("connection").await;
    let client = env.client.clone();
    let other = Fake::start(&[]).await;
    environment(&client, &ns, "env", &env.fake, "creds").await;
    apply_yaml(&client, &token(&ns, "UserApiToken", "t", "env")).await;
    let id = ready_id(&client, &ns, "userapitokens", "t").await;
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &ns,
            "patch",
            "fronteggenvironment",
            "env",
            "--type=merge",
            "-p",
            &json!({"spec": {"baseUrl": other.url}}).to_string(),
        ],
        None,
    );
    // A pass after the refusal would show any request at the other host.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let at_other = other.call_log().await.len();
    let still = ready_id(&client, &ns, "userapitokens", "t").await;
    let observed = if !ok && err.contains("immutable") && at_other == 0 && still == id {
        let message = err
            .lines()
            .find(|l| l.contains("immutable"))
            .unwrap_or(&err);
        Ok(format!(
            "refused at admission (\"{}\"); 0 requests at the other host; the token unchanged",
            message.trim().chars().take(120).collect::<String>()
        ))
    } else {
        Err(format!(
            "accepted: {ok}; requests at the other host: {at_other}; token {id} -> {still}; {err}"
        ))
    };
    record(
        "an environment's baseUrl changed while its tokens exist",
        "a clear admission error; never a request to the other host",
        observed,
    );
}

/// Past the protection: someone removes the in-use finalizer by hand, deletes the environment
/// and creates one of the same name at another host. The token's recorded connection names
/// the old host, so nothing about it is asked of the new one, not even its revocation.
#[tokio::test]
async fn a_token_is_never_asked_about_at_a_host_that_did_not_issue_it() {
    let (mut env, ns) = world("recreated").await;
    let client = env.client.clone();
    let other = Fake::start(&[]).await;
    environment(&client, &ns, "env", &env.fake, "creds").await;
    apply_yaml(&client, &token(&ns, "UserApiToken", "t", "env")).await;
    let id = ready_id(&client, &ns, "userapitokens", "t").await;
    let recorded = get_custom(&client, &ns, "userapitokens", "t")
        .await
        .expect("token")["status"]["current"]["connection"]
        .clone();
    // With the operator stopped, or it would put the finalizer back before the deletion.
    env.operator.stop();
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &ns,
            "patch",
            "fronteggenvironment",
            "env",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    let envs = dynamic_api(&client, Some(&ns), "fronteggenvironments");
    envs.delete("env", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(30), "the environment gone", || async {
        env_meta(&client, &ns, "env").await.is_none().then_some(())
    })
    .await;
    environment(&client, &ns, "env", &other, "other-creds").await;
    env.restart_operator("recreated", &[], &[]);
    // EnvironmentNotFound first, while no environment of that name exists; then the verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reason = String::new();
    while Instant::now() < deadline && reason != "ConnectionChanged" {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let obj = get_custom(&client, &ns, "userapitokens", "t")
            .await
            .expect("token");
        reason = obj["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["reason"].as_str())
            .unwrap_or_default()
            .to_string();
    }
    // Deleting it waits too: revoking it at the new host would send its id there.
    let tokens = dynamic_api(&client, Some(&ns), "userapitokens");
    tokens
        .delete("t", &Default::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let waiting = get_custom(&client, &ns, "userapitokens", "t")
        .await
        .is_some();
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &ns,
            "patch",
            "userapitokens",
            "t",
            "--type=merge",
            "-p",
            r#"{"spec":{"deletionPolicy":"Orphan"}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    wait_for(
        Duration::from_secs(30),
        "the orphaned resource gone",
        || async {
            get_custom(&client, &ns, "userapitokens", "t")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    let asked = other
        .call_log()
        .await
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.contains(&id)))
        .count();
    let creates = other
        .calls("POST /identity/resources/users/api-tokens/v1")
        .await;
    let observed = if reason == "ConnectionChanged"
        && waiting
        && asked == 0
        && creates == 0
        && recorded["baseUrl"] == env.fake.url.as_str()
    {
        Ok(format!(
            "Ready=False ConnectionChanged; the deletion waited until deletionPolicy Orphan; the new host got 0 requests naming {id} and 0 creates"
        ))
    } else {
        Err(format!(
            "reason {reason}; deletion waited {waiting}; requests naming the id at the new host {asked}; creates {creates}; recorded {recorded}"
        ))
    };
    record(
        "connection change past the protection: finalizer removed by hand, the environment recreated at another host",
        "no request for the token's id at the new host, no silent reissue; a clear condition",
        observed,
    );
}

/// The leaked-token rows: a token whose finalizer was removed by hand and whose resource was
/// deleted is reported, then collected once the operator runs with --collect-leaked-tokens;
/// tokens marked by another installation, or by an earlier version, are never touched.
#[tokio::test]
async fn a_leaked_token_is_reported_then_collected_and_no_other_installations_token_is_touched() {
    let (mut env, ns) = world("leaked").await;
    let client = env.client.clone();
    environment(&client, &ns, "env", &env.fake, "creds").await;
    for name in ["kept", "leaked"] {
        apply_yaml(&client, &token(&ns, "UserApiToken", name, "env")).await;
    }
    ready_id(&client, &ns, "userapitokens", "kept").await;
    let leaked = ready_id(&client, &ns, "userapitokens", "leaked").await;
    let uid = get_custom(&client, &ns, "userapitokens", "leaked")
        .await
        .expect("token")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    // Another installation's token, and one an earlier version marked, both for a resource
    // this cluster does not have.
    let path = "/resources/users/api-tokens/v1";
    let mut foreign = Vec::new();
    for mark in [
        "[k8s:another-cluster/0000-gone/1a2b3c4d]",
        "[k8s:0000-gone/1a2b3c4d]",
    ] {
        let made = env
            .fake
            .create_remote(
                path,
                "t",
                Some("u"),
                json!({"description": format!("other {mark}")}),
            )
            .await;
        foreign.push(made["clientId"].as_str().expect("id").to_string());
    }
    // With the operator stopped, or it would put the finalizer back before the deletion.
    env.operator.stop();
    let (ok, _, err) = kubectl_run(
        &[
            "-n",
            &ns,
            "patch",
            "userapitokens",
            "leaked",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ],
        None,
    );
    assert!(ok, "{err}");
    dynamic_api(&client, Some(&ns), "userapitokens")
        .delete("leaked", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(30), "the resource gone", || async {
        get_custom(&client, &ns, "userapitokens", "leaked")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    env.restart_operator("after-leak", &[], &[]);
    let since = Instant::now();
    let listed = wait_for(Duration::from_secs(30), "the leak reported", || async {
        let e = env_meta(&client, &ns, "env").await?;
        let list = e["status"]["leakedTokens"].as_array()?.clone();
        (!list.is_empty()).then_some(list)
    })
    .await;
    let reported_in = since.elapsed();
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), &ns);
    let warning = wait_for(
        Duration::from_secs(30),
        "a LeakedTokens Warning",
        || async {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("LeakedTokens"))
                .and_then(|e| e.message)
        },
    )
    .await;
    let metrics = reqwest::get(format!("{}/metrics", env.operator.metrics_url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let series = metrics
        .lines()
        .find(|l| {
            l.starts_with("frontegg_token_operator_leaked_remote_tokens{")
                && l.contains("kind=\"UserApiToken\"")
                && l.contains(&format!("FronteggEnvironment/{ns}/env"))
        })
        .unwrap_or_default()
        .to_string();
    let only_ours = listed.len() == 1
        && listed[0]["id"] == leaked.as_str()
        && listed[0]["resourceUid"] == uid.as_str();
    let still_alive = env.fake.token(&leaked).await.is_some();
    record(
        "leaked token: its finalizer removed by hand, its resource deleted (collection off)",
        "reported within one resync (status, metric, Warning Event); nothing revoked",
        if only_ours && still_alive && series.ends_with(" 1") && warning.contains(&leaked) {
            Ok(format!(
                "reported in {:.1} s: status.leakedTokens [{leaked}], `{series}`, Warning \"{}\"",
                reported_in.as_secs_f64(),
                warning.chars().take(90).collect::<String>()
            ))
        } else {
            Err(format!(
                "listed {listed:?}; alive {still_alive}; metric `{series}`; {warning}"
            ))
        },
    );

    env.restart_operator("collecting", &["--collect-leaked-tokens", "true"], &[]);
    let since = Instant::now();
    wait_for(
        Duration::from_secs(60),
        "the leaked token revoked",
        || async { env.fake.token(&leaked).await.is_none().then_some(()) },
    )
    .await;
    let revoked_in = since.elapsed();
    wait_for(Duration::from_secs(30), "the status cleared", || async {
        let e = env_meta(&client, &ns, "env").await?;
        e["status"]["leakedTokens"].is_null().then_some(())
    })
    .await;
    // A few more resync periods: neither foreign token is ever asked about.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = env.fake.call_log().await;
    let mut untouched = true;
    for id in &foreign {
        let asked = log
            .iter()
            .any(|c| c["path"].as_str().is_some_and(|p| p.contains(id.as_str())));
        untouched &= !asked && env.fake.token(id).await.is_some();
    }
    let kept = env.fake.tokens().await.len();
    record(
        "leaked token with --collect-leaked-tokens; tokens marked by another installation and by an earlier version",
        "the leaked token revoked; the other two never touched",
        if untouched && kept == 3 {
            Ok(format!(
                "revoked {:.1} s after the restart; the other installation's and the old-format token alive, 0 requests naming them",
                revoked_in.as_secs_f64()
            ))
        } else {
            Err(format!("untouched {untouched}; tokens left {kept}"))
        },
    );
}
