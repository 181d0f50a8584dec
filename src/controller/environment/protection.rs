//! In-use protection, the `kubernetes.io/pvc-protection` model: while a token resource holds a
//! live remote token issued through an environment, the environment and its credentials
//! Secret carry `IN_USE_FINALIZER`, so neither is gone before the token is revoked or
//! orphaned. It is computed from what is stored (token statuses and journals, the
//! environment, the Secret), never from memory, so it holds across restarts and failover.
//!
//! - The environment check adds the finalizers where a cached token holds the environment
//!   (`hold`), and an issuance adds them before its create (`confirm_for_issue`).
//! - They come off only while the object is being deleted, once a fresh list finds no holder
//!   (`settle`). A token that opened its journal before the deletion is in that list; one that
//!   opens it later sees the deletion in its own read and creates nothing.
//! - An environment that is a Helm hook (the chart's default environment) carries none: Helm
//!   deletes and recreates it on every upgrade and waits for the deletion, which a finalizer
//!   held by live tokens would turn into a failed upgrade. Its credentials Secret, an ordinary
//!   release object that `helm uninstall` keeps, is protected.

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, ObjectMeta, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::Store;
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::reference::effective_ref;
use super::resolve::Origin;
use crate::api::{
    ClusterFronteggEnvironment, EnvironmentKind, EnvironmentRef, FronteggEnvironment,
    IN_USE_FINALIZER, ManagementPolicy, ORPHANED_FROM_LABEL,
};
use crate::controller::kinds::TokenResource;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::holders::{EnvironmentId, Holder, TokenHolders};
use crate::controller::steps::journal;

/// Whether `obj` holds a remote token the operator must still revoke or hand over: the
/// current one, a superseded one, or one an open journal may have created.
pub fn holds_remote_token<K: TokenResource>(obj: &K) -> bool {
    if !journal::has_finalizer(obj) || obj.common().management_policy == ManagementPolicy::Observe {
        return false;
    }
    let status = journal::status_of(obj);
    status.current.is_some()
        || !status.pending_revocations.is_empty()
        || status.pending_issue.is_some()
}

/// Through `env`: the environment it uses now, or one a token it holds was recorded as
/// issued through (the operator's default environment may have changed since).
fn issued_through<K: TokenResource>(
    obj: &K,
    default: &EnvironmentRef,
    env: &EnvironmentId,
) -> bool {
    let namespace = obj.meta().namespace.as_deref();
    let names = |kind: EnvironmentKind, name: &str| {
        kind == env.kind
            && name == env.name
            && env
                .namespace
                .as_deref()
                .is_none_or(|ns| namespace == Some(ns))
    };
    let r = effective_ref(obj.common().environment_ref.as_ref(), default);
    if names(r.kind, &r.name) {
        return true;
    }
    let Some(status) = obj.token_status() else {
        return false;
    };
    status
        .current
        .iter()
        .filter_map(|c| c.connection.as_ref())
        .chain(
            status
                .pending_revocations
                .iter()
                .filter_map(|p| p.connection.as_ref()),
        )
        .any(|c| names(c.environment_kind, &c.environment_name))
}

fn holders_among<'a, K: TokenResource>(
    objs: impl Iterator<Item = &'a K>,
    default: &EnvironmentRef,
    envs: &[EnvironmentId],
) -> Vec<Holder> {
    objs.filter(|o| holds_remote_token(*o) && envs.iter().any(|e| issued_through(*o, default, e)))
        .map(|o| Holder {
            kind: K::KIND,
            namespace: o.namespace().unwrap_or_default(),
            name: o.name_any(),
        })
        .collect()
}

/// The holders view of one token kind's cache in one watch scope.
pub struct StoreHolders<K: TokenResource> {
    store: Store<K>,
    namespace: Option<String>,
    default: EnvironmentRef,
}

impl<K: TokenResource> StoreHolders<K> {
    pub fn new(store: Store<K>, namespace: Option<String>, default: EnvironmentRef) -> Self {
        StoreHolders {
            store,
            namespace,
            default,
        }
    }
}

impl<K: TokenResource> TokenHolders for StoreHolders<K> {
    fn cached(&self, envs: &[EnvironmentId]) -> Vec<Holder> {
        let state = self.store.state();
        holders_among(state.iter().map(|o| &**o), &self.default, envs)
    }

    fn live<'a>(
        &'a self,
        client: &'a kube::Client,
        envs: &'a [EnvironmentId],
    ) -> BoxFuture<'a, Result<Vec<Holder>, kube::Error>> {
        Box::pin(async move {
            let all = list_all::<K>(client, self.namespace.as_deref()).await?;
            Ok(holders_among(all.iter(), &self.default, envs))
        })
    }

    fn uids(&self, out: &mut std::collections::HashSet<String>) {
        out.extend(
            self.store
                .state()
                .iter()
                .filter_map(|o| o.meta().uid.clone()),
        );
    }

    fn live_uids<'a>(
        &'a self,
        client: &'a kube::Client,
    ) -> BoxFuture<'a, Result<Vec<String>, kube::Error>> {
        Box::pin(async move {
            let all = list_all::<K>(client, self.namespace.as_deref()).await?;
            Ok(all
                .into_iter()
                .filter_map(|o| o.meta().uid.clone())
                .collect())
        })
    }

    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }
}

/// Every resource of kind `K` in the scope, by pages.
async fn list_all<K: TokenResource>(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<K>, kube::Error> {
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut found = Vec::new();
    let mut params = ListParams::default().limit(100);
    loop {
        let page = api.list(&params).await?;
        found.extend(page.items);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(found),
        }
    }
}

/// The UIDs of every token resource in the watched scope, by fresh lists.
pub async fn live_uids(ctx: &Context) -> Result<std::collections::HashSet<String>, Error> {
    let mut uids = std::collections::HashSet::new();
    for view in ctx.caches.holder_views() {
        let found = view
            .live_uids(&ctx.client)
            .await
            .context("list the token resources")?;
        uids.extend(found);
    }
    Ok(uids)
}

/// The holders a fresh list finds: what a finalizer is removed on.
async fn live_holders(ctx: &Context, envs: &[EnvironmentId]) -> Result<Vec<Holder>, Error> {
    let mut all = Vec::new();
    for view in ctx.caches.holder_views() {
        let found = view
            .live(&ctx.client, envs)
            .await
            .context("list the token resources that use the environment")?;
        all.extend(found);
    }
    all.sort();
    Ok(all)
}

/// The holders of `envs`: from the cache, or when it finds none, from a fresh list (what a
/// finalizer is removed on).
pub async fn holders_of(ctx: &Context, envs: &[EnvironmentId]) -> Result<Vec<Holder>, Error> {
    let cached = ctx.caches.cached_holders(envs);
    if !cached.is_empty() || envs.is_empty() {
        return Ok(cached);
    }
    live_holders(ctx, envs).await
}

/// The environments that read Secret `namespace/name`, by a fresh list: what releasing the
/// Secret is decided on (the caches may not have synced yet after a restart).
pub async fn live_users_of_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<EnvironmentId>, Error> {
    let params = ListParams::default();
    let mut users = Vec::new();
    // A FronteggEnvironment in a namespace this instance does not watch is not its own, and
    // its RBAC may not reach there (the operator's namespace, under the chart's Roles).
    let watched = ctx.caches.watched_namespaces();
    if watched
        .iter()
        .any(|w| w.as_deref().is_none_or(|w| w == namespace))
    {
        let envs = Api::<FronteggEnvironment>::namespaced(ctx.client.clone(), namespace)
            .list(&params)
            .await
            .context("list the environments that may read the credentials Secret")?;
        users.extend(
            envs.items
                .into_iter()
                .filter(|e| e.spec.connection.credentials_secret_ref.name == name)
                .map(|e| EnvironmentId {
                    kind: EnvironmentKind::FronteggEnvironment,
                    namespace: Some(namespace.to_string()),
                    name: e.name_any(),
                }),
        );
    }
    if namespace == ctx.config.operator_namespace {
        let cluster = Api::<ClusterFronteggEnvironment>::all(ctx.client.clone())
            .list(&params)
            .await
            .context("list the environments that may read the credentials Secret")?;
        users.extend(
            cluster
                .items
                .into_iter()
                .filter(|e| e.spec.connection.credentials_secret_ref.name == name)
                .map(|e| EnvironmentId {
                    kind: EnvironmentKind::ClusterFronteggEnvironment,
                    namespace: None,
                    name: e.name_any(),
                }),
        );
    }
    Ok(users)
}

/// Whether Secret `namespace/name` is held: by the caches first, and when they find nothing,
/// by fresh lists of the environments that read it and of their tokens.
pub async fn secret_holders(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<Vec<Holder>, Error> {
    let cached_users =
        ctx.caches
            .environments_using_secret(namespace, name, &ctx.config.operator_namespace);
    let cached = ctx.caches.cached_holders(&cached_users);
    if !cached.is_empty() {
        return Ok(cached);
    }
    let users = live_users_of_secret(ctx, namespace, name).await?;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    live_holders(ctx, &users).await
}

/// Of `uids`, those a resource deleted with `deletionPolicy: Orphan` left a Secret for: their
/// tokens were left on purpose. Read fresh, in each watched namespace.
pub async fn orphaned_uids(
    ctx: &Context,
    uids: &[String],
) -> Result<std::collections::HashSet<String>, Error> {
    let mut found = std::collections::HashSet::new();
    if uids.is_empty() {
        return Ok(found);
    }
    let selector = format!("{ORPHANED_FROM_LABEL} in ({})", uids.join(","));
    let params = ListParams::default().labels(&selector);
    for namespace in ctx.caches.watched_namespaces() {
        let api: Api<PartialObjectMeta<Secret>> = match &namespace {
            Some(ns) => Api::namespaced(ctx.client.clone(), ns),
            None => Api::all(ctx.client.clone()),
        };
        let secrets = api
            .list_metadata(&params)
            .await
            .context("list the Secrets of orphaned tokens")?;
        found.extend(
            secrets
                .items
                .into_iter()
                .filter_map(|s| s.metadata.labels?.remove(ORPHANED_FROM_LABEL)),
        );
    }
    Ok(found)
}

/// How often a deletion that waits for token resources looks again: their own deletions do
/// not trigger it.
pub const IN_USE_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// An environment and its credentials Secret, as the environment check read them.
pub struct Protected<E> {
    pub id: EnvironmentId,
    pub api: Api<E>,
    pub meta: ObjectMeta,
    pub secrets: Api<Secret>,
    pub secret_namespace: String,
    pub secret_name: String,
    /// The Secret's metadata from the API server; `None` when it does not exist.
    pub secret: Option<PartialObjectMeta<Secret>>,
}

/// What a deletion in progress came to.
pub enum Settled {
    /// The environment is not being deleted: the check goes on as usual.
    NotDeleting,
    /// The finalizers came off; the deletion proceeds.
    Released,
    /// Token resources still hold it.
    Waiting(Vec<Holder>),
}

impl<E> Protected<E>
where
    E: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    /// Adds the finalizers where a cached token resource holds the environment.
    pub async fn hold(&self, ctx: &Context) -> Result<(), Error> {
        if ctx
            .caches
            .cached_holders(std::slice::from_ref(&self.id))
            .is_empty()
        {
            return Ok(());
        }
        // A conflict is another writer (an issuance adding the same finalizer): the next
        // check looks again.
        let tolerate = |r: Result<(), kube::Error>| match r {
            Err(kube::Error::Api(status)) if status.is_conflict() => Ok(()),
            other => other,
        };
        if !helm_hook(&self.meta) {
            tolerate(add_finalizer(&self.api, &self.meta).await)
                .context("protect the environment")?;
        }
        if let Some(secret) = &self.secret {
            tolerate(add_finalizer(&self.secrets, &secret.metadata).await)
                .context("protect the credentials Secret")?;
        }
        Ok(())
    }

    /// While the environment is being deleted: releases it once no token resource holds it,
    /// with its credentials Secret unless another environment reads that too. (A Secret
    /// being deleted is `credentials.rs`'s.)
    pub async fn settle(&self, ctx: &Context) -> Result<Settled, Error> {
        if self.meta.deletion_timestamp.is_none() {
            return Ok(Settled::NotDeleting);
        }
        let holders = holders_of(ctx, std::slice::from_ref(&self.id)).await?;
        if !holders.is_empty() {
            return Ok(Settled::Waiting(holders));
        }
        let shared = live_users_of_secret(ctx, &self.secret_namespace, &self.secret_name)
            .await?
            .iter()
            .any(|e| *e != self.id);
        if let Some(secret) = &self.secret
            && !shared
        {
            remove_finalizer(&self.secrets, &secret.metadata)
                .await
                .context("release the credentials Secret")?;
        }
        remove_finalizer(&self.api, &self.meta)
            .await
            .context("release the environment")?;
        Ok(Settled::Released)
    }
}

fn helm_hook(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(HELM_HOOK))
}

const HELM_HOOK: &str = "helm.sh/hook";

pub fn protected(meta: &ObjectMeta) -> bool {
    meta.finalizers
        .iter()
        .flatten()
        .any(|f| f == IN_USE_FINALIZER)
}

/// Adds the finalizer unless it is there. The resourceVersion makes a concurrent change fail
/// the write rather than be overwritten; the API server refuses a new finalizer on an object
/// being deleted.
async fn add_finalizer<K>(api: &Api<K>, meta: &ObjectMeta) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    if protected(meta) || meta.deletion_timestamp.is_some() {
        return Ok(());
    }
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    finalizers.push(IN_USE_FINALIZER.into());
    let patch = json!({ "metadata": {
        "resourceVersion": meta.resource_version,
        "finalizers": finalizers,
    }});
    let name = meta.name.as_deref().unwrap_or_default();
    api.patch_metadata(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}

/// Removes the finalizer by position, with a test, so another controller's finalizer that
/// took its place meanwhile stays.
pub async fn remove_finalizer<K>(api: &Api<K>, meta: &ObjectMeta) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(index) = meta
        .finalizers
        .iter()
        .flatten()
        .position(|f| f == IN_USE_FINALIZER)
    else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{index}");
    let patch: json_patch::Patch = serde_json::from_value(json!([
        { "op": "test", "path": path, "value": IN_USE_FINALIZER },
        { "op": "remove", "path": path },
    ]))
    .map_err(|e| kube::Error::Service(Box::new(e)))?;
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch_metadata(name, &PatchParams::default(), &Patch::Json::<()>(patch))
        .await
    {
        // Gone already: released.
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        other => other.map(drop),
    }
}

/// Before a create, after the journal is open: the environment and its Secret, read fresh,
/// exist, are not being deleted, and carry the finalizer. A deletion that began before this
/// read either sees the open journal in its own list or is refused here.
pub async fn confirm_for_issue(ctx: &Context, origin: &Origin) -> Result<(), Error> {
    let env = &origin.environment;
    match env.kind {
        EnvironmentKind::FronteggEnvironment => {
            let ns = env.namespace.as_deref().unwrap_or_default();
            let api = Api::<FronteggEnvironment>::namespaced(ctx.client.clone(), ns);
            confirm(&api, &env.name, &env.to_string()).await?;
        }
        EnvironmentKind::ClusterFronteggEnvironment => {
            let api = Api::<ClusterFronteggEnvironment>::all(ctx.client.clone());
            confirm(&api, &env.name, &env.to_string()).await?;
        }
    }
    if let Some((ns, name)) = &origin.credentials {
        let api = Api::<Secret>::namespaced(ctx.client.clone(), ns);
        confirm(&api, name, &format!("credentials Secret {ns}/{name}")).await?;
    }
    Ok(())
}

async fn confirm<K>(api: &Api<K>, name: &str, what: &str) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    // Tokens of a new environment issue at once, and all add the same finalizer: one that
    // loses the race reads again and finds it there.
    for _ in 0..CONFIRM_ATTEMPTS {
        let Some(found) = api
            .get_metadata_opt(name)
            .await
            .context("read the environment before issuing")?
        else {
            return Err(Error::EnvironmentNotFound {
                kind: "environment or credentials Secret",
                name: what.to_string(),
            });
        };
        if found.metadata.deletion_timestamp.is_some() {
            return Err(Error::EnvironmentDeleting(what.to_string()));
        }
        if helm_hook(&found.metadata) {
            return Ok(());
        }
        match add_finalizer(api, &found.metadata).await {
            Err(kube::Error::Api(status)) if status.is_conflict() => continue,
            other => return other.context("protect the environment before issuing"),
        }
    }
    Err(Error::Stale {
        action: "protect the environment before issuing",
    })
}

/// Reads and writes of the finalizer before a create gives up to concurrent writers.
const CONFIRM_ATTEMPTS: usize = 5;

/// Registers the holders view of one token kind's cache.
pub fn register<K: TokenResource>(
    ctx: &Context,
    store: Store<K>,
    namespace: Option<String>,
    default: EnvironmentRef,
) {
    ctx.caches
        .add_holders(Arc::new(StoreHolders::new(store, namespace, default)));
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::api::{
        FINALIZER, IssuedTokenRecord, JOURNAL_ANNOTATION, PendingRevocation, TokenStatus,
        UserApiToken,
    };
    use crate::controller::runtime::fixtures::user_api_token;

    fn cluster(name: &str) -> EnvironmentId {
        EnvironmentId {
            kind: EnvironmentKind::ClusterFronteggEnvironment,
            namespace: None,
            name: name.into(),
        }
    }

    fn namespaced(ns: &str, name: &str) -> EnvironmentId {
        EnvironmentId {
            kind: EnvironmentKind::FronteggEnvironment,
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    fn default_env() -> EnvironmentRef {
        EnvironmentRef {
            kind: EnvironmentKind::ClusterFronteggEnvironment,
            name: "default".into(),
        }
    }

    /// The fixture token (namespace `ns`) with the finalizer and a current token.
    fn holding(edit: impl FnOnce(&mut crate::api::TokenCommonSpec)) -> UserApiToken {
        let mut t = user_api_token(edit);
        t.metadata.finalizers = Some(vec![FINALIZER.into()]);
        t.status = Some(TokenStatus {
            current: Some(IssuedTokenRecord {
                id: "tok".into(),
                issued_at: Timestamp::UNIX_EPOCH,
                ..IssuedTokenRecord::default()
            }),
            ..TokenStatus::default()
        });
        t
    }

    #[test]
    fn a_token_holds_what_it_must_still_revoke() {
        assert!(holds_remote_token(&holding(|_| {})));

        let mut never_issued = user_api_token(|_| {});
        never_issued.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(!holds_remote_token(&never_issued), "nothing issued yet");

        let mut superseded = never_issued.clone();
        superseded.status = Some(TokenStatus {
            pending_revocations: vec![PendingRevocation {
                id: "old".into(),
                reason: "rotation".into(),
                not_before: None,
                connection: None,
            }],
            ..TokenStatus::default()
        });
        assert!(holds_remote_token(&superseded), "a superseded token");

        let mut issuing = never_issued.clone();
        let journal =
            r#"{"attemptId":"a1","startedAt":"2026-01-01T00:00:00Z","operation":"Initial"}"#;
        issuing.metadata.annotations =
            Some([(JOURNAL_ANNOTATION.to_string(), journal.to_string())].into());
        assert!(holds_remote_token(&issuing), "an open journal");

        let mut released = holding(|_| {});
        released.metadata.finalizers = None;
        assert!(!holds_remote_token(&released), "cleanup finished");

        let observed = holding(|c| c.management_policy = ManagementPolicy::Observe);
        assert!(!holds_remote_token(&observed), "never ours to revoke");
    }

    #[test]
    fn a_token_holds_only_the_environment_that_serves_it() {
        let by_default = holding(|_| {});
        let envs = [cluster("default")];
        assert_eq!(
            holders_among([&by_default].into_iter(), &default_env(), &envs).len(),
            1
        );
        let other = [cluster("other"), namespaced("ns", "default")];
        assert!(holders_among([&by_default].into_iter(), &default_env(), &other).is_empty());

        let own = holding(|c| {
            c.environment_ref = Some(EnvironmentRef {
                kind: EnvironmentKind::FronteggEnvironment,
                name: "mine".into(),
            })
        });
        let found = holders_among(
            [&own].into_iter(),
            &default_env(),
            &[namespaced("ns", "mine")],
        );
        assert_eq!(
            found,
            vec![Holder {
                kind: "UserApiToken",
                namespace: "ns".into(),
                name: "ci".into()
            }]
        );
        let elsewhere = [namespaced("other-ns", "mine")];
        assert!(
            holders_among([&own].into_iter(), &default_env(), &elsewhere).is_empty(),
            "a FronteggEnvironment of the same name in another namespace"
        );
    }

    #[test]
    fn only_helm_hooks_are_exempt() {
        let mut meta = ObjectMeta::default();
        assert!(!helm_hook(&meta));
        meta.annotations = Some([("helm.sh/hook".to_string(), "post-install".to_string())].into());
        assert!(helm_hook(&meta));
    }
}
