use proptest::option;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::api;

const KINDS: [&str; 4] = TOKEN_KINDS;

fn some_of(entries: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect(),
    )
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..900).prop_map(|h| format!("{h}h")),
        (1u32..900).prop_map(|m| format!("{m}m")),
        (1u32..48, 1u32..59).prop_map(|(h, m)| format!("{h}h{m}m")),
    ]
}

fn rotation_policy() -> impl Strategy<Value = Value> {
    (
        option::of(duration()),
        option::of(Just(json!(true))),
        option::of(Just(json!([{"kind": "Deployment", "name": "web"}]))),
        option::of(prop_oneof![Just("Report"), Just("Reissue")]),
    )
        .prop_map(|(grace, verify, restart, drift)| {
            some_of(vec![
                ("gracePeriod", grace.map(Value::from)),
                ("verify", verify),
                ("restartTargets", restart),
                ("onRemoteDrift", drift.map(Value::from)),
            ])
        })
}

fn secret_ref() -> impl Strategy<Value = Value> {
    ("[a-z]{1,8}", "[a-z.]{1,8}").prop_map(|(name, key)| json!({"name": name, "key": key}))
}

/// A `v1alpha1` spec the schema admits: at most one lifetime field, tokenId only with
/// Observe, import only with Manage.
fn alpha_spec(kind: &'static str) -> impl Strategy<Value = Value> {
    let lifetime = prop_oneof![
        Just(None),
        (1u64..5_256_000).prop_map(|m| Some(("expiresInMinutes", json!(m)))),
        duration().prop_map(|d| Some(("expiresIn", json!(d)))),
    ];
    let existing = prop_oneof![
        Just((None, None, None)),
        "[a-z0-9]{1,12}".prop_map(|id| (Some(json!("Observe")), Some(json!(id)), None)),
        (
            "[a-z0-9]{1,12}",
            secret_ref(),
            option::of(Just(json!("Manage")))
        )
            .prop_map(|(id, r, policy)| (
                policy,
                None,
                Some(json!({"tokenId": id, "secretRef": r}))
            )),
    ];
    (
        "[a-z0-9-]{1,12}",
        option::of("[ -~]{0,20}"),
        lifetime,
        option::of(prop_oneof![duration(), Just("33%".to_string())]),
        option::of(rotation_policy()),
        existing,
        option::of(prop_oneof![Just("Delete"), Just("Orphan")]),
        option::of(Just(json!({"name": "creds", "labels": {"a": "b"}}))),
    )
        .prop_map(
            move |(tenant, description, lifetime, renew, rotation, existing, deletion, secret)| {
                let (policy, token_id, import) = existing;
                let mut spec = some_of(vec![
                    ("tenantId", Some(json!(tenant))),
                    ("description", description.map(Value::from)),
                    ("renewBefore", renew.map(Value::from)),
                    ("rotation", rotation),
                    ("managementPolicy", policy),
                    ("tokenId", token_id),
                    ("import", import),
                    ("deletionPolicy", deletion.map(Value::from)),
                    ("secret", secret),
                ]);
                if let Some((field, value)) = lifetime {
                    spec[field] = value;
                }
                kind_fields(kind, &mut spec);
                spec
            },
        )
}

fn kind_fields(kind: &str, spec: &mut Value) {
    if kind.starts_with("User") {
        spec["userId"] = json!("user-1");
    }
    if kind == "TenantApiToken" {
        spec["roleIds"] = json!(["admin"]);
        spec["metadata"] = json!({"team": {"nested": [1, 2]}});
    }
}

fn record() -> impl Strategy<Value = Value> {
    ("[a-z0-9]{1,12}", any::<bool>()).prop_map(|(id, expires)| {
        let mut r = json!({"id": id, "issuedAt": "2026-12-01T00:00:00Z", "secretName": "s",
                           "issuedSpecHash": "abc"});
        if expires {
            r["expiresAt"] = json!("2027-01-01T00:00:00Z");
        }
        r
    })
}

fn alpha_status() -> impl Strategy<Value = Value> {
    (
        option::of(record()),
        option::of("[a-z0-9]{4}"),
        option::of("[a-z0-9]{1,4}"),
        option::of(Just(
            json!({"operation": "Issue", "result": "Succeeded", "at": "2026-12-01T00:00:00Z"}),
        )),
        option::of(Just(
            json!([{"type": "Ready", "status": "True", "reason": "Issued",
            "message": "ok", "lastTransitionTime": "2026-12-01T00:00:00Z"}]),
        )),
        option::of(Just(
            json!({"failures": 2, "nextAttemptAt": "2026-12-01T00:00:00Z",
                                "lastFailure": "VerificationFailed"}),
        )),
    )
        .prop_map(|(current, settled, handled, last, conditions, backoff)| {
            some_of(vec![
                ("current", current),
                ("settledAttempt", settled.map(Value::from)),
                ("handledRotationRequest", handled.map(Value::from)),
                ("lastAttempt", last),
                ("conditions", conditions),
                ("issuanceBackoff", backoff),
                ("observedGeneration", Some(json!(3))),
            ])
        })
}

fn metadata() -> impl Strategy<Value = Value> {
    option::of(proptest::collection::btree_map(
        "[a-z]{1,6}",
        "[ -~]{0,10}",
        1..3,
    ))
    .prop_map(|annotations| {
        some_of(vec![
            ("name", Some(json!("t"))),
            ("namespace", Some(json!("ns"))),
            ("annotations", annotations.map(|a| json!(a))),
        ])
    })
}

fn alpha_object() -> impl Strategy<Value = Value> {
    proptest::sample::select(KINDS.to_vec()).prop_flat_map(|kind| {
        (alpha_spec(kind), option::of(alpha_status()), metadata()).prop_map(
            move |(spec, status, metadata)| {
                some_of(vec![
                    ("apiVersion", Some(json!(V1ALPHA1))),
                    ("kind", Some(json!(kind))),
                    ("metadata", Some(metadata)),
                    ("spec", Some(spec)),
                    ("status", status),
                ])
            },
        )
    })
}

/// A `v1beta1` spec the schema admits, written in `v1beta1`'s own terms.
fn beta_object() -> impl Strategy<Value = Value> {
    let existing = prop_oneof![
        Just((None, None)),
        "[a-z0-9]{1,12}".prop_map(|id| (Some(json!("Observe")), Some(json!({"id": id})))),
        ("[a-z0-9]{1,12}", secret_ref())
            .prop_map(|(id, r)| (None, Some(json!({"id": id, "secretRef": r})))),
    ];
    let rotation = (
        option::of(prop_oneof![duration(), Just("10%".to_string())]),
        rotation_policy(),
    )
        .prop_map(|(renew, mut rotation)| {
            if let Some(renew) = renew {
                rotation["renewBefore"] = json!(renew);
            }
            rotation
        });
    let status = (alpha_status(), any::<bool>()).prop_map(|(status, _)| {
        let mut obj = json!({"apiVersion": V1ALPHA1, "kind": "UserApiToken", "status": status});
        if let Some(o) = obj.as_object_mut() {
            to_beta(o);
        }
        obj["status"].take()
    });
    (
        proptest::sample::select(KINDS.to_vec()),
        option::of(duration()),
        option::of(rotation),
        existing,
        option::of(status),
        metadata(),
    )
        .prop_map(|(kind, lifetime, rotation, existing, status, metadata)| {
            let mut spec = some_of(vec![
                ("tenantId", Some(json!("tenant"))),
                ("expiresIn", lifetime.map(Value::from)),
                ("rotation", rotation),
                ("managementPolicy", existing.0),
                ("existingToken", existing.1),
            ]);
            kind_fields(kind, &mut spec);
            some_of(vec![
                ("apiVersion", Some(json!(V1BETA1))),
                ("kind", Some(json!(kind))),
                ("metadata", Some(metadata)),
                ("spec", Some(spec)),
                ("status", status),
            ])
        })
}

fn parses_as(object: &Value) {
    let kind = object["kind"].as_str().unwrap_or_default();
    let alpha = object["apiVersion"] == V1ALPHA1;
    let o = object.clone();
    let ok = match (kind, alpha) {
        ("UserApiToken", true) => serde_json::from_value::<api::UserApiToken>(o).is_ok(),
        ("UserApiToken", false) => serde_json::from_value::<api::v1beta1::UserApiToken>(o).is_ok(),
        ("UserAccessToken", true) => serde_json::from_value::<api::UserAccessToken>(o).is_ok(),
        ("UserAccessToken", false) => {
            serde_json::from_value::<api::v1beta1::UserAccessToken>(o).is_ok()
        }
        ("TenantApiToken", true) => serde_json::from_value::<api::TenantApiToken>(o).is_ok(),
        ("TenantApiToken", false) => {
            serde_json::from_value::<api::v1beta1::TenantApiToken>(o).is_ok()
        }
        ("TenantAccessToken", true) => serde_json::from_value::<api::TenantAccessToken>(o).is_ok(),
        _ => serde_json::from_value::<api::v1beta1::TenantAccessToken>(o).is_ok(),
    };
    assert!(ok, "not a valid {kind}: {object:#}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn alpha_to_beta_and_back_is_lossless(alpha in alpha_object()) {
        let beta = convert(alpha.clone(), V1BETA1).expect("to v1beta1");
        parses_as(&beta);
        let back = convert(beta, V1ALPHA1).expect("to v1alpha1");
        prop_assert_eq!(back, alpha);
    }

    #[test]
    fn beta_to_alpha_and_back_is_lossless(beta in beta_object()) {
        parses_as(&beta);
        let alpha = convert(beta.clone(), V1ALPHA1).expect("to v1alpha1");
        parses_as(&alpha);
        let back = convert(alpha, V1BETA1).expect("to v1beta1");
        prop_assert_eq!(back, beta);
    }
}

#[test]
fn minutes_become_a_duration_and_come_back_while_unchanged() {
    let alpha = json!({"apiVersion": V1ALPHA1, "kind": "UserAccessToken",
        "metadata": {"name": "t"},
        "spec": {"tenantId": "a", "userId": "u", "expiresInMinutes": 90, "renewBefore": "30m",
                 "tokenId": "tok", "managementPolicy": "Observe"},
        "status": {"settledAttempt": "x", "conditions": []}});
    let beta = convert(alpha, V1BETA1).expect("convert");
    assert_eq!(beta["spec"]["expiresIn"], "90m");
    assert_eq!(beta["spec"]["rotation"], json!({"renewBefore": "30m"}));
    assert_eq!(beta["spec"]["existingToken"], json!({"id": "tok"}));
    assert_eq!(beta["status"]["internal"], json!({"settledAttempt": "x"}));
    // A lifetime changed in v1beta1 is no longer the minutes the annotation remembers.
    let mut edited = beta.clone();
    edited["spec"]["expiresIn"] = json!("2h");
    let alpha = convert(edited, V1ALPHA1).expect("convert");
    assert_eq!(alpha["spec"]["expiresIn"], "2h");
    assert!(alpha["spec"].get("expiresInMinutes").is_none());
    assert!(alpha["metadata"].get("annotations").is_none());
}

#[test]
fn environments_change_only_their_api_version_and_bad_input_is_refused() {
    let env = json!({"apiVersion": V1ALPHA1, "kind": "ClusterFronteggEnvironment",
        "spec": {"region": "eu", "tokenId": "kept"}});
    let converted = convert(env.clone(), V1BETA1).expect("convert");
    assert_eq!(converted["spec"], env["spec"]);
    assert_eq!(converted["apiVersion"], V1BETA1);
    assert_eq!(
        convert(json!([1]), V1BETA1),
        Err(ConversionError::NotAnObject)
    );
    assert!(matches!(
        convert(env, "example.com/v1"),
        Err(ConversionError::UnknownVersion { .. })
    ));
    let broken = json!({"apiVersion": V1BETA1, "kind": "UserApiToken",
        "metadata": {"annotations": {ALPHA_FIELDS_ANNOTATION: "{not json"}},
        "spec": {"tenantId": "a", "userId": "u", "expiresIn": "5m"}});
    let alpha = convert(broken, V1ALPHA1).expect("a bad annotation is ignored");
    assert_eq!(alpha["spec"]["expiresIn"], "5m");
}
