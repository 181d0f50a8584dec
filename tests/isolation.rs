//! Multi-tenant guard rails on the real control plane. One operator serves three namespaces:
//! `a` and `b` (two teams) and `outside` (not allowed to use the platform environment). Each
//! attempt a namespace user could make is refused with a reason, and the fake it would have
//! reached counts no request for it. The matrix it prints is kept in docs/security.md.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const LABEL: &str = "tokens.frontegg-operator.io/credentials";

struct World {
    client: kube::Client,
    platform: Fake,
    operator: Operator,
}

fn token(ns: &str, name: &str, spec: Value) -> Value {
    let mut spec = spec;
    if spec.get("tenantId").is_none() {
        spec["tenantId"] = json!("tenant-1");
    }
    json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "UserAccessToken",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

async fn ready(
    w: &World,
    ns: &str,
    plural: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> Result<String, String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while std::time::Instant::now() < deadline {
        if let Some(obj) = get_custom(&w.client, ns, plural, name).await
            && let Some(c) = obj["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        {
            if c["status"] == status && c["reason"] == reason {
                return Ok(format!("Ready={status} {reason}"));
            }
            last = c.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("expected Ready={status} {reason}, saw {last}"))
}

async fn environment_ready(
    w: &World,
    ns: &str,
    name: &str,
    reason: &str,
) -> Result<String, String> {
    ready(w, ns, "fronteggenvironments", name, "False", reason).await
}

/// A namespaced environment in `ns` pointing at `url`, with credentials Secret `secret`.
async fn namespaced_env(w: &World, ns: &str, name: &str, url: &str, secret: &str) {
    apply_yaml(
        &w.client,
        &json!({
            "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "FronteggEnvironment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"baseUrl": url, "credentialsSecretRef": {"name": secret}}
        })
        .to_string(),
    )
    .await;
}

async fn credentials(w: &World, ns: &str, name: &str, fake: &Fake, marked: bool) {
    let labels = if marked {
        json!({LABEL: "true"})
    } else {
        json!({})
    };
    apply_yaml(
        &w.client,
        &json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "stringData": {"clientId": fake.client_id, "secret": fake.secret}
        })
        .to_string(),
    )
    .await;
}

async fn all_calls(fake: &Fake) -> u64 {
    fake.calls("POST /auth/vendor").await + fake.identity_calls().await
}

#[tokio::test]
async fn every_guard_rail_refuses_before_any_request_and_no_secret_edit_forges_ownership() {
    let client = client().await;
    install_crds(&client).await;
    let id = &uuid_like()[..6];
    let (a, b, outside) = (
        format!("iso-a-{id}"),
        format!("iso-b-{id}"),
        format!("iso-out-{id}"),
    );
    for ns in [&a, &b, &outside] {
        create_namespace(&client, ns).await;
    }
    let platform = Fake::start(&[]).await;
    let platform_env = format!("platform-{id}");
    let operator_ns = a.clone();
    let w = World {
        client: client.clone(),
        platform,
        operator: Operator::start_with(
            &format!("isolation-{id}"),
            &[
                "--watch-namespaces",
                &format!("{a},{b},{outside}"),
                "--operator-namespace",
                &operator_ns,
                "--cluster-environment-selector",
                &format!("iso={id}"),
                "--default-environment",
                &format!("ClusterFronteggEnvironment/{platform_env}"),
                // No background lists during the test: every request the fakes count is one an
                // attempt caused. A group's first drift listing comes at a random point from
                // 5% of the period on (runtime/listings.rs): 72 min here. (A group a recovery
                // had listed in place used to be due at once; a CI run counted that listing
                // of the baselines' group against the guard rails.)
                "--resync-period",
                "24h",
                "--environment-retry",
                "1s",
                "--min-reissue-interval",
                "1s",
                "--grace-period",
                "0s",
                "--leader-election",
                "false",
                "--allowed-base-url",
                "http://127.0.0.1:*",
            ]
            .map(String::from),
            kubeconfig(),
            &[],
        ),
    };
    // The platform team's environment: namespaces a and b, tenant-1 only, a policy.
    credentials(&w, &operator_ns, "platform-credentials", &w.platform, true).await;
    let cluster_env = |name: &str, labels: Value, extra: Value| {
        let mut spec = json!({
            "baseUrl": w.platform.url, "credentialsSecretRef": {"name": "platform-credentials"},
            "allowedNamespaces": {"names": [a, b]}, "allowedTenants": ["tenant-1"],
            "policy": {"allowedUsers": ["svc-*"], "allowedRoleIds": ["reader"], "maxLifetime": "720h"},
        });
        if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
            spec.extend(extra);
        }
        json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "ClusterFronteggEnvironment",
               "metadata": {"name": name, "labels": labels}, "spec": spec})
    };
    apply_yaml(
        &client,
        &cluster_env(&platform_env, json!({"iso": id}), json!({})).to_string(),
    )
    .await;

    let mut rows: Vec<[String; 3]> = Vec::new();
    let mut failures = Vec::new();
    let mut record = |attempt: &str, expected: &str, observed: Result<String, String>| {
        let (verdict, text) = match observed {
            Ok(t) => ("ok", t),
            Err(e) => {
                failures.push(format!("{attempt}: {e}"));
                ("FAILED", e)
            }
        };
        rows.push([
            attempt.into(),
            expected.into(),
            format!("{text}; {verdict}"),
        ]);
    };

    // A healthy baseline in each team's namespace.
    for ns in [&a, &b] {
        apply_yaml(
            &client,
            &token(ns, "mine", json!({"userId": "svc-1", "expiresIn": "24h"})).to_string(),
        )
        .await;
    }
    for ns in [&a, &b] {
        let r = ready(&w, ns, "useraccesstokens", "mine", "True", "TokenReady").await;
        assert!(r.is_ok(), "baseline in {ns}: {r:?}");
    }

    // 1. An unrelated Secret (a database password) named as credentials, sent to a server
    //    the user controls.
    let attacker = Fake::start(&[]).await;
    apply_yaml(
        &client,
        &json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "db-password", "namespace": a},
        "stringData": {"clientId": "postgres", "secret": "hunter2"}})
        .to_string(),
    )
    .await;
    namespaced_env(&w, &a, "exfiltrate", &attacker.url, "db-password").await;
    let r = environment_ready(&w, &a, "exfiltrate", "CredentialsNotMarked").await;
    let calls = all_calls(&attacker).await;
    record(
        "FronteggEnvironment naming an unmarked Secret, baseUrl on a server the user controls",
        "CredentialsNotMarked; nothing sent",
        r.and_then(|o| {
            if calls == 0 {
                Ok(format!("{o}; the server saw {calls} requests"))
            } else {
                Err(format!("{calls} requests"))
            }
        }),
    );

    // 2. A baseUrl outside the allowed hosts (127.0.0.2 is loopback, but not allowed).
    // The attacker's fake listens on 127.0.0.1; `localhost` reaches it too, but only
    // `http://127.0.0.1:*` is allowed, so a request would show up in its count.
    credentials(&w, &a, "marked", &attacker, true).await;
    let via_localhost = attacker.url.replace("127.0.0.1", "localhost");
    namespaced_env(&w, &a, "elsewhere", &via_localhost, "marked").await;
    let r = environment_ready(&w, &a, "elsewhere", "BaseUrlNotAllowed").await;
    let calls = all_calls(&attacker).await;
    record(
        "a baseUrl outside --allowed-base-url (a live server, reached by another host name)",
        "BaseUrlNotAllowed; nothing sent",
        r.and_then(|o| {
            if calls == 0 {
                Ok(format!("{o}; the server saw {calls} requests"))
            } else {
                Err(format!("{calls} requests"))
            }
        }),
    );

    // 3. Policy: a user, a role, a lifetime, no expiry.
    let before = w.platform.identity_calls().await;
    for (name, spec, rule) in [
        ("other-user", json!({"userId": "alice"}), "allowedUsers"),
        (
            "admin-role",
            json!({"userId": "svc-1", "expiresIn": "1h"}),
            "allowedRoleIds",
        ),
        (
            "too-long",
            json!({"userId": "svc-1", "expiresIn": "721h"}),
            "maxLifetime",
        ),
        ("forever", json!({"userId": "svc-1"}), "maxLifetime"),
    ] {
        let mut t = token(&a, name, spec);
        if name == "admin-role" {
            t["kind"] = json!("TenantAccessToken");
            t["spec"].as_object_mut().map(|s| s.remove("userId"));
            t["spec"]["roleIds"] = json!(["admin"]);
        }
        apply_yaml(&client, &t.to_string()).await;
        let plural = format!("{}s", t["kind"].as_str().unwrap_or_default().to_lowercase());
        let r = ready(&w, &a, &plural, name, "False", "PolicyViolation").await;
        record(
            &format!("a token outside the policy: {name}"),
            &format!("PolicyViolation ({rule})"),
            r,
        );
    }
    let after = w.platform.identity_calls().await;
    record(
        "(the four policy attempts together)",
        "0 token requests to Frontegg",
        if after == before {
            Ok("0 requests".into())
        } else {
            Err(format!("{} requests", after - before))
        },
    );

    // 4. A namespace outside allowedNamespaces, a tenant outside allowedTenants.
    let before = w.platform.identity_calls().await;
    apply_yaml(
        &client,
        &token(&outside, "t", json!({"userId": "svc-1", "expiresIn": "1h"})).to_string(),
    )
    .await;
    record(
        "a token in a namespace outside allowedNamespaces",
        "NamespaceNotAllowed",
        ready(
            &w,
            &outside,
            "useraccesstokens",
            "t",
            "False",
            "NamespaceNotAllowed",
        )
        .await,
    );
    apply_yaml(
        &client,
        &token(
            &a,
            "other-tenant",
            json!({"tenantId": "tenant-2", "userId": "svc-1", "expiresIn": "1h"}),
        )
        .to_string(),
    )
    .await;
    record(
        "a tenant outside allowedTenants",
        "TenantNotAllowed",
        ready(
            &w,
            &a,
            "useraccesstokens",
            "other-tenant",
            "False",
            "TenantNotAllowed",
        )
        .await,
    );

    // 5. allowedNamespaces.selector: {} allows nothing.
    let open_env = format!("open-{id}");
    apply_yaml(
        &client,
        &cluster_env(
            &open_env,
            json!({"iso": id}),
            json!({"allowedNamespaces": {"selector": {}}}),
        )
        .to_string(),
    )
    .await;
    apply_yaml(
        &client,
        &token(
            &a,
            "empty-selector",
            json!({"userId": "svc-1", "expiresIn": "1h",
        "environmentRef": {"kind": "ClusterFronteggEnvironment", "name": open_env}}),
        )
        .to_string(),
    )
    .await;
    record(
        "allowedNamespaces.selector: {}",
        "NamespaceNotAllowed (an empty selector allows nothing)",
        ready(
            &w,
            &a,
            "useraccesstokens",
            "empty-selector",
            "False",
            "NamespaceNotAllowed",
        )
        .await,
    );

    // 6. A ClusterFronteggEnvironment this instance does not serve (--cluster-environment-selector).
    let unserved = format!("unserved-{id}");
    apply_yaml(
        &client,
        &cluster_env(&unserved, json!({"iso": "someone-else"}), json!({})).to_string(),
    )
    .await;
    apply_yaml(
        &client,
        &token(
            &a,
            "unserved",
            json!({"userId": "svc-1", "expiresIn": "1h",
        "environmentRef": {"kind": "ClusterFronteggEnvironment", "name": unserved}}),
        )
        .to_string(),
    )
    .await;
    record(
        "a ClusterFronteggEnvironment outside --cluster-environment-selector",
        "EnvironmentNotFound",
        ready(
            &w,
            &a,
            "useraccesstokens",
            "unserved",
            "False",
            "EnvironmentNotFound",
        )
        .await,
    );

    // 7. Another namespace's FronteggEnvironment, and a Secret in another namespace.
    credentials(&w, &b, "b-credentials", &w.platform, true).await;
    namespaced_env(&w, &b, "team-b", &w.platform.url, "b-credentials").await;
    apply_yaml(
        &client,
        &token(
            &a,
            "borrow-env",
            json!({"userId": "svc-1", "expiresIn": "1h",
        "environmentRef": {"kind": "FronteggEnvironment", "name": "team-b"}}),
        )
        .to_string(),
    )
    .await;
    record(
        "a token naming another namespace's FronteggEnvironment",
        "EnvironmentNotFound (looked up in its own namespace)",
        ready(
            &w,
            &a,
            "useraccesstokens",
            "borrow-env",
            "False",
            "EnvironmentNotFound",
        )
        .await,
    );
    namespaced_env(&w, &a, "borrow-secret", &w.platform.url, "b-credentials").await;
    record(
        "a FronteggEnvironment naming a Secret that exists only in another namespace",
        "CredentialsInvalid (read from its own namespace)",
        environment_ready(&w, &a, "borrow-secret", "CredentialsInvalid").await,
    );

    let after = w.platform.identity_calls().await;
    record(
        "(the six namespace, tenant, selector and cross-namespace attempts together)",
        "0 token requests to Frontegg",
        if after == before {
            Ok("0 requests".into())
        } else {
            Err(format!("{} requests", after - before))
        },
    );

    // 8. Forged ownership: a's Secret edited to hold b's token id, then a's resource deleted.
    let victim = get_custom(&client, &b, "useraccesstokens", "mine")
        .await
        .expect("b's token");
    let victim_id = victim["status"]["current"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &a);
    secrets
        .patch(
            "mine",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"tokenId": victim_id, "token": "forged"}})),
        )
        .await
        .expect("edit a's Secret");
    let tampered = wait_for(
        Duration::from_secs(30),
        "a reissued after the tampering",
        || async {
            let obj = get_custom(&client, &a, "useraccesstokens", "mine").await?;
            let id = obj["status"]["current"]["id"].as_str()?.to_string();
            let data = secret_data(&secrets.get("mine").await.ok()?);
            (data.get("tokenId") == Some(&id) && id != victim_id).then_some(id)
        },
    )
    .await;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &a);
    let warned = wait_for(
        Duration::from_secs(30),
        "a SecretTampered Warning",
        || async {
            events
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("SecretTampered"))
                .and_then(|e| e.message)
        },
    )
    .await;
    dynamic_api(&client, Some(&a), "useraccesstokens")
        .delete("mine", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(30), "a's token deleted", || async {
        get_custom(&client, &a, "useraccesstokens", "mine")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let alive = w.platform.token(&victim_id).await.is_some();
    let own_gone = w.platform.token(&tampered).await.is_none();
    record(
        "a's Secret edited to name b's token id, then a's resource deleted",
        "reissued with a SecretTampered Warning; b's token stays alive; only a's own tokens revoked",
        if alive && own_gone && warned.contains("Secret mine") {
            Ok(format!(
                "Warning \"{warned}\"; b's token alive; a's reissued token revoked"
            ))
        } else {
            Err(format!(
                "b alive: {alive}; a's revoked: {own_gone}; warning: {warned}"
            ))
        },
    );

    // 9. A policy narrowed under a Ready token: not renewed, still revoked on deletion.
    apply_yaml(&client, &cluster_env(&platform_env, json!({"iso": id}),
        json!({"policy": {"allowedUsers": ["svc-*"], "allowedRoleIds": ["reader"], "maxLifetime": "1h"}})).to_string()).await;
    let b_token = get_custom(&client, &b, "useraccesstokens", "mine")
        .await
        .expect("b");
    let b_id = b_token["status"]["current"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The environment change requeues its tokens.
    let r = ready(
        &w,
        &b,
        "useraccesstokens",
        "mine",
        "False",
        "PolicyViolation",
    )
    .await;
    dynamic_api(&client, Some(&b), "useraccesstokens")
        .delete("mine", &Default::default())
        .await
        .expect("delete");
    wait_for(Duration::from_secs(30), "b's token deleted", || async {
        get_custom(&client, &b, "useraccesstokens", "mine")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let revoked = w.platform.token(&b_id).await.is_none();
    record(
        "a policy narrowed (maxLifetime 1h) under a Ready 24h token",
        "Ready=False PolicyViolation, not renewed; still revoked on deletion",
        r.and_then(|o| {
            if revoked {
                Ok(format!("{o}; revoked on deletion"))
            } else {
                Err("not revoked".into())
            }
        }),
    );

    let mut table = String::from("| attempt | expected | observed |\n|---|---|---|\n");
    for [attempt, expected, observed] in &rows {
        table.push_str(&format!(
            "| {attempt} | {expected} | {} |\n",
            observed.replace('|', "/")
        ));
    }
    println!("{table}");
    std::fs::write(
        std::path::PathBuf::from(REPO).join("target/isolation-matrix.md"),
        &table,
    )
    .expect("matrix");
    let log = w.operator.log_text();
    assert!(
        !log.contains("hunter2"),
        "the unmarked Secret's value reached the log"
    );
    assert!(failures.is_empty(), "{}\n{table}", failures.join("\n"));
}
