//! The identity client against the Frontegg fake (both real processes over loopback HTTP).

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use frontegg_token_operator::identity::*;
use jiff::Timestamp;
use serde_json::json;
use support::Fake;

fn client(fake: &Fake, secret: &str, options: ClientOptions) -> Arc<IdentityClient> {
    let env = EnvironmentConfig {
        base_url: fake.url.clone(),
        client_id: fake.client_id.clone(),
        secret: SecretString::from(secret.to_string()),
        environment_id: Some("env-1".into()),
        auth: AuthMode::Vendor,
    };
    Arc::new(IdentityClient::new(env, options, None).expect("client"))
}

fn fast() -> ClientOptions {
    ClientOptions {
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        qps: std::num::NonZeroU32::new(1000).unwrap(),
        burst: std::num::NonZeroU32::new(1000).unwrap(),
        ..ClientOptions::default()
    }
}

fn user() -> TokenOwner {
    TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some("user-1".into()),
    }
}

fn tenant() -> TokenOwner {
    TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: None,
    }
}

#[tokio::test]
async fn every_kind_creates_lists_and_deletes() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());

    let t = c
        .create::<UserApiTokens>(
            &user(),
            &CreateUserApiToken {
                description: Some("d".into()),
                expires_in_minutes: Some(60),
                metadata: None,
            },
        )
        .await
        .unwrap();
    assert!(t.expires_at.is_some());
    assert_eq!(
        fake.token(&t.id).await.unwrap()["secret"],
        t.secret.expose_secret()
    );
    let listed = c.list::<UserApiTokens>(&user()).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [t.id.as_str()]
    );
    c.delete::<UserApiTokens>(&user(), &t.id).await.unwrap();
    assert_eq!(
        c.delete::<UserApiTokens>(&user(), &t.id).await.unwrap_err(),
        IdentityError::NotFound
    );

    let t = c
        .create::<UserAccessTokens>(&user(), &CreateUserAccessToken::default())
        .await
        .unwrap();
    assert!(t.expires_at.is_none(), "no expiry requested");
    assert_eq!(c.list::<UserAccessTokens>(&user()).await.unwrap().len(), 1);
    c.delete::<UserAccessTokens>(&user(), &t.id).await.unwrap();
    assert!(
        c.list::<UserAccessTokens>(&user())
            .await
            .unwrap()
            .is_empty()
    );

    let t = c
        .create::<TenantAccessTokens>(
            &tenant(),
            &CreateTenantAccessToken {
                role_ids: Some(vec!["r".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        c.list::<TenantAccessTokens>(&tenant()).await.unwrap()[0].role_ids,
        ["r"]
    );
    c.delete::<TenantAccessTokens>(&tenant(), &t.id)
        .await
        .unwrap();

    let t = c
        .create::<TenantApiTokens>(
            &tenant(),
            &CreateTenantApiToken {
                permission_ids: Some(vec!["p".into()]),
                description: Some("one".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let patched = c
        .patch_tenant_api_token(
            &tenant(),
            &t.id,
            &UpdateTenantApiToken {
                description: Some("two".into()),
                role_ids: Some(vec!["r".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.description.as_deref(), patched.role_ids.as_slice()),
        (Some("two"), ["r".to_string()].as_slice())
    );
    let listed = c.list::<TenantApiTokens>(&tenant()).await.unwrap();
    assert_eq!(listed[0].description.as_deref(), Some("two"));
    c.delete::<TenantApiTokens>(&tenant(), &t.id).await.unwrap();
    assert!(fake.tokens().await.is_empty());
    // Tokens are scoped: another user sees nothing.
    c.create::<UserApiTokens>(&user(), &CreateUserApiToken::default())
        .await
        .unwrap();
    let other = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some("user-2".into()),
    };
    assert!(c.list::<UserApiTokens>(&other).await.unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_calls_share_one_vendor_auth() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.list::<UserApiTokens>(&user()).await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(
        fake.calls("POST /auth/vendor").await,
        1,
        "single-flight vendor auth"
    );
    assert_eq!(
        fake.calls("GET /identity/resources/users/api-tokens/v1")
            .await,
        200
    );
}

#[tokio::test]
async fn vendor_token_is_refreshed_on_expiry_and_after_revocation() {
    let fake = Fake::start(&["--token-lifetime-secs", "1"]).await;
    let c = client(&fake, &fake.secret, fast());
    c.list::<UserApiTokens>(&user()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.list::<UserApiTokens>(&user()).await.unwrap();
    assert_eq!(
        fake.calls("POST /auth/vendor").await,
        2,
        "refreshed after expiry"
    );

    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    c.list::<UserApiTokens>(&user()).await.unwrap();
    fake.revoke_vendor_tokens().await;
    c.list::<UserApiTokens>(&user()).await.unwrap();
    assert_eq!(
        fake.calls("POST /auth/vendor").await,
        2,
        "401 refreshes once and retries once"
    );
    assert_eq!(
        fake.calls("GET /identity/resources/users/api-tokens/v1")
            .await,
        3
    );
}

#[tokio::test]
async fn rate_limit_reset_is_honoured() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    c.check_credentials().await.unwrap();
    fake.set_faults(
        json!({"rateLimitNext": 1, "rateLimitResetSecs": 1.5, "pathPrefix": "/identity"}),
    )
    .await;
    let started = Instant::now();
    c.create::<UserAccessTokens>(&user(), &CreateUserAccessToken::default())
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "waited for the reset"
    );
    let log = fake.call_log().await;
    let creates: Vec<_> = log
        .iter()
        .filter(|c| c["route"] == "POST /identity/resources/users/access-tokens/v1")
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0]["status"], 429);
    let first: Timestamp = creates[0]["at"].as_str().unwrap().parse().unwrap();
    let second: Timestamp = creates[1]["at"].as_str().unwrap().parse().unwrap();
    assert!(
        second.duration_since(first) >= jiff::SignedDuration::from_millis(1400),
        "no call before the reset"
    );

    // A reset beyond the inline wait is surfaced so the caller can requeue, and while it
    // lasts no caller sends anything.
    fake.set_faults(
        json!({"rateLimitNext": 1, "rateLimitResetSecs": 120, "pathPrefix": "/identity"}),
    )
    .await;
    let err = c.list::<UserAccessTokens>(&user()).await.unwrap_err();
    assert!(
        matches!(err, IdentityError::RateLimited { reset } if reset > Timestamp::now() + Duration::from_secs(100))
    );
    let calls = fake.identity_calls().await;
    let started = Instant::now();
    let err = c.list::<UserAccessTokens>(&user()).await.unwrap_err();
    assert!(matches!(err, IdentityError::RateLimited { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no wait in place"
    );
    assert_eq!(
        fake.identity_calls().await,
        calls,
        "the gate held the call back"
    );
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_but_creates_never_twice() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    c.check_credentials().await.unwrap();
    fake.set_faults(json!({"errorNext": 2, "pathPrefix": "/identity"}))
        .await;
    c.list::<TenantAccessTokens>(&tenant()).await.unwrap();
    assert_eq!(
        fake.calls("GET /identity/resources/tenants/access-tokens/v1")
            .await,
        3,
        "an idempotent list is retried"
    );

    // A create that reached the server may have been committed: sending it again could
    // make a second token, so it fails after one call.
    fake.set_faults(json!({"errorNext": 1, "pathPrefix": "/identity"}))
        .await;
    let err = c
        .create::<TenantAccessTokens>(&tenant(), &CreateTenantAccessToken::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IdentityError::Transient(_)), "{err:?}");
    assert_eq!(
        fake.calls("POST /identity/resources/tenants/access-tokens/v1")
            .await,
        1
    );

    // The failure paused the environment: calls fail at once, without a request, until the
    // cooldown has passed and a probe succeeds.
    let before = fake.identity_calls().await;
    let err = c.list::<TenantAccessTokens>(&tenant()).await.unwrap_err();
    assert_eq!(err.reason(), "FronteggUnavailable");
    assert!(matches!(err, IdentityError::Unavailable(_)), "{err:?}");
    assert_eq!(
        fake.identity_calls().await,
        before,
        "no request while paused"
    );
    c.check_credentials().await.unwrap();
    c.list::<TenantAccessTokens>(&tenant()).await.unwrap();

    let c = client(&fake, &fake.secret, fast());
    fake.set_faults(json!({"errorRate": 1.0, "pathPrefix": "/identity"}))
        .await;
    fake.reset_stats().await;
    let err = c.list::<TenantAccessTokens>(&tenant()).await.unwrap_err();
    assert!(matches!(err, IdentityError::Transient(_)), "{err:?}");
    // One try plus max_retries.
    assert_eq!(
        fake.calls("GET /identity/resources/tenants/access-tokens/v1")
            .await,
        1 + fast().max_retries as u64
    );
}

#[tokio::test]
async fn hung_requests_time_out_once_and_pause_the_environment() {
    let fake = Fake::start(&[]).await;
    let c = client(
        &fake,
        &fake.secret,
        ClientOptions {
            timeout: Duration::from_millis(300),
            breaker_min_cooldown: Duration::from_millis(500),
            ..fast()
        },
    );
    c.check_credentials().await.unwrap();
    fake.set_faults(json!({"hangNext": 1, "pathPrefix": "/identity"}))
        .await;
    let started = Instant::now();
    let err = c.list::<UserApiTokens>(&user()).await.unwrap_err();
    assert!(
        matches!(&err, IdentityError::Transient(m) if m.contains("timed out")),
        "{err:?}"
    );
    // A timeout is not retried in place: the worker is back after one deadline.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(c.is_paused());
    assert!(matches!(
        c.list::<UserApiTokens>(&user()).await.unwrap_err(),
        IdentityError::Unavailable(_)
    ));
    // After the cooldown one request probes the host, and its success resumes everyone.
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.list::<UserApiTokens>(&user()).await.unwrap();
    assert!(!c.is_paused());
    assert_eq!(
        fake.calls("GET /identity/resources/users/api-tokens/v1")
            .await,
        1,
        "the probe (the fake counts a call when it answers, and the hung one never does)"
    );
}

#[tokio::test]
async fn invalid_requests_surface_frontegg_messages() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    let both = CreateTenantApiToken {
        role_ids: Some(vec!["r".into()]),
        permission_ids: Some(vec!["p".into()]),
        ..Default::default()
    };
    let err = c
        .create::<TenantApiTokens>(&tenant(), &both)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        IdentityError::Invalid {
            messages: vec!["provide either roleIds or permissionIds, not both".into()]
        }
    );
    let too_long = CreateUserApiToken {
        expires_in_minutes: Some(5_256_001),
        ..Default::default()
    };
    let err = c
        .create::<UserApiTokens>(&user(), &too_long)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, IdentityError::Invalid { messages } if messages[0].contains("5256000")),
        "{err:?}"
    );
    assert_eq!(
        fake.calls("POST /identity/resources/tenants/api-tokens/v2")
            .await,
        1,
        "400 is not retried"
    );
}

#[tokio::test]
async fn bad_credentials_fail_fast_without_a_retry_storm() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, "not-the-secret", fast());
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.list::<UserApiTokens>(&user()).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap().unwrap_err(),
            IdentityError::Unauthorized
        );
    }
    assert_eq!(
        fake.calls("POST /auth/vendor").await,
        1,
        "one auth call for 100 requests"
    );
    assert_eq!(fake.identity_calls().await, 0);
}

#[tokio::test]
async fn debug_output_never_contains_secrets() {
    let fake = Fake::start(&[]).await;
    let c = client(&fake, &fake.secret, fast());
    let issued = c
        .create::<UserApiTokens>(&user(), &CreateUserApiToken::default())
        .await
        .unwrap();
    let secret = issued.secret.expose_secret().to_string();
    let access = c
        .create::<UserAccessTokens>(&user(), &CreateUserAccessToken::default())
        .await
        .unwrap();
    let env = EnvironmentConfig {
        base_url: fake.url.clone(),
        client_id: "id".into(),
        secret: SecretString::from(fake.secret.clone()),
        environment_id: None,
        auth: AuthMode::Vendor,
    };
    let vendor_tokens = fake.issued_secrets().await;
    let printed = [
        format!("{c:?}"),
        format!("{issued:?}"),
        format!("{access:?}"),
        format!("{env:?}"),
        format!("{:?}", ClientOptions::default()),
    ]
    .join("\n");
    assert!(printed.contains("REDACTED"), "{printed}");
    for s in vendor_tokens.iter().chain([
        &secret,
        &fake.secret,
        &access.secret.expose_secret().to_string(),
    ]) {
        assert!(!printed.contains(s.as_str()), "secret printed");
    }
}

#[tokio::test]
async fn fake_latency_qps_limit_and_429_rate_faults_behave() {
    let fake = Fake::start(&[]).await;
    let c = client(
        &fake,
        &fake.secret,
        ClientOptions {
            timeout: Duration::from_millis(200),
            max_retries: 1,
            ..fast()
        },
    );
    c.check_credentials().await.unwrap();

    // Added latency beyond the client's timeout: a transient failure, not retried in place.
    fake.set_faults(json!({"latencyMs": 400, "pathPrefix": "/identity"}))
        .await;
    let err = c.list::<UserApiTokens>(&user()).await.unwrap_err();
    assert!(
        matches!(&err, IdentityError::Transient(m) if m.contains("timed out")),
        "{err:?}"
    );

    // An enforced QPS limit answers 429 with a reset the client honours: all calls succeed,
    // and the fake answered some of them with 429.
    fake.set_faults(json!({"qpsLimit": 5, "pathPrefix": "/identity"}))
        .await;
    let c = client(&fake, &fake.secret, fast());
    for _ in 0..12 {
        c.list::<UserApiTokens>(&user()).await.unwrap();
    }
    let log = fake.call_log().await;
    let limited = log.iter().filter(|l| l["status"] == 429).count();
    assert!(limited >= 1, "the QPS limit answered 429");

    // A 429 rate of 1.0 surfaces RateLimited once the inline waits are used up.
    fake.set_faults(
        json!({"rateLimitRate": 1.0, "rateLimitResetSecs": 0.05, "pathPrefix": "/identity"}),
    )
    .await;
    let err = c.list::<UserApiTokens>(&user()).await.unwrap_err();
    assert!(matches!(err, IdentityError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn hostile_answers_give_typed_errors_that_quote_nothing() {
    let fake = Fake::start(&[]).await;
    let options = || ClientOptions {
        timeout: Duration::from_secs(2),
        ..fast()
    };
    let create = |c: Arc<IdentityClient>| async move {
        c.create::<UserApiTokens>(&user(), &CreateUserApiToken::default())
            .await
    };
    for (fault, reason, detail) in [
        (
            json!({"hugeBodyNext": 1}),
            "InvalidResponse",
            "larger than 1024 KiB",
        ),
        (json!({"garbageNext": 1}), "InvalidResponse", "not JSON"),
        (
            json!({"wrongTypesNext": 1}),
            "InvalidResponse",
            "Data error",
        ),
        (
            json!({"slowDripNext": 1}),
            "FronteggUnavailable",
            "timed out",
        ),
        (
            json!({"dropAfterCommitNext": 1}),
            "FronteggUnavailable",
            "request failed",
        ),
    ] {
        // A fresh client each time: the failures above pause the environment.
        let c = client(&fake, &fake.secret, options());
        c.check_credentials().await.unwrap();
        let mut faults = fault.clone();
        faults["pathPrefix"] = json!("/identity");
        fake.set_faults(faults).await;
        fake.reset_stats().await;
        let started = Instant::now();
        let err = create(c).await.unwrap_err();
        assert_eq!(err.reason(), reason, "{fault}: {err:?}");
        assert!(err.to_string().contains(detail), "{fault}: {err}");
        assert!(!err.to_string().contains("<html>"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{fault}: bounded by the deadline"
        );
        assert_eq!(
            fake.calls("POST /identity/resources/users/api-tokens/v1")
                .await,
            1,
            "{fault}: a create is sent once, whatever comes back"
        );
    }

    // An absurd Retry-After is believed for at most 15 minutes, and nothing panics.
    let c = client(&fake, &fake.secret, options());
    fake.set_faults(json!({"rateLimitNext": 1, "rateLimitRetryAfter": "999999999999", "pathPrefix": "/identity"}))
        .await;
    let err = c.list::<UserApiTokens>(&user()).await.unwrap_err();
    let IdentityError::RateLimited { reset } = err else {
        panic!("{err:?}");
    };
    assert!(reset <= Timestamp::now() + Duration::from_secs(15 * 60));

    // A vendor token that claims to live 1e19 seconds is trusted for a day at most.
    fake.set_faults(json!({"vendorExpiresIn": 1e19})).await;
    let c = client(&fake, &fake.secret, options());
    c.list::<UserApiTokens>(&user()).await.unwrap();
    fake.set_faults(json!({"vendorExpiresIn": -5.0})).await;
    let c = client(&fake, &fake.secret, options());
    assert_eq!(
        c.list::<UserApiTokens>(&user()).await.unwrap_err().reason(),
        "InvalidResponse"
    );
}

/// A user API token made with the vendor key, as a user would in the portal.
async fn user_api_token(fake: &Fake, user: &str) -> (String, SecretString) {
    let vendor = client(fake, &fake.secret, fast());
    let owner = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some(user.into()),
    };
    let t = vendor
        .create::<UserApiTokens>(&owner, &CreateUserApiToken::default())
        .await
        .unwrap();
    (t.id, t.secret)
}

fn user_client(fake: &Fake, id: &str, secret: &SecretString) -> Arc<IdentityClient> {
    let env = EnvironmentConfig {
        base_url: fake.url.clone(),
        client_id: id.into(),
        secret: SecretString::from(secret.expose_secret().to_string()),
        environment_id: None,
        auth: AuthMode::UserApiToken,
    };
    Arc::new(IdentityClient::new(env, fast(), None).expect("client"))
}

#[tokio::test]
async fn a_user_api_token_manages_its_own_users_tokens_and_nothing_else() {
    let fake = Fake::start(&["--user-jwt-lifetime-secs", "3"]).await;
    let (id, secret) = user_api_token(&fake, "svc-1").await;
    fake.reset_stats().await;
    let c = user_client(&fake, &id, &secret);
    c.check_credentials().await.unwrap();
    assert_eq!(
        c.user_identity(),
        Some(UserIdentity {
            user_id: "svc-1".into(),
            tenant_id: "tenant-1".into()
        })
    );
    let me = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some("svc-1".into()),
    };
    let t = c
        .create::<UserAccessTokens>(&me, &CreateUserAccessToken::default())
        .await
        .unwrap();
    c.delete::<UserAccessTokens>(&me, &t.id).await.unwrap();
    // Frontegg enforces the boundary: another user's tokens, or tenant tokens, get 403.
    let other = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: Some("alice".into()),
    };
    assert!(matches!(
        c.list::<UserAccessTokens>(&other).await.unwrap_err(),
        IdentityError::Forbidden { .. }
    ));
    let tenant = TokenOwner {
        tenant_id: "tenant-1".into(),
        user_id: None,
    };
    assert!(matches!(
        c.list::<TenantAccessTokens>(&tenant).await.unwrap_err(),
        IdentityError::Forbidden { .. }
    ));
    assert_eq!(
        fake.calls("POST /auth/vendor").await,
        0,
        "no vendor key needed"
    );

    // After the JWT's lifetime the client refreshes it instead of exchanging again...
    tokio::time::sleep(Duration::from_millis(3200)).await;
    c.list::<UserAccessTokens>(&me).await.unwrap();
    assert_eq!(
        fake.calls("POST /identity/resources/auth/v2/api-token/token/refresh")
            .await,
        1
    );
    assert_eq!(
        fake.calls("POST /identity/resources/auth/v2/api-token")
            .await,
        1,
        "one exchange so far"
    );
    // ...and when the refresh token was dropped, it exchanges again.
    fake.revoke_refresh_tokens().await;
    tokio::time::sleep(Duration::from_millis(3200)).await;
    c.list::<UserAccessTokens>(&me).await.unwrap();
    assert_eq!(
        fake.calls("POST /identity/resources/auth/v2/api-token")
            .await,
        2,
        "a fresh exchange after the refused refresh"
    );
}

#[tokio::test]
async fn an_exchange_answering_an_oversized_jwt_is_refused() {
    // The JWT goes into a Secret that workloads send as a header: a server must not be able
    // to put 64 KiB there.
    let fake = Fake::start(&[]).await;
    let (id, secret) = user_api_token(&fake, "svc-big-jwt").await;
    let c = client(&fake, &fake.secret, fast());
    fake.set_faults(json!({ "oversizedJwtNext": 1 })).await;
    let err = c.exchange_api_token(&id, &secret).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidResponse");
    assert!(!err.to_string().contains("AAAA"), "the JWT is not echoed");
    let grant = c.exchange_api_token(&id, &secret).await.unwrap();
    assert!(grant.access_token.expose_secret().len() < 16 * 1024);
}

#[tokio::test]
async fn the_fake_keeps_at_most_100_refresh_tokens_per_api_token() {
    let fake = Fake::start(&[]).await;
    let (id, secret) = user_api_token(&fake, "svc-1").await;
    let c = client(&fake, &fake.secret, fast());
    for _ in 0..101 {
        c.exchange_api_token(&id, &secret)
            .await
            .map(|_| ())
            .unwrap();
    }
    assert_eq!(fake.refresh_tokens(&id).await, 100);
}
