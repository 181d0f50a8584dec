//! Leaked tokens, the environment's side (`runtime/leaks.rs` says what they are): reported in
//! its status (`leakedTokens`), in the `leaked_remote_tokens` metric and by a Warning Event
//! when the set changes; with `--collect-leaked-tokens`, revoked once seen for a full resync
//! period and still without a resource (or an orphaned Secret) by fresh reads.

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::protection::{live_uids, orphaned_uids};
use crate::api::LeakedToken;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::events::Note;
use crate::controller::runtime::leaks::Leak;
use crate::identity::{
    IdentityClient, IdentityError, Priority, TenantAccessTokens, TenantApiTokens, TokenEndpoint,
    TokenOwner, UserAccessTokens, UserApiTokens,
};
use crate::metrics::LeakLabels;

/// How many the status lists; the metric counts them all.
const MAX_LISTED: usize = 20;

const KINDS: [&str; 4] = [
    "UserApiToken",
    "UserAccessToken",
    "TenantApiToken",
    "TenantAccessToken",
];

/// The status list of the environment with this key, and its metric series.
pub fn report(ctx: &Context, key: &str) -> Vec<LeakedToken> {
    let leaks = ctx.leaks.of_environment(key);
    for kind in KINDS {
        let count = leaks.iter().filter(|l| l.kind == kind).count();
        let labels = LeakLabels {
            environment: key.to_string(),
            kind: kind.to_string(),
        };
        ctx.metrics
            .leaked_remote_tokens
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    leaks
        .iter()
        .take(MAX_LISTED)
        .map(|l| LeakedToken {
            kind: l.kind.to_string(),
            id: l.id.clone(),
            resource_uid: l.resource_uid.clone(),
            first_seen: l.first_seen,
        })
        .collect()
}

/// The Warning for a list that gained a token since the status last showed it.
pub fn warning(before: &[LeakedToken], now: &[LeakedToken], collect: bool) -> Option<Note> {
    let new: Vec<&LeakedToken> = now
        .iter()
        .filter(|l| !before.iter().any(|b| b.id == l.id))
        .collect();
    if new.is_empty() {
        return None;
    }
    let named: Vec<String> = new
        .iter()
        .take(3)
        .map(|l| format!("{} {} (resource {})", l.kind, l.id, l.resource_uid))
        .collect();
    let then = if collect {
        "it is revoked after a full resync period"
    } else {
        "revoke it in Frontegg, or run the operator with --collect-leaked-tokens"
    };
    Some((
        EventType::Warning,
        "LeakedTokens",
        format!(
            "{} remote token(s) created by this operator have no token resource any longer (a finalizer removed by hand): {}; {then}",
            new.len(),
            named.join(", ")
        ),
    ))
}

/// Revokes the leaks seen for a full resync period whose resource fresh reads still do not
/// find, and forgets them.
pub async fn collect(
    ctx: &Context,
    key: &str,
    client: &IdentityClient,
) -> Result<Vec<Note>, Error> {
    if !ctx.config.collect_leaked_tokens {
        return Ok(Vec::new());
    }
    let now = Timestamp::now();
    let due: Vec<Leak> = ctx
        .leaks
        .of_environment(key)
        .into_iter()
        .filter(|l| {
            std::time::Duration::try_from(now.duration_since(l.first_seen))
                .is_ok_and(|age| age >= ctx.config.resync)
        })
        .collect();
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let live = live_uids(ctx).await?;
    let uids: Vec<String> = due.iter().map(|l| l.resource_uid.clone()).collect();
    let orphaned = orphaned_uids(ctx, &uids).await?;
    let mut notes = Vec::new();
    for leak in due
        .iter()
        .filter(|l| !live.contains(&l.resource_uid) && !orphaned.contains(&l.resource_uid))
    {
        match delete(client, leak.endpoint, &leak.owner, &leak.id).await {
            Ok(()) | Err(IdentityError::NotFound) => {
                ctx.leaks.forget(key, &leak.id);
                notes.push((
                    EventType::Normal,
                    "LeakedTokenRevoked",
                    format!(
                        "revoked leaked {} token {}: its resource {} no longer exists",
                        leak.kind, leak.id, leak.resource_uid
                    ),
                ));
            }
            Err(e) => {
                tracing::warn!(token = %leak.id, error = %e, "could not revoke a leaked token; retried at the next check")
            }
        }
    }
    Ok(notes)
}

/// Nobody waits for a leaked token's revocation: it takes what foreground work leaves.
const BACKGROUND: Priority = Priority::Background;

async fn delete(
    client: &IdentityClient,
    endpoint: &str,
    owner: &TokenOwner,
    id: &str,
) -> Result<(), IdentityError> {
    match endpoint {
        UserApiTokens::NAME => {
            client
                .delete_as::<UserApiTokens>(owner, id, BACKGROUND)
                .await
        }
        UserAccessTokens::NAME => {
            client
                .delete_as::<UserAccessTokens>(owner, id, BACKGROUND)
                .await
        }
        TenantApiTokens::NAME => {
            client
                .delete_as::<TenantApiTokens>(owner, id, BACKGROUND)
                .await
        }
        TenantAccessTokens::NAME => {
            client
                .delete_as::<TenantAccessTokens>(owner, id, BACKGROUND)
                .await
        }
        other => Err(IdentityError::Transient(format!(
            "unknown endpoint family {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(id: &str) -> LeakedToken {
        LeakedToken {
            kind: "UserApiToken".into(),
            id: id.into(),
            resource_uid: "gone".into(),
            first_seen: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_warning_names_only_what_the_status_did_not_show() {
        assert!(warning(&[], &[], false).is_none());
        assert!(warning(&[leaked("a")], &[leaked("a")], false).is_none());
        assert!(
            warning(&[leaked("a")], &[], false).is_none(),
            "gone: no Warning"
        );
        let (kind, reason, note) =
            warning(&[leaked("a")], &[leaked("a"), leaked("b")], false).unwrap();
        assert_eq!((kind, reason), (EventType::Warning, "LeakedTokens"));
        assert!(
            note.starts_with("1 remote token(s)")
                && note.contains("UserApiToken b (resource gone)")
        );
        assert!(note.contains("--collect-leaked-tokens"));
        let (_, _, note) = warning(&[], &[leaked("c")], true).unwrap();
        assert!(note.contains("revoked after a full resync period"));
    }
}
