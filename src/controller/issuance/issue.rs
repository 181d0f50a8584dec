//! Issuing a token (`Plan::Issue`): the one step that cannot be repeated safely, so it runs as
//! named steps on one `Issuance`, each making the next one safe:
//! 1. `probe`: the API server validates the Secret before a token exists that could not be
//!    written anywhere;
//! 2. `throttle`: at most one create per resource per `--min-reissue-interval`;
//! 3. `environment_alive`: nothing is issued through an environment being deleted;
//! 4. `open_journal`: the journal and the finalizer, durable before the create, so a crash at
//!    any later point leaves a trace the next pass settles (`recover.rs`);
//! 5. `protect`: the environment and its credentials Secret, read fresh, carry the in-use
//!    finalizer, so neither can go before this token is revoked;
//! 6. `create`: the remote token, marked with this resource and attempt;
//! 7. `verify`: one exchange serves both `rotation.verify` and the delivered JWT;
//! 8. `deliver`: the Secret, or the new token revoked again when it cannot be written;
//! 9. `follow_up`: the renamed token's old Secret, the workloads to restart;
//! 10. `record`: the status, the Event, the superseded token's revocation after its grace.

use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::events::EventType;

use super::restart::restart_targets;
use super::revoke::revoke;
use super::step::{Changes, Step};
use crate::api::{
    AttemptRecord, IssuanceBackoff, IssueIntent, IssuedTokenRecord, PendingRevocation,
};
use crate::controller::environment::protection;
use crate::controller::kinds::{SecretLayout, TokenResource};
use crate::controller::runtime::error::Error;
use crate::controller::runtime::test_hooks;
use crate::controller::runtime::throttle::{after_failure, failures_that_count};
use crate::controller::secret::credential::{AccessJwt, Credential, secret_digest};
use crate::controller::secret::{layout, write};
use crate::controller::steps::plan::IssueReason;
use crate::controller::steps::{journal, marker};
use crate::identity::{IdentityError, IssuedToken};
use crate::metrics::Metrics;

/// Create, write the Secret, record; the superseded token stays valid for the grace period.
pub async fn issue<K: TokenResource>(
    step: &Step<'_, K>,
    changes: &mut Changes,
    reason: IssueReason,
    superseded: Option<String>,
) -> Result<(), Error> {
    let issuance = Issuance {
        step,
        reason,
        superseded,
        uid: step.uid(),
        attempt_id: marker::new_attempt(),
    };
    issuance.announce(changes);
    issuance.probe().await?;
    issuance.throttle(changes).await?;
    issuance.environment_alive()?;
    issuance.open_journal(changes).await?;
    issuance.protect(changes).await?;
    let delivered = issuance.create_and_deliver(changes).await;
    if let Err(e) = &delivered {
        issuance.back_off(e, changes);
    }
    delivered
}

/// One issuance: what every step of it needs.
struct Issuance<'s, 'a, K> {
    step: &'s Step<'a, K>,
    reason: IssueReason,
    superseded: Option<String>,
    uid: String,
    attempt_id: String,
}

impl<K: TokenResource> Issuance<'_, '_, K> {
    /// A Secret holding someone else's credential is replaced; say so before it happens.
    fn announce(&self, changes: &mut Changes) {
        if self.reason == IssueReason::SecretTampered {
            changes.notes.push((
                EventType::Warning,
                "SecretTampered",
                format!(
                    "Secret {} holds a credential this resource did not issue; issuing a new token",
                    self.step.desired.secret_name
                ),
            ));
        }
    }

    /// The API server checks the Secret's shape (keys, labels, annotations, size) before a
    /// token exists that could not be written anywhere.
    async fn probe(&self) -> Result<(), Error> {
        let (world, desired) = (self.step.world, self.step.desired);
        let probe =
            layout::probe_secret(self.step.obj, &desired.secret_name, &world.secret_context())?;
        write::dry_run(&world.secrets, probe, world.live_secret.is_some()).await
    }

    async fn throttle(&self, changes: &Changes) -> Result<(), Error> {
        let ctx = self.step.ctx;
        if let Some(wait) = self.backing_off(changes) {
            return Err(Error::ReissueThrottled { wait });
        }
        let Err(wait) = ctx.throttle.try_acquire(
            &self.uid,
            changes.status.current.as_ref().map(|c| c.issued_at),
            self.step.now,
            ctx.config.min_reissue_interval,
        ) else {
            return Ok(());
        };
        // Most often a pass on a cached object that predates the status of the token just
        // issued: then plan again on fresh state, without reporting a failure.
        if journal::cache_is_behind(self.step.obj, ctx).await? {
            return Err(Error::Stale {
                action: "issue a token",
            });
        }
        Err(Error::ReissueThrottled { wait })
    }

    async fn open_journal(&self, changes: &mut Changes) -> Result<(), Error> {
        let intent = IssueIntent {
            attempt_id: self.attempt_id.clone(),
            started_at: self.step.now,
            operation: format!("{:?}", self.reason),
        };
        if let Err(e) = journal::open(self.step.obj, self.step.ctx, &intent).await {
            // Nothing was created: this attempt must not hold back the next one.
            self.step.ctx.throttle.forget(&self.uid);
            return Err(e);
        }
        changes.status.pending_issue = Some(intent);
        test_hooks::exit_at("after-intent", self.step.obj);
        Ok(())
    }

    fn environment_alive(&self) -> Result<(), Error> {
        match &self.step.world.env.origin.deleting {
            Some(what) => Err(Error::EnvironmentDeleting(what.clone())),
            None => Ok(()),
        }
    }

    /// After the journal, so that a deletion of the environment either lists this resource
    /// as a holder or is seen here.
    async fn protect(&self, changes: &mut Changes) -> Result<(), Error> {
        let ctx = self.step.ctx;
        let Err(e) = protection::confirm_for_issue(ctx, &self.step.world.env.origin).await else {
            return Ok(());
        };
        // Nothing was created: the journal closes, or it would hold the environment.
        ctx.throttle.forget(&self.uid);
        changes.settle_journal();
        Err(e)
    }

    /// The failures of earlier issuances that still count (the same spec and rotate
    /// request), and the wait they impose now.
    fn counted_failures<'c>(&self, changes: &'c Changes) -> Option<&'c IssuanceBackoff> {
        failures_that_count(
            changes.status.issuance_backoff.as_ref(),
            self.step.obj.meta().generation,
            self.step.desired.rotation_request.as_deref(),
        )
    }

    fn backing_off(&self, changes: &Changes) -> Option<Duration> {
        let next = self.counted_failures(changes)?.next_attempt_at;
        Duration::try_from(next.duration_since(self.step.now))
            .ok()
            .filter(|w| !w.is_zero())
    }

    /// Steps 6 to 10: from the create on, a failure counts for the backoff.
    async fn create_and_deliver(&self, changes: &mut Changes) -> Result<(), Error> {
        let created = self.create().await?;
        let issued_at = Timestamp::now();
        let access_token = self.verify(&created, changes).await?;
        let (credential, expires_at) = self.credential(created, access_token, changes);
        self.deliver(&credential, changes).await?;
        self.follow_up(changes).await;
        self.record(&credential, issued_at, expires_at, changes);
        Ok(())
    }

    /// Records one more failed issuance, so the next create waits twice as long, across
    /// restarts. A create that never left this process is no failure of this resource: a
    /// turn the budget did not give (ours or Frontegg's 429), or an environment paused after
    /// failures of its own (its tokens would all back off for one outage).
    fn back_off(&self, err: &Error, changes: &mut Changes) {
        if matches!(
            err,
            Error::Identity(
                IdentityError::Throttled(_)
                    | IdentityError::RateLimited { .. }
                    | IdentityError::Unavailable(_)
            )
        ) {
            return;
        }
        let config = &self.step.ctx.config;
        let mut record = after_failure(
            self.counted_failures(changes),
            err.reason(),
            self.step.now,
            config.min_reissue_interval,
            config.max_reissue_backoff,
        );
        record.generation = self.step.obj.meta().generation;
        record.rotation_request = self.step.desired.rotation_request.clone();
        tracing::info!(failures = record.failures, next = %record.next_attempt_at, "issuance failed; backing off");
        changes.status.issuance_backoff = Some(record.clone());
        let durable = changes.status.durable();
        changes.written.get_or_insert(durable).issuance_backoff = Some(record);
    }

    /// The token exists from the moment this returns. A shared listing stamped before then
    /// may not show it, so it must not be taken as proof the token is gone.
    async fn create(&self) -> Result<IssuedToken, Error> {
        let (obj, world) = (self.step.obj, self.step.world);
        let description = marker::describe(
            obj.common().description.as_deref(),
            self.step.ctx.config.installation_id.as_deref(),
            &self.uid,
            &self.attempt_id,
        );
        let request = obj.create_request(self.step.desired.expires_in_minutes, description);
        let created = world
            .env
            .client
            .create::<K::Endpoint>(&world.owner, &request)
            .await?;
        test_hooks::exit_at("after-create", obj);
        self.step
            .ctx
            .metrics
            .issued
            .get_or_create(&Metrics::kind(K::KIND))
            .inc();
        Ok(created)
    }

    /// One exchange serves both the verification and the JWT the Secret delivers. A token
    /// that fails `rotation.verify` is revoked and the Secret keeps the previous one.
    async fn verify(
        &self,
        created: &IssuedToken,
        changes: &mut Changes,
    ) -> Result<Option<AccessJwt>, Error> {
        let (ctx, desired) = (self.step.ctx, self.step.desired);
        let verify = self
            .step
            .obj
            .common()
            .rotation
            .as_ref()
            .is_some_and(|r| r.verify);
        if !(verify || desired.access_token_refresh_before.is_some())
            || K::LAYOUT != SecretLayout::ClientCredentials
        {
            return Ok(None);
        }
        let client = &self.step.world.env.client;
        match client
            .exchange_api_token(&created.id, &created.secret)
            .await
        {
            Ok(grant) => Ok(desired.access_token_refresh_before.map(|before| {
                ctx.metrics
                    .access_token_refreshes
                    .get_or_create(&Metrics::kind_action(K::KIND, "exchange"))
                    .inc();
                ctx.jwt.keep(&created.id, grant, before)
            })),
            Err(e) if verify => {
                // An unusable token: revoke it, keep the Secret, let the backoff retry.
                if self.revoke_new(&created.id).await.is_ok() {
                    changes.settle_journal();
                }
                Err(Error::VerificationFailed(e.reason()))
            }
            Err(e) => {
                // The credentials go into the Secret anyway; the next pass exchanges again.
                changes.notes.push((
                    EventType::Warning,
                    "AccessTokenFailed",
                    format!(
                        "could not exchange token {} for a JWT ({}); the Secret has the client credentials, the JWT follows",
                        created.id,
                        e.reason()
                    ),
                ));
                Ok(None)
            }
        }
    }

    /// The credential to deliver. A token Frontegg returned without an expiry is rotated by
    /// the lifetime asked for, and the Warning says so (rather than never rotating it).
    fn credential(
        &self,
        created: IssuedToken,
        access_token: Option<AccessJwt>,
        changes: &mut Changes,
    ) -> (Credential, Option<Timestamp>) {
        let expires_at = match (created.expires_at, self.step.desired.expires_in_minutes) {
            (Some(at), _) => Some(at),
            (None, Some(minutes)) => {
                changes.notes.push((
                    EventType::Warning,
                    "RemoteExpiryMissing",
                    format!(
                        "Frontegg returned no expiry for token {}; rotating by the requested lifetime",
                        created.id
                    ),
                ));
                let lifetime = Duration::from_secs(minutes.saturating_mul(60));
                self.step.now.checked_add(lifetime).ok()
            }
            (None, None) => None,
        };
        let credential = Credential {
            id: created.id,
            secret: created.secret,
            expires_at: expires_at.map(|t| t.to_string()),
            access_token,
        };
        (credential, expires_at)
    }

    /// Nobody can read a token whose Secret was not written: revoke it now rather than leak
    /// it. If that fails too, the open journal has the next pass revoke it by its mark.
    async fn deliver(&self, credential: &Credential, changes: &mut Changes) -> Result<(), Error> {
        let Err(e) = self.step.write_credential(credential).await else {
            test_hooks::exit_at("after-secret", self.step.obj);
            tracing::info!(token = %credential.id, reason = ?self.reason, "issued token");
            return Ok(());
        };
        match self.revoke_new(&credential.id).await {
            Ok(()) => changes.settle_journal(),
            Err(revoke) => {
                tracing::warn!(token = %credential.id, error = %revoke, "could not revoke a token whose Secret write failed")
            }
        }
        Err(e)
    }

    async fn revoke_new(&self, id: &str) -> Result<(), crate::identity::IdentityError> {
        let world = self.step.world;
        revoke::<K>(self.step.ctx, &world.env, &world.owner, id)
            .await
            .map(|_| ())
    }

    /// What a replacement changes around the Secret: the renamed token's old Secret goes,
    /// and the workloads that read the credential only at start restart.
    async fn follow_up(&self, changes: &mut Changes) {
        let (obj, world) = (self.step.obj, self.step.world);
        if self.reason == IssueReason::SecretRenamed
            && let Some(old) = &changes.status.current
        {
            write::delete_owned(obj, &world.secrets, &old.secret_name).await;
        }
        if self.reason != IssueReason::Initial {
            let targets = obj
                .common()
                .rotation
                .as_ref()
                .map(|r| r.restart_targets.as_slice())
                .unwrap_or_default();
            restart_targets(self.step.ctx, targets, obj, &mut changes.notes).await;
        }
    }

    fn record(
        &self,
        credential: &Credential,
        issued_at: Timestamp,
        expires_at: Option<Timestamp>,
        changes: &mut Changes,
    ) {
        let (desired, now) = (self.step.desired, self.step.now);
        changes.notes.push(self.issued_note(&credential.id));
        if self.reason != IssueReason::Initial {
            self.step
                .ctx
                .metrics
                .rotations
                .get_or_create(&Metrics::kind(K::KIND))
                .inc();
        }
        let status = &mut changes.status;
        if let Some(old) = self.superseded.clone() {
            let connection = status
                .current
                .as_ref()
                .filter(|c| c.id == old)
                .and_then(|c| c.connection.clone());
            status.pending_revocations.push(PendingRevocation {
                id: old,
                reason: self.reason.describe().into(),
                not_before: now.checked_add(desired.grace_period).ok(),
                connection,
            });
        }
        status.current = Some(IssuedTokenRecord {
            id: credential.id.clone(),
            issued_at,
            expires_at,
            secret_name: desired.secret_name.clone(),
            issued_spec_hash: desired.issued_spec_hash.clone(),
            patched_spec_hash: desired.patched_spec_hash.clone(),
            attempt_id: Some(self.attempt_id.clone()),
            secret_digest: Some(secret_digest(credential)),
            reissued_for_drift: self.reason == IssueReason::RemoteDrift,
            connection: Some(self.step.world.env.connection()),
            ..IssuedTokenRecord::default()
        });
        status.close_journal();
        status.issuance_backoff = None;
        status.handled_rotation_request = desired.rotation_request.clone();
        status.last_attempt = Some(AttemptRecord {
            operation: "Issue".into(),
            result: "Succeeded".into(),
            at: now,
        });
    }

    fn issued_note(&self, id: &str) -> crate::controller::runtime::events::Note {
        let desired = self.step.desired;
        let (secret, why) = (&desired.secret_name, self.reason.describe());
        let note = match &self.superseded {
            Some(old) => format!(
                "issued token {id} into Secret {secret}: {why}; token {old} stays valid for the {}s grace period",
                desired.grace_period.as_secs()
            ),
            None => format!("issued token {id} into Secret {secret}: {why}"),
        };
        (EventType::Normal, self.reason.event_reason(), note)
    }
}
