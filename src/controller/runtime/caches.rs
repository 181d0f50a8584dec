//! Read-through caches of what every reconcile reads besides the token itself: environments,
//! namespace labels (allowedNamespaces.selector) and environments' credentials Secrets.
//!
//! A hit is served from a reflector store. A miss falls back to a GET, so an object created
//! a moment ago, whose watch event has not arrived yet, is still found, and a missing or
//! unmarked object still gets its precise error. Nothing waits for these stores: before they
//! sync, or without the RBAC to watch, every read is simply a miss.

use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};

use super::holders::{EnvironmentId, Holder, TokenHolders};
use crate::api::{
    CREDENTIALS_LABEL, ClusterFronteggEnvironment, EnvironmentKind, FronteggEnvironment,
};

/// Stores by scope: `None` covers every namespace, `Some(ns)` one.
type Scoped<K> = Vec<(Option<String>, Store<K>)>;

#[derive(Default)]
pub struct Caches {
    cluster_environments: OnceLock<Store<ClusterFronteggEnvironment>>,
    environments: OnceLock<Scoped<FronteggEnvironment>>,
    namespaces: OnceLock<Store<PartialObjectMeta<Namespace>>>,
    credentials: OnceLock<Scoped<Secret>>,
    /// One view per token kind and watch scope, registered as the controllers start.
    holders: Mutex<Vec<Arc<dyn TokenHolders>>>,
}

fn scoped_get<K>(stores: Option<&Scoped<K>>, namespace: &str, name: &str) -> Option<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let store = stores?
        .iter()
        .find(|(scope, _)| scope.as_deref().is_none_or(|s| s == namespace))?;
    store.1.get(&ObjectRef::new(name).within(namespace))
}

impl Caches {
    pub fn cluster_environment(&self, name: &str) -> Option<Arc<ClusterFronteggEnvironment>> {
        self.cluster_environments.get()?.get(&ObjectRef::new(name))
    }

    pub fn environment(&self, namespace: &str, name: &str) -> Option<Arc<FronteggEnvironment>> {
        scoped_get(self.environments.get(), namespace, name)
    }

    pub fn namespace(&self, name: &str) -> Option<Arc<PartialObjectMeta<Namespace>>> {
        self.namespaces.get()?.get(&ObjectRef::new(name))
    }

    pub fn credentials(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        scoped_get(self.credentials.get(), namespace, name)
    }

    pub fn add_holders(&self, view: Arc<dyn TokenHolders>) {
        if let Ok(mut views) = self.holders.lock() {
            views.push(view);
        }
    }

    pub fn holder_views(&self) -> Vec<Arc<dyn TokenHolders>> {
        self.holders.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The cached token resources that hold a remote token issued through any of `envs`.
    pub fn cached_holders(&self, envs: &[EnvironmentId]) -> Vec<Holder> {
        let mut all: Vec<Holder> = self
            .holder_views()
            .iter()
            .flat_map(|view| view.cached(envs))
            .collect();
        all.sort();
        all
    }

    /// The UIDs of every cached token resource.
    pub fn known_uids(&self) -> std::collections::HashSet<String> {
        let mut uids = std::collections::HashSet::new();
        for view in self.holder_views() {
            view.uids(&mut uids);
        }
        uids
    }

    /// Where token resources are watched: each namespace once, `None` for the cluster.
    pub fn watched_namespaces(&self) -> Vec<Option<String>> {
        let mut scopes: Vec<Option<String>> = self
            .holder_views()
            .iter()
            .map(|v| v.namespace().map(str::to_string))
            .collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The cached environments that read their credentials from Secret `namespace/name`.
    /// ClusterFronteggEnvironments read theirs in the operator's namespace.
    pub fn environments_using_secret(
        &self,
        namespace: &str,
        name: &str,
        operator_namespace: &str,
    ) -> Vec<EnvironmentId> {
        let mut found = Vec::new();
        for (_, store) in self.environments.get().into_iter().flatten() {
            for env in store.state() {
                let env_ns = env.metadata.namespace.as_deref().unwrap_or_default();
                if env_ns == namespace && env.spec.connection.credentials_secret_ref.name == name {
                    found.push(EnvironmentId {
                        kind: EnvironmentKind::FronteggEnvironment,
                        namespace: Some(env_ns.to_string()),
                        name: env.metadata.name.clone().unwrap_or_default(),
                    });
                }
            }
        }
        if namespace == operator_namespace {
            for env in self
                .cluster_environments
                .get()
                .map(|s| s.state())
                .unwrap_or_default()
            {
                if env.spec.connection.credentials_secret_ref.name == name {
                    found.push(EnvironmentId {
                        kind: EnvironmentKind::ClusterFronteggEnvironment,
                        namespace: None,
                        name: env.metadata.name.clone().unwrap_or_default(),
                    });
                }
            }
        }
        found
    }

    /// The environment stores are the environment-health controllers' own.
    pub fn set_environments(
        &self,
        cluster: Store<ClusterFronteggEnvironment>,
        namespaced: Scoped<FronteggEnvironment>,
    ) {
        let _ = self.cluster_environments.set(cluster);
        let _ = self.environments.set(namespaced);
    }

    /// Starts the namespace and credentials watches; the returned futures drive them until
    /// `shutdown`, so that they never hold up a graceful exit.
    ///
    /// Credentials are cached only in the operator namespace, where ClusterFronteggEnvironment
    /// credentials live and only its administrators write. In tenants' namespaces anyone
    /// who can create Secrets could label thousands of large ones and have the operator hold
    /// them all; a FronteggEnvironment's credentials are read when used instead.
    pub fn watch(
        &self,
        client: &kube::Client,
        operator_namespace: &str,
        shutdown: impl Future<Output = ()> + Send + Clone + 'static,
    ) -> Vec<BoxFuture<'static, ()>> {
        let mut drivers = Vec::new();
        let (store, writer) = reflector::store();
        let namespaces = watcher(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            watcher::Config::default(),
        )
        .modify(|ns| ns.metadata.managed_fields = None);
        drivers.push(drive(reflector(writer, namespaces), shutdown.clone()));
        let _ = self.namespaces.set(store);

        // Only Secrets someone marked as credentials: other Secrets' contents are never held
        // in memory.
        let api = Api::<Secret>::namespaced(client.clone(), operator_namespace);
        let cfg = watcher::Config::default().labels(&format!("{CREDENTIALS_LABEL}=true"));
        let (store, writer) = reflector::store();
        let stream = watcher(api, cfg).modify(|s| s.metadata.managed_fields = None);
        drivers.push(drive(reflector(writer, stream), shutdown));
        let _ = self
            .credentials
            .set(vec![(Some(operator_namespace.to_string()), store)]);
        drivers
    }
}

fn drive<S, T>(
    stream: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> BoxFuture<'static, ()>
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send + 'static,
    T: Send + 'static,
{
    let stream = stream.default_backoff().take_until(shutdown);
    Box::pin(stream.for_each(|event| async move {
        if let Err(e) = event {
            tracing::debug!(error = %e, "cache watch");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;

    fn secret(ns: &str, name: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns}
        }))
        .unwrap()
    }

    #[test]
    fn scoped_lookups_find_only_what_their_scope_holds() {
        let (all, mut all_writer) = reflector::store::<Secret>();
        all_writer.apply_watcher_event(&Event::Apply(secret("a", "creds")));
        let (one, mut one_writer) = reflector::store::<Secret>();
        one_writer.apply_watcher_event(&Event::Apply(secret("ops", "creds")));

        let caches = Caches::default();
        assert!(caches.credentials("a", "creds").is_none(), "unset: a miss");
        let _ = caches.credentials.set(vec![(Some("ops".into()), one)]);
        assert!(caches.credentials("ops", "creds").is_some());
        assert!(
            caches.credentials("a", "creds").is_none(),
            "other namespace"
        );

        let cluster_wide = Caches::default();
        let _ = cluster_wide.credentials.set(vec![(None, all)]);
        assert!(cluster_wide.credentials("a", "creds").is_some());
        assert!(cluster_wide.credentials("a", "other").is_none());
    }
}
