//! Finding leaked tokens in a group listing: tokens marked by this installation whose
//! resource UID no token resource has. Marks of earlier versions (no installation) and of
//! other installations (another cluster sharing the Frontegg account, or an instance watching
//! other namespaces) are never taken for leaked, nor a token left by `deletionPolicy: Orphan`
//! while its Secret exists.

use std::collections::HashSet;
use std::sync::Arc;

use futures::future::BoxFuture;

use jiff::Timestamp;

use super::marker;
use crate::controller::environment::protection::orphaned_uids;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::leaks::Leak;
use crate::controller::runtime::listings::GroupKey;
use crate::identity::{RemoteToken, TokenOwner};

/// (token id, resource UID) of the tokens `installation` marked for a UID not in `known`.
pub fn unowned<'a>(
    tokens: &'a [RemoteToken],
    installation: &str,
    known: &HashSet<String>,
) -> Vec<(&'a str, &'a str)> {
    tokens
        .iter()
        .filter_map(|t| {
            let mark = marker::mark(t.description.as_deref()?)?;
            (mark.installation == Some(installation)
                && plausible_uid(mark.uid)
                && !known.contains(mark.uid))
            .then_some((t.id.as_str(), mark.uid))
        })
        .take(MAX_CANDIDATES)
        .collect()
}

/// The remote writes the descriptions: only a UID shaped as Kubernetes writes them may go
/// into the label selector that looks for orphaned Secrets.
fn plausible_uid(uid: &str) -> bool {
    uid.len() <= 63 && uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Leaks taken from one listing: a remote that lists thousands of forged marks neither
/// builds an unbounded selector nor holds unbounded memory.
const MAX_CANDIDATES: usize = 100;

/// The background listers' hook (`runtime::background`): every drift listing is also
/// searched for leaks.
pub fn on_listed(
    ctx: Arc<Context>,
    key: GroupKey,
    tokens: Arc<Vec<RemoteToken>>,
) -> BoxFuture<'static, ()> {
    Box::pin(async move { observe(&ctx, key, &tokens).await })
}

/// Records what a fresh listing of group `key` shows as leaked. A failure to read the
/// orphaned Secrets leaves the group as it was: nothing is reported on a guess.
pub async fn observe(ctx: &Context, key: GroupKey, tokens: &[RemoteToken]) {
    let Some(installation) = ctx.config.installation_id.as_deref() else {
        return;
    };
    let candidates = unowned(tokens, installation, &ctx.caches.known_uids());
    let uids: Vec<String> = candidates.iter().map(|(_, uid)| uid.to_string()).collect();
    let orphaned = match orphaned_uids(ctx, &uids).await {
        Ok(orphaned) => orphaned,
        Err(e) => {
            tracing::debug!(error = %e, "could not read orphaned Secrets; leaks unchanged");
            return;
        }
    };
    tracing::debug!(
        group = ?key,
        listed = tokens.len(),
        candidates = candidates.len(),
        orphaned = orphaned.len(),
        "leak check"
    );
    let now = Timestamp::now();
    let owner = TokenOwner {
        tenant_id: key.tenant.clone(),
        user_id: key.user.clone(),
    };
    let leaks = candidates
        .into_iter()
        .filter(|(_, uid)| !orphaned.contains(*uid))
        .map(|(id, uid)| Leak {
            endpoint: key.endpoint,
            kind: key.kind,
            id: id.to_string(),
            resource_uid: uid.to_string(),
            owner: owner.clone(),
            first_seen: now,
        })
        .collect();
    ctx.leaks.observe(key, leaks);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: &str, description: &str) -> RemoteToken {
        RemoteToken {
            id: id.into(),
            description: Some(description.into()),
            expires_at: None,
            role_ids: vec![],
            permission_ids: vec![],
            metadata: None,
        }
    }

    #[test]
    fn only_this_installations_marks_of_unknown_resources_are_leaked() {
        let tokens = [
            token("live", "a [k8s:me/uid-live/1]"),
            token("leaked", "b [k8s:me/uid-gone/1]"),
            token("other-cluster", "c [k8s:them/uid-gone/1]"),
            token("old-mark", "d [k8s:uid-gone/1]"),
            token("unmarked", "by hand"),
            token("forged", "[k8s:me/uid-gone/1] and more"),
            token("injected", "e [k8s:me/x),other in (y/1]"),
        ];
        let known: HashSet<String> = ["uid-live".to_string()].into();
        assert_eq!(unowned(&tokens, "me", &known), vec![("leaked", "uid-gone")]);
        assert!(unowned(&tokens, "nobody", &known).is_empty());
        let many: Vec<RemoteToken> = (0..500)
            .map(|i| token(&format!("t{i}"), &format!("x [k8s:me/gone-{i}/1]")))
            .collect();
        assert_eq!(unowned(&many, "me", &known).len(), MAX_CANDIDATES);
    }
}
