//! The four token kinds as the CLI reads them: dynamic objects, so that one code path serves
//! every kind, and a `KIND/NAME` argument in any of the spellings kubectl accepts.

use frontegg_token_operator::api::{
    TenantAccessToken, TenantApiToken, UserAccessToken, UserApiToken,
};
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

pub struct Kind {
    pub name: &'static str,
    pub short: &'static str,
    pub resource: ApiResource,
}

fn kind<K: Resource<DynamicType = ()>>(name: &'static str, short: &'static str) -> Kind {
    Kind {
        name,
        short,
        resource: ApiResource::erase::<K>(&()),
    }
}

pub fn all() -> Vec<Kind> {
    vec![
        kind::<UserApiToken>("UserApiToken", "fuapi"),
        kind::<UserAccessToken>("UserAccessToken", "fuat"),
        kind::<TenantApiToken>("TenantApiToken", "ftapi"),
        kind::<TenantAccessToken>("TenantAccessToken", "ftat"),
    ]
}

/// The kind a user named: `UserApiToken`, `userapitoken`, `userapitokens`, `fuapi`, or the
/// plural with its group.
pub fn find(name: &str) -> Option<Kind> {
    let name = name.to_ascii_lowercase();
    let name = name.split('.').next().unwrap_or_default();
    all().into_iter().find(|k| {
        let lower = k.name.to_ascii_lowercase();
        name == lower || name == k.resource.plural || name == k.short
    })
}

/// `KIND/NAME`.
pub fn parse_ref(text: &str) -> Result<(Kind, String), String> {
    let (kind, name) = text
        .split_once('/')
        .ok_or_else(|| format!("{text}: expected KIND/NAME, e.g. userapitoken/ci-bot"))?;
    let found = find(kind).ok_or_else(|| {
        format!("{kind}: not a token kind (UserApiToken, UserAccessToken, TenantApiToken, TenantAccessToken)")
    })?;
    if name.is_empty() {
        return Err(format!("{text}: the name is missing"));
    }
    Ok((found, name.to_string()))
}

pub fn api(client: &kube::Client, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource),
        None => Api::all_with(client.clone(), &kind.resource),
    }
}

/// Every resource of `kind` in the namespace (or all of them), matching the selector.
pub async fn list(
    client: &kube::Client,
    kind: &Kind,
    namespace: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let mut params = ListParams::default();
    if let Some(selector) = selector {
        params = params.labels(selector);
    }
    Ok(api(client, kind, namespace).list(&params).await?.items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_found_by_every_spelling_kubectl_accepts() {
        for spelling in [
            "UserApiToken",
            "userapitoken",
            "userapitokens",
            "fuapi",
            "userapitokens.tokens.frontegg-operator.io",
        ] {
            assert_eq!(
                find(spelling).map(|k| k.name),
                Some("UserApiToken"),
                "{spelling}"
            );
        }
        assert_eq!(find("ftat").map(|k| k.name), Some("TenantAccessToken"));
        assert!(find("secret").is_none());
        assert_eq!(
            parse_ref("fuat/x").map(|(k, n)| (k.name, n)),
            Ok(("UserAccessToken", "x".into()))
        );
        assert!(parse_ref("fuat").is_err());
        assert!(parse_ref("fuat/").is_err());
        assert!(parse_ref("pods/x").is_err());
    }
}
