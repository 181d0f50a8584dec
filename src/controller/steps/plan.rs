//! Pure planning: from what the spec wants and what exists, decide the one next step.
//! No I/O here; every branch is unit-tested below.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::{IssuedTokenRecord, RemoteDriftAction, TokenStatus};
use crate::controller::secret::jwt::JwtState;

/// What the spec asks for, after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub secret_name: String,
    pub expires_in_minutes: Option<u64>,
    pub renew_before: Option<RenewBefore>,
    /// How long a replaced token keeps working after its successor is in the Secret.
    pub grace_period: Duration,
    /// Digest of the fields that need a new token when they change.
    pub issued_spec_hash: String,
    /// Digest of the fields Frontegg can patch in place (tenant API tokens).
    pub patched_spec_hash: Option<String>,
    /// Current value of the rotate annotation.
    pub rotation_request: Option<String>,
    /// `spec.secret.accessToken.refreshBefore` when the Secret delivers a JWT.
    pub access_token_refresh_before: Option<Duration>,
    /// What to do about remote drift the kind cannot patch back.
    pub on_remote_drift: RemoteDriftAction,
    /// `spec.import` is set: the first token is taken over, not issued.
    pub import: bool,
}

/// `renewBefore`: a fixed time before expiry, or a share of the lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewBefore {
    Duration(Duration),
    /// 1 to 99.
    Percent(u8),
}

/// The Secret as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Ours, holding the recorded credential; `up_to_date` says whether keys, labels and owner
    /// match.
    Owned {
        up_to_date: bool,
    },
    /// Ours, but the credential key was removed or emptied: the secret cannot be read back.
    OwnedWithoutCredential,
    /// Ours, holding a credential the status does not record (another id, or the recorded id
    /// with another secret). Whether it is a token this resource issued (a lost status write)
    /// or an edit is decided by the remote marker, in `recover`.
    Unrecorded,
}

/// The remote token as the last shared listing saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Not listed yet, the listing predates the token, or listing failed.
    Unknown,
    Present,
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueReason {
    Initial,
    SecretMissing,
    SecretTampered,
    RemoteMissing,
    SpecChanged,
    SecretRenamed,
    RotationRequested,
    Expiring,
    RemoteDrift,
}

impl IssueReason {
    /// Event reason for the outcome.
    pub fn event_reason(self) -> &'static str {
        match self {
            IssueReason::Initial => "Issued",
            IssueReason::SecretMissing
            | IssueReason::RemoteMissing
            | IssueReason::SecretTampered
            | IssueReason::RemoteDrift => "Reissued",
            IssueReason::SpecChanged | IssueReason::SecretRenamed => "Replaced",
            IssueReason::RotationRequested | IssueReason::Expiring => "Rotated",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            IssueReason::Initial => "first issuance",
            IssueReason::SecretMissing => "the Secret was deleted or lost its credential",
            IssueReason::SecretTampered => {
                "the Secret holds a credential this resource did not issue"
            }
            IssueReason::RemoteMissing => "the remote token was deleted outside the operator",
            IssueReason::SpecChanged => "the spec changed in a way that needs a new token",
            IssueReason::SecretRenamed => "spec.secret.name changed",
            IssueReason::RotationRequested => "rotation was requested with the rotate annotation",
            IssueReason::Expiring => "the token is close to expiry",
            IssueReason::RemoteDrift => {
                "the remote token was changed outside the operator (spec.rotation.onRemoteDrift: Reissue)"
            }
        }
    }
}

/// What a crash left behind, found by the marker on remote tokens (see `marker`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A token this resource created and the Secret holds, but the status never recorded.
    pub adopt: Option<String>,
    /// Tokens this resource created that nobody can read: revoke them.
    pub revoke: Vec<String>,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        self.adopt.is_none() && self.revoke.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Settle what an interrupted issuance left: adopt the token the Secret holds, revoke
    /// the unreadable ones, close the journal.
    Recover(Recovery),
    /// Create a remote token, write the Secret, then revoke `revoke` (the superseded token)
    /// after the grace period.
    Issue {
        reason: IssueReason,
        revoke: Option<String>,
    },
    /// Take over the token named in `spec.import` instead of issuing one.
    Import,
    /// Update the remote token in place (tenant API tokens), then refresh the Secret.
    Patch,
    /// Patch back a remote token changed outside the operator (tenant API tokens).
    RepairDrift,
    /// Exchange (or refresh) the JWT the Secret delivers.
    RefreshAccessToken,
    /// Rewrite the Secret from the credential it already holds.
    WriteSecret,
    /// Nothing to do; look again after `requeue_after`.
    Steady { requeue_after: Duration },
}

/// What exists, as the dereference step observed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub secret: SecretState,
    pub remote: RemoteState,
    /// Present when a journal is open or the Secret holds an unrecorded credential.
    pub recovery: Option<Recovery>,
    /// The attributes in which the remote token differs from the spec; `None` when no
    /// listing newer than the token's last change is at hand.
    pub remote_drift: Option<Vec<String>>,
    /// The JWT the Secret delivers.
    pub access_token: JwtState,
}

pub fn plan(
    desired: &Desired,
    status: &TokenStatus,
    observed: &Observed,
    now: Timestamp,
    resync: Duration,
) -> Plan {
    if let Some(recovery) = &observed.recovery
        && (status.pending_issue.is_some() || !recovery.is_empty())
    {
        return Plan::Recover(recovery.clone());
    }
    let Some(current) = &status.current else {
        if desired.import {
            return Plan::Import;
        }
        // Nothing recorded: whatever the Secret holds is not ours to revoke.
        return Plan::Issue {
            reason: IssueReason::Initial,
            revoke: None,
        };
    };
    let facts = Facts {
        desired,
        status,
        current,
        observed,
        now,
    };
    CHAIN
        .iter()
        .find_map(|policy| policy(&facts))
        .unwrap_or_else(|| steady(&facts, resync))
}

/// What the policies of the chain read, for a resource that holds a token.
struct Facts<'a> {
    desired: &'a Desired,
    status: &'a TokenStatus,
    current: &'a IssuedTokenRecord,
    observed: &'a Observed,
    now: Timestamp,
}

impl Facts<'_> {
    /// A new token, and the current one revoked after the grace period.
    fn replace(&self, reason: IssueReason) -> Option<Plan> {
        Some(Plan::Issue {
            reason,
            revoke: Some(self.current.id.clone()),
        })
    }

    fn renew_at(&self) -> Option<Timestamp> {
        renewal_time(
            self.current.issued_at,
            self.current.expires_at,
            self.desired.renew_before,
        )
    }
}

/// A policy names the step it wants, or passes. Like cert-manager's trigger policies, each is
/// named for its reason; adding a trigger is one function and one line of the chain.
type Policy = fn(&Facts<'_>) -> Option<Plan>;

/// The policies in order: the first that wants a step decides. Without one, the token is
/// steady.
const CHAIN: &[Policy] = &[
    remote_missing,
    secret_renamed,
    secret_unusable,
    spec_changed,
    rotation_requested,
    expiring,
    spec_patchable,
    remote_drift,
    jwt_due,
    secret_outdated,
];

fn remote_missing(f: &Facts<'_>) -> Option<Plan> {
    // Nothing left to revoke remotely.
    (f.observed.remote == RemoteState::Absent).then_some(Plan::Issue {
        reason: IssueReason::RemoteMissing,
        revoke: None,
    })
}

fn secret_renamed(f: &Facts<'_>) -> Option<Plan> {
    if f.current.secret_name == f.desired.secret_name {
        return None;
    }
    f.replace(IssueReason::SecretRenamed)
}

fn secret_unusable(f: &Facts<'_>) -> Option<Plan> {
    match f.observed.secret {
        SecretState::Missing | SecretState::OwnedWithoutCredential => {
            f.replace(IssueReason::SecretMissing)
        }
        SecretState::Unrecorded => f.replace(IssueReason::SecretTampered),
        SecretState::Owned { .. } => None,
    }
}

fn spec_changed(f: &Facts<'_>) -> Option<Plan> {
    if f.current.issued_spec_hash == f.desired.issued_spec_hash {
        return None;
    }
    f.replace(IssueReason::SpecChanged)
}

fn rotation_requested(f: &Facts<'_>) -> Option<Plan> {
    let asked = &f.desired.rotation_request;
    if asked.is_none() || *asked == f.status.handled_rotation_request {
        return None;
    }
    f.replace(IssueReason::RotationRequested)
}

fn expiring(f: &Facts<'_>) -> Option<Plan> {
    let renew_at = f.renew_at()?;
    if f.now < renew_at {
        return None;
    }
    f.replace(IssueReason::Expiring)
}

fn spec_patchable(f: &Facts<'_>) -> Option<Plan> {
    let wanted = &f.desired.patched_spec_hash;
    (wanted.is_some() && *wanted != f.current.patched_spec_hash).then_some(Plan::Patch)
}

fn remote_drift(f: &Facts<'_>) -> Option<Plan> {
    let drift = f.observed.remote_drift.as_ref()?;
    if drift.is_empty() {
        return None;
    }
    if f.desired.patched_spec_hash.is_some() {
        return Some(Plan::RepairDrift);
    }
    if f.desired.on_remote_drift == RemoteDriftAction::Reissue && !f.current.reissued_for_drift {
        return f.replace(IssueReason::RemoteDrift);
    }
    None
}

fn jwt_due(f: &Facts<'_>) -> Option<Plan> {
    match f.observed.access_token {
        JwtState::Missing => Some(Plan::RefreshAccessToken),
        JwtState::RefreshAt(at) if f.now >= at => Some(Plan::RefreshAccessToken),
        JwtState::RefreshAt(_) | JwtState::NotWanted => None,
    }
}

fn secret_outdated(f: &Facts<'_>) -> Option<Plan> {
    (f.observed.secret == (SecretState::Owned { up_to_date: false })).then_some(Plan::WriteSecret)
}

/// Nothing to do: look again at the renewal, the JWT's refresh or the resync, whichever
/// comes first.
fn steady(f: &Facts<'_>, resync: Duration) -> Plan {
    let until =
        |at: Timestamp| Duration::try_from(at.duration_since(f.now)).unwrap_or(Duration::ZERO);
    let until_renewal = f.renew_at().map(until).unwrap_or(resync);
    let until_jwt = match f.observed.access_token {
        JwtState::RefreshAt(at) => until(at),
        JwtState::NotWanted | JwtState::Missing => resync,
    };
    Plan::Steady {
        requeue_after: until_renewal.min(until_jwt).min(resync),
    }
}

/// After a crash: of the tokens marked as created by resource `uid`, the one the Secret holds
/// is adopted and every other one the status does not record is revoked.
pub fn recover<'a>(
    uid: &str,
    marked: impl IntoIterator<Item = (&'a str, &'a str)>,
    recorded: &[&str],
    secret_credential: Option<&str>,
) -> Recovery {
    let mut recovery = Recovery::default();
    for (id, owner) in marked {
        if owner != uid || recorded.contains(&id) {
            continue;
        }
        if Some(id) == secret_credential {
            recovery.adopt = Some(id.to_string());
        } else {
            recovery.revoke.push(id.to_string());
        }
    }
    recovery
}

/// When to replace a token: `renewBefore` ahead of expiry, or after two thirds of its lifetime
/// (cert-manager's default), never for a token that does not expire.
pub fn renewal_time(
    issued: Timestamp,
    expires: Option<Timestamp>,
    renew_before: Option<RenewBefore>,
) -> Option<Timestamp> {
    let expires = expires?;
    let lifetime = Duration::try_from(expires.duration_since(issued)).unwrap_or(Duration::ZERO);
    let before = match renew_before {
        Some(RenewBefore::Duration(d)) => d,
        Some(RenewBefore::Percent(p)) => lifetime.mul_f64(f64::from(p.min(99)) / 100.0),
        None => lifetime.checked_div(3).unwrap_or_default(),
    }
    .min(lifetime);
    expires.checked_sub(before).ok()
}

/// Whole minutes for Frontegg's `expiresInMinutes`, rounding a partial minute up.
pub fn whole_minutes(d: Duration) -> u64 {
    d.as_secs().div_ceil(60).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::IssueIntent;

    /// The planner with nothing to recover, as most cases have it.
    fn plan(
        desired: &Desired,
        status: &TokenStatus,
        secret: SecretState,
        remote: RemoteState,
        now: Timestamp,
        resync: Duration,
    ) -> Plan {
        super::plan(
            desired,
            status,
            &Observed {
                secret,
                remote,
                recovery: None,
                remote_drift: None,
                access_token: JwtState::NotWanted,
            },
            now,
            resync,
        )
    }

    fn desired() -> Desired {
        Desired {
            secret_name: "s".into(),
            expires_in_minutes: Some(60),
            renew_before: None,
            grace_period: Duration::from_secs(600),
            issued_spec_hash: "h1".into(),
            patched_spec_hash: None,
            rotation_request: None,
            access_token_refresh_before: None,
            on_remote_drift: RemoteDriftAction::Report,
            import: false,
        }
    }

    fn issued(expires_at: Option<&str>) -> TokenStatus {
        TokenStatus {
            current: Some(IssuedTokenRecord {
                id: "tok-1".into(),
                issued_at: at("2026-01-01T00:00:00Z"),
                expires_at: expires_at.map(at),
                secret_name: "s".into(),
                issued_spec_hash: "h1".into(),
                patched_spec_hash: None,
                attempt_id: Some("a1".into()),
                secret_digest: None,
                ..IssuedTokenRecord::default()
            }),
            ..TokenStatus::default()
        }
    }

    const FRESH: SecretState = SecretState::Owned { up_to_date: true };
    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const RESYNC: Duration = Duration::from_secs(300);

    #[test]
    fn first_reconcile_issues() {
        let p = plan(
            &desired(),
            &TokenStatus::default(),
            SecretState::Missing,
            RemoteState::Unknown,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::Initial,
                revoke: None
            }
        );
    }

    #[test]
    fn steady_state_requeues_at_resync_or_renewal_whichever_is_first() {
        let s = issued(Some("2026-01-01T01:00:00Z"));
        // Renewal at 00:40 (two thirds of an hour); at 00:30 that is 10 minutes away, over resync.
        let p = plan(
            &desired(),
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:30:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Steady {
                requeue_after: RESYNC
            }
        );
        let p = plan(
            &desired(),
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:38:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Steady {
                requeue_after: Duration::from_secs(120)
            }
        );
        let never = issued(None);
        let p = plan(
            &desired(),
            &never,
            FRESH,
            RemoteState::Unknown,
            at("2030-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Steady {
                requeue_after: RESYNC
            }
        );
    }

    #[test]
    fn expiring_token_is_rotated_and_the_old_one_revoked() {
        let s = issued(Some("2026-01-01T01:00:00Z"));
        let p = plan(
            &desired(),
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:41:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::Expiring,
                revoke: Some("tok-1".into())
            }
        );
        let mut d = desired();
        d.renew_before = Some(RenewBefore::Duration(Duration::from_secs(5 * 60)));
        let p = plan(
            &d,
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:41:00Z"),
            RESYNC,
        );
        assert!(matches!(p, Plan::Steady { .. }));
    }

    #[test]
    fn deleted_secret_reissues_and_revokes_the_unreadable_old_token() {
        let s = issued(None);
        for state in [SecretState::Missing, SecretState::OwnedWithoutCredential] {
            let p = plan(
                &desired(),
                &s,
                state,
                RemoteState::Present,
                at("2026-01-01T00:00:00Z"),
                RESYNC,
            );
            assert_eq!(
                p,
                Plan::Issue {
                    reason: IssueReason::SecretMissing,
                    revoke: Some("tok-1".into())
                }
            );
        }
    }

    #[test]
    fn remote_token_deleted_out_of_band_is_recreated_without_revocation() {
        let p = plan(
            &desired(),
            &issued(None),
            FRESH,
            RemoteState::Absent,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::RemoteMissing,
                revoke: None
            }
        );
    }

    #[test]
    fn spec_changes_replace_unless_patchable() {
        let mut d = desired();
        d.issued_spec_hash = "h2".into();
        let p = plan(
            &d,
            &issued(None),
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::SpecChanged,
                revoke: Some("tok-1".into())
            }
        );
        let mut d = desired();
        d.patched_spec_hash = Some("p2".into());
        let p = plan(
            &d,
            &issued(None),
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(p, Plan::Patch);
    }

    #[test]
    fn rotate_annotation_rotates_once_per_value() {
        let mut d = desired();
        d.rotation_request = Some("2026-01-01".into());
        let mut s = issued(None);
        let p = plan(
            &d,
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::RotationRequested,
                revoke: Some("tok-1".into())
            }
        );
        s.handled_rotation_request = Some("2026-01-01".into());
        let p = plan(
            &d,
            &s,
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert!(matches!(p, Plan::Steady { .. }));
    }

    #[test]
    fn stale_secret_contents_are_rewritten_without_a_new_token() {
        let p = plan(
            &desired(),
            &issued(None),
            SecretState::Owned { up_to_date: false },
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(p, Plan::WriteSecret);
    }

    #[test]
    fn an_interrupted_issuance_is_recovered_before_anything_else() {
        let mut s = issued(None);
        s.pending_issue = Some(IssueIntent {
            attempt_id: "a2".into(),
            started_at: at("2026-01-01T00:00:00Z"),
            operation: "RotationRequested".into(),
        });
        let found = Recovery {
            adopt: Some("tok-2".into()),
            revoke: vec!["tok-3".into()],
        };
        let observed = Observed {
            secret: SecretState::Unrecorded,
            remote: RemoteState::Present,
            recovery: Some(found.clone()),
            remote_drift: None,
            access_token: JwtState::NotWanted,
        };
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(
            super::plan(&desired(), &s, &observed, now, RESYNC),
            Plan::Recover(found)
        );
        // A journal with nothing left behind still closes before the next create.
        let observed = Observed {
            recovery: Some(Recovery::default()),
            secret: FRESH,
            ..observed
        };
        assert_eq!(
            super::plan(&desired(), &s, &observed, now, RESYNC),
            Plan::Recover(Recovery::default())
        );
    }

    #[test]
    fn a_credential_this_resource_did_not_issue_is_replaced_never_adopted() {
        // The Secret was edited to hold another token id, which the remote does not mark as
        // ours: the recorded token is replaced (and revoked after the grace period); the
        // foreign id is never touched.
        let observed = Observed {
            secret: SecretState::Unrecorded,
            remote: RemoteState::Present,
            recovery: Some(Recovery::default()),
            remote_drift: None,
            access_token: JwtState::NotWanted,
        };
        let p = super::plan(
            &desired(),
            &issued(None),
            &observed,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::SecretTampered,
                revoke: Some("tok-1".into())
            }
        );
        // With no status at all, nothing is revoked.
        let p = super::plan(
            &desired(),
            &TokenStatus::default(),
            &observed,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::Initial,
                revoke: None
            }
        );
    }

    fn steady_observed() -> Observed {
        Observed {
            secret: FRESH,
            remote: RemoteState::Present,
            recovery: None,
            remote_drift: Some(vec![]),
            access_token: JwtState::NotWanted,
        }
    }

    #[test]
    fn import_takes_the_place_of_the_first_issue_only() {
        let d = Desired {
            import: true,
            ..desired()
        };
        let now = at("2026-01-01T00:00:00Z");
        let p = super::plan(&d, &TokenStatus::default(), &steady_observed(), now, RESYNC);
        assert_eq!(p, Plan::Import);
        // Once a token is recorded, spec.import is history: the usual lifecycle goes on.
        let p = super::plan(&d, &issued(None), &steady_observed(), now, RESYNC);
        assert!(matches!(p, Plan::Steady { .. }), "{p:?}");
    }

    #[test]
    fn remote_drift_is_patched_back_reported_or_reissued() {
        let now = at("2026-01-01T00:00:00Z");
        let drifted = Observed {
            remote_drift: Some(vec!["roleIds".into()]),
            ..steady_observed()
        };
        // A kind that can be patched is repaired in place.
        let patchable = Desired {
            patched_spec_hash: Some("p1".into()),
            ..desired()
        };
        let mut s = issued(None);
        if let Some(c) = s.current.as_mut() {
            c.patched_spec_hash = Some("p1".into());
        }
        assert_eq!(
            super::plan(&patchable, &s, &drifted, now, RESYNC),
            Plan::RepairDrift
        );
        // Others report it (Steady; the status step sets the condition) ...
        let p = super::plan(&desired(), &issued(None), &drifted, now, RESYNC);
        assert!(matches!(p, Plan::Steady { .. }), "{p:?}");
        // ... or replace the token when asked to.
        let reissue = Desired {
            on_remote_drift: RemoteDriftAction::Reissue,
            ..desired()
        };
        assert_eq!(
            super::plan(&reissue, &issued(None), &drifted, now, RESYNC),
            Plan::Issue {
                reason: IssueReason::RemoteDrift,
                revoke: Some("tok-1".into())
            }
        );
        // A replacement that differs from the spec as well is not replaced again: Frontegg
        // keeps those fields as they are, and reissuing would loop.
        let mut replacement = issued(None);
        if let Some(c) = replacement.current.as_mut() {
            c.reissued_for_drift = true;
        }
        let p = super::plan(&reissue, &replacement, &drifted, now, RESYNC);
        assert!(matches!(p, Plan::Steady { .. }), "{p:?}");
        // No listing newer than the token: nothing is judged.
        let unknown = Observed {
            remote_drift: None,
            ..steady_observed()
        };
        let p = super::plan(&reissue, &issued(None), &unknown, now, RESYNC);
        assert!(matches!(p, Plan::Steady { .. }), "{p:?}");
    }

    #[test]
    fn the_delivered_jwt_is_refreshed_when_missing_or_due_and_sets_the_wake_up() {
        let now = at("2026-01-01T00:00:00Z");
        let with = |access_token| Observed {
            access_token,
            ..steady_observed()
        };
        assert_eq!(
            super::plan(
                &desired(),
                &issued(None),
                &with(JwtState::Missing),
                now,
                RESYNC
            ),
            Plan::RefreshAccessToken
        );
        let due = with(JwtState::RefreshAt(at("2025-12-31T23:59:59Z")));
        assert_eq!(
            super::plan(&desired(), &issued(None), &due, now, RESYNC),
            Plan::RefreshAccessToken
        );
        let later = with(JwtState::RefreshAt(at("2026-01-01T00:01:00Z")));
        assert_eq!(
            super::plan(&desired(), &issued(None), &later, now, RESYNC),
            Plan::Steady {
                requeue_after: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn recovery_adopts_only_marked_tokens_the_secret_holds() {
        let marked = [
            ("tok-1", "uid-a"), // recorded as current
            ("tok-2", "uid-a"), // in the Secret, unrecorded
            ("tok-3", "uid-a"), // created, never written anywhere
            ("tok-4", "uid-b"), // another resource's
        ];
        let r = recover("uid-a", marked, &["tok-1"], Some("tok-2"));
        assert_eq!(r.adopt.as_deref(), Some("tok-2"));
        assert_eq!(r.revoke, ["tok-3"]);
        // A Secret naming another resource's token adopts nothing and revokes nothing of it.
        let r = recover("uid-a", marked, &["tok-1", "tok-2", "tok-3"], Some("tok-4"));
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn renew_before_as_a_share_of_the_lifetime() {
        let issued = at("2026-01-01T00:00:00Z");
        let expires = Some(at("2026-01-01T10:00:00Z"));
        assert_eq!(
            renewal_time(issued, expires, Some(RenewBefore::Percent(25))),
            Some(at("2026-01-01T07:30:00Z"))
        );
        assert_eq!(
            renewal_time(issued, expires, None),
            Some(at("2026-01-01T06:40:00Z"))
        );
        assert_eq!(
            renewal_time(
                issued,
                expires,
                Some(RenewBefore::Duration(Duration::from_secs(3600)))
            ),
            Some(at("2026-01-01T09:00:00Z"))
        );
        assert_eq!(renewal_time(issued, None, None), None);
    }

    #[test]
    fn renamed_secret_replaces_the_token() {
        let mut d = desired();
        d.secret_name = "other".into();
        let p = plan(
            &d,
            &issued(None),
            FRESH,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(
            p,
            Plan::Issue {
                reason: IssueReason::SecretRenamed,
                revoke: Some("tok-1".into())
            }
        );
    }

    #[test]
    fn lifetimes_round_up_to_whole_minutes() {
        assert_eq!(whole_minutes(Duration::from_secs(61)), 2);
        assert_eq!(whole_minutes(Duration::from_secs(3600)), 60);
    }
}
