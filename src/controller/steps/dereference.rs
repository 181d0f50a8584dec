//! Dereference: read what the plan needs. The environment and its shared client, the
//! Secret and the credential in it, the remote token as the shared listing saw it, and, when
//! an issuance may have been interrupted, which remote tokens carry this resource's mark.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::drift;
use super::plan::{self, Desired, Observed, RemoteState, SecretState};
use super::{journal, marker};
use crate::api::{IssuedTokenRecord, TokenStatus};
use crate::controller::environment::policy;
use crate::controller::environment::reference::effective_ref;
use crate::controller::environment::resolve::{self, Purpose, Resolved};
use crate::controller::kinds::{TokenResource, WantedRemote};
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::{Error, KubeContext};
use crate::controller::runtime::listings::{GroupKey, Lister};
use crate::controller::runtime::shares::Share;
use crate::controller::secret::credential::{
    Credential, SecretContext, read_credential, secret_digest,
};
use crate::controller::secret::jwt::JwtState;
use crate::controller::secret::layout;
use crate::identity::{AuthMode, RemoteToken, TokenEndpoint, TokenOwner};

/// Everything the later steps use, read once.
pub struct World {
    pub env: Resolved,
    /// The environment's worker held for this pass (`runtime::shares`).
    pub share: Share,
    pub owner: TokenOwner,
    pub secrets: Api<Secret>,
    /// The token's Secret as read this pass. `None` also when it was not read (`SecretRead`).
    pub live_secret: Option<Secret>,
    pub credential: Option<Credential>,
    pub observed: Observed,
    /// The current token's expiry as Frontegg reports it, when the listing has one.
    pub remote_expires: Option<Timestamp>,
}

impl World {
    pub fn secret_context(&self) -> SecretContext<'_> {
        SecretContext {
            base_url: self.env.client.base_url(),
            tenant_id: &self.owner.tenant_id,
            user_id: self.owner.user_id.as_deref(),
        }
    }
}

/// Whether a pass reads the token's Secret from the API server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretRead {
    /// Not for a resource that never held a token (no finalizer, no token recorded or being
    /// issued, nothing to import): no Secret of ours can exist for it. Its first issue probes
    /// with a dry-run create, which finds any other Secret by that name
    /// (`Error::SecretAppeared`), and the pass runs again with `Always`.
    UnlessNew,
    Always,
}

impl SecretRead {
    fn needed<K: TokenResource>(self, obj: &K, desired: &Desired, status: &TokenStatus) -> bool {
        self == SecretRead::Always
            || journal::has_finalizer(obj)
            || desired.import
            || status.current.is_some()
            || status.pending_issue.is_some()
            || !status.pending_revocations.is_empty()
    }
}

pub fn owner<K: TokenResource>(obj: &K) -> TokenOwner {
    TokenOwner {
        tenant_id: obj.common().tenant_id.clone(),
        user_id: obj.user_id().map(str::to_string),
    }
}

pub async fn dereference<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    desired: &Desired,
    status: &TokenStatus,
    read: SecretRead,
) -> Result<World, Error> {
    let env = token_environment(obj, ctx).await?;
    let share = ctx
        .shares
        .try_take(K::KIND, &env.key, ctx.config.concurrency)
        .ok_or_else(|| Error::WorkersBusy(env.key.clone()))?;
    env.serves_all(status)?;
    check_policy(obj, desired, &env)?;
    let secrets: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let live_secret = if read.needed(obj, desired, status) {
        secrets
            .get_opt(&desired.secret_name)
            .await
            .context("read the token's Secret")?
    } else {
        None
    };
    if let Some(live) = &live_secret
        && !layout::is_owned_by(live, obj)
    {
        return Err(Error::SecretConflict(desired.secret_name.clone()));
    }
    let credential = live_secret
        .as_ref()
        .and_then(|s| read_credential(s, K::LAYOUT));
    let mut world = World {
        env,
        share,
        owner: owner(obj),
        secrets,
        live_secret,
        credential,
        observed: Observed {
            secret: SecretState::Missing,
            remote: RemoteState::Unknown,
            recovery: None,
            remote_drift: None,
            access_token: JwtState::NotWanted,
        },
        remote_expires: None,
    };
    observe_world(obj, ctx, desired, status, &mut world).await?;
    Ok(world)
}

/// The platform team's policy, before any remote call: a token it no longer admits is
/// neither issued nor renewed (its revocation on deletion goes on regardless).
fn check_policy<K: TokenResource>(obj: &K, desired: &Desired, env: &Resolved) -> Result<(), Error> {
    let Some((name, rules)) = &env.policy else {
        return Ok(());
    };
    let request = policy::Request {
        user: obj.user_id(),
        role_ids: obj.role_ids(),
        permission_ids: obj.permission_ids(),
        lifetime: desired
            .expires_in_minutes
            .map(|m| std::time::Duration::from_secs(m.saturating_mul(60))),
    };
    policy::check(name, rules, &request)
}

/// What the plan reads of the world: the Secret's state, the remote token's, drift, the
/// delivered JWT, and what an interrupted issuance left.
async fn observe_world<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    desired: &Desired,
    status: &TokenStatus,
    world: &mut World,
) -> Result<(), Error> {
    world.observed.secret = secret_state(obj, desired, status.current.as_ref(), world)?;
    let (remote, listed) = remote_state::<K>(ctx, world, status.current.as_ref()).await;
    world.observed.remote = remote;
    if let (Some(listed), Some(current)) = (&listed, &status.current) {
        world.remote_expires = listed.expires_at;
        let installation = ctx.config.installation_id.as_deref();
        let listed = with_recorded_attempt(obj, current, listed, installation);
        let wanted = wanted_remote(obj, current, installation);
        world.observed.remote_drift = Some(drift::compare(&wanted, &listed));
    }
    if let (Some(before), Some(current)) = (desired.access_token_refresh_before, &status.current) {
        let jwt = world
            .credential
            .as_ref()
            .filter(|c| c.id == current.id)
            .and_then(|c| c.access_token.as_ref());
        world.observed.access_token = ctx.jwt.state(&current.id, jwt, before, Timestamp::now());
    }
    if status.pending_issue.is_some() || world.observed.secret == SecretState::Unrecorded {
        world.observed.recovery = Some(find_marked::<K>(obj, ctx, status, world).await?);
    }
    Ok(())
}

/// The environment that serves `obj`, with a user-token environment's scope checked.
pub async fn token_environment<K: TokenResource>(
    obj: &K,
    ctx: &Context,
) -> Result<Resolved, Error> {
    let common = obj.common();
    let env_ref = effective_ref(
        common.environment_ref.as_ref(),
        &ctx.config.default_environment,
    );
    let namespace = obj.namespace().unwrap_or_default();
    let env = resolve::resolve(ctx, &namespace, env_ref, &common.tenant_id, Purpose::Issue).await?;
    if env.client.auth_mode() == AuthMode::UserApiToken {
        check_user_scope(obj, &env).await?;
    }
    Ok(env)
}

/// A user-token environment serves only its own user's personal tokens. Checked before any
/// token request: tenant kinds at once; user kinds against the JWT's user and tenant (known
/// from the environment's health check, or from one authentication).
async fn check_user_scope<K: TokenResource>(obj: &K, env: &Resolved) -> Result<(), Error> {
    let who = match env.client.user_identity() {
        Some(who) => Some(who),
        None if obj.user_id().is_some() => {
            env.client.check_credentials().await?;
            env.client.user_identity()
        }
        None => None,
    };
    let allowed = who.as_ref().map_or_else(
        || "its own user".to_string(),
        |w| format!("user {} of tenant {}", w.user_id, w.tenant_id),
    );
    let refuse = |asked: String| Error::OutsideUserScope {
        environment: env.key.clone(),
        allowed: allowed.clone(),
        asked,
    };
    let Some(user) = obj.user_id() else {
        return Err(refuse(format!("a {}", K::KIND)));
    };
    let tenant = &obj.common().tenant_id;
    match &who {
        Some(w) if w.user_id == user && &w.tenant_id == tenant => Ok(()),
        _ => Err(refuse(format!("user {user} of tenant {tenant}"))),
    }
}

fn secret_state<K: TokenResource>(
    obj: &K,
    desired: &Desired,
    current: Option<&IssuedTokenRecord>,
    world: &World,
) -> Result<SecretState, Error> {
    let (Some(live), Some(cred)) = (&world.live_secret, &world.credential) else {
        return Ok(match &world.live_secret {
            None => SecretState::Missing,
            Some(_) => SecretState::OwnedWithoutCredential,
        });
    };
    let recorded = current.is_some_and(|c| {
        c.id == cred.id
            && c.secret_digest
                .as_ref()
                .is_none_or(|d| *d == secret_digest(cred))
    });
    if !recorded {
        return Ok(SecretState::Unrecorded);
    }
    let want = layout::desired_secret(obj, &desired.secret_name, cred, &world.secret_context())?;
    Ok(SecretState::Owned {
        up_to_date: layout::matches(live, &want),
    })
}

/// What the listing should show for the current token: the kind's attributes from the spec,
/// and the description with the operator's mark. An imported token of a kind that cannot be
/// patched never got the mark; its description is compared only when the spec sets one.
fn wanted_remote<K: TokenResource>(
    obj: &K,
    current: &IssuedTokenRecord,
    installation: Option<&str>,
) -> WantedRemote {
    let mut want = obj.wanted_remote(true);
    let description = obj.common().description.as_deref();
    let patchable = obj.patch_request(String::new()).is_some();
    want.description = if current.imported && !patchable {
        description.map(str::to_string)
    } else {
        Some(marker::describe(
            description,
            installation,
            obj.meta().uid.as_deref().unwrap_or_default(),
            current
                .attempt_id
                .as_deref()
                .unwrap_or(marker::UNMARKED_ATTEMPT),
        ))
    };
    want
}

/// The attempt in the mark is bookkeeping, not an attribute anyone edits: a token adopted after
/// an interrupted issuance can carry the attempt of an earlier journal than the one the status
/// recorded, and one issued by an earlier version a mark without the installation. A mark
/// naming this resource is compared as if it were the one written today.
fn with_recorded_attempt<K: TokenResource>(
    obj: &K,
    current: &IssuedTokenRecord,
    listed: &RemoteToken,
    installation: Option<&str>,
) -> RemoteToken {
    let mut listed = listed.clone();
    let uid = obj.meta().uid.as_deref().unwrap_or_default();
    if let Some(description) = listed.description.as_deref()
        && let Some((marked, _)) = marker::parse(description)
        && marked == uid
    {
        listed.description = Some(marker::describe(
            Some(marker::user_part(description)),
            installation,
            uid,
            current
                .attempt_id
                .as_deref()
                .unwrap_or(marker::UNMARKED_ATTEMPT),
        ));
    }
    listed
}

/// Present/Absent from the group's shared listing, with the listed token; Unknown when the
/// listing predates the token or its last change in place, or failed: rotation and repair
/// must not wait for a list call to succeed.
async fn remote_state<K: TokenResource>(
    ctx: &Context,
    world: &World,
    current: Option<&IssuedTokenRecord>,
) -> (RemoteState, Option<RemoteToken>) {
    let Some(current) = current else {
        return (RemoteState::Unknown, None);
    };
    let key = group_key::<K>(&world.env, &world.owner);
    // Listed in the background, at the pace the budget allows: never waited for here.
    let (client, owner) = (world.env.client.clone(), world.owner.clone());
    let lister: Lister = Arc::new(move || {
        let (client, owner) = (client.clone(), owner.clone());
        Box::pin(async move { client.list_in_background::<K::Endpoint>(&owner).await })
    });
    let Some(listing) = ctx.drift.watch(key, lister, ctx.config.resync) else {
        return (RemoteState::Unknown, None);
    };
    let changed = current
        .updated_at
        .map_or(current.issued_at, |u| u.max(current.issued_at));
    if listing.fetched_at < changed {
        return (RemoteState::Unknown, None);
    }
    match listing.tokens.iter().find(|t| t.id == current.id) {
        Some(t) => (RemoteState::Present, Some(t.clone())),
        None => (RemoteState::Absent, None),
    }
}

pub fn group_key<K: TokenResource>(env: &Resolved, owner: &TokenOwner) -> GroupKey {
    GroupKey {
        environment: env.key.clone(),
        kind: K::KIND,
        endpoint: K::Endpoint::NAME,
        tenant: owner.tenant_id.clone(),
        user: owner.user_id.clone(),
    }
}

/// A fresh listing (a token created moments ago must be in it), reduced to what a crash may
/// have left: tokens marked with this resource's UID that the status does not record.
async fn find_marked<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    status: &TokenStatus,
    world: &World,
) -> Result<plan::Recovery, Error> {
    let tokens = fresh_listing::<K>(ctx, &world.env, &world.owner).await?;
    let uid = obj.meta().uid.as_deref().unwrap_or_default();
    let recorded: Vec<&str> = status
        .current
        .iter()
        .map(|c| c.id.as_str())
        .chain(status.pending_revocations.iter().map(|p| p.id.as_str()))
        .collect();
    Ok(plan::recover(
        uid,
        marked_by_uid(&tokens),
        &recorded,
        world.credential.as_ref().map(|c| c.id.as_str()),
    ))
}

pub async fn fresh_listing<K: TokenResource>(
    ctx: &Context,
    env: &Resolved,
    owner: &TokenOwner,
) -> Result<std::sync::Arc<Vec<RemoteToken>>, Error> {
    let listing = ctx
        .drift
        .listing(
            group_key::<K>(env, owner),
            std::time::Duration::ZERO,
            || env.client.list::<K::Endpoint>(owner),
        )
        .await?;
    Ok(listing.tokens)
}

/// (token id, marked uid) for every token that carries a mark.
pub fn marked_by_uid(tokens: &[RemoteToken]) -> impl Iterator<Item = (&str, &str)> {
    tokens.iter().filter_map(|t| {
        let (uid, _) = marker::parse(t.description.as_deref()?)?;
        Some((t.id.as_str(), uid))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{FINALIZER, IssueIntent};
    use crate::controller::runtime::fixtures::user_api_token;
    use crate::controller::steps::validate;

    fn needed(obj: &crate::api::UserApiToken, status: &TokenStatus) -> bool {
        let desired = validate::desired_state(obj, Duration::from_secs(600)).unwrap();
        SecretRead::UnlessNew.needed(obj, &desired, status)
    }

    #[test]
    fn only_a_resource_that_never_held_a_token_skips_reading_its_secret() {
        let fresh = user_api_token(|_| {});
        assert!(!needed(&fresh, &TokenStatus::default()));
        let desired = validate::desired_state(&fresh, Duration::from_secs(600)).unwrap();
        assert!(SecretRead::Always.needed(&fresh, &desired, &TokenStatus::default()));

        let mut finalized = fresh.clone();
        finalized.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert!(needed(&finalized, &TokenStatus::default()), "ours");
        let mut other = fresh.clone();
        other.metadata.finalizers = Some(vec!["example.com/other".into()]);
        assert!(!needed(&other, &TokenStatus::default()), "someone else's");

        let recorded = TokenStatus {
            current: Some(IssuedTokenRecord::default()),
            ..TokenStatus::default()
        };
        assert!(needed(&fresh, &recorded), "a token on record");
        let issuing = TokenStatus {
            pending_issue: Some(IssueIntent {
                attempt_id: "a1".into(),
                started_at: Timestamp::UNIX_EPOCH,
                operation: "Initial".into(),
            }),
            ..TokenStatus::default()
        };
        assert!(needed(&fresh, &issuing), "an issue under way");
        let revoking = TokenStatus {
            pending_revocations: vec![crate::api::PendingRevocation {
                id: "old".into(),
                reason: "Rotation".into(),
                not_before: None,
                connection: None,
            }],
            ..TokenStatus::default()
        };
        assert!(needed(&fresh, &revoking), "a revocation due");

        let importing = user_api_token(|c| {
            c.import = Some(crate::api::ImportSpec {
                token_id: "tok".into(),
                secret_ref: crate::api::SecretKeyRef {
                    name: "old".into(),
                    key: "secret".into(),
                },
            })
        });
        assert!(needed(&importing, &TokenStatus::default()), "an import");
    }
}
