//! JWT delivery (`spec.secret.accessToken`): the API token's client credentials exchanged for
//! a bearer JWT that workloads mount, kept fresh ahead of its expiry.
//!
//! Each exchange opens a refresh token, and Frontegg keeps only 100 per API token, dropping
//! the oldest. So the next JWT comes from the last refresh token (held here, in memory, never
//! written anywhere), and a fresh exchange happens only at the first delivery, after a restart,
//! or when the refresh token is refused.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

use super::credential::{AccessJwt, Credential};
use super::jwt::{JwtState, refresh_time};
use crate::identity::{ApiTokenGrant, ExposeSecret, IdentityClient, IdentityError, SecretString};
use crate::metrics::Metrics;

struct Session {
    refresh: SecretString,
    expires_at: Timestamp,
    refresh_at: Timestamp,
    /// SHA-256 of the JWT written, to notice a Secret edited by hand.
    digest: [u8; 32],
}

fn digest(jwt: &SecretString) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(jwt.expose_secret().as_bytes()).into()
}

/// The longest a JWT from the exchange lives (the client clamps `expiresIn` to a day): an
/// expiry further out was not written by the operator.
const MAX_JWT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The refresh token of each API token's last JWT, by token id. Bounded by the number of
/// managed API tokens that deliver a JWT; revoked tokens are forgotten.
#[derive(Default)]
pub struct JwtSessions {
    sessions: Mutex<HashMap<String, Session>>,
}

impl JwtSessions {
    /// The state of a JWT read from the Secret, which anyone allowed to edit the Secret may
    /// have changed. While this process holds the JWT it wrote, anything else is replaced at
    /// once; after a restart the Secret's expiry is believed only within a JWT's longest life,
    /// and the refresh comes `refresh_before` ahead of it.
    pub fn state(
        &self,
        token_id: &str,
        jwt: Option<&AccessJwt>,
        refresh_before: Duration,
        now: Timestamp,
    ) -> JwtState {
        let Some((jwt, expires)) =
            jwt.and_then(|j| Some((j, j.expires_at.parse::<Timestamp>().ok()?)))
        else {
            return JwtState::Missing;
        };
        let known = self.sessions.lock().ok().and_then(|s| {
            s.get(token_id).map(|s| {
                (
                    s.expires_at == expires && s.digest == digest(&jwt.token),
                    s.refresh_at,
                )
            })
        });
        match known {
            Some((true, refresh_at)) => JwtState::RefreshAt(refresh_at),
            Some((false, _)) => JwtState::Missing,
            None if now
                .checked_add(MAX_JWT_LIFETIME)
                .is_ok_and(|latest| expires > latest) =>
            {
                JwtState::Missing
            }
            None => JwtState::RefreshAt(expires.checked_sub(refresh_before).unwrap_or(expires)),
        }
    }

    /// When the JWT of `token_id` obtained by this process is due.
    pub fn refresh_at(&self, token_id: &str) -> Option<Timestamp> {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(token_id).map(|s| s.refresh_at))
    }

    pub fn forget(&self, token_id: &str) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(token_id);
        }
    }

    /// A fresh JWT for API token `token_id`: from the last refresh token when there is one,
    /// else (or when it is refused) by exchanging the client credentials.
    pub async fn obtain(
        &self,
        client: &IdentityClient,
        metrics: &Metrics,
        kind: &str,
        cred: &Credential,
        refresh_before: Duration,
    ) -> Result<AccessJwt, IdentityError> {
        let (token_id, secret) = (cred.id.as_str(), &cred.secret);
        let refresh = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut s| s.remove(token_id))
            .map(|s| s.refresh);
        let mut grant = None;
        if let Some(refresh) = refresh {
            match client.refresh_api_token(&refresh).await {
                Ok(g) => grant = Some((g, "refresh")),
                // Dropped (100 newer exchanges) or revoked: exchange again.
                Err(IdentityError::Unauthorized | IdentityError::Invalid { .. }) => {
                    tracing::debug!(token = token_id, "refresh token refused; exchanging again");
                }
                Err(e) => return Err(e),
            }
        }
        let (grant, action) = match grant {
            Some(g) => g,
            None => (
                client.exchange_api_token(token_id, secret).await?,
                "exchange",
            ),
        };
        metrics
            .access_token_refreshes
            .get_or_create(&Metrics::kind_action(kind, action))
            .inc();
        Ok(self.keep(token_id, grant, refresh_before))
    }

    /// Records a grant (from `obtain`, or the exchange that verified a new token).
    pub fn keep(
        &self,
        token_id: &str,
        grant: ApiTokenGrant,
        refresh_before: Duration,
    ) -> AccessJwt {
        let now = Timestamp::now();
        // Whole seconds, rounded down: the Secret shows a plain RFC 3339 time, never later
        // than the real expiry.
        let expires_at = now
            .checked_add(grant.lifetime)
            .ok()
            .and_then(|t| Timestamp::from_second(t.as_second()).ok())
            .unwrap_or(now);
        let refresh_at = refresh_time(now, expires_at, refresh_before);
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(
                token_id.to_string(),
                Session {
                    refresh: grant.refresh_token,
                    expires_at,
                    refresh_at,
                    digest: digest(&grant.access_token),
                },
            );
        }
        AccessJwt {
            token: grant.access_token,
            expires_at: expires_at.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn state_comes_from_the_session_or_the_secret() {
        let sessions = JwtSessions::default();
        let before = Duration::from_secs(600);
        let now = at("2026-01-01T00:00:00Z");
        assert_eq!(sessions.state("id", None, before, now), JwtState::Missing);
        let jwt = |expires: &str| AccessJwt {
            token: SecretString::from("h.p.s"),
            expires_at: expires.into(),
        };
        assert_eq!(
            sessions.state("id", Some(&jwt("not a time")), before, now),
            JwtState::Missing
        );
        assert_eq!(
            sessions.state("id", Some(&jwt("2026-01-01T01:00:00Z")), before, now),
            JwtState::RefreshAt(at("2026-01-01T00:50:00Z"))
        );
        // An expiry no JWT of ours could have (edited into the Secret) is replaced at once.
        assert_eq!(
            sessions.state("id", Some(&jwt("2027-01-01T00:00:00Z")), before, now),
            JwtState::Missing
        );
        let kept = sessions.keep(
            "id",
            ApiTokenGrant {
                access_token: SecretString::from("h.p.s"),
                refresh_token: SecretString::from("r"),
                lifetime: Duration::from_secs(60),
            },
            before,
        );
        // A 60 s JWT obtained here is due half-way (its expiry is rounded down to the
        // second), whatever refreshBefore says.
        let JwtState::RefreshAt(due) = sessions.state("id", Some(&kept), before, now) else {
            panic!("a kept JWT has a refresh time");
        };
        // While the session knows it, an edited JWT or expiry is replaced at once.
        let edited = AccessJwt {
            token: SecretString::from("forged.jwt.value"),
            expires_at: kept.expires_at.clone(),
        };
        assert_eq!(
            sessions.state("id", Some(&edited), before, now),
            JwtState::Missing
        );
        let expires: Timestamp = kept.expires_at.parse().unwrap();
        let ahead = expires.duration_since(due).as_secs_f64();
        assert!((29.0..=30.0).contains(&ahead), "{ahead}");
        assert_eq!(sessions.refresh_at("id"), Some(due));
        sessions.forget("id");
        assert_eq!(sessions.refresh_at("id"), None);
    }
}
