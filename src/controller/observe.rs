//! Observe (`managementPolicy: Observe`): watch a remote token that exists, `spec.tokenId`,
//! and report its existence, expiry and drift in the status, in metrics and in Events. No
//! create, patch or revoke, and no Secret. The listing is the group's shared one, so
//! observing costs no extra calls beyond one list per group per resync.

use std::time::Duration;

use kube::runtime::events::EventType;

use super::dereference::{group_key, owner, token_environment};
use super::drift::{self, WantedRemote};
use super::execute::Note;
use super::kinds::TokenResource;
use super::status::record_drift;
use super::{Context, Error, conditions, context, validate};
use crate::api::{ObservedToken, TokenStatus};

pub struct Observation {
    pub status: TokenStatus,
    pub notes: Vec<Note>,
    pub requeue: Duration,
}

pub async fn observe<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Observation, Error> {
    validate::desired_state(obj, ctx.config.grace_period)?;
    let common = obj.common();
    let Some(id) = common.token_id.clone() else {
        return Err(Error::InvalidSpec(
            "managementPolicy Observe needs spec.tokenId".into(),
        ));
    };
    let env = token_environment(obj, ctx).await?;
    let owner = owner(obj);
    let listing = ctx
        .drift
        .listing(group_key::<K>(&env, &owner), ctx.config.resync, || {
            env.client.list::<K::Endpoint>(&owner)
        })
        .await?;
    let remote = listing.tokens.iter().find(|t| t.id == id);
    let observed = ObservedToken {
        id: id.clone(),
        exists: remote.is_some(),
        expires_at: remote.and_then(|t| t.expires_at),
        drift: remote
            .map(|t| drift::compare(&wanted(obj), t))
            .unwrap_or_default(),
    };

    let generation = obj.meta().generation;
    let mut status = obj.token_status().cloned().unwrap_or_default();
    let before = status.observed.take();
    let mut notes = Vec::new();
    let was = before.as_ref().map(|o| o.exists);
    if observed.exists {
        let expiry = observed.expires_at.map_or_else(
            || "never expires".to_string(),
            |t| format!("expires at {t}"),
        );
        let message = format!("remote token {id} exists and {expiry}");
        if was != Some(true) {
            notes.push((EventType::Normal, "Observed", message.clone()));
        }
        conditions::set(
            &mut status.conditions,
            "Ready",
            true,
            "Observed",
            &message,
            generation,
        );
    } else {
        let message = format!(
            "remote token {id} does not exist for tenant {}{}",
            owner.tenant_id,
            owner
                .user_id
                .as_ref()
                .map(|u| format!(" and user {u}"))
                .unwrap_or_default()
        );
        if was != Some(false) {
            notes.push((EventType::Warning, "RemoteMissing", message.clone()));
        }
        conditions::set(
            &mut status.conditions,
            "Ready",
            false,
            "RemoteMissing",
            &message,
            generation,
        );
    }
    if let Some(note) = record_drift(&mut status.conditions, &observed.drift, "", generation) {
        ctx.metrics
            .remote_drift
            .get_or_create(&crate::metrics::Metrics::kind_action(K::KIND, "reported"))
            .inc();
        notes.push(note);
    }
    status.observed = Some(observed);
    status.observed_generation = generation;
    Ok(Observation {
        status,
        notes,
        requeue: ctx.config.resync.mul_f64(context::jitter(0.9, 1.1)),
    })
}

/// Only what the spec sets is compared: an observed token's other attributes are whoever
/// made it's business.
fn wanted<K: TokenResource>(obj: &K) -> WantedRemote {
    WantedRemote {
        description: obj.common().description.clone(),
        ..obj.wanted_remote(false)
    }
}
