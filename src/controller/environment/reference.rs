//! Pure rules about environment references and base URLs: which environment a token means,
//! the key it is known by, and whether a base URL is one the operator may call.

use wildmatch::WildMatch;

use crate::api::{EnvironmentKind, EnvironmentRef};

pub fn effective_ref<'a>(
    explicit: Option<&'a EnvironmentRef>,
    default: &'a EnvironmentRef,
) -> &'a EnvironmentRef {
    explicit.unwrap_or(default)
}

pub fn environment_key(r: &EnvironmentRef, namespace: &str) -> String {
    match r.kind {
        EnvironmentKind::ClusterFronteggEnvironment => {
            format!("ClusterFronteggEnvironment/{}", r.name)
        }
        EnvironmentKind::FronteggEnvironment => {
            format!("FronteggEnvironment/{namespace}/{}", r.name)
        }
    }
}

/// Whether `base_url` (already normalised to `scheme://host[:port]`) matches an allowed glob.
pub fn base_url_allowed(base_url: &str, allowed: &[String]) -> bool {
    allowed
        .iter()
        .any(|pattern| WildMatch::new(pattern).matches(base_url))
}

/// `scheme://host[:port]` of a base URL, or None for anything with a path, a query, a
/// fragment or credentials (none of which a Frontegg base URL has).
pub fn normalise_base_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let plain = matches!(parsed.scheme(), "http" | "https")
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none()
        && parsed.path() == "/";
    let host = parsed.host_str()?;
    plain.then(|| match parsed.port() {
        Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

/// Parses `Kind/name` for the --default-environment flag.
pub fn parse_environment_ref(value: &str) -> Result<EnvironmentRef, String> {
    let (kind, name) = value
        .split_once('/')
        .ok_or_else(|| format!("{value:?}: expected Kind/name"))?;
    let kind = match kind {
        "ClusterFronteggEnvironment" => EnvironmentKind::ClusterFronteggEnvironment,
        "FronteggEnvironment" => EnvironmentKind::FronteggEnvironment,
        other => {
            return Err(format!(
                "{other:?} is not FronteggEnvironment or ClusterFronteggEnvironment"
            ));
        }
    };
    Ok(EnvironmentRef {
        kind,
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Vec<String> {
        [
            "https://api.frontegg.com",
            "https://api.us.frontegg.com",
            "https://*.frontegg.com",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn base_urls_are_normalised_then_matched() {
        let allowed = defaults();
        let ok = |u: &str| normalise_base_url(u).is_some_and(|n| base_url_allowed(&n, &allowed));
        assert!(ok("https://api.frontegg.com"));
        assert!(ok("https://api.frontegg.com/"));
        assert!(ok("https://acme.frontegg.com"));
        for refused in [
            "http://api.frontegg.com",
            "https://evil.com",
            "https://frontegg.com.evil.com",
            "https://acme.frontegg.com.evil.com",
            "https://user:pw@acme.frontegg.com",
            "https://acme.frontegg.com/path",
            "https://acme.frontegg.com?x=1",
            "https://acme.frontegg.com:8443",
            "ftp://api.frontegg.com",
            "not a url",
        ] {
            assert!(!ok(refused), "{refused}");
        }
        let local = vec!["http://127.0.0.1:*".to_string()];
        assert!(
            normalise_base_url("http://127.0.0.1:8787")
                .is_some_and(|n| base_url_allowed(&n, &local))
        );
        assert!(
            !normalise_base_url("http://127.0.0.2:8787")
                .is_some_and(|n| base_url_allowed(&n, &local))
        );
    }
}
