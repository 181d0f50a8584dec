//! Day two on a real control plane: observing and importing tokens made elsewhere, remote drift
//! (patched back, reported, or reissued), and JWT delivery with refresh. Remote tokens "made
//! in the portal" are created through the fake's public API; portal edits go through its
//! admin API, since Frontegg has no public edit for most kinds.

mod support;

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use support::*;

const GROUP: &str = "tokens.frontegg-operator.io/v1alpha1";

fn example(file: &str) -> Value {
    let text = std::fs::read_to_string(format!("{REPO}/examples/{file}")).expect("example");
    as_v1alpha1(serde_yaml::from_str(&text).expect("yaml"))
}

/// The documents of a multi-document example.
fn example_documents(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{REPO}/examples/{file}")).expect("example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| as_v1alpha1(serde::Deserialize::deserialize(d).expect("yaml document")))
        .collect()
}

fn current_id(obj: &Value) -> String {
    obj["status"]["current"]["id"]
        .as_str()
        .expect("status.current.id")
        .to_string()
}

/// The route a kind's tokens are created at, as the fake counts calls.
fn create_route(create_path: &str) -> String {
    format!("POST /identity{create_path}")
}

/// One token kind as the import test drives it.
struct Kind {
    kind: &'static str,
    plural: &'static str,
    create_path: &'static str,
    user: Option<&'static str>,
    /// Field of the create response holding the id.
    id_field: &'static str,
    /// Secret key holding the credential.
    credential_key: &'static str,
    extra_spec: Value,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            kind: "UserApiToken",
            plural: "userapitokens",
            create_path: "/resources/users/api-tokens/v1",
            user: Some("user-imported"),
            id_field: "clientId",
            credential_key: "secret",
            extra_spec: json!({ "userId": "user-imported" }),
        },
        Kind {
            kind: "UserAccessToken",
            plural: "useraccesstokens",
            create_path: "/resources/users/access-tokens/v1",
            user: Some("user-imported"),
            id_field: "id",
            credential_key: "token",
            extra_spec: json!({ "userId": "user-imported" }),
        },
        Kind {
            kind: "TenantApiToken",
            plural: "tenantapitokens",
            create_path: "/resources/tenants/api-tokens/v2",
            user: None,
            id_field: "clientId",
            credential_key: "secret",
            extra_spec: json!({ "roleIds": ["viewer"] }),
        },
        Kind {
            kind: "TenantAccessToken",
            plural: "tenantaccesstokens",
            create_path: "/resources/tenants/access-tokens/v1",
            user: None,
            id_field: "id",
            credential_key: "token",
            extra_spec: json!({ "roleIds": ["viewer"] }),
        },
    ]
}

const TENANT: &str = "tenant-day-two";

/// Creates a token "in the portal" and returns (id, secret).
async fn portal_token(fake: &Fake, k: &Kind) -> (String, String) {
    let mut body = json!({ "description": "made in the portal", "expiresInMinutes": 600 });
    if k.kind.starts_with("Tenant") {
        body["roleIds"] = json!(["viewer"]);
    }
    let created = fake
        .create_remote(k.create_path, TENANT, k.user, body)
        .await;
    (
        created[k.id_field].as_str().expect("id").to_string(),
        created["secret"].as_str().expect("secret").to_string(),
    )
}

fn token_manifest(k: &Kind, name: &str, spec: Value) -> Value {
    let mut full = json!({ "tenantId": TENANT });
    for source in [&k.extra_spec, &spec] {
        for (key, value) in source.as_object().expect("object") {
            full[key] = value.clone();
        }
    }
    json!({ "apiVersion": GROUP, "kind": k.kind, "metadata": { "name": name }, "spec": full })
}

async fn put_secret(env: &TestEnv, name: &str, key: &str, value: &str) -> Value {
    env.apply_owned(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name },
        "stringData": { key: value }
    }))
    .await
}

#[tokio::test]
async fn import_takes_over_a_token_of_each_kind_then_rotates_and_revokes_it() {
    let env = TestEnv::start("import").await;
    for k in kinds() {
        let (id, secret) = portal_token(&env.fake, &k).await;
        let source = format!("portal-{}", k.plural);
        let applied = put_secret(&env, &source, "value", &format!("{secret}\n")).await;
        let name = format!("imported-{}", k.plural);
        env.apply_owned(token_manifest(
            &k,
            &name,
            json!({ "description": "made in the portal",
                    "import": { "tokenId": id, "secretRef": { "name": source, "key": "value" } } }),
        ))
        .await;
        let obj = env.wait_ready(k.plural, &name, "True", None).await;
        assert_eq!(
            current_id(&obj),
            id,
            "{}: the imported token is current",
            k.kind
        );
        assert_eq!(obj["status"]["current"]["imported"], true);
        let data = secret_data(&env.secret(&name).await.expect("managed Secret"));
        assert_eq!(
            data[k.credential_key], secret,
            "{}: Secret holds it",
            k.kind
        );
        assert_eq!(data["tokenId"], id);
        assert_eq!(
            env.fake.calls(&create_route(k.create_path)).await,
            1,
            "{}: only the portal created a token",
            k.kind
        );
        env.assert_event(&name, "Imported").await;
        if k.kind == "TenantApiToken" {
            // Patched to the spec, which puts the operator's mark on it.
            wait_for(Duration::from_secs(30), "imported token marked", || async {
                let t = env.fake.token(&id).await?;
                t["description"]
                    .as_str()?
                    .starts_with("made in the portal [k8s:")
                    .then_some(())
            })
            .await;
        }

        // From now on it is managed: a rotation replaces and revokes it.
        dynamic_api(&env.client, Some(&env.ns), k.plural)
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "annotations": {
                    "tokens.frontegg-operator.io/rotate": "1" } } })),
            )
            .await
            .expect("annotate");
        let rotated = wait_for(Duration::from_secs(60), "rotation", || async {
            let obj = env.get(k.plural, &name).await?;
            let now = obj["status"]["current"]["id"].as_str()?.to_string();
            (now != id && obj["status"]["pendingRevocations"].is_null()).then_some(now)
        })
        .await;
        assert!(
            env.fake.token(&id).await.is_none(),
            "{}: the imported token was revoked after rotation",
            k.kind
        );
        // The source Secret was never written.
        let source_now = dynamic_api(&env.client, Some(&env.ns), "secrets")
            .get(&source)
            .await
            .expect("source Secret kept");
        assert_eq!(
            source_now.metadata.resource_version.as_deref(),
            applied["metadata"]["resourceVersion"].as_str(),
            "{}: source Secret untouched",
            k.kind
        );
        env.delete(k.plural, &name).await;
        wait_for(Duration::from_secs(60), "revoked on deletion", || async {
            env.fake.token(&rotated).await.is_none().then_some(())
        })
        .await;
    }

    // The worked example, as written, with a portal token's real id and secret.
    let docs = example_documents("day-two/import-user-api-token.yaml");
    let created = env
        .fake
        .create_remote(
            "/resources/users/api-tokens/v1",
            "tenant-acme",
            Some("user-ci-bot"),
            json!({ "description": "CI pipeline" }),
        )
        .await;
    let (mut source, mut token) = (docs[0].clone(), docs[1].clone());
    source["stringData"]["secret"] = created["secret"].clone();
    token["spec"]["import"]["tokenId"] = created["clientId"].clone();
    env.apply_owned(source).await;
    env.apply_owned(token).await;
    env.wait_ready("userapitokens", "ci-bot-imported", "True", None)
        .await;
    let data = secret_data(&env.secret("ci-bot-imported").await.expect("Secret"));
    assert_eq!(data["secret"], created["secret"].as_str().unwrap());
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn import_refuses_what_it_cannot_prove_is_this_resources_token() {
    let env = TestEnv::start("import-guard").await;
    let kinds = kinds();
    let user_api = &kinds[0];
    let (id, secret) = portal_token(&env.fake, user_api).await;

    // A wrong secret for an API token.
    put_secret(&env, "wrong", "value", "not-the-secret").await;
    env.apply_owned(token_manifest(
        user_api,
        "wrong-secret",
        json!({ "import": { "tokenId": id, "secretRef": { "name": "wrong", "key": "value" } } }),
    ))
    .await;
    let obj = env
        .wait_ready(
            "userapitokens",
            "wrong-secret",
            "False",
            Some("ImportFailed"),
        )
        .await;
    let message = condition(&obj, "Ready").expect("Ready")["message"].to_string();
    assert!(message.contains("does not authenticate"), "{message}");
    assert!(!message.contains(&secret) && !message.contains("not-the-secret"));

    // A token that does not exist for this tenant and user.
    put_secret(&env, "right", "value", &secret).await;
    let mut other_user = token_manifest(
        user_api,
        "other-user",
        json!({ "import": { "tokenId": id, "secretRef": { "name": "right", "key": "value" } } }),
    );
    other_user["spec"]["userId"] = json!("someone-else");
    env.apply_owned(other_user).await;
    let obj = env
        .wait_ready("userapitokens", "other-user", "False", Some("ImportFailed"))
        .await;
    let message = condition(&obj, "Ready").expect("Ready")["message"].to_string();
    assert!(message.contains("does not exist"), "{message}");

    // Another resource's token, even with its real secret read from that resource's Secret:
    // importing it would let this resource revoke it.
    env.apply_owned(token_manifest(
        user_api,
        "owner",
        json!({ "description": "owned by another resource" }),
    ))
    .await;
    let owned = current_id(&env.wait_ready("userapitokens", "owner", "True", None).await);
    env.apply_owned(token_manifest(
        user_api,
        "thief",
        json!({ "import": { "tokenId": owned, "secretRef": { "name": "owner", "key": "secret" } } }),
    ))
    .await;
    let obj = env
        .wait_ready("userapitokens", "thief", "False", Some("ImportFailed"))
        .await;
    let message = condition(&obj, "Ready").expect("Ready")["message"].to_string();
    assert!(message.contains("managed by another resource"), "{message}");
    env.delete("userapitokens", "thief").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        env.fake.token(&owned).await.is_some(),
        "a refused import revokes nothing"
    );
    assert!(
        env.fake.token(&id).await.is_some(),
        "the portal token is untouched"
    );
    assert!(env.secret("wrong-secret").await.is_none());
    env.assert_no_secrets_logged().await;
}

#[tokio::test]
async fn observe_reports_existence_expiry_and_drift_and_never_touches_the_token() {
    let env = TestEnv::start("observe").await;
    let kinds = kinds();
    let tenant_api = &kinds[2];
    let created = env
        .fake
        .create_remote(
            tenant_api.create_path,
            TENANT,
            None,
            json!({ "description": "legacy integration", "roleIds": ["role-integration"],
                    "expiresInMinutes": 600 }),
        )
        .await;
    let id = created["clientId"].as_str().expect("clientId").to_string();
    let mut manifest = example("day-two/observe-tenant-api-token.yaml");
    manifest["spec"]["tokenId"] = json!(id);
    manifest["spec"]["tenantId"] = json!(TENANT);
    env.apply_owned(manifest).await;

    let obj = env
        .wait_ready(
            "tenantapitokens",
            "legacy-integration",
            "True",
            Some("Observed"),
        )
        .await;
    assert_eq!(obj["status"]["observed"]["exists"], true);
    let remote = env.fake.token(&id).await.expect("remote");
    let listed: jiff::Timestamp = remote["expires"]
        .as_str()
        .expect("expires")
        .parse()
        .unwrap();
    let observed: jiff::Timestamp = obj["status"]["observed"]["expiresAt"]
        .as_str()
        .expect("observed expiry")
        .parse()
        .unwrap();
    assert_eq!(observed, listed);
    assert!(obj["status"]["current"].is_null());
    assert!(
        env.secret("legacy-integration").await.is_none(),
        "no Secret"
    );
    env.assert_event("legacy-integration", "Observed").await;

    // A portal edit is reported, not repaired.
    env.fake
        .edit_token(&id, json!({ "roleIds": ["role-admin"] }))
        .await;
    let obj = wait_for(Duration::from_secs(30), "drift reported", || async {
        let obj = env.get("tenantapitokens", "legacy-integration").await?;
        (condition(&obj, "RemoteDrift")?["status"] == "True").then_some(obj)
    })
    .await;
    assert_eq!(obj["status"]["observed"]["drift"], json!(["roleIds"]));
    env.assert_event("legacy-integration", "RemoteDrift").await;

    // A token that does not exist.
    let mut ghost = example("day-two/observe-tenant-api-token.yaml");
    ghost["metadata"]["name"] = json!("ghost");
    ghost["spec"]["tenantId"] = json!(TENANT);
    ghost["spec"]["tokenId"] = json!("00000000-0000-4000-8000-00000000dead");
    env.apply_owned(ghost).await;
    env.wait_ready("tenantapitokens", "ghost", "False", Some("RemoteMissing"))
        .await;
    env.assert_event("ghost", "RemoteMissing").await;

    // Deleting the resource leaves the token; nothing was ever created, patched or revoked.
    env.delete("tenantapitokens", "legacy-integration").await;
    wait_for(Duration::from_secs(30), "resource gone", || async {
        env.get("tenantapitokens", "legacy-integration")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    let kept = env
        .fake
        .token(&id)
        .await
        .expect("the observed token is kept");
    assert_eq!(kept["roleIds"], json!(["role-admin"]), "never patched back");
    assert_eq!(
        env.fake.calls(&create_route(tenant_api.create_path)).await,
        1
    );
    for route in [
        "PATCH /identity/resources/tenants/api-tokens/v1/{id}",
        "DELETE /identity/resources/tenants/api-tokens/v1/{id}",
    ] {
        assert_eq!(env.fake.calls(route).await, 0, "{route}");
    }

    // managementPolicy cannot be switched to Manage: that would take over without proof.
    let api = dynamic_api(&env.client, Some(&env.ns), "tenantapitokens");
    let switch = json!({ "apiVersion": GROUP, "kind": "TenantApiToken",
        "metadata": { "name": "ghost" },
        "spec": { "managementPolicy": "Manage", "tenantId": TENANT, "roleIds": ["x"] } });
    let err = api
        .patch(
            "ghost",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&switch),
        )
        .await
        .expect_err("refused at admission");
    assert!(
        err.to_string().contains("managementPolicy is immutable"),
        "{err}"
    );
}

#[tokio::test]
async fn remote_drift_is_patched_back_reported_or_reissued() {
    let env = TestEnv::start("drift").await;

    // TenantApiToken: patched back in place, same token.
    env.apply_owned(example("tenant-api-token.yaml")).await;
    let obj = env
        .wait_ready("tenantapitokens", "billing-service", "True", None)
        .await;
    let id = current_id(&obj);
    let marked = env.fake.token(&id).await.expect("remote")["description"].clone();
    env.fake
        .edit_token(
            &id,
            json!({ "roleIds": ["role-admin"], "description": "edited in the portal",
                    "metadata": { "service": "hijacked" } }),
        )
        .await;
    wait_for(Duration::from_secs(30), "drift patched back", || async {
        let t = env.fake.token(&id).await?;
        (t["roleIds"] == json!(["role-billing-reader"])
            && t["description"] == marked
            && t["metadata"] == json!({ "service": "billing" }))
        .then_some(())
    })
    .await;
    env.assert_event("billing-service", "DriftRepaired").await;
    assert_eq!(
        current_id(&env.get("tenantapitokens", "billing-service").await.unwrap()),
        id
    );
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/tenants/api-tokens/v2")
            .await,
        1,
        "repaired without a new token"
    );

    // UserAccessToken, default Report: a condition and a Warning, the token is kept.
    env.apply_owned(json!({ "apiVersion": GROUP, "kind": "UserAccessToken",
        "metadata": { "name": "laptop" },
        "spec": { "tenantId": TENANT, "userId": "user-1", "description": "laptop" } }))
        .await;
    let id = current_id(
        &env.wait_ready("useraccesstokens", "laptop", "True", None)
            .await,
    );
    env.fake
        .edit_token(&id, json!({ "description": "renamed in the portal" }))
        .await;
    let obj = wait_for(Duration::from_secs(30), "drift reported", || async {
        let obj = env.get("useraccesstokens", "laptop").await?;
        (condition(&obj, "RemoteDrift")?["status"] == "True").then_some(obj)
    })
    .await;
    let message = condition(&obj, "RemoteDrift").unwrap()["message"].to_string();
    assert!(message.contains("description"), "{message}");
    assert_eq!(condition(&obj, "Ready").unwrap()["status"], "True");
    env.assert_event("laptop", "RemoteDrift").await;
    // Three more resyncs: still the same token.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        current_id(&env.get("useraccesstokens", "laptop").await.unwrap()),
        id
    );

    // TenantAccessToken with onRemoteDrift: Reissue: replaced by one matching the spec.
    let mut reissue = example("day-two/remote-drift-tenant-access-token.yaml");
    reissue["spec"]["rotation"]["gracePeriod"] = json!("0s");
    env.apply_owned(reissue).await;
    let id = current_id(
        &env.wait_ready("tenantaccesstokens", "support-dashboard", "True", None)
            .await,
    );
    env.fake
        .edit_token(&id, json!({ "roleIds": ["role-admin"] }))
        .await;
    let replacement = wait_for(Duration::from_secs(30), "drift reissued", || async {
        let obj = env.get("tenantaccesstokens", "support-dashboard").await?;
        let now = obj["status"]["current"]["id"].as_str()?.to_string();
        (now != id).then_some(now)
    })
    .await;
    env.assert_event("support-dashboard", "Reissued").await;
    let fresh = env.fake.token(&replacement).await.expect("replacement");
    assert_eq!(fresh["roleIds"], json!(["role-support"]));
    wait_for(Duration::from_secs(30), "drifted token revoked", || async {
        env.fake.token(&id).await.is_none().then_some(())
    })
    .await;
}

fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[tokio::test]
async fn jwt_is_delivered_and_refreshed_from_its_refresh_token() {
    let env = TestEnv::start_with(
        "jwt",
        Options {
            fake_args: vec!["--user-jwt-lifetime-secs", "20"],
            ..Options::default()
        },
    )
    .await;
    const EXCHANGE: &str = "POST /identity/resources/auth/v2/api-token";
    const REFRESH: &str = "POST /identity/resources/auth/v2/api-token/token/refresh";
    let mut manifest = example("jwt-tenant-api-token.yaml");
    // A 20 s JWT: refreshed 8 s before it expires.
    manifest["spec"]["secret"]["accessToken"]["refreshBefore"] = json!("8s");
    env.apply_owned(manifest).await;
    let obj = env
        .wait_ready("tenantapitokens", "reporting-service", "True", None)
        .await;
    let id = current_id(&obj);
    let data = secret_data(&env.secret("reporting-service").await.expect("Secret"));
    let first = data["accessToken"].clone();
    let claims = jwt_claims(&first);
    assert_eq!(claims["sub"], id, "the JWT speaks for the API token");
    let expires: jiff::Timestamp = data["accessTokenExpiresAt"].parse().expect("RFC 3339");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(
        (exp - expires.as_second()).abs() <= 2,
        "accessTokenExpiresAt matches the JWT's exp"
    );
    assert_eq!(data["clientId"], id, "client credentials stay");
    assert_eq!(env.fake.calls(EXCHANGE).await, 1);

    // Refreshed before expiry, from the refresh token: no new exchange.
    let second = wait_for(Duration::from_secs(40), "JWT refreshed", || async {
        let data = secret_data(&env.secret("reporting-service").await?);
        (data["accessToken"] != first).then(|| data["accessToken"].clone())
    })
    .await;
    let refreshed_before: jiff::Timestamp = expires;
    assert!(
        jiff::Timestamp::now() < refreshed_before,
        "the refresh came before the old JWT expired"
    );
    assert!(env.fake.calls(REFRESH).await >= 1);
    assert_eq!(
        env.fake.calls(EXCHANGE).await,
        1,
        "refreshed, not exchanged"
    );
    assert!(
        env.fake.refresh_tokens(&id).await <= 1,
        "one live refresh token per API token"
    );

    // A refused refresh token (100 newer exchanges, say): a fresh exchange instead.
    env.fake.revoke_refresh_tokens().await;
    wait_for(Duration::from_secs(40), "JWT exchanged again", || async {
        let data = secret_data(&env.secret("reporting-service").await?);
        (data["accessToken"] != second).then_some(())
    })
    .await;
    assert_eq!(env.fake.calls(EXCHANGE).await, 2);
    assert_eq!(
        env.fake
            .calls("POST /identity/resources/tenants/api-tokens/v2")
            .await,
        1,
        "the API token itself is never reissued for a JWT"
    );

    // A UserApiToken gets a JWT for its user.
    env.apply_owned(json!({ "apiVersion": GROUP, "kind": "UserApiToken",
        "metadata": { "name": "ci-jwt" },
        "spec": { "tenantId": TENANT, "userId": "user-ci", "secret": { "accessToken": { "enabled": true } } } }))
    .await;
    env.wait_ready("userapitokens", "ci-jwt", "True", None)
        .await;
    let data = secret_data(&env.secret("ci-jwt").await.expect("Secret"));
    assert_eq!(jwt_claims(&data["accessToken"])["sub"], "user-ci");

    // Turned off: the JWT keys leave the Secret.
    env.apply_owned(json!({ "apiVersion": GROUP, "kind": "UserApiToken",
        "metadata": { "name": "ci-jwt" },
        "spec": { "tenantId": TENANT, "userId": "user-ci", "secret": { "accessToken": { "enabled": false } } } }))
    .await;
    wait_for(Duration::from_secs(30), "JWT keys removed", || async {
        let data = secret_data(&env.secret("ci-jwt").await?);
        (!data.contains_key("accessToken") && !data.contains_key("accessTokenExpiresAt"))
            .then_some(())
    })
    .await;

    // Access tokens have no client credentials to exchange: refused at admission.
    let api = dynamic_api(&env.client, Some(&env.ns), "useraccesstokens");
    let refused = json!({ "apiVersion": GROUP, "kind": "UserAccessToken",
        "metadata": { "name": "no-jwt" },
        "spec": { "tenantId": TENANT, "userId": "u", "secret": { "accessToken": { "enabled": true } } } });
    let err = api
        .patch(
            "no-jwt",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&refused),
        )
        .await
        .expect_err("refused at admission");
    assert!(err.to_string().contains("API tokens only"), "{err}");
    env.assert_no_secrets_logged().await;
}
