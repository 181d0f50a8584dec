//! Environment health: vendor authentication with the environment's credentials, reported as
//! `Ready` so users (and token resources, via watches) see broken credentials at once.

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::environment::client_for;
use super::reconcile::FIELD_MANAGER;
use super::{Context, Error, conditions};
use crate::api::{
    ClusterFronteggEnvironment, EnvironmentConnection, EnvironmentStatus, FronteggEnvironment,
};

pub fn namespaced(
    ctx: Arc<Context>,
    ns: Option<&str>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (BoxFuture<'static, ()>, Store<FronteggEnvironment>) {
    let api: Api<FronteggEnvironment> = match ns {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let fut = controller
        .graceful_shutdown_on(shutdown)
        .run(
            |env: Arc<FronteggEnvironment>, ctx: Arc<Context>| async move {
                let ns = env.namespace().unwrap_or_default();
                let key = format!("FronteggEnvironment/{ns}/{}", env.name_any());
                let api: Api<FronteggEnvironment> = Api::namespaced(ctx.client.clone(), &ns);
                check(
                    &*env,
                    &ctx,
                    &api,
                    &key,
                    &env.spec.connection,
                    &ns,
                    env.status.as_ref(),
                )
                .await
            },
            |_, _, ctx| Action::requeue(ctx.config.environment_retry),
            ctx,
        )
        .for_each(|_| async {});
    (Box::pin(fut), store)
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
    let controller = Controller::new(
        Api::<ClusterFronteggEnvironment>::all(ctx.client.clone()),
        cfg,
    );
    let store = controller.store();
    let fut = controller
        .graceful_shutdown_on(shutdown)
        .run(
            |env: Arc<ClusterFronteggEnvironment>, ctx: Arc<Context>| async move {
                let key = format!("ClusterFronteggEnvironment/{}", env.name_any());
                let ns = ctx.config.operator_namespace.clone();
                let api: Api<ClusterFronteggEnvironment> = Api::all(ctx.client.clone());
                check(
                    &*env,
                    &ctx,
                    &api,
                    &key,
                    &env.spec.connection,
                    &ns,
                    env.status.as_ref(),
                )
                .await
            },
            |_, _, ctx| Action::requeue(ctx.config.environment_retry),
            ctx,
        )
        .for_each(|_| async {});
    (Box::pin(fut), store)
}

#[allow(clippy::too_many_arguments)]
async fn check<E>(
    env: &E,
    ctx: &Context,
    api: &Api<E>,
    key: &str,
    conn: &EnvironmentConnection,
    secret_ns: &str,
    current: Option<&EnvironmentStatus>,
) -> Result<Action, Error>
where
    E: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let result = match client_for(ctx, key, conn, secret_ns).await {
        Ok(client) => client.check_credentials().await.map_err(Error::from),
        Err(e) => Err(e),
    };
    let mut status = current.cloned().unwrap_or_default();
    let generation = env.meta().generation;
    match &result {
        Ok(()) => conditions::set(
            &mut status.conditions,
            "Ready",
            true,
            "Authenticated",
            "vendor authentication succeeded",
            generation,
        ),
        Err(e) => conditions::set(
            &mut status.conditions,
            "Ready",
            false,
            e.reason(),
            &e.to_string(),
            generation,
        ),
    }
    status.observed_generation = generation;
    status.base_url = Some(conn.resolved_base_url());
    if Some(&status) != current {
        let patch =
            json!({ "apiVersion": E::api_version(&()), "kind": E::kind(&()), "status": status });
        api.patch_status(
            &env.meta().name.clone().unwrap_or_default(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    }
    Ok(Action::requeue(if result.is_ok() {
        ctx.config.resync
    } else {
        ctx.config.environment_retry
    }))
}
