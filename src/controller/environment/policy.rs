//! Guard rails a platform team sets on a `ClusterFronteggEnvironment`, checked (no client
//! required) before any remote call that creates or changes a token. Revoking is never
//! checked: a token the policy no longer admits must still go away with its resource.

use std::time::Duration;

use wildmatch::WildMatch;

use crate::api::TokenPolicy;
use crate::controller::runtime::error::Error;

/// What a token asks for, in the terms a policy speaks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    pub user: Option<&'a str>,
    pub role_ids: &'a [String],
    pub permission_ids: &'a [String],
    /// None: the token never expires.
    pub lifetime: Option<Duration>,
}

/// Checks `request` against `policy`; the error names the rule that refused it.
pub fn check(environment: &str, policy: &TokenPolicy, request: &Request<'_>) -> Result<(), Error> {
    let refuse = |rule: &str, what: String| {
        Err(Error::PolicyViolation {
            environment: environment.to_string(),
            rule: rule.to_string(),
            what,
        })
    };
    if let (Some(allowed), Some(user)) = (&policy.allowed_users, request.user)
        && !allowed.iter().any(|p| WildMatch::new(p).matches(user))
    {
        return refuse("allowedUsers", format!("user {user}"));
    }
    for (rule, allowed, asked) in [
        ("allowedRoleIds", &policy.allowed_role_ids, request.role_ids),
        (
            "allowedPermissionIds",
            &policy.allowed_permission_ids,
            request.permission_ids,
        ),
    ] {
        if let Some(allowed) = allowed
            && let Some(id) = asked.iter().find(|id| !allowed.contains(id))
        {
            return refuse(rule, format!("id {id}"));
        }
    }
    if let Some(max) = &policy.max_lifetime {
        let max = crate::api::limits::parse_duration(max).map_err(|e| {
            Error::InvalidSpec(format!(
                "ClusterFronteggEnvironment {environment} policy.maxLifetime: {e}"
            ))
        })?;
        match request.lifetime {
            None => return refuse("maxLifetime", "a token that never expires".into()),
            Some(l) if l > max => {
                return refuse("maxLifetime", format!("a lifetime of {}s", l.as_secs()));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            allowed_users: Some(vec!["svc-*".into(), "ci-bot".into()]),
            allowed_role_ids: Some(vec!["reader".into()]),
            allowed_permission_ids: None,
            max_lifetime: Some("720h".into()),
        }
    }

    fn reason(r: Result<(), Error>) -> String {
        r.map_or_else(|e| e.to_string(), |()| "allowed".into())
    }

    #[test]
    fn every_rule_refuses_by_name_and_absent_rules_allow() {
        let roles = vec!["reader".to_string()];
        let ok = Request {
            user: Some("svc-billing"),
            role_ids: &roles,
            permission_ids: &[],
            lifetime: Some(Duration::from_secs(3600)),
        };
        assert_eq!(reason(check("e", &policy(), &ok)), "allowed");
        let other_user = Request {
            user: Some("alice"),
            ..ok.clone()
        };
        assert!(reason(check("e", &policy(), &other_user)).contains("allowedUsers"));
        let admin = vec!["admin".to_string()];
        let wider = Request {
            role_ids: &admin,
            ..ok.clone()
        };
        assert!(reason(check("e", &policy(), &wider)).contains("allowedRoleIds"));
        let forever = Request {
            lifetime: None,
            ..ok.clone()
        };
        assert!(reason(check("e", &policy(), &forever)).contains("never expires"));
        let long = Request {
            lifetime: Some(Duration::from_secs(721 * 3600)),
            ..ok.clone()
        };
        assert!(reason(check("e", &policy(), &long)).contains("maxLifetime"));
        // Tenant kinds have no user; an empty policy allows everything.
        let tenant = Request {
            user: None,
            ..ok.clone()
        };
        assert_eq!(reason(check("e", &policy(), &tenant)), "allowed");
        assert_eq!(
            reason(check("e", &TokenPolicy::default(), &forever)),
            "allowed"
        );
        let perms = vec!["p".to_string()];
        let closed = TokenPolicy {
            allowed_permission_ids: Some(vec![]),
            ..TokenPolicy::default()
        };
        let asks = Request {
            permission_ids: &perms,
            ..ok
        };
        assert!(reason(check("e", &closed, &asks)).contains("allowedPermissionIds"));
    }
}
