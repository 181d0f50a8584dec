//! Validate (no client required): the spec alone, checked against `api::limits` before any
//! read or remote call. Admission enforces the same bounds; this is the second line, for
//! objects that reached the cache some other way (an older CRD, validation turned off).

use std::time::Duration;

use kube::ResourceExt;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::plan::{Desired, RenewBefore, whole_minutes};
use crate::api::limits::{
    self, MAX_ANNOTATION_VALUE, MAX_DESCRIPTION_LEN, MAX_ENTRIES, MAX_GRACE_PERIOD, MAX_ID_LEN,
    MAX_LIFETIME, MIN_LIFETIME,
};
use crate::api::{ManagementPolicy, ROTATE_ANNOTATION};
use crate::controller::kinds::{SecretLayout, TokenResource};
use crate::controller::runtime::error::Error;
use crate::controller::secret::credential::SecretContext;
use crate::controller::secret::jwt::DEFAULT_REFRESH_BEFORE;
use crate::controller::secret::layout::probe_credential;
use crate::controller::secret::template;

/// What the spec asks for, or why it cannot be served.
pub fn desired_state<K: TokenResource>(
    obj: &K,
    default_grace_period: Duration,
) -> Result<Desired, Error> {
    let common = obj.common();
    let lifetime = lifetime(common.expires_in_minutes, common.expires_in.as_deref())?;
    let renew_before = renew_before(common.renew_before.as_deref(), lifetime)?;
    check_identity(obj)?;
    let grace_period = grace_period(obj, default_grace_period)?;
    check_rotation(obj)?;
    obj.check_kind_fields().map_err(Error::InvalidSpec)?;
    check_secret_target(obj)?;
    check_takeover(obj)?;
    let access_token_refresh_before = access_token_refresh_before(obj)?;

    let expires_in_minutes = lifetime.map(whole_minutes);
    let issue_fields = json!({
        "expiresInMinutes": expires_in_minutes,
        "kind": obj.kind_issue_fields(),
    });
    Ok(Desired {
        secret_name: common.secret.name.clone().unwrap_or_else(|| obj.name_any()),
        expires_in_minutes,
        renew_before,
        grace_period,
        issued_spec_hash: digest(&issue_fields),
        patched_spec_hash: obj
            .patch_request(common.description.clone().unwrap_or_default())
            .map(|p| digest(&serde_json::to_value(p).unwrap_or_default())),
        rotation_request: obj.annotations().get(ROTATE_ANNOTATION).cloned(),
        access_token_refresh_before,
        on_remote_drift: common
            .rotation
            .as_ref()
            .map(|r| r.on_remote_drift)
            .unwrap_or_default(),
        import: common.import.is_some() && common.management_policy == ManagementPolicy::Manage,
    })
}

/// `renewBefore`, which must leave some of the lifetime: otherwise every pass would find the
/// token due and issue another one.
fn renew_before(
    value: Option<&str>,
    lifetime: Option<Duration>,
) -> Result<Option<RenewBefore>, Error> {
    let renew_before = value
        .map(parse_renew_before)
        .transpose()
        .map_err(|e| Error::InvalidSpec(format!("renewBefore: {e}")))?;
    if let (Some(RenewBefore::Duration(before)), Some(lifetime)) = (renew_before, lifetime)
        && before >= lifetime
    {
        return Err(Error::InvalidSpec(
            "renewBefore must be shorter than the token lifetime".into(),
        ));
    }
    Ok(renew_before)
}

/// The tenant, the user and the description, within Frontegg's bounds.
fn check_identity<K: TokenResource>(obj: &K) -> Result<(), Error> {
    let common = obj.common();
    check_id("tenantId", &common.tenant_id)?;
    if let Some(user) = obj.user_id() {
        check_id("userId", user)?;
    }
    if common
        .description
        .as_ref()
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN)
    {
        return Err(Error::InvalidSpec(format!(
            "description is longer than {MAX_DESCRIPTION_LEN} characters"
        )));
    }
    Ok(())
}

fn grace_period<K: TokenResource>(obj: &K, default: Duration) -> Result<Duration, Error> {
    match obj
        .common()
        .rotation
        .as_ref()
        .and_then(|r| r.grace_period.as_deref())
    {
        None => Ok(default),
        Some(g) => limits::parse_duration(g)
            .ok()
            .filter(|g| *g <= MAX_GRACE_PERIOD)
            .ok_or_else(|| {
                Error::InvalidSpec("rotation.gracePeriod must be a duration of at most 168h".into())
            }),
    }
}

fn check_rotation<K: TokenResource>(obj: &K) -> Result<(), Error> {
    let Some(rotation) = &obj.common().rotation else {
        return Ok(());
    };
    if rotation.verify && K::LAYOUT != SecretLayout::ClientCredentials {
        return Err(Error::InvalidSpec(
            "rotation.verify applies to API tokens only".into(),
        ));
    }
    if rotation.restart_targets.len() > MAX_RESTART_TARGETS
        || rotation
            .restart_targets
            .iter()
            .any(|t| t.name.is_empty() || t.name.len() > 253)
    {
        return Err(Error::InvalidSpec(format!(
            "rotation.restartTargets takes at most {MAX_RESTART_TARGETS} workloads with valid names"
        )));
    }
    Ok(())
}

/// `managementPolicy: Observe` needs the token to watch; `import` needs a readable reference.
fn check_takeover<K: TokenResource>(obj: &K) -> Result<(), Error> {
    let common = obj.common();
    match (common.management_policy, &common.token_id, &common.import) {
        (ManagementPolicy::Observe, None, _) => {
            return Err(Error::InvalidSpec(
                "managementPolicy Observe needs spec.tokenId".into(),
            ));
        }
        (ManagementPolicy::Observe, _, Some(_)) => {
            return Err(Error::InvalidSpec(
                "managementPolicy Observe takes no spec.import".into(),
            ));
        }
        (ManagementPolicy::Manage, Some(_), _) => {
            return Err(Error::InvalidSpec(
                "spec.tokenId is for managementPolicy Observe; to take over a token, use spec.import"
                    .into(),
            ));
        }
        _ => {}
    }
    if let Some(id) = &common.token_id {
        check_id("tokenId", id)?;
    }
    if let Some(import) = &common.import {
        check_id("import.tokenId", &import.token_id)?;
        if [&import.secret_ref.name, &import.secret_ref.key]
            .iter()
            .any(|v| v.is_empty() || v.len() > 253)
        {
            return Err(Error::InvalidSpec(
                "import.secretRef needs a name and a key of 1 to 253 characters".into(),
            ));
        }
    }
    Ok(())
}

/// `spec.secret.accessToken`: API tokens only; `refreshBefore` defaults to 10m.
fn access_token_refresh_before<K: TokenResource>(obj: &K) -> Result<Option<Duration>, Error> {
    let Some(delivery) = obj
        .common()
        .secret
        .access_token
        .as_ref()
        .filter(|a| a.enabled)
    else {
        return Ok(None);
    };
    if K::LAYOUT != SecretLayout::ClientCredentials {
        return Err(Error::InvalidSpec(
            "secret.accessToken applies to API tokens only (UserApiToken, TenantApiToken)".into(),
        ));
    }
    match delivery.refresh_before.as_deref() {
        None => Ok(Some(DEFAULT_REFRESH_BEFORE)),
        Some(v) => limits::parse_duration(v)
            .ok()
            .filter(|d| *d <= MAX_JWT_REFRESH_BEFORE)
            .map(Some)
            .ok_or_else(|| {
                Error::InvalidSpec(
                    "secret.accessToken.refreshBefore must be a duration of at most 24h".into(),
                )
            }),
    }
}

/// A JWT from the exchange lives at most a day; refreshing more than that ahead is meaningless.
const MAX_JWT_REFRESH_BEFORE: Duration = Duration::from_secs(24 * 3600);

/// Most workloads one token restarts.
const MAX_RESTART_TARGETS: usize = 16;

/// `24h` or `33%`.
fn parse_renew_before(value: &str) -> Result<RenewBefore, String> {
    match value.strip_suffix('%') {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=99).contains(p))
            .map(RenewBefore::Percent)
            .ok_or_else(|| format!("{value:?} is not a percentage from 1% to 99%")),
        None => limits::parse_duration(value).map(RenewBefore::Duration),
    }
}

fn lifetime(minutes: Option<u64>, duration: Option<&str>) -> Result<Option<Duration>, Error> {
    let lifetime = match (minutes, duration) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidSpec(
                "set at most one of expiresInMinutes and expiresIn".into(),
            ));
        }
        (Some(m), None) => Some(Duration::from_secs(m.saturating_mul(60))),
        (None, Some(d)) => Some(
            limits::parse_duration(d).map_err(|e| Error::InvalidSpec(format!("expiresIn: {e}")))?,
        ),
        (None, None) => None,
    };
    match lifetime {
        Some(l) if !(MIN_LIFETIME..=MAX_LIFETIME).contains(&l) => Err(Error::InvalidSpec(format!(
            "the token lifetime must be between 1m and {}h",
            MAX_LIFETIME.as_secs() / 3600
        ))),
        other => Ok(other),
    }
}

fn check_id(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(Error::InvalidSpec(format!(
            "{field} must have 1 to {MAX_ID_LEN} characters"
        )));
    }
    Ok(())
}

/// Labels, annotations and template keys the apiserver would refuse are found here, so a
/// token is never issued into a Secret that cannot be written.
fn check_secret_target<K: TokenResource>(obj: &K) -> Result<(), Error> {
    let target = &obj.common().secret;
    let invalid = |why: String| Err(Error::InvalidSpec(why));
    if target.labels.len() > MAX_ENTRIES || target.annotations.len() > MAX_ENTRIES {
        return invalid(format!(
            "spec.secret takes at most {MAX_ENTRIES} labels and {MAX_ENTRIES} annotations"
        ));
    }
    if let Some((k, _)) = target
        .labels
        .iter()
        .find(|(k, v)| !limits::is_qualified_name(k) || !limits::is_label_value(v))
    {
        return invalid(format!(
            "spec.secret.labels[{}]: not a valid label key and value",
            printable(k)
        ));
    }
    if let Some((k, _)) = target
        .annotations
        .iter()
        .find(|(k, v)| !limits::is_qualified_name(k) || v.len() > MAX_ANNOTATION_VALUE)
    {
        return invalid(format!(
            "spec.secret.annotations[{}]: not a valid annotation key, or a value over {} KiB",
            printable(k),
            MAX_ANNOTATION_VALUE / 1024
        ));
    }
    let Some(tmpl) = &target.template else {
        return Ok(());
    };
    if let Some(k) = tmpl.data.keys().find(|k| !limits::is_secret_key(k)) {
        return invalid(format!(
            "spec.secret.template.data[{}]: Secret keys may hold only letters, digits, '-', '_' and '.'",
            printable(k)
        ));
    }
    // Rendered once with a credential of realistic size, so syntax, unknown variables and
    // size limits fail here, before a token exists.
    let ctx = SecretContext {
        base_url: "https://api.frontegg.com",
        tenant_id: &obj.common().tenant_id,
        user_id: obj.user_id(),
    };
    template::render(&tmpl.data, K::LAYOUT, &probe_credential(), &ctx).map(|_| ())?;
    Ok(())
}

/// A user-supplied key, shortened and stripped of control characters for a message.
fn printable(key: &str) -> String {
    key.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn digest(value: &serde_json::Value) -> String {
    let hash = Sha256::digest(value.to_string().as_bytes());
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SecretTemplate, TokenCommonSpec};
    use crate::controller::runtime::fixtures::user_api_token as token;

    const GRACE: Duration = Duration::from_secs(600);

    fn refused(f: impl FnOnce(&mut TokenCommonSpec)) -> String {
        let err = desired_state(&token(f), GRACE).unwrap_err();
        assert_eq!(err.reason(), "InvalidSpec");
        err.to_string()
    }

    #[test]
    fn hostile_durations_are_refused_without_panicking() {
        assert!(
            refused(|c| c.renew_before = Some("18446744073709551615s1s".into()))
                .contains("renewBefore")
        );
        assert!(
            refused(|c| c.expires_in = Some("99999999999999999999h".into())).contains("expiresIn")
        );
        assert!(
            refused(|c| {
                c.expires_in = Some("1h".into());
                c.renew_before = Some("2h".into());
            })
            .contains("shorter than the token lifetime")
        );
        assert!(
            refused(|c| {
                c.expires_in_minutes = Some(60);
                c.renew_before = Some("60m".into());
            })
            .contains("shorter")
        );
        assert!(refused(|c| c.expires_in_minutes = Some(u64::MAX)).contains("lifetime"));
        let ok = desired_state(
            &token(|c| {
                c.expires_in = Some("1h".into());
                c.renew_before = Some("59m".into());
            }),
            GRACE,
        )
        .unwrap();
        assert_eq!(ok.expires_in_minutes, Some(60));
        assert_eq!(
            ok.renew_before,
            Some(RenewBefore::Duration(Duration::from_secs(59 * 60)))
        );
        assert_eq!(ok.grace_period, GRACE);
        let pct = desired_state(&token(|c| c.renew_before = Some("33%".into())), GRACE).unwrap();
        assert_eq!(pct.renew_before, Some(RenewBefore::Percent(33)));
        assert!(refused(|c| c.renew_before = Some("100%".into())).contains("percentage"));
        assert!(refused(|c| c.renew_before = Some("0%".into())).contains("percentage"));
        assert!(
            refused(|c| {
                c.rotation = Some(crate::api::RotationSpec {
                    grace_period: Some("169h".into()),
                    ..Default::default()
                })
            })
            .contains("gracePeriod")
        );
    }

    #[test]
    fn secret_shapes_the_apiserver_would_refuse_are_refused_first() {
        assert!(
            refused(|c| {
                c.secret.template = Some(SecretTemplate {
                    data: [("a/b".to_string(), "{{ secret }}".to_string())].into(),
                })
            })
            .contains("data[a/b]")
        );
        assert!(
            refused(|c| { c.secret.labels = [("bad key!".to_string(), "v".to_string())].into() })
                .contains("labels[bad key!]")
        );
        assert!(
            refused(|c| { c.secret.labels = [("ok".to_string(), "-bad".to_string())].into() })
                .contains("labels[ok]")
        );
        assert!(
            refused(|c| {
                c.secret.annotations =
                    [("x".to_string(), "v".repeat(MAX_ANNOTATION_VALUE + 1))].into()
            })
            .contains("annotations[x]")
        );
        assert!(refused(|c| c.tenant_id = "t".repeat(MAX_ID_LEN + 1)).contains("tenantId"));
        assert!(
            refused(|c| c.description = Some("d".repeat(MAX_DESCRIPTION_LEN + 1)))
                .contains("description")
        );
    }
}
