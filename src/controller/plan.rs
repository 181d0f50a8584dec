//! Pure planning: from what the spec wants and what exists, decide the one next step.
//! No I/O here; every branch is unit-tested below.

use std::time::Duration;

use jiff::Timestamp;

use crate::api::TokenStatus;

/// What the spec asks for, after validation.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub secret_name: String,
    pub expires_in_minutes: Option<u64>,
    pub renew_before: Option<Duration>,
    /// Digest of the fields that need a new token when they change.
    pub issued_spec_hash: String,
    /// Digest of the fields Frontegg can patch in place (tenant API tokens).
    pub patched_spec_hash: Option<String>,
    /// Current value of the rotate annotation.
    pub rotation_request: Option<String>,
}

/// The Secret as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    Missing,
    /// Ours, holding the credential; `up_to_date` says whether keys, labels and owner match.
    Owned {
        up_to_date: bool,
    },
    /// Ours, but the credential key was removed or emptied: the secret cannot be read back.
    OwnedWithoutCredential,
    /// Ours, holding a readable credential that the status does not record: the status write
    /// after issuing was lost (crash, conflict) or the status was cleared.
    OwnedUnrecorded,
}

/// The remote token as the last shared listing saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteState {
    /// Not listed yet, or the listing predates the token.
    Unknown,
    Present,
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueReason {
    Initial,
    SecretMissing,
    RemoteMissing,
    SpecChanged,
    SecretRenamed,
    RotationRequested,
    Expiring,
}

impl IssueReason {
    /// Event reason for the outcome.
    pub fn event_reason(self) -> &'static str {
        match self {
            IssueReason::Initial => "Issued",
            IssueReason::SecretMissing | IssueReason::RemoteMissing => "Reissued",
            IssueReason::SpecChanged | IssueReason::SecretRenamed => "Replaced",
            IssueReason::RotationRequested | IssueReason::Expiring => "Rotated",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            IssueReason::Initial => "first issuance",
            IssueReason::SecretMissing => "the Secret was deleted or lost its credential",
            IssueReason::RemoteMissing => "the remote token was deleted outside the operator",
            IssueReason::SpecChanged => "the spec changed in a way that needs a new token",
            IssueReason::SecretRenamed => "spec.secret.name changed",
            IssueReason::RotationRequested => "rotation was requested with the rotate annotation",
            IssueReason::Expiring => "the token is close to expiry",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Create a remote token, write the Secret, then revoke `revoke` (the superseded token).
    Issue {
        reason: IssueReason,
        revoke: Option<String>,
    },
    /// Update the remote token in place (tenant API tokens), then refresh the Secret.
    Patch,
    /// Rewrite the Secret from the credential it already holds.
    WriteSecret,
    /// Record the credential the Secret holds as the current token instead of issuing another
    /// (the token the status knew, if any, is superseded and revoked).
    Adopt,
    /// Nothing to do; look again after `requeue_after`.
    Steady { requeue_after: Duration },
}

pub fn plan(
    desired: &Desired,
    status: &TokenStatus,
    secret: SecretState,
    remote: RemoteState,
    now: Timestamp,
    resync: Duration,
) -> Plan {
    if secret == SecretState::OwnedUnrecorded {
        return Plan::Adopt;
    }
    let Some(current) = &status.current else {
        return Plan::Issue {
            reason: IssueReason::Initial,
            revoke: None,
        };
    };
    let replace = |reason| Plan::Issue {
        reason,
        revoke: Some(current.id.clone()),
    };
    if remote == RemoteState::Absent {
        // Nothing left to revoke remotely.
        return Plan::Issue {
            reason: IssueReason::RemoteMissing,
            revoke: None,
        };
    }
    if current.secret_name != desired.secret_name {
        return replace(IssueReason::SecretRenamed);
    }
    if matches!(
        secret,
        SecretState::Missing | SecretState::OwnedWithoutCredential
    ) {
        return replace(IssueReason::SecretMissing);
    }
    if current.issued_spec_hash != desired.issued_spec_hash {
        return replace(IssueReason::SpecChanged);
    }
    if desired.rotation_request.is_some()
        && desired.rotation_request != status.handled_rotation_request
    {
        return replace(IssueReason::RotationRequested);
    }
    let renew_at = renewal_time(
        current.issued_at.as_str(),
        current.expires_at.as_deref(),
        desired.renew_before,
    );
    if let Some(renew_at) = renew_at
        && now >= renew_at
    {
        return replace(IssueReason::Expiring);
    }
    if desired.patched_spec_hash.is_some() && desired.patched_spec_hash != current.patched_spec_hash
    {
        return Plan::Patch;
    }
    if secret == (SecretState::Owned { up_to_date: false }) {
        return Plan::WriteSecret;
    }
    let until_renewal = renew_at
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO))
        .unwrap_or(resync);
    Plan::Steady {
        requeue_after: until_renewal.min(resync),
    }
}

/// When to replace a token: `renewBefore` ahead of expiry, or after two thirds of its lifetime
/// (cert-manager's default), never for a token that does not expire.
pub fn renewal_time(
    issued_at: &str,
    expires_at: Option<&str>,
    renew_before: Option<Duration>,
) -> Option<Timestamp> {
    let expires: Timestamp = expires_at?.parse().ok()?;
    let issued: Timestamp = issued_at.parse().unwrap_or(expires);
    let lifetime = Duration::try_from(expires.duration_since(issued)).unwrap_or(Duration::ZERO);
    let before = renew_before
        .unwrap_or_else(|| lifetime.checked_div(3).unwrap_or_default())
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
    use crate::api::IssuedTokenRecord;

    fn desired() -> Desired {
        Desired {
            secret_name: "s".into(),
            expires_in_minutes: Some(60),
            renew_before: None,
            issued_spec_hash: "h1".into(),
            patched_spec_hash: None,
            rotation_request: None,
        }
    }

    fn issued(expires_at: Option<&str>) -> TokenStatus {
        TokenStatus {
            current: Some(IssuedTokenRecord {
                id: "tok-1".into(),
                issued_at: "2026-01-01T00:00:00Z".into(),
                expires_at: expires_at.map(str::to_string),
                secret_name: "s".into(),
                issued_spec_hash: "h1".into(),
                patched_spec_hash: None,
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
        d.renew_before = Some(Duration::from_secs(5 * 60));
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
    fn an_unrecorded_credential_in_our_secret_is_adopted_not_reissued() {
        // Status lost after issuing: no second token.
        let p = plan(
            &desired(),
            &TokenStatus::default(),
            SecretState::OwnedUnrecorded,
            RemoteState::Unknown,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(p, Plan::Adopt);
        // The status names an older token than the Secret holds: the Secret wins.
        let p = plan(
            &desired(),
            &issued(None),
            SecretState::OwnedUnrecorded,
            RemoteState::Present,
            at("2026-01-01T00:00:00Z"),
            RESYNC,
        );
        assert_eq!(p, Plan::Adopt);
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
