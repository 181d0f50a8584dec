//! Test fixtures shared by the pipeline's unit tests (the layer between pure functions and a
//! real cluster, as in kube-rs's controller-rs).

use secrecy::SecretString;

use crate::api::{TokenCommonSpec, UserApiToken, UserApiTokenSpec};
use crate::controller::secret::credential::{Credential, SecretContext};

/// The secret every fixture credential carries; tests look for it in outputs and errors.
pub const SECRET: &str = "s3cr3t-value";

/// A `UserApiToken` `ci` in namespace `ns` with UID `uid-1`, after `edit` has changed its
/// common spec.
pub fn user_api_token(edit: impl FnOnce(&mut TokenCommonSpec)) -> UserApiToken {
    let mut common = TokenCommonSpec {
        environment_ref: None,
        tenant_id: "t1".into(),
        description: None,
        expires_in_minutes: None,
        expires_in: None,
        renew_before: None,
        rotation: None,
        secret: Default::default(),
        deletion_policy: Default::default(),
        management_policy: Default::default(),
        token_id: None,
        import: None,
    };
    edit(&mut common);
    let mut t = UserApiToken::new(
        "ci",
        UserApiTokenSpec {
            common,
            user_id: "u1".into(),
            metadata: None,
        },
    );
    t.metadata.namespace = Some("ns".into());
    t.metadata.uid = Some("uid-1".into());
    t
}

pub fn credential() -> Credential {
    Credential {
        id: "cid".into(),
        secret: SecretString::from(SECRET),
        expires_at: None,
        access_token: None,
    }
}

pub const CONTEXT: SecretContext<'static> = SecretContext {
    base_url: "https://api.frontegg.com",
    tenant_id: "t1",
    user_id: Some("u1"),
};
