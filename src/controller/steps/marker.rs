//! The mark on every remote token the operator creates: ` [k8s:<installation>/<uid>/<attempt>]`
//! at the end of its description, naming the operator installation (`installation_id`), the
//! resource's UID and the issuance attempt. Frontegg users see it in the portal's description
//! column; JWTs do not carry descriptions, so workloads never see it. With it the operator
//! recognises its own tokens after a crash, and only its own: an id read from a Secret, which
//! any namespace user may edit, proves nothing. With the installation, it tells a token whose
//! resource is gone (leaked) from one of another cluster sharing the Frontegg account.
//! Earlier versions wrote ` [k8s:<uid>/<attempt>]`; such marks are still read, and never
//! taken for leaked.

use sha2::Digest;

const PREFIX: &str = " [k8s:";

/// The attempt part of the mark on tokens the operator took over rather than created (an
/// import patched to its spec).
pub const UNMARKED_ATTEMPT: &str = "0";

/// The description to send: the user's own, then the mark.
pub fn describe(
    user: Option<&str>,
    installation: Option<&str>,
    uid: &str,
    attempt: &str,
) -> String {
    let user = user.unwrap_or_default();
    match installation {
        Some(installation) => format!("{user}{PREFIX}{installation}/{uid}/{attempt}]"),
        None => format!("{user}{PREFIX}{uid}/{attempt}]"),
    }
}

/// What a mark names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark<'a> {
    /// Absent in marks written by earlier versions.
    pub installation: Option<&'a str>,
    pub uid: &'a str,
    pub attempt: &'a str,
}

/// The mark of a description, if it carries one.
pub fn mark(description: &str) -> Option<Mark<'_>> {
    let at = description.rfind(PREFIX)?;
    let body = description
        .get(at.checked_add(PREFIX.len())?..)?
        .strip_suffix(']')?;
    let parts: Vec<&str> = body.split('/').collect();
    let (installation, uid, attempt) = match parts.as_slice() {
        [uid, attempt] => (None, *uid, *attempt),
        [installation, uid, attempt] if !installation.is_empty() => {
            (Some(*installation), *uid, *attempt)
        }
        _ => return None,
    };
    (!uid.is_empty() && !attempt.is_empty()).then_some(Mark {
        installation,
        uid,
        attempt,
    })
}

/// The (uid, attempt) a description is marked with.
pub fn parse(description: &str) -> Option<(&str, &str)> {
    mark(description).map(|m| (m.uid, m.attempt))
}

/// This installation's id: the `kube-system` namespace's UID, which no two clusters share;
/// an instance that watches only some namespaces adds a digest of them, since it cannot see
/// the resources of another instance in the same cluster.
pub fn installation_id(cluster_uid: &str, watched: &[String]) -> String {
    if watched.is_empty() {
        return cluster_uid.to_string();
    }
    let mut sorted: Vec<&str> = watched.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = sha2::Sha256::digest(sorted.join(",").as_bytes());
    let short: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{cluster_uid}.{short}")
}

/// The description without its mark: what the user wrote.
pub fn user_part(description: &str) -> &str {
    match parse(description) {
        Some(_) => description
            .rfind(PREFIX)
            .and_then(|at| description.get(..at))
            .unwrap_or(description),
        None => description,
    }
}

/// A new random attempt id (8 hex digits).
pub fn new_attempt() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_keep_the_users_description() {
        let d = describe(Some("CI bot"), None, "0d8c-uid", "1a2b3c4d");
        assert_eq!(d, "CI bot [k8s:0d8c-uid/1a2b3c4d]");
        assert_eq!(parse(&d), Some(("0d8c-uid", "1a2b3c4d")));
        assert_eq!(mark(&d).unwrap().installation, None);
        let bare = describe(None, None, "u", "a");
        assert_eq!(parse(&bare), Some(("u", "a")));
        for unmarked in [
            "",
            "CI bot",
            "x [k8s:]",
            "x [k8s:u/]",
            "x [k8s:u/a",
            "[k8s:/a]",
        ] {
            assert_eq!(parse(unmarked), None, "{unmarked}");
        }
        // Only the last mark counts: a user cannot forge one by writing it into the spec.
        let forged = describe(Some("[k8s:victim/00000000]"), None, "mine", "a");
        assert_eq!(parse(&forged), Some(("mine", "a")));
        assert_eq!(user_part(&forged), "[k8s:victim/00000000]");
        assert_eq!(user_part(&d), "CI bot");
        assert_eq!(user_part("x [k8s:u/]"), "x [k8s:u/]");
    }

    #[test]
    fn a_mark_names_the_installation_and_older_marks_still_read() {
        let d = describe(Some("CI bot"), Some("c1"), "0d8c-uid", "1a2b3c4d");
        assert_eq!(d, "CI bot [k8s:c1/0d8c-uid/1a2b3c4d]");
        assert_eq!(
            mark(&d),
            Some(Mark {
                installation: Some("c1"),
                uid: "0d8c-uid",
                attempt: "1a2b3c4d"
            })
        );
        assert_eq!(parse(&d), Some(("0d8c-uid", "1a2b3c4d")));
        assert_eq!(user_part(&d), "CI bot");
        for odd in ["x [k8s:/u/a]", "x [k8s:c/u/a/b]", "x [k8s:c//a]"] {
            assert_eq!(mark(odd), None, "{odd}");
        }
    }

    #[test]
    fn an_installation_is_the_cluster_narrowed_by_what_it_watches() {
        assert_eq!(installation_id("k-uid", &[]), "k-uid");
        let a = installation_id("k-uid", &["b".into(), "a".into()]);
        assert_eq!(
            a,
            installation_id("k-uid", &["a".into(), "b".into(), "a".into()])
        );
        assert!(a.starts_with("k-uid.") && a.len() == "k-uid.".len() + 8);
        assert_ne!(a, installation_id("k-uid", &["a".into()]));
    }
}
