//! The credentials Secrets' side of in-use protection. A Secret being deleted keeps the in-use
//! finalizer while a token holds an environment that reads it, whatever became of the
//! environment: the chart's default environment, a Helm hook, carries no finalizer and may be
//! gone first, and a Secret several environments read outlives the first of them.
//!
//! Only Secrets labelled as credentials are watched, and only their metadata.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{self, Lookup};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Resource};

use super::protection::{IN_USE_RECHECK, protected, remove_finalizer, secret_holders};
use crate::api::CREDENTIALS_LABEL;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};

/// One controller per watched namespace (`None`: the cluster).
pub fn controllers(
    ctx: &Arc<Context>,
    namespaces: &[Option<String>],
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Vec<BoxFuture<'static, ()>> {
    namespaces
        .iter()
        .map(|ns| controller(ctx.clone(), ns.as_deref(), shutdown.clone()))
        .collect()
}

fn controller(
    ctx: Arc<Context>,
    ns: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> BoxFuture<'static, ()> {
    let api: Api<PartialObjectMeta<Secret>> = match ns {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let cfg = watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"));
    let (store, writer) = reflector::store();
    let stream = watcher(api, cfg)
        .default_backoff()
        .modify(|s| s.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects();
    let fut = Controller::for_stream(stream, store)
        .graceful_shutdown_on(shutdown)
        .run(
            |secret, ctx| async move { settle(&secret, &ctx).await },
            |_, _, ctx| Action::requeue(ctx.config.environment_retry),
            ctx,
        )
        .for_each(|_| async {});
    Box::pin(fut)
}

/// A protected Secret being deleted: released once no token holds an environment that reads
/// it, by a fresh list.
async fn settle(secret: &PartialObjectMeta<Secret>, ctx: &Context) -> Result<Action, Error> {
    let meta = &secret.metadata;
    if meta.deletion_timestamp.is_none() || !protected(meta) {
        return Ok(Action::await_change());
    }
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    let holders = secret_holders(ctx, namespace, name).await?;
    let uid = meta.uid.as_deref().unwrap_or_default();
    if holders.is_empty() {
        ctx.reported.changed(uid, 0);
        let api = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
        remove_finalizer(&api, meta)
            .await
            .context("release the credentials Secret")?;
        return Ok(Action::await_change());
    }
    if ctx.reported.changed(uid, holders.len()) {
        let first: Vec<String> = holders.iter().take(3).map(ToString::to_string).collect();
        let note = format!(
            "deletion waits for {} token resource(s) holding live remote tokens issued with these credentials: {}",
            holders.len(),
            first.join(", ")
        );
        let regarding = secret.object_ref(&());
        let publish = ctx
            .events
            .publish(&regarding, EventType::Normal, "InUse", &note);
        if let Err(e) = publish.await {
            tracing::warn!(error = %e, secret = %secret.name().unwrap_or_default(), "could not publish the InUse Event");
        }
    }
    Ok(Action::requeue(IN_USE_RECHECK))
}
