//! The mark on every remote token the operator creates: ` [k8s:<uid>/<attempt>]` at the end of
//! its description, naming the resource's UID and the issuance attempt. Frontegg users see it
//! in the portal's description column; JWTs do not carry descriptions, so workloads never see
//! it. With it the operator recognises its own tokens after a crash, and only its own: an id
//! read from a Secret, which any namespace user may edit, proves nothing.

const PREFIX: &str = " [k8s:";

/// The attempt part of the mark on tokens the operator took over rather than created (an
/// import patched to its spec).
pub const UNMARKED_ATTEMPT: &str = "0";

/// The description to send: the user's own, then the mark.
pub fn describe(user: Option<&str>, uid: &str, attempt: &str) -> String {
    format!("{}{PREFIX}{uid}/{attempt}]", user.unwrap_or_default())
}

/// The (uid, attempt) a description is marked with.
pub fn parse(description: &str) -> Option<(&str, &str)> {
    let at = description.rfind(PREFIX)?;
    let mark = description
        .get(at.checked_add(PREFIX.len())?..)?
        .strip_suffix(']')?;
    let (uid, attempt) = mark.split_once('/')?;
    (!uid.is_empty() && !attempt.is_empty()).then_some((uid, attempt))
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
        let d = describe(Some("CI bot"), "0d8c-uid", "1a2b3c4d");
        assert_eq!(d, "CI bot [k8s:0d8c-uid/1a2b3c4d]");
        assert_eq!(parse(&d), Some(("0d8c-uid", "1a2b3c4d")));
        let bare = describe(None, "u", "a");
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
        let forged = describe(Some("[k8s:victim/00000000]"), "mine", "a");
        assert_eq!(parse(&forged), Some(("mine", "a")));
        assert_eq!(user_part(&forged), "[k8s:victim/00000000]");
        assert_eq!(user_part(&d), "CI bot");
        assert_eq!(user_part("x [k8s:u/]"), "x [k8s:u/]");
    }
}
