//! The issuance journal and the finalizer, written together. Before a remote create, one merge
//! patch of the token's metadata adds the finalizer (if it is missing) and records the attempt
//! in the `issue-journal` annotation. A new token so costs three writes: this one, the Secret,
//! the status. The status closes the journal by naming the attempt (`settledAttempt`, or
//! `current.attemptId`); until it does, the journal is open and the next pass lists the remote
//! tokens marked with this resource and settles them (`issuance/recover.rs`).
//!
//! The annotation is as editable as the resource. Only what the operator could have written is
//! believed (JSON of at most 512 bytes, an attempt id of letters and digits); a forged attempt
//! costs one listing, since a mark also names the resource's UID.

use json_patch::Patch as JsonPatch;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::{FIELD_MANAGER, FINALIZER, IssueIntent, JOURNAL_ANNOTATION, TokenStatus};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};

const MAX_JOURNAL_BYTES: usize = 512;
const MAX_ATTEMPT_CHARS: usize = 64;

/// The open journal of `obj`, if any: recorded and not yet settled by `status`.
pub fn read<K: TokenResource>(obj: &K, status: &TokenStatus) -> Option<IssueIntent> {
    let raw = obj.annotations().get(JOURNAL_ANNOTATION)?;
    if raw.len() > MAX_JOURNAL_BYTES {
        return None;
    }
    let intent: IssueIntent = serde_json::from_str(raw).ok()?;
    let attempt = intent.attempt_id.as_str();
    let plausible = !attempt.is_empty()
        && attempt.len() <= MAX_ATTEMPT_CHARS
        && attempt.chars().all(|c| c.is_ascii_alphanumeric());
    let settled = status.settled_attempt.as_deref() == Some(attempt)
        || status
            .current
            .as_ref()
            .and_then(|c| c.attempt_id.as_deref())
            == Some(attempt);
    (plausible && !settled).then_some(intent)
}

/// The status a pass starts from: the stored one, with the open journal.
pub fn status_of<K: TokenResource>(obj: &K) -> TokenStatus {
    let mut status = obj.token_status().cloned().unwrap_or_default();
    status.pending_issue = read(obj, &status);
    status
}

/// Drops a journal that is not open from the cached copy of `obj`: a settled or implausible
/// one reads as no journal, and one annotation map with a single entry costs the cache about
/// 750 bytes per token (a B-tree node and the strings), 15 MiB at 20,000 tokens. An open one
/// stays: the next pass settles it from the cache.
pub fn forget_if_closed<K: TokenResource>(obj: &mut K) {
    let open = match obj.token_status() {
        Some(status) => read(obj, status).is_some(),
        None => read(obj, &TokenStatus::default()).is_some(),
    };
    if open {
        return;
    }
    let meta = obj.meta_mut();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(JOURNAL_ANNOTATION);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

pub fn has_finalizer<K: TokenResource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Records `intent` and the finalizer in one write. The resourceVersion precondition makes it
/// fail, rather than overwrite, if the resource changed since the pass read it.
pub async fn open<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    intent: &IssueIntent,
) -> Result<(), Error> {
    let journal = serde_json::to_string(intent)
        .map_err(|e| Error::Internal(format!("encode the issuance journal: {e}")))?;
    patch_metadata(
        obj,
        ctx,
        json!({ JOURNAL_ANNOTATION: journal }),
        "record the issuance journal",
    )
    .await
}

/// Whether the API server has a newer version of `obj` than the cache handed us: the
/// journal's precondition, asked without writing.
pub async fn cache_is_behind<K: TokenResource>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let fresh = api
        .get_metadata(&obj.name_any())
        .await
        .context("read the token resource's metadata")?;
    Ok(fresh.metadata.resource_version != obj.meta().resource_version)
}

/// The finalizer alone: before an import records a token, or where someone removed it from a
/// resource that holds one.
pub async fn ensure_finalizer<K: TokenResource>(obj: &K, ctx: &Context) -> Result<(), Error> {
    if has_finalizer(obj) {
        return Ok(());
    }
    patch_metadata(obj, ctx, json!({}), "add the finalizer").await
}

async fn patch_metadata<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    annotations: serde_json::Value,
    action: &'static str,
) -> Result<(), Error> {
    let mut finalizers = obj.finalizers().to_vec();
    if !has_finalizer(obj) {
        finalizers.push(FINALIZER.into());
    }
    let patch = json!({ "metadata": {
        "resourceVersion": obj.resource_version(),
        "finalizers": finalizers,
        "annotations": annotations,
    }});
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    match api
        .patch(&obj.name_any(), &params, &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(status)) if status.is_conflict() => Err(Error::Stale { action }),
        other => other.map(|_| ()).context(action),
    }
}

/// Removes the finalizer once cleanup is done. The test keeps it from removing another
/// controller's finalizer that took its place in the list meanwhile.
pub async fn remove_finalizer<K: TokenResource>(obj: &K, ctx: &Context) -> Result<(), Error> {
    let Some(index) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: JsonPatch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .map_err(|e| Error::Internal(format!("build the finalizer patch: {e}")))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    api.patch::<K>(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Json(patch),
    )
    .await
    .map(|_| ())
    .context("remove the finalizer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{IssuedTokenRecord, TenantApiToken};

    fn token(journal: Option<&str>) -> TenantApiToken {
        let mut t: TenantApiToken = serde_json::from_value(json!({
            "apiVersion": "tokens.frontegg-operator.io/v1alpha1", "kind": "TenantApiToken",
            "metadata": {"name": "t", "namespace": "ns", "uid": "u1"},
            "spec": {"tenantId": "t1"}
        }))
        .unwrap();
        if let Some(j) = journal {
            t.metadata.annotations = Some([(JOURNAL_ANNOTATION.to_string(), j.to_string())].into());
        }
        t
    }

    const JOURNAL: &str =
        r#"{"attemptId":"0a1b2c3d","startedAt":"2026-01-01T00:00:00Z","operation":"Initial"}"#;

    #[test]
    fn a_recorded_attempt_is_open_until_the_status_settles_it() {
        let obj = token(Some(JOURNAL));
        let mut status = TokenStatus::default();
        assert_eq!(read(&obj, &status).unwrap().attempt_id, "0a1b2c3d");

        status.pending_issue = read(&obj, &status);
        status.close_journal();
        assert_eq!(status.settled_attempt.as_deref(), Some("0a1b2c3d"));
        assert_eq!(read(&obj, &status), None);

        let issued = TokenStatus {
            current: Some(IssuedTokenRecord {
                attempt_id: Some("0a1b2c3d".into()),
                ..IssuedTokenRecord::default()
            }),
            ..TokenStatus::default()
        };
        assert_eq!(read(&obj, &issued), None);
    }

    #[test]
    fn only_a_journal_the_operator_could_have_written_is_believed() {
        let status = TokenStatus::default();
        assert_eq!(read(&token(None), &status), None);
        assert_eq!(read(&token(Some("not json")), &status), None);
        let long = JOURNAL.replace("0a1b2c3d", &"a".repeat(65));
        assert_eq!(read(&token(Some(&long)), &status), None);
        let odd = JOURNAL.replace("0a1b2c3d", "../x");
        assert_eq!(read(&token(Some(&odd)), &status), None);
        let huge = format!("{JOURNAL}{}", " ".repeat(600));
        assert_eq!(read(&token(Some(&huge)), &status), None);
    }

    #[test]
    fn the_cache_keeps_an_open_journal_only() {
        let mut open = token(Some(JOURNAL));
        forget_if_closed(&mut open);
        assert!(read(&open, &TokenStatus::default()).is_some());

        let mut settled = token(Some(JOURNAL));
        settled.status = Some(TokenStatus {
            settled_attempt: Some("0a1b2c3d".into()),
            ..TokenStatus::default()
        });
        forget_if_closed(&mut settled);
        assert_eq!(settled.metadata.annotations, None);

        let mut forged = token(Some("not json"));
        forged
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("team".into(), "a".into());
        forget_if_closed(&mut forged);
        assert_eq!(
            forged.metadata.annotations,
            Some([("team".to_string(), "a".to_string())].into())
        );
    }

    #[test]
    fn the_journal_is_never_part_of_the_stored_status() {
        let mut status = TokenStatus::default();
        status.pending_issue = read(&token(Some(JOURNAL)), &status);
        let stored = serde_json::to_value(&status).unwrap();
        assert_eq!(stored, json!({}));
        assert_eq!(status.durable(), TokenStatus::default());
    }
}
