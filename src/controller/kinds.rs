//! The four token kinds, each a thin description over one shared lifecycle: which Frontegg
//! endpoint family it uses, how its spec becomes a create (or patch) request, and which keys
//! its Secret gets.

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::ResourceExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::api::limits::{check_ids, check_metadata};
use crate::api::{
    TenantAccessToken, TenantApiToken, TokenCommonSpec, TokenStatus, UserAccessToken, UserApiToken,
};
use crate::identity::{
    CreateTenantAccessToken, CreateTenantApiToken, CreateUserAccessToken, CreateUserApiToken,
    TenantAccessTokens, TenantApiTokens, TokenEndpoint, UpdateTenantApiToken, UserAccessTokens,
    UserApiTokens,
};

/// Which keys hold the credential in the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretLayout {
    /// `clientId` + `secret` (API tokens, exchanged at /identity/resources/auth/v2/api-token).
    ClientCredentials,
    /// `token` (access tokens).
    AccessToken,
}

/// What the spec says about the attributes a listing shows. `None` fields are not compared
/// (the kind's listing does not show them, or the spec leaves them to whoever made the token).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WantedRemote {
    pub description: Option<String>,
    /// Compared as objects; an absent one equals `{}`.
    pub metadata: Option<Map<String, Value>>,
    /// Compared as sets; an absent list equals `[]`.
    pub role_ids: Option<Vec<String>>,
    pub permission_ids: Option<Vec<String>>,
}

pub trait TokenResource:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    type Endpoint: TokenEndpoint;
    const KIND: &'static str;
    const LAYOUT: SecretLayout;

    fn common(&self) -> &TokenCommonSpec;
    fn token_status(&self) -> Option<&TokenStatus>;
    fn user_id(&self) -> Option<&str> {
        None
    }
    /// The create body; `description` is the spec's, with the operator's mark.
    fn create_request(
        &self,
        expires_in_minutes: Option<u64>,
        description: String,
    ) -> <Self::Endpoint as TokenEndpoint>::Create;
    /// Fields that can only change by issuing a new token (hashed into the status).
    fn kind_issue_fields(&self) -> Value {
        Value::Null
    }
    /// The in-place update for kinds Frontegg can patch (tenant API tokens only), with
    /// `description` (the spec's, marked when sent).
    fn patch_request(&self, _description: String) -> Option<UpdateTenantApiToken> {
        None
    }
    /// Bounds on the kind's own fields (ids, metadata), checked before any remote call.
    fn check_kind_fields(&self) -> Result<(), String> {
        Ok(())
    }
    /// Role ids the token asks for (for environment policies).
    fn role_ids(&self) -> &[String] {
        &[]
    }
    /// Permission ids the token asks for (for environment policies).
    fn permission_ids(&self) -> &[String] {
        &[]
    }
    /// The listed attributes (besides the description) the spec decides, for drift checks.
    /// With `unset_as_empty`, a field the spec leaves out is wanted empty (a managed token);
    /// without, it is not compared (an observed one).
    fn wanted_remote(&self, _unset_as_empty: bool) -> WantedRemote {
        WantedRemote::default()
    }
}

impl TokenResource for UserApiToken {
    type Endpoint = UserApiTokens;
    const KIND: &'static str = "UserApiToken";
    const LAYOUT: SecretLayout = SecretLayout::ClientCredentials;
    fn common(&self) -> &TokenCommonSpec {
        &self.spec.common
    }
    fn token_status(&self) -> Option<&TokenStatus> {
        self.status.as_ref()
    }
    fn user_id(&self) -> Option<&str> {
        Some(&self.spec.user_id)
    }
    fn create_request(
        &self,
        expires_in_minutes: Option<u64>,
        description: String,
    ) -> CreateUserApiToken {
        CreateUserApiToken {
            description: Some(description),
            expires_in_minutes,
            metadata: self.spec.metadata.clone(),
        }
    }
    fn kind_issue_fields(&self) -> Value {
        json!({ "description": self.spec.common.description, "metadata": self.spec.metadata })
    }
    fn check_kind_fields(&self) -> Result<(), String> {
        check_metadata(self.spec.metadata.as_ref())
    }
    fn wanted_remote(&self, unset_as_empty: bool) -> WantedRemote {
        WantedRemote {
            metadata: or_empty(&self.spec.metadata, unset_as_empty),
            ..WantedRemote::default()
        }
    }
}

impl TokenResource for UserAccessToken {
    type Endpoint = UserAccessTokens;
    const KIND: &'static str = "UserAccessToken";
    const LAYOUT: SecretLayout = SecretLayout::AccessToken;
    fn common(&self) -> &TokenCommonSpec {
        &self.spec.common
    }
    fn token_status(&self) -> Option<&TokenStatus> {
        self.status.as_ref()
    }
    fn user_id(&self) -> Option<&str> {
        Some(&self.spec.user_id)
    }
    fn create_request(
        &self,
        expires_in_minutes: Option<u64>,
        description: String,
    ) -> CreateUserAccessToken {
        CreateUserAccessToken {
            description: Some(description),
            expires_in_minutes,
        }
    }
    fn kind_issue_fields(&self) -> Value {
        json!({ "description": self.spec.common.description })
    }
}

impl TokenResource for TenantApiToken {
    type Endpoint = TenantApiTokens;
    const KIND: &'static str = "TenantApiToken";
    const LAYOUT: SecretLayout = SecretLayout::ClientCredentials;
    fn common(&self) -> &TokenCommonSpec {
        &self.spec.common
    }
    fn token_status(&self) -> Option<&TokenStatus> {
        self.status.as_ref()
    }
    fn create_request(
        &self,
        expires_in_minutes: Option<u64>,
        description: String,
    ) -> CreateTenantApiToken {
        CreateTenantApiToken {
            description: Some(description),
            expires_in_minutes,
            metadata: self.spec.metadata.clone(),
            role_ids: self.spec.role_ids.clone(),
            permission_ids: self.spec.permission_ids.clone(),
        }
    }
    fn patch_request(&self, description: String) -> Option<UpdateTenantApiToken> {
        Some(UpdateTenantApiToken {
            description: Some(description),
            metadata: Some(self.spec.metadata.clone().unwrap_or_default()),
            role_ids: self.spec.role_ids.clone(),
            permission_ids: self.spec.permission_ids.clone(),
        })
    }
    fn check_kind_fields(&self) -> Result<(), String> {
        check_ids("roleIds", self.spec.role_ids.as_ref())?;
        check_ids("permissionIds", self.spec.permission_ids.as_ref())?;
        check_metadata(self.spec.metadata.as_ref())
    }
    fn role_ids(&self) -> &[String] {
        self.spec.role_ids.as_deref().unwrap_or_default()
    }
    fn permission_ids(&self) -> &[String] {
        self.spec.permission_ids.as_deref().unwrap_or_default()
    }
    fn wanted_remote(&self, unset_as_empty: bool) -> WantedRemote {
        WantedRemote {
            description: None,
            metadata: or_empty(&self.spec.metadata, unset_as_empty),
            role_ids: or_empty(&self.spec.role_ids, unset_as_empty),
            permission_ids: or_empty(&self.spec.permission_ids, unset_as_empty),
        }
    }
}

impl TokenResource for TenantAccessToken {
    type Endpoint = TenantAccessTokens;
    const KIND: &'static str = "TenantAccessToken";
    const LAYOUT: SecretLayout = SecretLayout::AccessToken;
    fn common(&self) -> &TokenCommonSpec {
        &self.spec.common
    }
    fn token_status(&self) -> Option<&TokenStatus> {
        self.status.as_ref()
    }
    fn create_request(
        &self,
        expires_in_minutes: Option<u64>,
        description: String,
    ) -> CreateTenantAccessToken {
        CreateTenantAccessToken {
            description: Some(description),
            expires_in_minutes,
            role_ids: self.spec.role_ids.clone(),
        }
    }
    fn kind_issue_fields(&self) -> Value {
        json!({ "description": self.spec.common.description, "roleIds": self.spec.role_ids })
    }
    fn check_kind_fields(&self) -> Result<(), String> {
        check_ids("roleIds", self.spec.role_ids.as_ref())
    }
    fn role_ids(&self) -> &[String] {
        self.spec.role_ids.as_deref().unwrap_or_default()
    }
    fn wanted_remote(&self, unset_as_empty: bool) -> WantedRemote {
        WantedRemote {
            role_ids: or_empty(&self.spec.role_ids, unset_as_empty),
            ..WantedRemote::default()
        }
    }
}

/// The spec's value, or (when asked) the empty value Frontegg lists for an unset field.
fn or_empty<T: Clone + Default>(value: &Option<T>, unset_as_empty: bool) -> Option<T> {
    value.clone().or_else(|| unset_as_empty.then(T::default))
}

/// `Kind/namespace/name`: the key of per-resource state and of log lines.
pub fn object_key<K: TokenResource>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::KIND,
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}
