//! Bounds on everything a token author controls. The CRD schema enforces them at admission
//! (`maxLength`, `maxProperties` and CEL rules built from these constants), and the controller
//! checks them again, because a CRD installed without its validation, or an older one, must
//! not be able to crash or loop the operator.

use std::time::Duration;

/// Longest token lifetime and `renewBefore`: Frontegg's own maximum (5,256,000 minutes).
pub const MAX_LIFETIME: Duration = Duration::from_secs(5_256_000 * 60);
/// Longest grace period in which a replaced token keeps working.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(168 * 3600);
/// Shortest token lifetime.
pub const MIN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest duration string (`8760h30m15s` is 11 characters).
pub const MAX_DURATION_LEN: usize = 32;
/// Longest tenant, user, role and permission id.
pub const MAX_ID_LEN: usize = 256;
/// Longest description.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Most role or permission ids on one token.
pub const MAX_IDS: usize = 100;
/// Most template keys, labels or annotations on one Secret.
pub const MAX_ENTRIES: usize = 32;
/// Largest template source per key; with `MAX_ENTRIES` this caps the total template size.
pub const MAX_TEMPLATE_SOURCE: usize = 4 * 1024;
/// Largest rendered template value per key.
pub const MAX_RENDERED_VALUE: usize = 64 * 1024;
/// Largest Secret data in total (the apiserver's own limit is 1 MiB).
pub const MAX_SECRET_DATA: usize = 256 * 1024;
/// Largest annotation value (the apiserver limits all annotations together to 256 KiB).
pub const MAX_ANNOTATION_VALUE: usize = 4 * 1024;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_JSON: usize = 8 * 1024;

/// Parses the CRD's duration format: one or more `<digits><h|m|s>`, e.g. `720h` or `1h30m`,
/// up to `MAX_LIFETIME`. Overflow is an error, never a panic (humantime checks it).
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let invalid = || format!("{value:?} is not a duration like 720h or 90m");
    if value.is_empty() || value.len() > MAX_DURATION_LEN {
        return Err(invalid());
    }
    // humantime also takes units such as `days` and `ms`, and spaces; the CRD allows only
    // this shape, so the two parsers agree on what is valid.
    let mut digits = 0usize;
    for c in value.chars() {
        match c {
            '0'..='9' => digits = digits.saturating_add(1),
            'h' | 'm' | 's' if digits > 0 => digits = 0,
            _ => return Err(invalid()),
        }
    }
    if digits > 0 {
        return Err(invalid());
    }
    let parsed = humantime::parse_duration(value).map_err(|_| {
        format!(
            "{value:?} is longer than the maximum of {}h",
            MAX_LIFETIME.as_secs() / 3600
        )
    })?;
    if parsed > MAX_LIFETIME {
        return Err(format!(
            "{value:?} is longer than the maximum of {}h",
            MAX_LIFETIME.as_secs() / 3600
        ));
    }
    Ok(parsed)
}

/// Whether `key` is a valid Secret data key (`[-._a-zA-Z0-9]+`, at most 253, not `.`/`..`).
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key != "."
        && key != ".."
        && !key.starts_with("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `key` is a valid label or annotation key: an optional DNS-subdomain prefix and a
/// `/`, then a name of at most 63 characters.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Whether `value` is a valid label value: empty, or at most 63 alphanumerics, `-`, `_` and
/// `.`, starting and ending with an alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Bounds shared by the kinds' role, permission and metadata fields.
pub fn check_ids(field: &str, ids: Option<&Vec<String>>) -> Result<(), String> {
    let ids = ids.map_or(&[][..], Vec::as_slice);
    if ids.len() > MAX_IDS {
        return Err(format!("{field} has more than {MAX_IDS} entries"));
    }
    if ids.iter().any(|id| id.is_empty() || id.len() > MAX_ID_LEN) {
        return Err(format!(
            "every entry of {field} must have 1 to {MAX_ID_LEN} characters"
        ));
    }
    Ok(())
}

pub fn check_metadata(
    metadata: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), String> {
    let size = metadata
        .map(|m| serde_json::to_vec(m).map_or(usize::MAX, |v| v.len()))
        .unwrap_or(0);
    if size > MAX_METADATA_JSON {
        return Err(format!(
            "metadata is larger than {} KiB",
            MAX_METADATA_JSON / 1024
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_overflow_is_an_error() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        for bad in [
            "",
            "h",
            "10",
            "1d",
            "1 h",
            "1.5h",
            "-1h",
            "10ms",
            "18446744073709551615s1s",
            "99999999999999999999h",
            "87601h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_duration("87600h"), Ok(MAX_LIFETIME));
    }

    #[test]
    fn kubernetes_key_syntax() {
        for ok in ["secret", ".env", "creds.json", "a-b_c.d", "CLIENT_ID"] {
            assert!(is_secret_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "..x", "a/b", "a b", "ключ", &"k".repeat(254)] {
            assert!(!is_secret_key(bad), "{bad}");
        }
        for ok in ["app", "app.kubernetes.io/name", "example.com/a_b.c-d", "A9"] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "x/",
            "Ex.com/x",
            "-x",
            "x-",
            "a/b/c",
            &"n".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
        assert!(is_label_value(""));
        assert!(is_label_value("v1.2_3-x"));
        assert!(!is_label_value("-v"));
        assert!(!is_label_value("a b"));
    }

    #[test]
    fn fuzz_the_duration_parser() {
        use proptest::prelude::*;
        let inputs = prop_oneof![
            any::<String>(),
            "([0-9]{1,30}[hmsd ]?){1,5}",
            "[0-9hms.+-]{0,40}",
        ];
        let cases = crate::fuzz::fuzz_for("duration-parser", inputs, crate::fuzz::BUDGET, |s| {
            if let Ok(d) = parse_duration(&s) {
                prop_assert!(d <= MAX_LIFETIME, "{s:?} parsed to {d:?}");
            }
            Ok(())
        });
        assert!(cases > 0);
    }
}
