//! Every request the client sends and every response the fake returns, errors included,
//! validated against Frontegg's published OpenAPI by hack/conformance.py (openapi-core).

mod support;

use std::time::Duration;

use frontegg_token_operator::identity::*;
use serde_json::json;
use support::{Fake, REPO};

#[tokio::test]
async fn client_requests_and_fake_responses_conform_to_the_openapi() {
    let record = std::env::temp_dir().join(format!("fto-conformance-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&record);
    let fake = Fake::start(&[
        "--record",
        record.to_str().unwrap(),
        "--user-jwt-lifetime-secs",
        "2",
    ])
    .await;
    let options = ClientOptions {
        min_backoff: Duration::from_millis(10),
        max_retries: 1,
        ..ClientOptions::default()
    };
    let env = |secret: &str| EnvironmentConfig {
        base_url: fake.url.clone(),
        client_id: fake.client_id.clone(),
        secret: SecretString::from(secret.to_string()),
        environment_id: None,
        auth: AuthMode::Vendor,
    };
    let c = IdentityClient::new(env(&fake.secret), options.clone(), None).unwrap();
    let user = TokenOwner {
        tenant_id: "t".into(),
        user_id: Some("u".into()),
    };
    let tenant = TokenOwner {
        tenant_id: "t".into(),
        user_id: None,
    };
    let meta = json!({"team": "a"}).as_object().cloned();

    // Every operation of every kind, with and without optional fields.
    for expires in [None, Some(60)] {
        let t = c
            .create::<UserApiTokens>(
                &user,
                &CreateUserApiToken {
                    description: Some("d".into()),
                    expires_in_minutes: expires,
                    metadata: meta.clone(),
                },
            )
            .await
            .unwrap();
        c.list::<UserApiTokens>(&user).await.unwrap();
        c.exchange_api_token(&t.id, &t.secret)
            .await
            .map(|_| ())
            .unwrap();
        c.delete::<UserApiTokens>(&user, &t.id).await.unwrap();
        // A revoked token's exchange is refused with Frontegg's error shape.
        assert_eq!(
            c.exchange_api_token(&t.id, &t.secret)
                .await
                .map(|_| ())
                .unwrap_err(),
            IdentityError::Unauthorized
        );
        let t = c
            .create::<UserAccessTokens>(
                &user,
                &CreateUserAccessToken {
                    description: Some("d".into()),
                    expires_in_minutes: expires,
                },
            )
            .await
            .unwrap();
        c.list::<UserAccessTokens>(&user).await.unwrap();
        c.delete::<UserAccessTokens>(&user, &t.id).await.unwrap();
        let t = c
            .create::<TenantAccessTokens>(
                &tenant,
                &CreateTenantAccessToken {
                    description: None,
                    expires_in_minutes: expires,
                    role_ids: Some(vec!["r".into()]),
                },
            )
            .await
            .unwrap();
        c.list::<TenantAccessTokens>(&tenant).await.unwrap();
        c.delete::<TenantAccessTokens>(&tenant, &t.id)
            .await
            .unwrap();
        let t = c
            .create::<TenantApiTokens>(
                &tenant,
                &CreateTenantApiToken {
                    description: Some("d".into()),
                    expires_in_minutes: expires,
                    metadata: meta.clone(),
                    role_ids: Some(vec!["r".into()]),
                    permission_ids: None,
                },
            )
            .await
            .unwrap();
        c.list::<TenantApiTokens>(&tenant).await.unwrap();
        c.patch_tenant_api_token(
            &tenant,
            &t.id,
            &UpdateTenantApiToken {
                description: Some("e".into()),
                permission_ids: Some(vec!["p".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        c.list::<TenantApiTokens>(&tenant).await.unwrap();
        c.delete::<TenantApiTokens>(&tenant, &t.id).await.unwrap();
    }
    // Error responses: 404, 400, 401, 429, 5xx.
    assert_eq!(
        c.delete::<UserApiTokens>(&user, "missing")
            .await
            .unwrap_err(),
        IdentityError::NotFound
    );
    let both = CreateTenantApiToken {
        role_ids: Some(vec!["r".into()]),
        permission_ids: Some(vec!["p".into()]),
        ..Default::default()
    };
    assert!(matches!(
        c.create::<TenantApiTokens>(&tenant, &both).await,
        Err(IdentityError::Invalid { .. })
    ));
    let bad = IdentityClient::new(env("wrong"), options.clone(), None).unwrap();
    assert_eq!(
        bad.check_credentials().await.unwrap_err(),
        IdentityError::Unauthorized
    );
    fake.set_faults(json!({"rateLimitNext": 1, "rateLimitResetSecs": 0.2, "errorNext": 0, "pathPrefix": "/identity"})).await;
    c.list::<UserApiTokens>(&user).await.unwrap();
    fake.set_faults(json!({"errorNext": 1, "pathPrefix": "/identity"}))
        .await;
    c.list::<UserApiTokens>(&user).await.unwrap();

    // A user-token environment: the exchange, the personal-token routes with a user JWT, a
    // refresh after the JWT's lifetime, and a 403 for another user.
    let t = c
        .create::<UserApiTokens>(&user, &CreateUserApiToken::default())
        .await
        .unwrap();
    let u = IdentityClient::new(
        EnvironmentConfig {
            client_id: t.id.clone(),
            secret: SecretString::from(t.secret.expose_secret().to_string()),
            auth: AuthMode::UserApiToken,
            ..env("unused")
        },
        options.clone(),
        None,
    )
    .unwrap();
    let made = u
        .create::<UserAccessTokens>(&user, &CreateUserAccessToken::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    u.list::<UserAccessTokens>(&user).await.unwrap();
    u.delete::<UserAccessTokens>(&user, &made.id).await.unwrap();
    let someone = TokenOwner {
        tenant_id: "t".into(),
        user_id: Some("someone-else".into()),
    };
    assert!(matches!(
        u.list::<UserAccessTokens>(&someone).await.unwrap_err(),
        IdentityError::Forbidden { .. }
    ));

    let python = format!("{REPO}/.cache/venv/bin/python");
    assert!(
        std::path::Path::new(&python).exists(),
        "missing {python}: run `make tools` (hack/setup-python)"
    );
    let out = std::process::Command::new(python)
        .arg(format!("{REPO}/hack/conformance.py"))
        .arg(&record)
        .output()
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "conformance failures:\n{stdout}");
    assert!(stdout.contains("; 0 failures"));
}
