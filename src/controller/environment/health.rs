//! Environment health: vendor authentication with the environment's credentials, reported as
//! `Ready` so users (and token resources, via watches) see broken credentials at once.

use std::sync::Arc;

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::protection::{IN_USE_RECHECK, Protected, Settled};
use super::reference::environment_key;
use super::resolve::client_for;
use super::{leaks, pace};
use crate::api::{
    ClusterFronteggEnvironment, EnvironmentConnection, EnvironmentKind, EnvironmentRef,
    EnvironmentStatus, EnvironmentUser, FIELD_MANAGER, FronteggEnvironment,
};
use crate::controller::runtime::conditions;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::holders::{EnvironmentId, Holder};
use crate::identity::UserIdentity;
use crate::metrics::EnvironmentLabels;

/// What the health check needs from either environment kind.
trait Environment:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: EnvironmentKind;
    fn connection(&self) -> &EnvironmentConnection;
    fn health(&self) -> Option<&EnvironmentStatus>;
    /// Where the credentials Secret is read from.
    fn secret_namespace(&self, ctx: &Context) -> String;
    /// The API to write this object's status through.
    fn status_api(&self, client: kube::Client) -> Api<Self>;
}

impl Environment for FronteggEnvironment {
    const KIND: EnvironmentKind = EnvironmentKind::FronteggEnvironment;
    fn connection(&self) -> &EnvironmentConnection {
        &self.spec.connection
    }
    fn health(&self) -> Option<&EnvironmentStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, _: &Context) -> String {
        self.namespace().unwrap_or_default()
    }
    fn status_api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
}

impl Environment for ClusterFronteggEnvironment {
    const KIND: EnvironmentKind = EnvironmentKind::ClusterFronteggEnvironment;
    fn connection(&self) -> &EnvironmentConnection {
        &self.spec.connection
    }
    fn health(&self) -> Option<&EnvironmentStatus> {
        self.status.as_ref()
    }
    fn secret_namespace(&self, ctx: &Context) -> String {
        ctx.config.operator_namespace.clone()
    }
    fn status_api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
}

pub fn namespaced(
    ctx: Arc<Context>,
    ns: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Store<FronteggEnvironment>) {
    let api = match ns {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    run(ctx, api, watcher::Config::default(), shutdown)
}

pub fn cluster(
    ctx: Arc<Context>,
    selector: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Store<ClusterFronteggEnvironment>) {
    let mut cfg = watcher::Config::default();
    if let Some(sel) = &selector {
        cfg = cfg.labels(sel);
    }
    run(ctx.clone(), Api::all(ctx.client.clone()), cfg, shutdown)
}

fn run<E: Environment>(
    ctx: Arc<Context>,
    api: Api<E>,
    cfg: watcher::Config,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Store<E>) {
    let controller = Controller::new(api, cfg);
    let store = controller.store();
    let fut = controller
        .graceful_shutdown_on(shutdown)
        .run(
            |env: Arc<E>, ctx: Arc<Context>| async move {
                // As for tokens: a panic fails this one environment, never the process.
                AssertUnwindSafe(check(&*env, &ctx))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        tracing::error!(environment = %env.name_any(), "environment check panicked");
                        Err(Error::Internal("the environment check panicked".into()))
                    })
            },
            |_, _, ctx| Action::requeue(ctx.config.environment_retry),
            ctx,
        )
        .for_each(|_| async {});
    (Box::pin(fut), store)
}

/// The environment_ready gauge, for alerts. A deleted environment's series is dropped here, on the next check of any environment, once the caches no
/// longer hold it.
fn publish_readiness<E: Environment>(env: &E, ctx: &Context, ready: bool) {
    let labels = EnvironmentLabels {
        kind: format!("{:?}", E::KIND),
        namespace: env.namespace().unwrap_or_default(),
        name: env.name_any(),
    };
    ctx.metrics
        .environment_ready
        .get_or_create(&labels)
        .set(i64::from(ready));
    let Ok(mut seen) = ctx.environments_seen.lock() else {
        return;
    };
    seen.insert(labels);
    seen.retain(|l| {
        let exists = if l.namespace.is_empty() {
            ctx.caches.cluster_environment(&l.name).is_some()
        } else {
            ctx.caches.environment(&l.namespace, &l.name).is_some()
        };
        // A miss can also be a cache that has not synced yet: only drop what the check of
        // this very environment did not just publish.
        let keep = exists
            || (l.name == env.name_any() && l.namespace == env.namespace().unwrap_or_default());
        if !keep {
            ctx.metrics.environment_ready.remove(l);
        }
        keep
    });
}

async fn check<E: Environment>(env: &E, ctx: &Context) -> Result<Action, Error> {
    let protected = protection_of(env, ctx).await?;
    match protected.settle(ctx).await? {
        Settled::NotDeleting => {}
        Settled::Released => return Ok(Action::requeue(ctx.config.resync)),
        Settled::Waiting(holders) => return waiting(env, ctx, &holders).await,
    }
    let action = report_health(env, ctx).await?;
    protected.hold(ctx).await?;
    collect_leaks(env, ctx).await;
    Ok(action)
}

/// The environment and its credentials Secret's metadata, read fresh.
async fn protection_of<E: Environment>(env: &E, ctx: &Context) -> Result<Protected<E>, Error> {
    let secret_namespace = env.secret_namespace(ctx);
    let secret_name = env.connection().credentials_secret_ref.name.clone();
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), &secret_namespace);
    let secret = secrets
        .get_metadata_opt(&secret_name)
        .await
        .context("read the credentials Secret's metadata")?;
    let namespace = env.namespace();
    Ok(Protected {
        id: EnvironmentId {
            kind: E::KIND,
            namespace,
            name: env.name_any(),
        },
        api: env.status_api(ctx.client.clone()),
        meta: env.meta().clone(),
        secrets,
        secret_namespace,
        secret_name,
        secret,
    })
}

/// A deletion that waits for token resources: the status says how many, and an Event names
/// the first few when the number changes.
async fn waiting<E: Environment>(
    env: &E,
    ctx: &Context,
    holders: &[Holder],
) -> Result<Action, Error> {
    let count = u32::try_from(holders.len()).unwrap_or(u32::MAX);
    let current = env.health();
    if current.and_then(|s| s.tokens_in_use) != Some(count) {
        let mut status = current.cloned().unwrap_or_default();
        status.tokens_in_use = Some(count);
        write_status(env, ctx, &status).await?;
        let first: Vec<String> = holders.iter().take(3).map(ToString::to_string).collect();
        let more = holders.len().saturating_sub(first.len());
        let note = format!(
            "deletion waits for {count} token resource(s) holding live remote tokens issued through it: {}{}",
            first.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
        );
        publish(env, ctx, EventType::Normal, "InUse", &note).await;
    }
    Ok(Action::requeue(IN_USE_RECHECK))
}

async fn write_status<E: Environment>(
    env: &E,
    ctx: &Context,
    status: &EnvironmentStatus,
) -> Result<(), Error> {
    let patch =
        json!({ "apiVersion": E::api_version(&()), "kind": E::kind(&()), "status": status });
    env.status_api(ctx.client.clone())
        .patch_status(
            &env.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .context("write the environment status")
        .map(drop)
}

fn key_of<E: Environment>(env: &E) -> String {
    let env_ref = EnvironmentRef {
        kind: E::KIND,
        name: env.name_any(),
    };
    environment_key(&env_ref, &env.namespace().unwrap_or_default())
}

/// Revokes the leaked tokens that are due, through the client the check just used.
async fn collect_leaks<E: Environment>(env: &E, ctx: &Context) {
    let key = key_of(env);
    let Some(client) = ctx.clients.cached(&key) else {
        return;
    };
    let notes = match leaks::collect(ctx, &key, &client).await {
        Ok(notes) => notes,
        Err(e) => {
            tracing::warn!(error = %e, environment = %key, "could not collect leaked tokens");
            return;
        }
    };
    for (kind, reason, note) in notes {
        publish(env, ctx, kind, reason, &note).await;
    }
}

async fn publish<E: Environment>(
    env: &E,
    ctx: &Context,
    kind: EventType,
    reason: &str,
    note: &str,
) {
    let regarding = env.object_ref(&());
    if let Err(e) = ctx.events.publish(&regarding, kind, reason, note).await {
        tracing::warn!(error = %e, reason, "could not publish an environment Event");
    }
}

/// Authenticates and records the result, with the leaked tokens found meanwhile.
async fn report_health<E: Environment>(env: &E, ctx: &Context) -> Result<Action, Error> {
    let result = authenticate(env, ctx).await;
    publish_readiness(env, ctx, result.is_ok());
    let current = env.health();
    let mut status = health_status(env, current, &result);
    let key = key_of(env);
    status.leaked_tokens = leaks::report(ctx, &key);
    let fell_behind = ctx
        .clients
        .cached(&key)
        .and_then(|client| pace::report(ctx, &key, &client, &mut status, env.meta().generation));
    if Some(&status) != current {
        write_status(env, ctx, &status).await?;
    }
    if let Some((kind, reason, note)) = fell_behind {
        publish(env, ctx, kind, reason, &note).await;
    }
    let before = current
        .map(|s| s.leaked_tokens.as_slice())
        .unwrap_or_default();
    let collecting = ctx.config.collect_leaked_tokens;
    if let Some((kind, reason, note)) = leaks::warning(before, &status.leaked_tokens, collecting) {
        publish(env, ctx, kind, reason, &note).await;
    }
    Ok(Action::requeue(if result.is_ok() {
        ctx.config.resync
    } else {
        ctx.config.environment_retry
    }))
}

/// Vendor (or user token) authentication with the environment's credentials, through the
/// client token reconciles share: the same key, so one client per environment.
async fn authenticate<E: Environment>(
    env: &E,
    ctx: &Context,
) -> Result<Option<UserIdentity>, Error> {
    let key = key_of(env);
    let client = client_for(ctx, &key, env.connection(), &env.secret_namespace(ctx)).await?;
    client.check_credentials().await?;
    Ok(client.user_identity())
}

/// The status a check records: Ready with its reason, the base URL, the authenticated user.
fn health_status<E: Environment>(
    env: &E,
    current: Option<&EnvironmentStatus>,
    result: &Result<Option<UserIdentity>, Error>,
) -> EnvironmentStatus {
    let mut status = current.cloned().unwrap_or_default();
    let generation = env.meta().generation;
    let (ready, reason, message) = match result {
        Ok(Some(u)) => (
            true,
            "Authenticated",
            format!(
                "the user API token authenticates as user {} of tenant {}",
                u.user_id, u.tenant_id
            ),
        ),
        Ok(None) => (
            true,
            "Authenticated",
            "vendor authentication succeeded".to_string(),
        ),
        Err(e) => (false, e.reason(), e.to_string()),
    };
    conditions::set(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        &message,
        generation,
    );
    status.observed_generation = generation;
    status.tokens_in_use = None;
    status.base_url = Some(env.connection().resolved_base_url());
    if let Ok(user) = result {
        status.user = user.as_ref().map(|u| EnvironmentUser {
            user_id: u.user_id.clone(),
            tenant_id: u.tenant_id.clone(),
        });
    }
    status
}
