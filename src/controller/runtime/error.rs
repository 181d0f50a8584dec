use crate::identity::IdentityError;

/// Reconcile failures. Each variant's `reason()` is the condition reason and the Event reason;
/// `is_permanent()` decides between waiting for a change and backing off.
/// No variant carries a token secret, a vendor token or a client secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{kind} {name} not found")]
    EnvironmentNotFound { kind: &'static str, name: String },
    #[error("environment credentials unusable: {0}")]
    CredentialsInvalid(String),
    #[error(
        "namespace {namespace} may not use ClusterFronteggEnvironment {environment} (see its spec.allowedNamespaces)"
    )]
    NamespaceNotAllowed {
        namespace: String,
        environment: String,
    },
    #[error(
        "tenant {tenant} is not allowed by ClusterFronteggEnvironment {environment} (see its spec.allowedTenants)"
    )]
    TenantNotAllowed { tenant: String, environment: String },
    #[error("ClusterFronteggEnvironment {environment} refuses {what} (spec.policy.{rule})")]
    PolicyViolation {
        environment: String,
        rule: String,
        what: String,
    },
    #[error(
        "{environment} authenticates with a user API token and serves only the personal tokens (UserApiToken, UserAccessToken) of {allowed}; this resource asks for {asked}"
    )]
    OutsideUserScope {
        environment: String,
        allowed: String,
        asked: String,
    },
    #[error(
        "baseUrl {url} is not one of the operator's allowed base URLs (--allowed-base-url); nothing was sent to it"
    )]
    BaseUrlNotAllowed { url: String },
    #[error(
        "the credentials Secret {secret} lacks the label tokens.frontegg-operator.io/credentials: \"true\"; the operator reads only Secrets marked as credentials"
    )]
    CredentialsNotMarked { secret: String },
    #[error(
        "ClusterFronteggEnvironment {0} does not match this operator's --cluster-environment-selector"
    )]
    EnvironmentNotServed(String),
    #[error(
        "{0} is being deleted: no new token is issued through it; the tokens it issued are revoked as their resources are deleted"
    )]
    EnvironmentDeleting(String),
    #[error(
        "token {token} was issued through {issued}, and {environment} now connects to {now}; no request for it goes to another connection. Restore the environment's connection, or set spec.deletionPolicy to Orphan and delete this resource (the token then stays in Frontegg until revoked there)"
    )]
    ConnectionChanged {
        token: String,
        issued: String,
        environment: String,
        now: String,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error(
        "Secret {0} already exists and was not created for this resource; pick another spec.secret.name or delete that Secret"
    )]
    SecretConflict(String),
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error(
        "cannot revoke the remote token: {cause}. To delete the resource without revoking, set spec.deletionPolicy to Orphan"
    )]
    RevocationFailed { cause: Box<Error> },
    /// A Kubernetes call failed; `action` names the call site ("write the Secret").
    #[error("could not {action}: {source}")]
    Kube {
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error(
        "a token was issued for this resource less than --min-reissue-interval ago; the next one waits for it"
    )]
    ReissueThrottled { wait: std::time::Duration },
    #[error(
        "the new token did not work when exchanged at /identity/resources/auth/v2/api-token ({0}); it was revoked and the Secret keeps the previous token"
    )]
    VerificationFailed(&'static str),
    /// The resource changed after this pass read it; nothing was written, the pass runs again.
    #[error("the resource changed while trying to {action}; planning again")]
    Stale { action: &'static str },
    /// A Secret by the token's name exists though this pass did not read one
    /// (`dereference::SecretRead`); nothing was created, the pass runs again and reads it.
    #[error("Secret {0} exists; reading it and planning again")]
    SecretAppeared(String),
    /// The environment holds its share of the kind's workers (`shares.rs`); nothing was
    /// done, the pass runs again shortly.
    #[error("{0} holds its share of the workers; waiting for a turn")]
    WorkersBusy(String),
    #[error("cannot import the token: {0}")]
    ImportFailed(String),
    #[error("the Secret would be refused by the API server: {0}")]
    SecretRejected(String),
    /// An operator bug (a panic, an impossible state): never the user's input.
    #[error("internal error: {0}; this is a bug in the operator, please report it")]
    Internal(String),
}

/// Names the Kubernetes call a failure came from.
pub trait KubeContext<T> {
    fn context(self, action: &'static str) -> Result<T, Error>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn context(self, action: &'static str) -> Result<T, Error> {
        self.map_err(|source| Error::Kube { action, source })
    }
}

impl Error {
    pub fn reason(&self) -> &'static str {
        match self {
            Error::EnvironmentNotFound { .. } => "EnvironmentNotFound",
            Error::CredentialsInvalid(_) => "CredentialsInvalid",
            Error::NamespaceNotAllowed { .. } => "NamespaceNotAllowed",
            Error::TenantNotAllowed { .. } => "TenantNotAllowed",
            Error::PolicyViolation { .. } | Error::OutsideUserScope { .. } => "PolicyViolation",
            Error::BaseUrlNotAllowed { .. } => "BaseUrlNotAllowed",
            Error::CredentialsNotMarked { .. } => "CredentialsNotMarked",
            Error::EnvironmentNotServed(_) => "EnvironmentNotFound",
            Error::EnvironmentDeleting(_) => "EnvironmentDeleting",
            Error::ConnectionChanged { .. } => "ConnectionChanged",
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::SecretConflict(_) => "SecretConflict",
            Error::Identity(IdentityError::Transient(_)) => "FronteggUnavailable",
            Error::Identity(e) => e.reason(),
            Error::RevocationFailed { .. } => "RevocationFailed",
            Error::Kube { .. } => "KubernetesError",
            Error::ReissueThrottled { .. } => "ReissueThrottled",
            Error::Stale { .. } | Error::SecretAppeared(_) => "Conflict",
            Error::WorkersBusy(_) => "Throttled",
            Error::SecretRejected(_) => "InvalidSpec",
            Error::ImportFailed(_) => "ImportFailed",
            Error::VerificationFailed(_) => "VerificationFailed",
            Error::Internal(_) => "InternalError",
        }
    }

    /// Permanent failures need a change of spec, environment or credentials; retrying the
    /// same input in a loop would only burn Frontegg's quota.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Identity(e) => !e.is_retryable(),
            Error::Kube { .. }
            | Error::Stale { .. }
            | Error::WorkersBusy(_)
            | Error::SecretAppeared(_)
            | Error::ReissueThrottled { .. }
            | Error::Internal(_)
            | Error::VerificationFailed(_) => false,
            Error::RevocationFailed { cause } => cause.is_permanent(),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_map_to_reasons_and_retry_policy() {
        let e = Error::Identity(IdentityError::Unauthorized);
        assert_eq!((e.reason(), e.is_permanent()), ("Unauthorized", true));
        let e = Error::Identity(IdentityError::Transient("HTTP 503".into()));
        assert_eq!(
            (e.reason(), e.is_permanent()),
            ("FronteggUnavailable", false)
        );
        let e = Error::SecretConflict("x".into());
        assert_eq!((e.reason(), e.is_permanent()), ("SecretConflict", true));
        let e = Error::RevocationFailed {
            cause: Box::new(Error::Identity(IdentityError::Unauthorized)),
        };
        assert!(e.to_string().contains("deletionPolicy to Orphan"));
    }
}
