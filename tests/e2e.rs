//! End to end on a real control plane (etcd, kube-apiserver, kube-controller-manager) with the
//! operator binary and the Frontegg fake as processes.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

/// An example, as JSON in the version the harness's CRDs serve.
fn example(file: &str) -> String {
    let text = std::fs::read_to_string(format!("{REPO}/examples/{file}")).expect("example");
    let manifest: Value = serde_yaml::from_str(&text).expect("yaml");
    as_v1alpha1(manifest).to_string()
}

/// Applies an example, waits for Ready=True and returns the issued token id.
async fn issue_example(env: &TestEnv, file: &str, plural: &str, name: &str) -> String {
    env.apply(&example(file)).await;
    ready_token_id(&env.wait_ready(plural, name, "True", None).await)
}

fn ready_token_id(obj: &Value) -> String {
    obj["status"]["current"]["id"]
        .as_str()
        .expect("status.current.id")
        .to_string()
}

/// Apply the example, check the Secret and the fake agree, delete it, check the remote token
/// is revoked and the Secret garbage-collected; then the same with deletionPolicy Orphan.
async fn lifecycle(file: &str, plural: &str, credential_key: &str, create_route: &str) {
    let env = TestEnv::start(plural).await;
    let manifest: Value = serde_yaml::from_str(&example(file)).expect("yaml");
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let secret_name = manifest["spec"]["secret"]["name"]
        .as_str()
        .unwrap_or(&name)
        .to_string();
    env.apply(&example(file)).await;

    let obj = env
        .wait_ready(plural, &name, "True", Some("TokenReady"))
        .await;
    let id = ready_token_id(&obj);
    let remote = env.fake.token(&id).await.expect("fake has the token");
    let secret = env.secret(&secret_name).await.expect("Secret written");
    let data = secret_data(&secret);
    assert_eq!(
        data[credential_key],
        remote["secret"].as_str().expect("secret"),
        "Secret holds the created secret"
    );
    assert_eq!(data["tokenId"], id);
    assert_eq!(data["baseUrl"], env.fake.url);
    assert_eq!(
        env.fake.calls(create_route).await,
        1,
        "exactly one create call"
    );
    let owner = &secret
        .metadata
        .owner_references
        .as_ref()
        .expect("owner reference")[0];
    assert_eq!(owner.uid, obj["metadata"]["uid"].as_str().expect("uid"));
    assert!(
        obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
    );

    // Delete: the finalizer revokes remotely; kube-controller-manager's garbage collector
    // deletes the owned Secret.
    env.delete(plural, &name).await;
    wait_for(Duration::from_secs(60), "resource deleted", || async {
        env.get(plural, &name).await.is_none().then_some(())
    })
    .await;
    assert!(env.fake.token(&id).await.is_none(), "remote token revoked");
    wait_for(
        Duration::from_secs(60),
        "owned Secret garbage-collected",
        || async { env.secret(&secret_name).await.is_none().then_some(()) },
    )
    .await;

    // Orphan keeps both.
    let mut orphan: Value = serde_yaml::from_str(&example(file)).expect("yaml");
    orphan["metadata"]["name"] = json!(format!("{name}-orphan"));
    orphan["spec"]["secret"]["name"] = json!(format!("{secret_name}-orphan"));
    orphan["spec"]["deletionPolicy"] = json!("Orphan");
    env.apply(&orphan.to_string()).await;
    let obj = env
        .wait_ready(plural, &format!("{name}-orphan"), "True", None)
        .await;
    let orphan_id = ready_token_id(&obj);
    env.delete(plural, &format!("{name}-orphan")).await;
    wait_for(
        Duration::from_secs(60),
        "orphan resource deleted",
        || async {
            env.get(plural, &format!("{name}-orphan"))
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.fake.token(&orphan_id).await.is_some(),
        "Orphan keeps the remote token"
    );
    let kept = env
        .secret(&format!("{secret_name}-orphan"))
        .await
        .expect("Orphan keeps the Secret");
    assert!(
        kept.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "owner reference dropped"
    );
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn user_api_token_lifecycle() {
    lifecycle(
        "user-api-token.yaml",
        "userapitokens",
        "secret",
        "POST /identity/resources/users/api-tokens/v1",
    )
    .await;
}

#[tokio::test]
async fn user_access_token_lifecycle() {
    lifecycle(
        "user-access-token.yaml",
        "useraccesstokens",
        "token",
        "POST /identity/resources/users/access-tokens/v1",
    )
    .await;
}

#[tokio::test]
async fn tenant_api_token_lifecycle() {
    lifecycle(
        "tenant-api-token.yaml",
        "tenantapitokens",
        "secret",
        "POST /identity/resources/tenants/api-tokens/v2",
    )
    .await;
}

#[tokio::test]
async fn tenant_access_token_lifecycle() {
    lifecycle(
        "tenant-access-token.yaml",
        "tenantaccesstokens",
        "token",
        "POST /identity/resources/tenants/access-tokens/v1",
    )
    .await;
}

/// Runs `kubectl apply -f -` and returns (success, stderr).
fn kubectl_apply(manifest: &str) -> (bool, String) {
    let (ok, _, err) = kubectl_run(&["apply", "-f", "-"], Some(manifest));
    (ok, err)
}

#[tokio::test]
async fn bad_specs_are_rejected_by_kubectl_apply_with_readable_messages() {
    let client = client().await;
    install_crds(&client).await;
    let ns = format!("e2e-admission-{}", &uuid_like()[..6]);
    create_namespace(&client, &ns).await;
    let token = |kind: &str, spec: Value| {
        json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": kind,
               "metadata": {"name": "bad", "namespace": ns}, "spec": spec})
        .to_string()
    };
    let cases = [
        (token("TenantApiToken", json!({"tenantId": "t", "roleIds": ["r"], "permissionIds": ["p"]})), "set exactly one of roleIds and permissionIds"),
        (token("UserApiToken", json!({"tenantId": "t", "userId": "u", "expiresInMinutes": 5256001})), "expiresInMinutes must be between 1 and 5256000"),
        (token("UserApiToken", json!({"tenantId": "t", "userId": "u", "expiresInMinutes": 0})), "spec.expiresInMinutes"),
        (token("UserAccessToken", json!({"tenantId": "", "userId": "u"})), "tenantId must not be empty"),
        (token("UserAccessToken", json!({"tenantId": "t", "userId": "u", "secret": {"name": "Not_A_Name"}})), "secret.name must be a valid DNS-1123 subdomain name"),
        (token("TenantAccessToken", json!({"tenantId": "t", "expiresIn": "2 days"})), "expiresIn must be a duration like 720h or 90m"),
        (token("UserApiToken", json!({"tenantId": "t"})), "spec.userId: Required value"),
        (json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "ClusterFronteggEnvironment", "metadata": {"name": format!("{ns}-bad")},
                "spec": {"region": "eu", "baseUrl": "https://x", "credentialsSecretRef": {"name": "c"}}}).to_string(), "set exactly one of region, domain and baseUrl"),
    ];
    for (manifest, message) in cases {
        let (ok, stderr) = kubectl_apply(&manifest);
        assert!(!ok, "accepted: {manifest}");
        assert!(
            stderr.contains(message),
            "expected {message:?} in: {stderr}"
        );
    }
    // Immutable fields.
    let (ok, stderr) = kubectl_apply(&token(
        "UserAccessToken",
        json!({"tenantId": "t1", "userId": "u"}),
    ));
    assert!(ok, "{stderr}");
    let (ok, stderr) = kubectl_apply(&token(
        "UserAccessToken",
        json!({"tenantId": "t2", "userId": "u"}),
    ));
    assert!(!ok && stderr.contains("tenantId is immutable"), "{stderr}");
    let (ok, stderr) = kubectl_apply(&token(
        "UserAccessToken",
        json!({"tenantId": "t1", "userId": "u2"}),
    ));
    assert!(!ok && stderr.contains("userId is immutable"), "{stderr}");
    // A user-token environment names a sub-domain or a baseUrl, not a region.
    let (ok, stderr) = kubectl_apply(
        &json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "FronteggEnvironment",
                "metadata": {"name": "u", "namespace": ns},
                "spec": {"region": "eu", "auth": {"mode": "UserApiToken"}, "credentialsSecretRef": {"name": "c"}}})
        .to_string(),
    );
    assert!(!ok && stderr.contains("not a region"), "{stderr}");
    // An environment's host and auth mode are immutable; its other fields are not.
    let environment = |spec: Value| {
        json!({"apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "FronteggEnvironment",
               "metadata": {"name": "conn", "namespace": ns}, "spec": spec})
        .to_string()
    };
    let secret = json!({"name": "c"});
    let (ok, stderr) = kubectl_apply(&environment(
        json!({"baseUrl": "https://a.frontegg.com", "credentialsSecretRef": secret}),
    ));
    assert!(ok, "{stderr}");
    for (spec, message) in [
        (
            json!({"baseUrl": "https://b.frontegg.com", "credentialsSecretRef": secret}),
            "region, domain and baseUrl are immutable",
        ),
        (
            json!({"domain": "a", "credentialsSecretRef": secret}),
            "region, domain and baseUrl are immutable",
        ),
        (
            json!({"baseUrl": "https://a.frontegg.com", "auth": {"mode": "UserApiToken"}, "credentialsSecretRef": secret}),
            "auth.mode is immutable",
        ),
    ] {
        let (ok, stderr) = kubectl_apply(&environment(spec.clone()));
        assert!(!ok, "accepted: {spec}");
        assert!(
            stderr.contains(message),
            "expected {message:?} in: {stderr}"
        );
    }
    let (ok, stderr) = kubectl_apply(&environment(json!({
        "baseUrl": "https://a.frontegg.com", "auth": {"mode": "Vendor"},
        "credentialsSecretRef": {"name": "rotated-credentials"}, "rateLimit": {"qps": 5, "burst": 5}
    })));
    assert!(
        ok,
        "credentials, rate limit and the default auth mode may change: {stderr}"
    );
    // Environment examples pass admission.
    for file in [
        "cluster-environment.yaml",
        "namespaced-environment.yaml",
        "user-token-environment.yaml",
    ] {
        let mut v: Value = serde_yaml::from_str(&example(file)).expect("yaml");
        if v["kind"] == "ClusterFronteggEnvironment" {
            v["metadata"]["name"] = json!(format!("{ns}-example"));
        } else {
            v["metadata"]["namespace"] = json!(ns);
        }
        let (ok, stderr) = kubectl_apply(&v.to_string());
        assert!(ok, "{file}: {stderr}");
    }
}

#[tokio::test]
async fn foreign_secret_is_never_overwritten() {
    let env = TestEnv::start("foreign").await;
    env.apply(r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"taken"},"stringData":{"mine":"keep-me"}}"#).await;
    env.apply(r#"{"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserAccessToken","metadata":{"name":"grabby"},
                 "spec":{"tenantId":"t","userId":"u","secret":{"name":"taken"}}}"#).await;
    let obj = env
        .wait_ready(
            "useraccesstokens",
            "grabby",
            "False",
            Some("SecretConflict"),
        )
        .await;
    assert!(
        obj["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("not created for this resource")
    );
    let secret = env.secret("taken").await.expect("still there");
    assert_eq!(
        secret_data(&secret),
        [("mine".to_string(), "keep-me".to_string())].into()
    );
    assert!(secret.metadata.owner_references.is_none(), "not adopted");
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/access-tokens/v1")
            .await,
        0
    );
    env.assert_event("grabby", "SecretConflict").await;
}

#[tokio::test]
async fn disallowed_tenant_and_namespace_get_ready_false_and_no_remote_call() {
    let other = format!("e2e-other-{}", &uuid_like()[..6]);
    let env = TestEnv::start_with(
        "guard",
        Options {
            allowed_tenants: vec!["tenant-ok".into()],
            extra_namespaces: vec![other.clone()],
            ..Options::default()
        },
    )
    .await;
    env.apply(r#"{"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"TenantAccessToken","metadata":{"name":"wrong-tenant"},
                 "spec":{"tenantId":"tenant-evil"}}"#).await;
    env.wait_ready(
        "tenantaccesstokens",
        "wrong-tenant",
        "False",
        Some("TenantNotAllowed"),
    )
    .await;
    env.assert_event("wrong-tenant", "TenantNotAllowed").await;
    apply_yaml(
        &env.client,
        &json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"TenantAccessToken",
        "metadata":{"name":"wrong-ns","namespace":other},"spec":{"tenantId":"tenant-ok"}})
        .to_string(),
    )
    .await;
    wait_for(Duration::from_secs(60), "NamespaceNotAllowed", || async {
        let obj = get_custom(&env.client, &other, "tenantaccesstokens", "wrong-ns").await?;
        (obj["status"]["conditions"][0]["reason"] == "NamespaceNotAllowed").then_some(())
    })
    .await;
    assert_eq!(
        env.fake.identity_calls().await,
        0,
        "no identity API call for disallowed resources"
    );
}

#[tokio::test]
async fn fixing_environment_credentials_recovers_tokens() {
    let env = TestEnv::start("creds").await;
    let wrong = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"frontegg-credentials","labels":{"tokens.frontegg-operator.io/credentials":"true"}},
                       "stringData":{"clientId": env.fake.client_id, "secret": "wrong-secret"}});
    env.apply(&wrong.to_string()).await;
    env.wait_environment("False", Some("Unauthorized")).await;
    env.apply(&example("user-access-token.yaml")).await;
    env.wait_ready(
        "useraccesstokens",
        "support-agent",
        "False",
        Some("Unauthorized"),
    )
    .await;
    let auth_calls = env.fake.calls("POST /auth/vendor").await;
    assert!(
        auth_calls <= 10,
        "bad credentials must not storm vendor auth: {auth_calls} calls"
    );
    let right = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"frontegg-credentials","labels":{"tokens.frontegg-operator.io/credentials":"true"}},
                       "stringData":{"clientId": env.fake.client_id, "secret": env.fake.secret}});
    env.apply(&right.to_string()).await;
    env.wait_ready(
        "useraccesstokens",
        "support-agent",
        "True",
        Some("TokenReady"),
    )
    .await;
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn remote_deletion_and_secret_deletion_are_repaired() {
    let env = TestEnv::start("drift").await;
    let first = issue_example(&env, "user-api-token.yaml", "userapitokens", "ci-bot").await;

    // Deleted behind our back in Frontegg: recreated at the next drift check.
    env.fake.delete_token(&first).await;
    let second = wait_for(Duration::from_secs(60), "token recreated", || async {
        let obj = env.get("userapitokens", "ci-bot").await?;
        let id = obj["status"]["current"]["id"].as_str()?.to_string();
        (id != first).then_some(id)
    })
    .await;
    let secret = wait_for(Duration::from_secs(30), "Secret updated", || async {
        let s = env.secret("ci-bot-frontegg").await?;
        (secret_data(&s)["tokenId"] == second).then_some(s)
    })
    .await;
    assert_eq!(
        secret_data(&secret)["secret"],
        env.fake.token(&second).await.expect("new token")["secret"]
            .as_str()
            .expect("secret")
    );

    // Secret deleted: reissued, and the old token (whose secret is lost) revoked.
    Api::<Secret>::namespaced(env.client.clone(), &env.ns)
        .delete("ci-bot-frontegg", &Default::default())
        .await
        .expect("delete secret");
    let third = wait_for(Duration::from_secs(60), "token reissued", || async {
        let obj = env.get("userapitokens", "ci-bot").await?;
        let id = obj["status"]["current"]["id"].as_str()?.to_string();
        (id != second && obj["status"]["pendingRevocations"].is_null()).then_some(id)
    })
    .await;
    assert!(
        env.fake.token(&second).await.is_none(),
        "superseded token revoked"
    );
    assert!(env.fake.token(&third).await.is_some());
    let secret = env
        .secret("ci-bot-frontegg")
        .await
        .expect("Secret reissued");
    assert_eq!(secret_data(&secret)["tokenId"], third);
    env.assert_event("ci-bot", "Reissued").await;
    env.assert_event("ci-bot", "Revoked").await;
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn tenant_api_token_changes_are_patched_in_place() {
    let env = TestEnv::start("patch").await;
    let id = issue_example(
        &env,
        "tenant-api-token.yaml",
        "tenantapitokens",
        "billing-service",
    )
    .await;
    let before = secret_data(&env.secret("billing-service").await.expect("secret"));
    let api = dynamic_api(&env.client, Some(&env.ns), "tenantapitokens");
    api.patch(
        "billing-service",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"description": "billing v2", "roleIds": ["role-a", "role-b"]}}),
        ),
    )
    .await
    .expect("patch spec");
    wait_for(Duration::from_secs(60), "remote token patched", || async {
        let t = env.fake.token(&id).await?;
        // The operator's mark stays on the description: ` [k8s:<uid>/<attempt>]`.
        (t["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("billing v2 [k8s:"))
            && t["roleIds"] == json!(["role-a", "role-b"]))
        .then_some(())
    })
    .await;
    let obj = env
        .wait_ready("tenantapitokens", "billing-service", "True", None)
        .await;
    assert_eq!(ready_token_id(&obj), id, "same token");
    assert_eq!(
        secret_data(&env.secret("billing-service").await.expect("secret")),
        before,
        "no new secret"
    );
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/tenants/api-tokens/v2")
            .await,
        1
    );
    assert_eq!(
        env.fake
            .calls("PATCH /identity/resources/tenants/api-tokens/v1/{id}")
            .await,
        1
    );
}

#[tokio::test]
async fn steady_state_makes_no_writes_and_one_list_per_group_per_period() {
    let env = TestEnv::start("steady").await;
    for name in ["a", "b", "c"] {
        env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name": name},
                          "spec":{"tenantId":"t","userId":"u","expiresIn":"720h"}}).to_string()).await;
    }
    for name in ["a", "b", "c"] {
        env.wait_ready("userapitokens", name, "True", None).await;
    }
    // Let the first drift checks settle, then measure.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = versions(&env).await;
    env.fake.reset_stats().await;
    let periods = 4;
    tokio::time::sleep(Duration::from_secs(3 * periods)).await;
    assert_eq!(
        versions(&env).await,
        before,
        "no Kubernetes writes in steady state"
    );
    let lists = env
        .fake
        .calls("GET /identity/resources/users/api-tokens/v1")
        .await;
    assert!(lists >= 1, "drift checks happen");
    assert!(
        lists <= periods + 1,
        "at most one list per group per period: {lists}"
    );
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/api-tokens/v1")
            .await,
        0
    );
    env.assert_no_secrets_logged().await;
}

/// resourceVersions of the tokens and their Secrets, plus the Event count.
async fn versions(env: &TestEnv) -> Vec<String> {
    let mut v = Vec::new();
    for name in ["a", "b", "c"] {
        let obj = env.get("userapitokens", name).await.expect("token");
        v.push(
            obj["metadata"]["resourceVersion"]
                .as_str()
                .expect("rv")
                .to_string(),
        );
        let s = env.secret(name).await.expect("secret");
        v.push(s.metadata.resource_version.expect("rv"));
    }
    let events: Api<Event> = Api::namespaced(env.client.clone(), &env.ns);
    v.push(
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .len()
            .to_string(),
    );
    v
}

#[tokio::test]
async fn revocation_failure_explains_itself_and_orphan_unblocks_deletion() {
    let env = TestEnv::start("revoke").await;
    let id = issue_example(
        &env,
        "tenant-access-token.yaml",
        "tenantaccesstokens",
        "reporting",
    )
    .await;
    // Credentials break, then the resource is deleted: revocation cannot succeed.
    env.apply(
        &json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"frontegg-credentials","labels":{"tokens.frontegg-operator.io/credentials":"true"}},
                      "stringData":{"clientId": env.fake.client_id, "secret": "rotated-away"}})
        .to_string(),
    )
    .await;
    env.delete("tenantaccesstokens", "reporting").await;
    let obj = env
        .wait_ready(
            "tenantaccesstokens",
            "reporting",
            "False",
            Some("RevocationFailed"),
        )
        .await;
    let message = obj["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("deletionPolicy to Orphan") && message.contains("credentials"),
        "{message}"
    );
    assert!(
        env.fake.token(&id).await.is_some(),
        "nothing revoked with bad credentials"
    );
    env.assert_event("reporting", "RevocationFailed").await;
    // The documented escape hatch.
    let api = dynamic_api(&env.client, Some(&env.ns), "tenantaccesstokens");
    api.patch(
        "reporting",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"deletionPolicy": "Orphan"}})),
    )
    .await
    .expect("patch");
    wait_for(Duration::from_secs(60), "deletion unblocked", || async {
        env.get("tenantaccesstokens", "reporting")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        env.fake.token(&id).await.is_some(),
        "Orphan leaves the remote token"
    );
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn transient_frontegg_failures_back_off_and_recover() {
    let env = TestEnv::start("transient").await;
    env.wait_environment("True", None).await;
    env.fake
        .set_faults(json!({"errorRate": 1.0, "pathPrefix": "/identity"}))
        .await;
    env.apply(&example("user-access-token.yaml")).await;
    env.wait_ready(
        "useraccesstokens",
        "support-agent",
        "False",
        Some("FronteggUnavailable"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let calls = env
        .fake
        .calls("POST /identity/resources/users/access-tokens/v1")
        .await;
    // Each reconcile makes 1 + 4 client retries; per-resource backoff (1 s, 2 s, 4 s ...) keeps
    // the reconciles themselves few.
    assert!(
        calls <= 5 * 5,
        "backoff bounds the retries: {calls} create calls in ~8 s"
    );
    env.fake.set_faults(json!({})).await;
    env.wait_ready(
        "useraccesstokens",
        "support-agent",
        "True",
        Some("TokenReady"),
    )
    .await;
    assert_eq!(
        env.fake.tokens().await.len(),
        1,
        "exactly one token after recovery"
    );
}

#[tokio::test]
async fn a_lost_status_adopts_the_token_in_the_secret_instead_of_issuing_another() {
    let env = TestEnv::start("adopt").await;
    let id = issue_example(
        &env,
        "user-access-token.yaml",
        "useraccesstokens",
        "support-agent",
    )
    .await;
    let before = secret_data(&env.secret("support-agent").await.expect("secret"));
    // What a crash between the Secret write and the status write leaves behind.
    let api = dynamic_api(&env.client, Some(&env.ns), "useraccesstokens");
    api.patch_status(
        "support-agent",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": null})),
    )
    .await
    .expect("clear status");
    let adopted = wait_for(Duration::from_secs(60), "status rebuilt", || async {
        let obj = env.get("useraccesstokens", "support-agent").await?;
        obj["status"]["current"]["id"].as_str().map(str::to_string)
    })
    .await;
    assert_eq!(adopted, id, "the token in the Secret is recorded again");
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/access-tokens/v1")
            .await,
        1,
        "no second token"
    );
    assert_eq!(
        secret_data(&env.secret("support-agent").await.expect("secret")),
        before,
        "Secret untouched"
    );
    env.assert_event("support-agent", "Adopted").await;
}

#[tokio::test]
async fn a_burst_of_resources_gets_exactly_one_token_each() {
    // Many owned-Secret events arrive while our own status writes are still on their way to the
    // cache: the pipeline must never issue twice for one resource, nor lose a status it wrote
    // (a pass on a cached object without status once applied an empty one over it, and the
    // next pass had to adopt the token from the Secret).
    let env = TestEnv::start("burst").await;
    let names: Vec<String> = (0..40).map(|i| format!("burst-{i}")).collect();
    let applies = names.iter().map(|name| {
        env.apply_owned(json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name": name},
                               "spec":{"tenantId":"t","userId":"u"}}))
    });
    futures::future::join_all(applies).await;
    for name in &names {
        env.wait_ready("userapitokens", name, "True", None).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/api-tokens/v1")
            .await,
        40,
        "one create per resource"
    );
    assert_eq!(env.fake.tokens().await.len(), 40);
    let reasons = env.event_reasons().await;
    assert_eq!(
        reasons.iter().filter(|r| *r == "Issued").count(),
        40,
        "{reasons:?}"
    );
    assert!(
        !reasons.iter().any(|r| r == "Adopted"),
        "no crash, so nothing to adopt: {reasons:?}"
    );
}

#[tokio::test]
async fn the_finalizer_comes_with_the_first_token_and_comes_back_if_removed() {
    let env = TestEnv::start("finalizer").await;
    let has_finalizer = |obj: &Value| {
        obj["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "tokens.frontegg-operator.io/revoke"))
    };
    // A resource that never held a token carries none: its deletion never waits.
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"nowhere"},
                      "spec":{"tenantId":"t","userId":"u","environmentRef":{"kind":"FronteggEnvironment","name":"missing"}}}).to_string()).await;
    let failed = env
        .wait_ready(
            "userapitokens",
            "nowhere",
            "False",
            Some("EnvironmentNotFound"),
        )
        .await;
    assert!(!has_finalizer(&failed), "{failed}");
    env.delete("userapitokens", "nowhere").await;
    wait_for(
        Duration::from_secs(30),
        "invalid resource deleted",
        || async {
            env.get("userapitokens", "nowhere")
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;

    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"f"},
                      "spec":{"tenantId":"t","userId":"u"}}).to_string()).await;
    let obj = env.wait_ready("userapitokens", "f", "True", None).await;
    assert!(has_finalizer(&obj), "{obj}");
    let id = ready_token_id(&obj);
    // Someone strips it; a deletion must still revoke the token.
    dynamic_api(&env.client, Some(&env.ns), "userapitokens")
        .patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("remove the finalizer");
    wait_for(Duration::from_secs(30), "finalizer restored", || async {
        env.get("userapitokens", "f")
            .await
            .filter(|o| has_finalizer(o))
            .map(|_| ())
    })
    .await;
    env.delete("userapitokens", "f").await;
    wait_for(Duration::from_secs(60), "resource deleted", || async {
        env.get("userapitokens", "f").await.is_none().then_some(())
    })
    .await;
    assert!(env.fake.token(&id).await.is_none(), "remote token revoked");
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/api-tokens/v1")
            .await,
        1
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_token_valid_through_the_grace_period() {
    let env = TestEnv::start("grace").await;
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"g"},
                      "spec":{"tenantId":"t","userId":"u","rotation":{"gracePeriod":"4s"}}}).to_string()).await;
    let first = ready_token_id(&env.wait_ready("userapitokens", "g", "True", None).await);
    let api = dynamic_api(&env.client, Some(&env.ns), "userapitokens");
    api.patch(
        "g",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "1"}}}),
        ),
    )
    .await
    .expect("annotate");
    // The switch: the Secret holds the new token while the old one is still valid remotely.
    let (second, not_before) = wait_for(Duration::from_secs(60), "rotated", || async {
        let obj = env.get("userapitokens", "g").await?;
        let current = obj["status"]["current"]["id"].as_str()?.to_string();
        let pending = obj["status"]["pendingRevocations"]
            .as_array()?
            .first()?
            .clone();
        (current != first && pending["id"] == first).then(|| {
            let at: jiff::Timestamp = pending["notBefore"]
                .as_str()
                .expect("notBefore")
                .parse()
                .expect("time");
            (current, at)
        })
    })
    .await;
    assert_eq!(
        secret_data(&env.secret("g").await.expect("secret"))["clientId"],
        second
    );
    assert!(
        env.fake.token(&first).await.is_some(),
        "the old token still works at the switch"
    );
    wait_for(
        Duration::from_secs(30),
        "old token revoked after the grace period",
        || async { env.fake.token(&first).await.is_none().then_some(()) },
    )
    .await;
    let revoked_at: jiff::Timestamp = env
        .fake
        .call_log()
        .await
        .iter()
        .find(|c| {
            c["route"] == "DELETE /identity/resources/users/api-tokens/v1/{id}"
                && c["status"] == 200
        })
        .and_then(|c| c["at"].as_str()?.parse().ok())
        .expect("a revocation");
    assert!(
        revoked_at >= not_before,
        "revoked at {revoked_at}, grace until {not_before}"
    );
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/api-tokens/v1")
            .await,
        2,
        "one rotation, one create"
    );
    // The revocation is served before the status that records it is written: wait for the
    // write, not just for Ready (which stayed True throughout).
    let obj = wait_for(
        Duration::from_secs(30),
        "the revocation recorded in status",
        || async {
            let obj = env.get("userapitokens", "g").await?;
            obj["status"]["pendingRevocations"].is_null().then_some(obj)
        },
    )
    .await;
    assert_eq!(
        obj["status"]["conditions"][0]["status"], "True",
        "Ready throughout"
    );
    assert!(
        obj["status"]["nextRenewal"].is_null(),
        "a token without expiry is never renewed"
    );
}

/// Waiting for --min-reissue-interval is not a failure: the Secret holds a live credential
/// throughout, so Ready stays True, and the Rotating condition and a Normal Event say when the
/// new token comes.
#[tokio::test]
async fn a_rotation_within_the_reissue_interval_keeps_ready_true_and_completes_after_it() {
    let mut env = TestEnv::start("polite").await;
    env.restart_operator("interval", &["--min-reissue-interval", "15s"], &[]);
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"w"},
                      "spec":{"tenantId":"t","userId":"u"}}).to_string()).await;
    let first = ready_token_id(&env.wait_ready("userapitokens", "w", "True", None).await);
    let api = dynamic_api(&env.client, Some(&env.ns), "userapitokens");
    let rotate = json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "1"}}});
    api.patch("w", &PatchParams::default(), &Patch::Merge(rotate))
        .await
        .expect("annotate");
    let waiting = wait_for(Duration::from_secs(20), "the wait recorded", || async {
        let obj = env.get("userapitokens", "w").await?;
        let rotating = condition(&obj, "Rotating")?;
        (rotating["status"] == "True").then_some(obj)
    })
    .await;
    let ready = condition(&waiting, "Ready").expect("Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("TokenReady")),
        "{ready}"
    );
    let rotating = condition(&waiting, "Rotating").expect("Rotating");
    assert_eq!(rotating["reason"], "RotationScheduled");
    let message = rotating["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&first) && message.contains("is replaced at"),
        "{message}"
    );
    assert_eq!(waiting["status"]["current"]["id"], first.as_str());
    assert_eq!(
        secret_data(&env.secret("w").await.expect("secret"))["clientId"],
        first
    );
    let create = "POST /identity/resources/users/api-tokens/v1";
    assert_eq!(
        env.fake.calls(create).await,
        1,
        "nothing issued while waiting"
    );
    env.assert_event("w", "RotationScheduled").await;
    // Completes once the interval is over, and the wait is gone from the status.
    let done = wait_for(
        Duration::from_secs(40),
        "rotated after the interval",
        || async {
            let obj = env.get("userapitokens", "w").await?;
            let id = obj["status"]["current"]["id"].as_str()?.to_string();
            (id != first && condition(&obj, "Rotating").is_none()).then_some(obj)
        },
    )
    .await;
    let ready = condition(&done, "Ready").expect("Ready");
    assert_eq!(ready["status"], "True");
    assert_eq!(env.fake.calls(create).await, 2, "exactly one rotation");
    assert!(
        !env.event_reasons()
            .await
            .iter()
            .any(|r| r == "ReissueThrottled"),
        "no Warning for a wait that follows no failure"
    );
}

#[tokio::test]
async fn a_token_that_fails_verification_is_revoked_and_the_secret_keeps_the_old_one() {
    let env = TestEnv::start("verify").await;
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken","metadata":{"name":"v"},
                      "spec":{"tenantId":"t","userId":"u","rotation":{"verify":true}}}).to_string()).await;
    let first = ready_token_id(&env.wait_ready("userapitokens", "v", "True", None).await);
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/auth/v2/api-token")
            .await,
        1,
        "the first token was verified before it was written"
    );
    env.fake
        .set_faults(json!({"errorNext": 1, "pathPrefix": "/identity/resources/auth/v2/api-token"}))
        .await;
    let api = dynamic_api(&env.client, Some(&env.ns), "userapitokens");
    api.patch(
        "v",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "1"}}}),
        ),
    )
    .await
    .expect("annotate");
    env.wait_ready("userapitokens", "v", "False", Some("VerificationFailed"))
        .await;
    assert_eq!(
        secret_data(&env.secret("v").await.expect("secret"))["clientId"],
        first,
        "the Secret keeps the old token"
    );
    assert!(
        env.fake.token(&first).await.is_some(),
        "the old token still works"
    );
    // The retry (after the backoff and the reissue interval) verifies and switches.
    let second = wait_for(Duration::from_secs(60), "rotated after a retry", || async {
        let obj = env.get("userapitokens", "v").await?;
        let ready = obj["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let id = obj["status"]["current"]["id"].as_str()?.to_string();
        (ready && id != first).then_some(id)
    })
    .await;
    assert_eq!(
        secret_data(&env.secret("v").await.expect("secret"))["clientId"],
        second
    );
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/users/api-tokens/v1")
            .await,
        3,
        "the first token, the one that failed verification, and its replacement"
    );
    let live: Vec<String> = env
        .fake
        .tokens()
        .await
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        live,
        [second],
        "the failed token and the old one are revoked"
    );
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn rotation_restarts_the_listed_workloads() {
    let env = TestEnv::start("restart").await;
    apply_yaml(
        &env.client,
        &json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"consumer","namespace":env.ns},
        "spec":{"replicas":0,"selector":{"matchLabels":{"app":"consumer"}},
                "template":{"metadata":{"labels":{"app":"consumer"}},
                            "spec":{"containers":[{"name":"c","image":"consumer:never-pulled"}]}}}})
        .to_string(),
    )
    .await;
    env.apply(&json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserAccessToken","metadata":{"name":"r"},
                      "spec":{"tenantId":"t","userId":"u","rotation":{"restartTargets":[
                          {"kind":"Deployment","name":"consumer"},{"kind":"StatefulSet","name":"missing"}]}}}).to_string()).await;
    let first = ready_token_id(&env.wait_ready("useraccesstokens", "r", "True", None).await);
    let deployments =
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(env.client.clone(), &env.ns);
    let restarted_at = |d: k8s_openapi::api::apps::v1::Deployment| {
        d.spec?
            .template
            .metadata?
            .annotations?
            .get("kubectl.kubernetes.io/restartedAt")
            .cloned()
    };
    assert_eq!(
        restarted_at(deployments.get("consumer").await.expect("deployment")),
        None,
        "the first issue restarts nothing: no workload held a credential yet"
    );
    let api = dynamic_api(&env.client, Some(&env.ns), "useraccesstokens");
    api.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": "1"}}}),
        ),
    )
    .await
    .expect("annotate");
    wait_for(Duration::from_secs(60), "rotated", || async {
        let obj = env.get("useraccesstokens", "r").await?;
        (obj["status"]["current"]["id"].as_str()? != first).then_some(())
    })
    .await;
    let at = wait_for(Duration::from_secs(30), "restart annotation", || async {
        restarted_at(deployments.get("consumer").await.ok()?)
    })
    .await;
    assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
    env.assert_event("r", "Restarted").await;
    // A missing workload is reported; the rotation itself stands.
    env.assert_event("r", "RestartFailed").await;
    env.wait_ready("useraccesstokens", "r", "True", None).await;
}

#[tokio::test]
async fn a_namespace_with_only_a_user_api_token_manages_that_users_tokens_and_nothing_else() {
    use frontegg_token_operator::identity::*;
    let env = TestEnv::start("usertoken").await;
    // The team's own Frontegg (a second fake), where a user API token was made in the portal.
    let own = Fake::start(&["--user-jwt-lifetime-secs", "4"]).await;
    let portal = IdentityClient::new(
        EnvironmentConfig {
            base_url: own.url.clone(),
            client_id: own.client_id.clone(),
            secret: SecretString::from(own.secret.clone()),
            environment_id: None,
            auth: AuthMode::Vendor,
        },
        ClientOptions::default(),
        None,
    )
    .expect("client");
    let me = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some("svc-1".into()),
    };
    let key = portal
        .create::<UserApiTokens>(&me, &CreateUserApiToken::default())
        .await
        .expect("user API token");
    own.reset_stats().await;
    env.apply(
        &json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"my-api-token",
        "labels":{"tokens.frontegg-operator.io/credentials":"true"}},
        "stringData":{"clientId": key.id, "secret": key.secret.expose_secret()}})
        .to_string(),
    )
    .await;
    env.apply(
        &json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"FronteggEnvironment",
        "metadata":{"name":"mine"},
        "spec":{"baseUrl": own.url, "auth":{"mode":"UserApiToken"},
                "credentialsSecretRef":{"name":"my-api-token"}}})
        .to_string(),
    )
    .await;
    let status = wait_for(
        Duration::from_secs(30),
        "environment authenticated",
        || async {
            let obj = env.get("fronteggenvironments", "mine").await?;
            obj["status"]["user"]["userId"].as_str()?;
            Some(obj["status"].clone())
        },
    )
    .await;
    assert_eq!(
        status["user"],
        json!({"userId": "svc-1", "tenantId": "tenant-1"})
    );
    assert!(
        !status.to_string().contains("eyJ"),
        "the status never holds the JWT"
    );

    let mine = |kind: &str, name: &str, user: &str| {
        json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind": kind,"metadata":{"name": name},
               "spec":{"tenantId":"tenant-1","userId": user,
                       "environmentRef":{"kind":"FronteggEnvironment","name":"mine"}}})
    };
    env.apply_owned(mine("UserApiToken", "api", "svc-1")).await;
    env.apply_owned(mine("UserAccessToken", "access", "svc-1"))
        .await;
    let api_id = ready_token_id(&env.wait_ready("userapitokens", "api", "True", None).await);
    let access_id = ready_token_id(
        &env.wait_ready("useraccesstokens", "access", "True", None)
            .await,
    );

    // Refused before any token request: another user, and a tenant kind.
    let creates = |own: &Fake| {
        let own = own.url.clone();
        async move {
            let stats: Value = reqwest::get(format!("{own}/_admin/stats"))
                .await
                .expect("stats")
                .json()
                .await
                .expect("json");
            stats["calls"].as_object().map_or(0, |m| {
                m.iter()
                    .filter(|(k, _)| {
                        k.starts_with("POST /identity/resources/") && !k.contains("/auth/")
                    })
                    .map(|(_, v)| v.as_u64().unwrap_or(0))
                    .sum::<u64>()
            })
        }
    };
    let before = creates(&own).await;
    env.apply_owned(mine("UserAccessToken", "alices", "alice"))
        .await;
    let mut tenant = mine("TenantAccessToken", "tenant-wide", "x");
    tenant["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("userId");
    env.apply_owned(tenant).await;
    let refused = env
        .wait_ready(
            "useraccesstokens",
            "alices",
            "False",
            Some("PolicyViolation"),
        )
        .await;
    let message = refused["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("user svc-1 of tenant tenant-1"),
        "{message}"
    );
    env.wait_ready(
        "tenantaccesstokens",
        "tenant-wide",
        "False",
        Some("PolicyViolation"),
    )
    .await;
    assert_eq!(
        creates(&own).await,
        before,
        "no token request for the refused resources"
    );

    // Rotation after the JWT expired (a refresh), then after the refresh token was dropped
    // (a fresh exchange).
    let rotate = |name: &'static str, plural: &'static str, value: &'static str| {
        let api = dynamic_api(&env.client, Some(&env.ns), plural);
        async move {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tokens.frontegg-operator.io/rotate": value}}})),
            )
            .await
            .expect("annotate");
        }
    };
    tokio::time::sleep(Duration::from_millis(4500)).await;
    rotate("access", "useraccesstokens", "1").await;
    let rotated = wait_for(Duration::from_secs(60), "access rotated", || async {
        let id = env.get("useraccesstokens", "access").await?["status"]["current"]["id"]
            .as_str()?
            .to_string();
        (id != access_id).then_some(id)
    })
    .await;
    assert!(
        own.token(&access_id).await.is_none(),
        "the old access token is revoked"
    );
    assert!(
        own.calls("POST /identity/resources/auth/v2/api-token/token/refresh")
            .await
            >= 1,
        "the JWT was refreshed"
    );
    let exchanges = own
        .calls("POST /identity/resources/auth/v2/api-token")
        .await;
    own.revoke_refresh_tokens().await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    rotate("api", "userapitokens", "1").await;
    wait_for(Duration::from_secs(60), "api rotated", || async {
        let id = env.get("userapitokens", "api").await?["status"]["current"]["id"]
            .as_str()?
            .to_string();
        (id != api_id).then_some(())
    })
    .await;
    assert!(
        own.calls("POST /identity/resources/auth/v2/api-token")
            .await
            > exchanges,
        "a refused refresh falls back to a fresh exchange"
    );

    // Deletion revokes with the same user JWT.
    env.delete("useraccesstokens", "access").await;
    env.delete("userapitokens", "api").await;
    wait_for(Duration::from_secs(60), "revoked", || async {
        let left: Vec<String> = own
            .tokens()
            .await
            .iter()
            .filter_map(|t| t["id"].as_str().map(str::to_string))
            .collect();
        (left == [key.id.clone()]).then_some(())
    })
    .await;
    assert!(own.token(&rotated).await.is_none());
    assert_eq!(
        own.calls("POST /auth/vendor").await,
        0,
        "the vendor key was never needed"
    );
    let log = env.operator.log_text();
    let secrets = own.issued_secrets().await;
    assert!(
        secrets.len() > 4,
        "JWTs, refresh tokens and token secrets to look for"
    );
    for s in secrets {
        assert!(!log.contains(&s), "the operator log holds a secret");
    }
}

#[tokio::test]
async fn every_replacement_trigger_creates_exactly_one_token() {
    let env = TestEnv::start("triggers").await;
    let manifest = |description: &str, secret: &str, rotate: &str| {
        json!({"apiVersion":"tokens.frontegg-operator.io/v1alpha1","kind":"UserApiToken",
               "metadata":{"name":"t","annotations":{"tokens.frontegg-operator.io/rotate": rotate}},
               "spec":{"tenantId":"t","userId":"u","description": description,"secret":{"name": secret}}})
    };
    env.apply_owned(manifest("v1", "s1", "0")).await;
    let mut current = ready_token_id(&env.wait_ready("userapitokens", "t", "True", None).await);
    let secrets = Api::<Secret>::namespaced(env.client.clone(), &env.ns);
    let triggers: [(&str, Value); 4] = [
        ("a spec change", manifest("v2", "s1", "0")),
        ("a deleted Secret", Value::Null),
        ("a renamed Secret", manifest("v2", "s2", "0")),
        ("a rotation request", manifest("v2", "s2", "1")),
    ];
    for (i, (trigger, change)) in triggers.into_iter().enumerate() {
        if change.is_null() {
            secrets
                .delete("s1", &Default::default())
                .await
                .expect("delete Secret");
        } else {
            env.apply_owned(change).await;
        }
        let previous = current.clone();
        current = wait_for(Duration::from_secs(60), trigger, || async {
            let obj = env.get("userapitokens", "t").await?;
            let id = obj["status"]["current"]["id"].as_str()?.to_string();
            (id != previous).then_some(id)
        })
        .await;
        // Two resyncs later, still exactly one create per trigger.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            env.fake
                .calls("POST /identity/resources/users/api-tokens/v1")
                .await,
            2 + i as u64,
            "{trigger}: one create"
        );
    }
    let live: Vec<String> = env
        .fake
        .tokens()
        .await
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(live, [current], "every replaced token is revoked");
    assert!(
        secrets.get_opt("s1").await.expect("get").is_none(),
        "the renamed Secret's old one is gone"
    );
}
