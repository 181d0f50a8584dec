//! The reconcile pipeline and the controllers that drive it.

mod access_token;
mod caches;
mod cleanup;
mod conditions;
mod context;
mod dereference;
mod drift;
mod environment_health;
mod error;
pub mod events;
mod execute;
#[cfg(test)]
mod fixtures;
mod import;
mod journal;
mod kinds;
mod marker;
mod observe;
mod plan;
mod policy;
mod reconcile;
mod resolve_environment;
mod secret;
mod series;
mod status;
mod template;
mod test_hooks;
mod throttle;
mod trigger;
mod validate;

pub use context::{Config, Context};
pub use error::Error;
pub use kinds::{SecretLayout, TokenResource};
pub use plan::{Desired, IssueReason, Observed, Plan, Recovery, RemoteState, SecretState, plan};
pub use resolve_environment::parse_environment_ref;
pub use secret::{Credential, SecretContext};
pub use template::render as render_template;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::api::{
    ClusterFronteggEnvironment, EnvironmentKind, FronteggEnvironment, JOURNAL_ANNOTATION,
    KIND_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, TenantAccessToken, TenantApiToken,
    UserAccessToken, UserApiToken,
};

/// Where the controllers watch.
#[derive(Clone, Debug)]
pub struct WatchScope {
    /// Empty: the whole cluster. Otherwise only these namespaces (namespaced RBAC suffices).
    pub namespaces: Vec<String>,
    /// Label selector restricting which ClusterFronteggEnvironments this instance serves.
    pub cluster_environment_selector: Option<String>,
    pub concurrency: u16,
}

/// Runs every controller until `shutdown` resolves. `ready` turns true once all caches synced.
pub async fn run(
    ctx: Arc<Context>,
    scope: WatchScope,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
) {
    let namespaces: Vec<Option<String>> = if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut stores: Vec<BoxFuture<'static, ()>> = Vec::new();
    let mut environment_stores = Vec::new();
    for ns in &namespaces {
        spawn_kind::<UserApiToken>(
            &ctx,
            &scope,
            ns.as_deref(),
            &shutdown,
            &mut controllers,
            &mut stores,
        );
        spawn_kind::<UserAccessToken>(
            &ctx,
            &scope,
            ns.as_deref(),
            &shutdown,
            &mut controllers,
            &mut stores,
        );
        spawn_kind::<TenantApiToken>(
            &ctx,
            &scope,
            ns.as_deref(),
            &shutdown,
            &mut controllers,
            &mut stores,
        );
        spawn_kind::<TenantAccessToken>(
            &ctx,
            &scope,
            ns.as_deref(),
            &shutdown,
            &mut controllers,
            &mut stores,
        );
        let (fut, store) =
            environment_health::namespaced(ctx.clone(), ns.as_deref(), shutdown.clone());
        controllers.push(fut);
        stores.push(wait_ready(store.clone()));
        environment_stores.push((ns.clone(), store));
    }
    let (fut, store) = environment_health::cluster(
        ctx.clone(),
        scope.cluster_environment_selector.clone(),
        shutdown.clone(),
    );
    controllers.push(fut);
    stores.push(wait_ready(store.clone()));
    ctx.caches.set_environments(store, environment_stores);
    controllers.extend(ctx.caches.watch(
        &ctx.client,
        &ctx.config.operator_namespace,
        shutdown.clone(),
    ));
    tokio::spawn(async move {
        futures::future::join_all(stores).await;
        ready.store(true, Ordering::SeqCst);
        tracing::info!("caches synced; ready");
    });
    futures::future::join_all(controllers).await;
}

fn wait_ready<K: Resource + Clone + Send + Sync + 'static>(
    store: Store<K>,
) -> BoxFuture<'static, ()>
where
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    Box::pin(async move {
        // kube-runtime's readiness future wakes only its most recent waiter (one oneshot
        // receiver behind it), and the controller awaits the same store; so re-poll instead of
        // waiting once, or this may never wake.
        while tokio::time::timeout(
            std::time::Duration::from_millis(250),
            store.wait_until_ready(),
        )
        .await
        .is_err()
        {}
    })
}

fn api_for<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Token resources per page of the initial (and any re-) list. The four kinds list at once,
/// and a page is held raw and decoded while the store grows: at client-go's 500 that was
/// 7.6 MiB of a restart's peak at 5,000 tokens (heaptrack). 100 costs 50 list requests
/// instead of 10 at 5,000 tokens, served from the API server's watch cache.
const TOKEN_LIST_PAGE: u32 = 100;

fn spawn_kind<K: TokenResource>(
    ctx: &Arc<Context>,
    scope: &WatchScope,
    ns: Option<&str>,
    shutdown: &(impl std::future::Future<Output = ()> + Send + Sync + Clone + 'static),
    controllers: &mut Vec<BoxFuture<'static, ()>>,
    stores: &mut Vec<BoxFuture<'static, ()>>,
) {
    let client = &ctx.client;
    // Only our own Secrets, by label, and only their metadata: the operator never caches
    // Secret contents it does not own, nor every Secret in the cluster.
    let owned = watcher(
        api_for::<PartialObjectMeta<Secret>>(client, ns),
        watcher::Config::default().labels(&format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{KIND_LABEL}={}",
            K::KIND
        )),
    )
    .touched_objects();
    // Reconcile on what a user changes (spec via generation, annotations such as the rotate
    // request, finalizers, deletion), never on our own status writes: a failure whose message
    // the remote controls would otherwise re-trigger itself at once, bypassing the backoff.
    let (store, writer) = reflector::store();
    let trigger = trigger::changed(
        reflector(
            writer,
            // Paginated: a start (or a relist) with 20,000 tokens must not hold one unpaginated
            // response of all of them, and its decoded copy, next to the store.
            watcher(
                api_for::<K>(client, ns),
                watcher::Config::default().page_size(TOKEN_LIST_PAGE),
            )
            .modify(strip_for_cache),
        )
        .applied_objects(),
        predicates::generation
            .combine(user_annotations)
            .combine(predicates::finalizers)
            .combine(deletion),
    );
    let controller = Controller::for_stream(trigger, store.clone());
    ctx.metrics
        .add_token_source(std::sync::Arc::new(series::StoreSeries::new(
            store.clone(),
            ctx.config.default_environment.clone(),
        )));
    stores.push(wait_ready(store.clone()));
    let default_env = ctx.config.default_environment.clone();
    let by_env = store.clone();
    let default_env2 = default_env.clone();
    let mut cluster_cfg = watcher::Config::default();
    if let Some(sel) = &scope.cluster_environment_selector {
        cluster_cfg = cluster_cfg.labels(sel);
    }
    let fut = controller
        .owns_stream(owned)
        .watches(
            api_for::<FronteggEnvironment>(client, ns),
            watcher::Config::default(),
            move |env| {
                tokens_using(
                    &by_env,
                    &default_env,
                    EnvironmentKind::FronteggEnvironment,
                    &env.name_any(),
                    env.namespace().as_deref(),
                )
            },
        )
        .watches(
            Api::<ClusterFronteggEnvironment>::all(client.clone()),
            cluster_cfg,
            move |env| {
                tokens_using(
                    &store,
                    &default_env2,
                    EnvironmentKind::ClusterFronteggEnvironment,
                    &env.name_any(),
                    None,
                )
            },
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(scope.concurrency))
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile::reconcile::<K>,
            reconcile::error_policy::<K>,
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, kind = K::KIND, "controller event");
            }
        });
    controllers.push(Box::pin(fut));
}

/// What the cache keeps of a token resource: everything the pipeline reads. managedFields and
/// kubectl's last-applied copy of the object are most of a small object's size, and nothing
/// here reads them; at thousands of tokens they were most of the operator's memory. A closed
/// issuance journal reads as none, so it goes too.
fn strip_for_cache<K: TokenResource>(obj: &mut K) {
    let meta = obj.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    journal::forget_if_closed(obj);
}

/// Hashes the annotations but the issuance journal, which only the operator writes, in the
/// pass that goes on to settle it.
fn user_annotations<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.meta()
        .annotations
        .iter()
        .flatten()
        .filter(|(key, _)| key.as_str() != JOURNAL_ANNOTATION)
        .for_each(|entry| entry.hash(&mut hasher));
    Some(hasher.finish())
}

/// Hashes the deletion timestamp, so that a deletion always reaches the reconciler.
fn deletion<K: Resource>(obj: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// Tokens whose (possibly defaulted) environment is the one that changed.
fn tokens_using<K: TokenResource>(
    store: &Store<K>,
    default: &crate::api::EnvironmentRef,
    kind: EnvironmentKind,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<K>> {
    store
        .state()
        .iter()
        .filter(|t| {
            let r =
                resolve_environment::effective_ref(t.common().environment_ref.as_ref(), default);
            r.kind == kind
                && r.name == name
                && (namespace.is_none() || t.namespace().as_deref() == namespace)
        })
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}
