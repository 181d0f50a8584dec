//! The one token lifecycle, generic over the four kinds:
//! dereference -> validate -> plan (pure) -> apply -> status.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, Event as FinalizerEvent, finalizer};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::drift::GroupKey;
use super::environment::{self, Resolved, effective_ref};
use super::kinds::TokenResource;
use super::plan::{self, Desired, IssueReason, Plan, RemoteState, SecretState};
use super::secret::{self, Credential, SecretContext};
use super::{Context, Error, conditions, context, validate};
use crate::api::{
    AttemptRecord, DeletionPolicy, FINALIZER, IssuedTokenRecord, PendingRevocation, TokenStatus,
};
use crate::identity::{IdentityError, Scope, TokenEndpoint};
use crate::metrics::{ManagedLabels, Metrics, ReconcileLabels, TokenLabels};

pub const FIELD_MANAGER: &str = "frontegg-token-operator";

pub async fn reconcile<K: TokenResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let pipeline = finalizer(&api, FINALIZER, obj.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(obj) => {
                report(&*obj, &ctx, Phase::Apply, apply(&*obj, &ctx).await).await
            }
            FinalizerEvent::Cleanup(obj) => {
                report(&*obj, &ctx, Phase::Cleanup, cleanup(&*obj, &ctx).await).await
            }
        }
    });
    // A panic is an operator bug. Caught here, it fails this one object (Ready=False,
    // InternalError) and the process goes on serving everyone else.
    let result = match AssertUnwindSafe(pipeline).catch_unwind().await {
        Ok(result) => result.map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            finalizer::Error::AddFinalizer(e) | finalizer::Error::RemoveFinalizer(e) => {
                Error::Kube(e)
            }
            finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => {
                Error::Internal("the object has no name or an invalid finalizer".into())
            }
        }),
        Err(_) => {
            ctx.metrics
                .reconcile_panics
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
            tracing::error!(object = %object_key(&*obj), "reconcile panicked; reported as InternalError");
            let phase = if obj.meta().deletion_timestamp.is_some() {
                Phase::Cleanup
            } else {
                Phase::Apply
            };
            let err = Error::Internal("the reconcile panicked".into());
            report(&*obj, &ctx, phase, Err(err))
                .await
                .and_then(|_| Err(Error::Internal("the reconcile panicked".into())))
        }
    };
    let outcome = match &result {
        Ok(_) => "success".to_string(),
        Err(e) => e.reason().to_string(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind: K::KIND.into(),
            result: outcome,
        })
        .inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&Metrics::kind(K::KIND))
        .observe(started.elapsed().as_secs_f64());
    result
}

pub fn error_policy<K: TokenResource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    match err {
        Error::Identity(IdentityError::RateLimited { reset }) => {
            let wait = Duration::try_from(reset.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        Error::ReissueThrottled { wait } => {
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        // Our own client-side limits: the environment is healthy, only busy. Come back soon,
        // spread out, without growing the per-resource backoff.
        Error::Identity(IdentityError::Throttled(_)) => {
            Action::requeue(Duration::from_secs(1).mul_f64(context::jitter(1.0, 3.0)))
        }
        _ => Action::requeue(ctx.next_backoff(&object_key(&*obj))),
    }
}

fn object_key<K: TokenResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// What a successful pass wants written.
struct Outcome {
    status: TokenStatus,
    events: Vec<(EventType, &'static str, String)>,
    requeue: Duration,
}

/// Writes the outcome (status, Events) or the failure (Ready=False + Event) and picks the
/// requeue. Permanent failures wait for a change instead of looping.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Apply,
    Cleanup,
}

async fn report<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    phase: Phase,
    result: Result<Outcome, Error>,
) -> Result<Action, Error> {
    let key = object_key(obj);
    match result {
        Ok(outcome) => {
            write_status(obj, ctx, &outcome.status).await?;
            for (type_, reason, note) in outcome.events {
                publish(obj, ctx, type_, reason, note).await;
            }
            ctx.reset_backoff(&key);
            Ok(Action::requeue(outcome.requeue))
        }
        Err(err @ Error::ReissueThrottled { .. }) if ready_is_false(obj) => {
            // The condition already says what went wrong with the last create; waiting for
            // the next one must not hide it.
            tracing::debug!(object = %key, "reissue waits for --min-reissue-interval");
            Err(err)
        }
        Err(err) => {
            let mut status = obj.token_status().cloned().unwrap_or_default();
            let generation = obj.meta().generation;
            conditions::set(
                &mut status.conditions,
                "Ready",
                false,
                err.reason(),
                &err.to_string(),
                generation,
            );
            status.observed_generation = generation;
            if Some(&status) != obj.token_status() {
                if let Err(e) = write_status(obj, ctx, &status).await {
                    tracing::warn!(object = %key, error = %e, "could not record the failure in status");
                }
                publish(obj, ctx, EventType::Warning, err.reason(), err.to_string()).await;
            }
            tracing::warn!(object = %key, reason = err.reason(), error = %err, "reconcile failed");
            // A failed cleanup must stay an error: the finalizer helper removes the finalizer
            // on Ok, which would drop the resource with its remote token still alive. It is
            // retried with the per-resource backoff until it succeeds or the user orphans it.
            if err.is_permanent() && phase == Phase::Apply {
                Ok(Action::requeue(ctx.config.permanent_retry))
            } else {
                Err(err)
            }
        }
    }
}

fn ready_is_false<K: TokenResource>(obj: &K) -> bool {
    obj.token_status()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "False")
}

async fn publish<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        tracing::debug!(error = %e, "could not publish Event");
    }
}

async fn write_status<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
) -> Result<(), Error> {
    if obj.token_status() == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let patch =
        json!({ "apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

fn scope<K: TokenResource>(obj: &K) -> Scope {
    Scope {
        tenant_id: obj.common().tenant_id.clone(),
        user_id: obj.user_id().map(str::to_string),
    }
}

async fn apply<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Outcome, Error> {
    #[cfg(feature = "test-hooks")]
    test_hooks::panic_if_requested(obj);
    // Validate what needs no I/O first, then dereference.
    let desired = validate::desired_state(obj)?;
    let namespace = obj.namespace().unwrap_or_default();
    let common = obj.common();
    let env_ref = effective_ref(
        common.environment_ref.as_ref(),
        &ctx.config.default_environment,
    );
    let env = environment::resolve(ctx, &namespace, env_ref, &common.tenant_id).await?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let live_secret = secrets.get_opt(&desired.secret_name).await?;
    if let Some(live) = &live_secret
        && !secret::is_owned_by(live, obj)
    {
        return Err(Error::SecretConflict(desired.secret_name.clone()));
    }
    let status = obj.token_status().cloned().unwrap_or_default();
    let scope = scope(obj);
    let base_url = env.client.base_url().to_string();
    let secret_ctx = SecretContext {
        base_url: &base_url,
        tenant_id: &scope.tenant_id,
        user_id: scope.user_id.as_deref(),
    };

    let live_credential = live_secret
        .as_ref()
        .and_then(|s| secret::read_credential(s, K::LAYOUT));
    let secret_state = match (&live_secret, &live_credential, &status.current) {
        (None, _, _) => SecretState::Missing,
        (Some(live), Some(cred), Some(current)) if cred.id == current.id => {
            let want = secret::desired_secret(obj, &desired.secret_name, cred, &secret_ctx)?;
            SecretState::Owned {
                up_to_date: secret::matches(live, &want),
            }
        }
        (Some(_), Some(_), _) => SecretState::OwnedUnrecorded,
        (Some(_), None, _) => SecretState::OwnedWithoutCredential,
    };
    let remote = remote_state::<K>(ctx, &env, &scope, status.current.as_ref()).await?;

    let now = Timestamp::now();
    let step = plan::plan(
        &desired,
        &status,
        secret_state,
        remote,
        now,
        ctx.config.resync,
    );
    tracing::debug!(object = %object_key(obj), ?step, "planned");
    if matches!(step, Plan::Issue { .. } | Plan::Adopt) && cache_is_behind(obj, ctx).await? {
        // Creating a remote token is the one step that cannot be repeated safely. A reconcile
        // triggered by our own Secret write can see a cached object that predates our status
        // write; decide again on fresh state instead of issuing a second token.
        tracing::debug!(object = %object_key(obj), "cache behind the API server; re-planning");
        return Ok(Outcome {
            status,
            events: Vec::new(),
            requeue: Duration::from_millis(500),
        });
    }

    let mut new_status = status.clone();
    let mut events = Vec::new();
    match step {
        Plan::Issue { reason, revoke } => {
            // The apiserver checks the Secret's shape (keys, labels, annotations, size) before
            // a token exists that could not be written anywhere.
            let probe = validate::probe_secret(obj, &desired, &secret_ctx)?;
            dry_run_secret(&secrets, probe).await?;
            let recorded = status
                .current
                .as_ref()
                .and_then(|c| c.issued_at.parse::<Timestamp>().ok());
            ctx.throttle
                .try_acquire(
                    obj.meta().uid.as_deref().unwrap_or_default(),
                    recorded,
                    now,
                    ctx.config.min_reissue_interval,
                )
                .map_err(|wait| Error::ReissueThrottled { wait })?;
            let record = issue(
                obj,
                ctx,
                &env,
                &desired,
                &secret_ctx,
                &secrets,
                live_secret.as_ref(),
                reason,
            )
            .await?;
            if reason == IssueReason::SecretRenamed
                && let Some(old) = &status.current
            {
                delete_owned_secret(obj, &secrets, &old.secret_name).await;
            }
            events.push((
                EventType::Normal,
                reason.event_reason(),
                format!(
                    "issued token {} into Secret {}: {}",
                    record.id,
                    record.secret_name,
                    reason.describe()
                ),
            ));
            if reason != IssueReason::Initial {
                ctx.metrics
                    .rotations
                    .get_or_create(&Metrics::kind(K::KIND))
                    .inc();
            }
            if let Some(old) = revoke {
                new_status.pending_revocations.push(PendingRevocation {
                    id: old,
                    reason: reason.describe().into(),
                });
            }
            new_status.current = Some(record);
            new_status.handled_rotation_request = desired.rotation_request.clone();
            new_status.last_attempt = Some(AttemptRecord {
                operation: "Issue".into(),
                result: "Succeeded".into(),
                at: now.to_string(),
            });
        }
        Plan::Patch => {
            let (Some(current), Some(body)) = (new_status.current.as_mut(), obj.patch_request())
            else {
                return Err(Error::Internal(
                    "patch planned for a kind that cannot be patched".into(),
                ));
            };
            env.client
                .patch_tenant_api_token(&scope, &current.id, &body)
                .await?;
            current.patched_spec_hash = desired.patched_spec_hash.clone();
            events.push((
                EventType::Normal,
                "Updated",
                format!("updated token {} in place", current.id),
            ));
            new_status.last_attempt = Some(AttemptRecord {
                operation: "Patch".into(),
                result: "Succeeded".into(),
                at: now.to_string(),
            });
        }
        Plan::WriteSecret => {
            if let Some(cred) = &live_credential {
                let want = secret::desired_secret(obj, &desired.secret_name, cred, &secret_ctx)?;
                write_secret(&secrets, live_secret.as_ref(), want).await?;
                events.push((
                    EventType::Normal,
                    "SecretUpdated",
                    format!("rewrote Secret {}", desired.secret_name),
                ));
            }
        }
        Plan::Adopt => {
            if let Some(cred) = &live_credential {
                if let Some(old) = new_status.current.take() {
                    new_status.pending_revocations.push(PendingRevocation {
                        id: old.id,
                        reason: "superseded by the token found in the Secret".into(),
                    });
                }
                new_status.current = Some(IssuedTokenRecord {
                    id: cred.id.clone(),
                    issued_at: now.to_string(),
                    expires_at: cred.expires_at.clone(),
                    secret_name: desired.secret_name.clone(),
                    issued_spec_hash: desired.issued_spec_hash.clone(),
                    patched_spec_hash: None,
                });
                events.push((
                    EventType::Normal,
                    "Adopted",
                    format!(
                        "recorded token {} found in Secret {} instead of issuing another",
                        cred.id, desired.secret_name
                    ),
                ));
            }
        }
        Plan::Steady { .. } => {}
    }

    revoke_pending::<K>(ctx, &env, &scope, &mut new_status, &mut events).await;

    let current = new_status.current.as_ref();
    let message = current.map_or_else(String::new, |c| {
        format!("Secret {} holds token {}", c.secret_name, c.id)
    });
    conditions::set(
        &mut new_status.conditions,
        "Ready",
        true,
        "TokenReady",
        &message,
        obj.meta().generation,
    );
    new_status.observed_generation = obj.meta().generation;
    record_token_metrics(obj, ctx, &env, &new_status);

    let requeue = current
        .and_then(|c| {
            plan::renewal_time(&c.issued_at, c.expires_at.as_deref(), desired.renew_before)
        })
        .map(|at| Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO))
        .map_or(ctx.config.resync, |until| until.min(ctx.config.resync));
    // Pending revocations that failed are retried soon, not after a full resync.
    let requeue = if new_status.pending_revocations.is_empty() {
        requeue
    } else {
        requeue.min(Duration::from_secs(30))
    };
    Ok(Outcome {
        status: new_status,
        events,
        requeue,
    })
}

/// Whether the API server has a newer version of `obj` than the cache handed us.
async fn cache_is_behind<K: TokenResource>(obj: &K, ctx: &Context) -> Result<bool, Error> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let fresh = api.get_metadata(&obj.name_any()).await?;
    Ok(fresh.metadata.resource_version != obj.meta().resource_version)
}

/// Present/Absent from the group's shared listing; Unknown when the listing predates the token.
async fn remote_state<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    scope: &Scope,
    current: Option<&IssuedTokenRecord>,
) -> Result<RemoteState, Error> {
    let Some(current) = current else {
        return Ok(RemoteState::Unknown);
    };
    let key = GroupKey {
        environment: env.key.clone(),
        endpoint: K::Endpoint::NAME,
        tenant: scope.tenant_id.clone(),
        user: scope.user_id.clone(),
    };
    let listing = ctx
        .drift
        .listing(key, ctx.config.resync, || {
            env.client.list::<K::Endpoint>(scope)
        })
        .await?;
    let issued_at: Timestamp = current.issued_at.parse().unwrap_or(Timestamp::MAX);
    Ok(if listing.fetched_at < issued_at {
        RemoteState::Unknown
    } else if listing.tokens.iter().any(|t| t.id == current.id) {
        RemoteState::Present
    } else {
        RemoteState::Absent
    })
}

#[allow(clippy::too_many_arguments)]
async fn issue<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    env: &Resolved,
    desired: &Desired,
    secret_ctx: &SecretContext<'_>,
    secrets: &Api<Secret>,
    live: Option<&Secret>,
    reason: IssueReason,
) -> Result<IssuedTokenRecord, Error> {
    let scope = scope(obj);
    let issued = env
        .client
        .create::<K::Endpoint>(&scope, &obj.create_request(desired.expires_in_minutes))
        .await?;
    ctx.metrics
        .issued
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    let credential = Credential {
        id: issued.id.clone(),
        secret: issued.secret,
        expires_at: issued.expires_at.map(|t| t.to_string()),
    };
    let written = match secret::desired_secret(obj, &desired.secret_name, &credential, secret_ctx) {
        Ok(want) => write_secret(secrets, live, want).await,
        Err(e) => Err(e),
    };
    if let Err(e) = written {
        // Nobody can read the new token's secret now: revoke it rather than leak it remotely.
        if let Err(revoke) = env.client.delete::<K::Endpoint>(&scope, &issued.id).await {
            tracing::warn!(token = %issued.id, error = %revoke, "could not revoke a token whose Secret write failed");
        }
        return Err(e);
    }
    tracing::info!(object = %object_key(obj), token = %issued.id, ?reason, "issued token");
    Ok(IssuedTokenRecord {
        id: issued.id,
        issued_at: Timestamp::now().to_string(),
        expires_at: credential.expires_at,
        secret_name: desired.secret_name.clone(),
        issued_spec_hash: desired.issued_spec_hash.clone(),
        patched_spec_hash: desired.patched_spec_hash.clone(),
    })
}

async fn write_secret(
    secrets: &Api<Secret>,
    live: Option<&Secret>,
    want: Secret,
) -> Result<(), Error> {
    match live {
        None => {
            secrets
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    },
                    &want,
                )
                .await?;
        }
        Some(_) => {
            let name = want.metadata.name.clone().unwrap_or_default();
            let mut patch = serde_json::to_value(&want)
                .map_err(|e| Error::Internal(format!("cannot encode the Secret: {e}")))?;
            if let Some(map) = patch.as_object_mut() {
                map.insert("apiVersion".into(), json!("v1"));
                map.insert("kind".into(), json!("Secret"));
            }
            secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await?;
        }
    }
    Ok(())
}

/// Server-side dry-run apply: the apiserver's own validation, with nothing stored.
async fn dry_run_secret(secrets: &Api<Secret>, probe: Secret) -> Result<(), Error> {
    let name = probe.metadata.name.clone().unwrap_or_default();
    let mut patch = serde_json::to_value(&probe)
        .map_err(|e| Error::Internal(format!("cannot encode the Secret: {e}")))?;
    if let Some(map) = patch.as_object_mut() {
        map.insert("apiVersion".into(), json!("v1"));
        map.insert("kind".into(), json!("Secret"));
    }
    match secrets
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force().dry_run(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => Err(
            Error::SecretRejected(status.message.chars().take(500).collect()),
        ),
        Err(e) => Err(e.into()),
    }
}

async fn delete_owned_secret<K: TokenResource>(obj: &K, secrets: &Api<Secret>, name: &str) {
    if let Ok(Some(s)) = secrets.get_opt(name).await
        && secret::is_owned_by(&s, obj)
    {
        let _ = secrets.delete(name, &Default::default()).await;
    }
}

async fn revoke_pending<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    scope: &Scope,
    status: &mut TokenStatus,
    events: &mut Vec<(EventType, &'static str, String)>,
) {
    let mut still_pending = Vec::new();
    for pending in std::mem::take(&mut status.pending_revocations) {
        match revoke::<K>(ctx, env, scope, &pending.id).await {
            Ok(event) => events.push(event),
            Err(e) => {
                tracing::warn!(token = %pending.id, error = %e, "revocation failed; will retry");
                still_pending.push(pending);
            }
        }
    }
    status.pending_revocations = still_pending;
}

/// Revokes one remote token; one that is already gone counts as revoked.
async fn revoke<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    scope: &Scope,
    id: &str,
) -> Result<(EventType, &'static str, String), IdentityError> {
    match env.client.delete::<K::Endpoint>(scope, id).await {
        Ok(()) | Err(IdentityError::NotFound) => {
            ctx.metrics
                .revocations
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
            Ok((EventType::Normal, "Revoked", format!("revoked token {id}")))
        }
        Err(e) => Err(e),
    }
}

fn record_token_metrics<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    env: &Resolved,
    status: &TokenStatus,
) {
    let managed = status.current.as_ref().map(|_| ManagedLabels {
        kind: K::KIND.into(),
        environment: env.key.clone(),
    });
    ctx.track_managed(&object_key(obj), managed);
    let labels = TokenLabels {
        kind: K::KIND.into(),
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
    };
    if let Some(expires) = status
        .current
        .as_ref()
        .and_then(|c| c.expires_at.as_deref())
        .and_then(|e| e.parse::<Timestamp>().ok())
    {
        ctx.metrics
            .token_expiry
            .get_or_create(&labels)
            .set(expires.as_second());
    }
    ctx.metrics
        .pending_revocations
        .get_or_create(&labels)
        .set(status.pending_revocations.len() as i64);
}

async fn cleanup<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Outcome, Error> {
    let status = obj.token_status().cloned().unwrap_or_default();
    let namespace = obj.namespace().unwrap_or_default();
    let mut events = Vec::new();
    match obj.common().deletion_policy {
        DeletionPolicy::Orphan => {
            if let Some(current) = &status.current {
                let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
                if let Some(s) = secrets.get_opt(&current.secret_name).await?
                    && secret::is_owned_by(&s, obj)
                {
                    // Without the owner reference the garbage collector leaves the Secret alone.
                    let patch = json!({ "metadata": { "ownerReferences": [] } });
                    secrets
                        .patch(
                            &current.secret_name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await?;
                }
                ctx.metrics
                    .orphaned
                    .get_or_create(&Metrics::kind(K::KIND))
                    .inc();
                events.push((
                    EventType::Normal,
                    "Orphaned",
                    format!(
                        "left token {} and Secret {} in place",
                        current.id, current.secret_name
                    ),
                ));
            }
        }
        DeletionPolicy::Delete => {
            let ids: Vec<String> = status
                .current
                .iter()
                .map(|c| c.id.clone())
                .chain(status.pending_revocations.iter().map(|p| p.id.clone()))
                .collect();
            if !ids.is_empty() {
                let env = resolve_for_cleanup(obj, ctx, &namespace)
                    .await
                    .map_err(|e| Error::RevocationFailed { cause: Box::new(e) })?;
                let scope = scope(obj);
                for id in ids {
                    match revoke::<K>(ctx, &env, &scope, &id).await {
                        Ok(event) => events.push(event),
                        Err(e) => {
                            return Err(Error::RevocationFailed {
                                cause: Box::new(e.into()),
                            });
                        }
                    }
                }
            }
        }
    }
    let labels = TokenLabels {
        kind: K::KIND.into(),
        namespace,
        name: obj.name_any(),
    };
    ctx.track_managed(&object_key(obj), None);
    ctx.forget(&object_key(obj), obj.meta().uid.as_deref());
    ctx.metrics.token_expiry.remove(&labels);
    ctx.metrics.pending_revocations.remove(&labels);
    // The object is going away: nothing to write back, only Events.
    Ok(Outcome {
        status: obj.token_status().cloned().unwrap_or_default(),
        events,
        requeue: Duration::ZERO,
    })
}

/// During namespace deletion the environment or its credentials Secret may already be gone;
/// the client built from them earlier still works, so fall back to it.
async fn resolve_for_cleanup<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    namespace: &str,
) -> Result<Resolved, Error> {
    let common = obj.common();
    let env_ref = effective_ref(
        common.environment_ref.as_ref(),
        &ctx.config.default_environment,
    );
    match environment::resolve(ctx, namespace, env_ref, &common.tenant_id).await {
        Ok(env) => Ok(env),
        Err(e @ (Error::EnvironmentNotFound { .. } | Error::CredentialsInvalid(_))) => {
            let key = environment::environment_key(env_ref, namespace);
            ctx.clients
                .cached(&key)
                .map(|client| Resolved { key, client })
                .ok_or(e)
        }
        Err(e) => Err(e),
    }
}

#[cfg(feature = "test-hooks")]
mod test_hooks {
    use kube::ResourceExt;

    /// Annotation that makes the next reconcile of the object panic (test builds only), to
    /// prove that one panicking object fails alone.
    pub const PANIC_ANNOTATION: &str = "tokens.frontegg-operator.io/test-panic";

    #[allow(clippy::panic)]
    pub fn panic_if_requested<K: super::TokenResource>(obj: &K) {
        if obj.annotations().contains_key(PANIC_ANNOTATION) {
            panic!("test hook: a panic was requested by annotation");
        }
    }
}
