//! Which controllers run, over which watches: the four token kinds (each a controller of its
//! own, over one shared lifecycle) and the two environment kinds, per watched namespace.

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
use crate::controller::environment::reference::effective_ref;
use crate::controller::environment::{credentials, health, protection};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::{background, series, trigger};
use crate::controller::steps::{journal, leaks};
use crate::controller::token::reconcile;

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
pub async fn run<S>(ctx: Arc<Context>, scope: WatchScope, ready: Arc<AtomicBool>, shutdown: S)
where
    S: std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
{
    let mut tasks = Tasks::default();
    let mut environment_stores = Vec::new();
    for ns in watched_namespaces(&scope) {
        let at = Watch {
            ctx: &ctx,
            scope: &scope,
            ns: ns.as_deref(),
            shutdown: &shutdown,
        };
        tasks.spawn_kind::<UserApiToken, S>(&at);
        tasks.spawn_kind::<UserAccessToken, S>(&at);
        tasks.spawn_kind::<TenantApiToken, S>(&at);
        tasks.spawn_kind::<TenantAccessToken, S>(&at);
        let (fut, store) = health::namespaced(ctx.clone(), ns.as_deref(), shutdown.clone());
        tasks.add(fut, wait_ready(store.clone()));
        environment_stores.push((ns, store));
    }
    let selector = scope.cluster_environment_selector.clone();
    let (fut, store) = health::cluster(ctx.clone(), selector, shutdown.clone());
    tasks.add(fut, wait_ready(store.clone()));
    ctx.caches.set_environments(store, environment_stores);
    let credentials_scopes = credentials_scopes(&scope, &ctx.config.operator_namespace);
    tasks.controllers.extend(credentials::controllers(
        &ctx,
        &credentials_scopes,
        shutdown.clone(),
    ));
    // Drift listings run here, outside the reconcile workers, paced by each environment's
    // budget; each listing is also searched for leaked tokens.
    tasks.controllers.push(Box::pin(background::run(
        ctx.clone(),
        leaks::on_listed,
        shutdown.clone(),
    )));
    let operator_namespace = &ctx.config.operator_namespace;
    let caches = ctx
        .caches
        .watch(&ctx.client, operator_namespace, shutdown.clone());
    tasks.controllers.extend(caches);
    let Tasks {
        controllers,
        stores,
    } = tasks;
    tokio::spawn(async move {
        futures::future::join_all(stores).await;
        ready.store(true, Ordering::SeqCst);
        tracing::info!("caches synced; ready");
    });
    futures::future::join_all(controllers).await;
}

/// Where credentials Secrets live: the watched namespaces, and the operator's own (the
/// ClusterFronteggEnvironments').
fn credentials_scopes(scope: &WatchScope, operator_namespace: &str) -> Vec<Option<String>> {
    let mut scopes = watched_namespaces(scope);
    if !scopes.contains(&None) && !scope.namespaces.iter().any(|n| n == operator_namespace) {
        scopes.push(Some(operator_namespace.to_string()));
    }
    scopes
}

/// `None` (the whole cluster) or each watched namespace.
fn watched_namespaces(scope: &WatchScope) -> Vec<Option<String>> {
    if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().cloned().map(Some).collect()
    }
}

/// What one namespace's controllers are started with.
struct Watch<'a, S> {
    ctx: &'a Arc<Context>,
    scope: &'a WatchScope,
    ns: Option<&'a str>,
    shutdown: &'a S,
}

/// The futures `run` joins: the controllers, and the stores whose readiness is the
/// operator's.
#[derive(Default)]
struct Tasks {
    controllers: Vec<BoxFuture<'static, ()>>,
    stores: Vec<BoxFuture<'static, ()>>,
}

impl Tasks {
    fn add(&mut self, controller: BoxFuture<'static, ()>, store: BoxFuture<'static, ()>) {
        self.controllers.push(controller);
        self.stores.push(store);
    }
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

impl Tasks {
    /// The controller of one token kind in one namespace (or the cluster).
    fn spawn_kind<K, S>(&mut self, at: &Watch<'_, S>)
    where
        K: TokenResource,
        S: std::future::Future<Output = ()> + Send + Sync + Clone + 'static,
    {
        let (ctx, ns) = (at.ctx, at.ns);
        let (trigger, store) = token_trigger::<K>(&ctx.client, ns);
        ctx.metrics
            .add_token_source(Arc::new(series::StoreSeries::new(
                store.clone(),
                ctx.config.default_environment.clone(),
            )));
        protection::register::<K>(
            ctx,
            store.clone(),
            ns.map(String::from),
            ctx.config.default_environment.clone(),
        );
        self.stores.push(wait_ready(store.clone()));
        let controller = Controller::for_stream(trigger, store.clone())
            .owns_stream(owned_secrets::<K>(&ctx.client, ns));
        let fut = watch_environments(controller, &store, at)
            .with_config(
                kube::runtime::controller::Config::default().concurrency(at.scope.concurrency),
            )
            .graceful_shutdown_on(at.shutdown.clone())
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
        self.controllers.push(Box::pin(fut));
    }
}

/// Only our own Secrets, by label, and only their metadata: the operator never caches
/// Secret contents it does not own, nor every Secret in the cluster.
fn owned_secrets<K: TokenResource>(
    client: &kube::Client,
    ns: Option<&str>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> + Send + 'static
{
    let labels = format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{KIND_LABEL}={}",
        K::KIND
    );
    watcher(
        api_for::<PartialObjectMeta<Secret>>(client, ns),
        watcher::Config::default().labels(&labels),
    )
    .touched_objects()
}

/// The token cache, and the stream of what a user changed in it. Reconcile on what a user
/// changes (spec via generation, annotations such as the rotate request, finalizers,
/// deletion), never on our own status writes: a failure whose message the remote controls
/// would otherwise re-trigger itself at once, bypassing the backoff.
fn token_trigger<K: TokenResource>(
    client: &kube::Client,
    ns: Option<&str>,
) -> (
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Store<K>,
) {
    let (store, writer) = reflector::store();
    // Paginated: a start (or a relist) with 20,000 tokens must not hold one unpaginated
    // response of all of them, and its decoded copy, next to the store.
    let tokens = watcher(
        api_for::<K>(client, ns),
        watcher::Config::default().page_size(TOKEN_LIST_PAGE),
    )
    .modify(strip_for_cache);
    let trigger = trigger::changed(
        reflector(writer, tokens).applied_objects(),
        predicates::generation
            .combine(user_annotations)
            .combine(predicates::finalizers)
            .combine(deletion),
    );
    (trigger, store)
}

/// A change of the environment a token uses (possibly by default) reconciles the token.
fn watch_environments<K, S>(
    controller: Controller<K>,
    store: &Store<K>,
    at: &Watch<'_, S>,
) -> Controller<K>
where
    K: TokenResource,
{
    let client = &at.ctx.client;
    let default_env = at.ctx.config.default_environment.clone();
    let (by_env, by_cluster_env) = (store.clone(), store.clone());
    let default_env2 = default_env.clone();
    let mut cluster_cfg = watcher::Config::default();
    if let Some(sel) = &at.scope.cluster_environment_selector {
        cluster_cfg = cluster_cfg.labels(sel);
    }
    controller
        .watches(
            api_for::<FronteggEnvironment>(client, at.ns),
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
                    &by_cluster_env,
                    &default_env2,
                    EnvironmentKind::ClusterFronteggEnvironment,
                    &env.name_any(),
                    None,
                )
            },
        )
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
            let r = effective_ref(t.common().environment_ref.as_ref(), default);
            r.kind == kind
                && r.name == name
                && (namespace.is_none() || t.namespace().as_deref() == namespace)
        })
        .map(|t| ObjectRef::from_obj(&**t))
        .collect()
}
