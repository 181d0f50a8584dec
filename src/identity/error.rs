use jiff::Timestamp;

/// Failures talking to Frontegg. Messages never contain credentials or token secrets: they
/// are built from status codes and Frontegg's `errors` array only.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum IdentityError {
    #[error("Frontegg rejected the environment credentials (401)")]
    Unauthorized,
    #[error("Frontegg denied the request (403): {message}")]
    Forbidden { message: String },
    #[error("the remote token does not exist (404)")]
    NotFound,
    // The reset time stays out of the message: a message that changes on every failure
    // rewrites the status, and that write would trigger the next reconcile at once.
    #[error("Frontegg rate limit reached; retrying after the reset it announced")]
    RateLimited { reset: Timestamp },
    #[error("Frontegg rejected the request (400): {}", messages.join("; "))]
    Invalid { messages: Vec<String> },
    #[error("transient failure talking to Frontegg: {0}")]
    Transient(String),
    #[error("Frontegg is unavailable: {0}")]
    Unavailable(String),
    #[error("waiting for this environment's client-side limits: {0}")]
    Throttled(String),
    #[error("Frontegg's response is unusable: {0}")]
    Decode(String),
}

impl IdentityError {
    /// Whether trying the same request again later can succeed without a change of input.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            IdentityError::RateLimited { .. }
                | IdentityError::Transient(_)
                | IdentityError::Unavailable(_)
                | IdentityError::Throttled(_)
        )
    }

    /// Short PascalCase label for metrics, conditions and Events.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::Unauthorized => "Unauthorized",
            IdentityError::Forbidden { .. } => "Forbidden",
            IdentityError::NotFound => "NotFound",
            IdentityError::RateLimited { .. } => "RateLimited",
            IdentityError::Invalid { .. } => "InvalidRequest",
            IdentityError::Transient(_) | IdentityError::Unavailable(_) => "FronteggUnavailable",
            IdentityError::Throttled(_) => "Throttled",
            IdentityError::Decode(_) => "InvalidResponse",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rate_limits_and_transient_failures_are_retryable() {
        assert!(IdentityError::Transient("x".into()).is_retryable());
        assert!(
            IdentityError::RateLimited {
                reset: Timestamp::UNIX_EPOCH
            }
            .is_retryable()
        );
        for e in [
            IdentityError::Unauthorized,
            IdentityError::Forbidden {
                message: "no".into(),
            },
            IdentityError::NotFound,
            IdentityError::Invalid {
                messages: vec!["bad".into()],
            },
            IdentityError::Decode("x".into()),
        ] {
            assert!(!e.is_retryable(), "{e:?}");
        }
    }
}
