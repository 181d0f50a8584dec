//! Observe (`managementPolicy: Observe`): watch a remote token that exists, `spec.tokenId`,
//! and report its existence, expiry and drift in the status, in metrics and in Events. No
//! create, patch or revoke, and no Secret. The listing is the group's shared one, so
//! observing costs no extra calls beyond one list per group per resync.

use super::report::Outcome;
use crate::api::ObservedToken;
use crate::controller::kinds::{TokenResource, WantedRemote};
use crate::controller::runtime::conditions;
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::events::EventType;
use crate::controller::runtime::jitter::jitter;
use crate::controller::steps::dereference::{group_key, owner, token_environment};
use crate::controller::steps::drift;
use crate::controller::steps::status::record_drift;
use crate::controller::steps::validate;
use crate::identity::TokenOwner;

pub async fn observe<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Outcome, Error> {
    validate::desired_state(obj, ctx.config.grace_period)?;
    let Some(id) = obj.common().token_id.clone() else {
        return Err(Error::InvalidSpec(
            "managementPolicy Observe needs spec.tokenId".into(),
        ));
    };
    let observed = look::<K>(obj, ctx, id).await?;
    let generation = obj.meta().generation;
    let mut status = obj.token_status().cloned().unwrap_or_default();
    let before = status.observed.take();
    let mut notes = Vec::new();
    let was = before.as_ref().map(|o| o.exists);
    let (ready, reason, message) = readiness(&observed, &owner(obj));
    if was != Some(observed.exists) {
        let type_ = if ready {
            EventType::Normal
        } else {
            EventType::Warning
        };
        notes.push((type_, reason, message.clone()));
    }
    conditions::set(
        &mut status.conditions,
        "Ready",
        ready,
        reason,
        &message,
        generation,
    );
    if let Some(note) = record_drift(&mut status.conditions, &observed.drift, "", generation) {
        ctx.metrics
            .remote_drift
            .get_or_create(&crate::metrics::Metrics::kind_action(K::KIND, "reported"))
            .inc();
        notes.push(note);
    }
    status.observed = Some(observed);
    status.observed_generation = generation;
    Ok(Outcome {
        status,
        notes,
        requeue: ctx.config.resync.mul_f64(jitter(0.9, 1.1)),
    })
}

/// The token as the group's shared listing shows it.
async fn look<K: TokenResource>(
    obj: &K,
    ctx: &Context,
    id: String,
) -> Result<ObservedToken, Error> {
    let env = token_environment(obj, ctx).await?;
    let owner = owner(obj);
    let listing = ctx
        .drift
        .listing(group_key::<K>(&env, &owner), ctx.config.resync, || {
            env.client.list::<K::Endpoint>(&owner)
        })
        .await?;
    let remote = listing.tokens.iter().find(|t| t.id == id);
    Ok(ObservedToken {
        exists: remote.is_some(),
        expires_at: remote.and_then(|t| t.expires_at),
        drift: remote
            .map(|t| drift::compare(&wanted(obj), t))
            .unwrap_or_default(),
        id,
    })
}

/// Ready, its reason and message: the token exists (and when it expires), or it does not.
fn readiness(observed: &ObservedToken, owner: &TokenOwner) -> (bool, &'static str, String) {
    let id = &observed.id;
    if observed.exists {
        let expiry = observed.expires_at.map_or_else(
            || "never expires".to_string(),
            |t| format!("expires at {t}"),
        );
        return (
            true,
            "Observed",
            format!("remote token {id} exists and {expiry}"),
        );
    }
    let user = owner
        .user_id
        .as_ref()
        .map(|u| format!(" and user {u}"))
        .unwrap_or_default();
    let message = format!(
        "remote token {id} does not exist for tenant {}{user}",
        owner.tenant_id
    );
    (false, "RemoteMissing", message)
}

/// Only what the spec sets is compared: an observed token's other attributes are whoever
/// made it's business.
fn wanted<K: TokenResource>(obj: &K) -> WantedRemote {
    WantedRemote {
        description: obj.common().description.clone(),
        ..obj.wanted_remote(false)
    }
}
