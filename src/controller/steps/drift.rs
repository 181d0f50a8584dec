//! Drift (pure): the attributes in which a listed remote token differs from what the spec
//! wants. Which attributes a kind wants compared is the kind's to say (`kinds::WantedRemote`).

use serde_json::Map;

use crate::controller::kinds::WantedRemote;
use crate::identity::RemoteToken;

/// The names of the attributes in which `remote` differs from what is wanted.
pub fn compare(want: &WantedRemote, remote: &RemoteToken) -> Vec<String> {
    let mut drift = Vec::new();
    if let Some(d) = &want.description
        && remote.description.as_deref().unwrap_or_default() != d
    {
        drift.push("description".to_string());
    }
    if let Some(m) = &want.metadata
        && remote.metadata.as_ref().unwrap_or(&Map::new()) != m
    {
        drift.push("metadata".to_string());
    }
    let same_set = |a: &[String], b: &[String]| {
        let mut a: Vec<&String> = a.iter().collect();
        let mut b: Vec<&String> = b.iter().collect();
        a.sort();
        a.dedup();
        b.sort();
        b.dedup();
        a == b
    };
    if let Some(r) = &want.role_ids
        && !same_set(r, &remote.role_ids)
    {
        drift.push("roleIds".to_string());
    }
    if let Some(p) = &want.permission_ids
        && !same_set(p, &remote.permission_ids)
    {
        drift.push("permissionIds".to_string());
    }
    drift
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_compares_only_what_is_wanted_and_ignores_order_and_empty_defaults() {
        let remote = RemoteToken {
            id: "t".into(),
            description: Some("ci [k8s:u/a]".into()),
            expires_at: None,
            role_ids: vec!["b".into(), "a".into()],
            permission_ids: vec![],
            metadata: None,
        };
        let want = WantedRemote {
            description: Some("ci [k8s:u/a]".into()),
            metadata: Some(Map::new()),
            role_ids: Some(vec!["a".into(), "b".into()]),
            permission_ids: Some(vec![]),
        };
        assert!(compare(&want, &remote).is_empty());
        assert!(compare(&WantedRemote::default(), &remote).is_empty());
        let changed = RemoteToken {
            description: Some("edited in the portal".into()),
            role_ids: vec!["admin".into()],
            metadata: Some(serde_json::from_str(r#"{"team":"x"}"#).unwrap()),
            permission_ids: vec!["p".into()],
            ..remote
        };
        assert_eq!(
            compare(&want, &changed),
            ["description", "metadata", "roleIds", "permissionIds"]
        );
    }
}
