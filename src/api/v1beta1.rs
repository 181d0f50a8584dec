//! The `v1beta1` token kinds: one field per idea. A lifetime is one duration
//! (`expiresIn`), everything about replacing a token sits under `rotation`, an existing token
//! is named one way for Observe and for taking it over (`existingToken`), and the status keeps
//! what users read at the top and the operator's bookkeeping under `internal`.
//! `docs/api-changes.md` maps every `v1alpha1` field to its place here; `convert` does it.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::shared::*;
use super::token::RotationSpec;

/// Fields every token kind shares. Flattened into each kind's spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCommonSpec {
    /// Environment that issues the token. Defaults to the operator's --default-environment.
    /// Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_ref: Option<EnvironmentRef>,
    /// Frontegg tenant (account) ID the token belongs to. Immutable.
    #[x_kube(
        validation = Rule::new("self != ''").message("tenantId must not be empty"),
        validation = Rule::new("self == oldSelf").message("tenantId is immutable")
    )]
    #[schemars(length(max = 256))]
    pub tenant_id: String,
    /// Human readable description stored with the remote token (at most 1024 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// Token lifetime as a duration such as `720h` or `90m`, from 1m to 87600h (ten years).
    /// Absent means the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) >= duration('1m') && duration(self) <= duration('87600h')").message("expiresIn must be a duration like 720h or 90m, from 1m to 87600h")
    )]
    pub expires_in: Option<String>,
    /// When and how tokens are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Where to write the credential.
    #[serde(default)]
    pub secret: SecretTarget,
    /// Delete (default) revokes the remote token on deletion; Orphan keeps it and the Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Manage (default) or Observe. Immutable.
    #[serde(default, skip_serializing_if = "is_default")]
    pub management_policy: ManagementPolicy,
    /// A remote token that exists already. With Observe, the token to watch (`id` only).
    /// With Manage, a token to take over instead of issuing one (`id` and `secretRef`); used
    /// only while no token is recorded in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_token: Option<ExistingToken>,
}

/// When and how a token is replaced.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate this long before expiry: a duration shorter than the lifetime (e.g. `24h`), or
    /// a share of the lifetime from 1% to 99% (e.g. `33%`, as cert-manager's
    /// renewBeforePercentage). Defaults to a third of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^[1-9][0-9]?%$') || (self.matches('^([0-9]+(h|m|s))+$') && duration(self) <= duration('87600h'))").message("rotation.renewBefore must be a duration like 24h or 30m (at most 87600h), or a percentage like 33%")
    )]
    pub renew_before: Option<String>,
    #[serde(flatten)]
    pub policy: RotationSpec,
}

/// A remote token created elsewhere (the portal, Terraform).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExistingToken {
    /// The remote token's id (`clientId` for API tokens). It must exist for the resource's
    /// tenant (and user), and must not carry another resource's mark.
    #[schemars(length(min = 1, max = 256))]
    pub id: String,
    /// Manage only: the Secret, in the same namespace, that holds the token's secret. It is
    /// read once and never modified or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// Observed state of a token resource (kstatus compatible: `Ready` + `observedGeneration`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// `Ready` says whether the Secret holds a valid credential for the current spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The remote token currently written to the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<IssuedTokenRecord>,
    /// Replaced remote tokens still to be revoked, each when its grace period ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_revocations: Vec<PendingRevocation>,
    /// When the current token will be replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub next_renewal: Option<Timestamp>,
    /// Observe only: the watched remote token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedToken>,
    /// Issuances that failed in a row, and when the next one may be tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuance_backoff: Option<IssuanceBackoff>,
    /// The operator's bookkeeping. Internal: its fields may change in any release, and
    /// nothing outside the operator should read or write them.
    #[serde(default, skip_serializing_if = "InternalStatus::is_empty")]
    pub internal: InternalStatus,
}

/// What the operator records for itself: crash recovery, and which requests it acted on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalStatus {
    /// The attempt id of the last issuance journal the operator closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_attempt: Option<String>,
    /// The last value of the rotate annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotation_request: Option<String>,
    /// The last remote operation attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<AttemptRecord>,
}

impl InternalStatus {
    pub fn is_empty(&self) -> bool {
        *self == InternalStatus::default()
    }
}

/// A user's client-credentials (API) token: the Secret gets `clientId` and `secret`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1beta1",
    kind = "UserApiToken",
    namespaced,
    status = "TokenStatus",
    shortname = "fuapi",
    category = "frontegg",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.current.secretName"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.current.expiresAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_RULE).message(OBSERVE_MESSAGE),
    validation = Rule::new(TAKE_OVER_RULE).message(TAKE_OVER_MESSAGE),
    validation = Rule::new(POLICY_IMMUTABLE_RULE).message(POLICY_IMMUTABLE_MESSAGE),
    validation = Rule::new(ENVIRONMENT_IMMUTABLE_RULE).message(ENVIRONMENT_IMMUTABLE_MESSAGE)
)]
pub struct UserApiTokenSpec {
    #[serde(flatten)]
    pub common: TokenCommonSpec,
    /// Frontegg user ID the token belongs to. Immutable.
    #[x_kube(
        validation = Rule::new("self != ''").message("userId must not be empty"),
        validation = Rule::new("self == oldSelf").message("userId is immutable")
    )]
    #[schemars(length(max = 256))]
    pub user_id: String,
    /// Extra claims encoded into JWTs issued for this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A user's personal access token: the Secret gets `token`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1beta1",
    kind = "UserAccessToken",
    namespaced,
    status = "TokenStatus",
    shortname = "fuat",
    category = "frontegg",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.current.secretName"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.current.expiresAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_RULE).message(OBSERVE_MESSAGE),
    validation = Rule::new(TAKE_OVER_RULE).message(TAKE_OVER_MESSAGE),
    validation = Rule::new(POLICY_IMMUTABLE_RULE).message(POLICY_IMMUTABLE_MESSAGE),
    validation = Rule::new(NO_JWT_RULE).message(NO_JWT_MESSAGE),
    validation = Rule::new(ENVIRONMENT_IMMUTABLE_RULE).message(ENVIRONMENT_IMMUTABLE_MESSAGE)
)]
pub struct UserAccessTokenSpec {
    #[serde(flatten)]
    pub common: TokenCommonSpec,
    /// Frontegg user ID the token belongs to. Immutable.
    #[x_kube(
        validation = Rule::new("self != ''").message("userId must not be empty"),
        validation = Rule::new("self == oldSelf").message("userId is immutable")
    )]
    #[schemars(length(max = 256))]
    pub user_id: String,
}

/// A tenant (account) client-credentials token: the Secret gets `clientId` and `secret`.
/// Description, roles, permissions and metadata are updated in place, without a new secret.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1beta1",
    kind = "TenantApiToken",
    namespaced,
    status = "TokenStatus",
    shortname = "ftapi",
    category = "frontegg",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.current.secretName"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.current.expiresAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_RULE).message(OBSERVE_MESSAGE),
    validation = Rule::new(TAKE_OVER_RULE).message(TAKE_OVER_MESSAGE),
    validation = Rule::new(POLICY_IMMUTABLE_RULE).message(POLICY_IMMUTABLE_MESSAGE),
    validation = Rule::new("has(self.roleIds) != has(self.permissionIds)").message("set exactly one of roleIds and permissionIds"),
    validation = Rule::new(ENVIRONMENT_IMMUTABLE_RULE).message(ENVIRONMENT_IMMUTABLE_MESSAGE)
)]
pub struct TenantApiTokenSpec {
    #[serde(flatten)]
    pub common: TokenCommonSpec,
    /// Role IDs granted to the token (exclusive with permissionIds), at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub role_ids: Option<Vec<String>>,
    /// Permission IDs granted to the token (exclusive with roleIds), at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub permission_ids: Option<Vec<String>>,
    /// Extra claims encoded into JWTs issued for this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A tenant (account) access token: the Secret gets `token`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1beta1",
    kind = "TenantAccessToken",
    namespaced,
    status = "TokenStatus",
    shortname = "ftat",
    category = "frontegg",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenantId"),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.current.secretName"
    ),
    printcolumn(
        name = "Expires",
        type_ = "string",
        json_path = ".status.current.expiresAt"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_RULE).message(OBSERVE_MESSAGE),
    validation = Rule::new(TAKE_OVER_RULE).message(TAKE_OVER_MESSAGE),
    validation = Rule::new(POLICY_IMMUTABLE_RULE).message(POLICY_IMMUTABLE_MESSAGE),
    validation = Rule::new(NO_JWT_RULE).message(NO_JWT_MESSAGE),
    validation = Rule::new(ENVIRONMENT_IMMUTABLE_RULE).message(ENVIRONMENT_IMMUTABLE_MESSAGE)
)]
pub struct TenantAccessTokenSpec {
    #[serde(flatten)]
    pub common: TokenCommonSpec,
    /// Role IDs granted to the token, at most 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(max = 256)))]
    pub role_ids: Option<Vec<String>>,
}

/// `rotation.renewBefore` must leave part of the lifetime before renewal, or every pass
/// would renew.
const RENEW_BEFORE_RULE: &str = "!has(self.rotation) || !has(self.rotation.renewBefore) || self.rotation.renewBefore.endsWith('%') || !has(self.expiresIn) || duration(self.rotation.renewBefore) < duration(self.expiresIn)";
const RENEW_BEFORE_MESSAGE: &str = "rotation.renewBefore must be shorter than expiresIn";
const OBSERVE_RULE: &str = "!has(self.managementPolicy) || self.managementPolicy != 'Observe' || (has(self.existingToken) && !has(self.existingToken.secretRef))";
const OBSERVE_MESSAGE: &str =
    "managementPolicy Observe needs spec.existingToken.id, and no existingToken.secretRef";
const TAKE_OVER_RULE: &str = "(has(self.managementPolicy) && self.managementPolicy == 'Observe') || !has(self.existingToken) || has(self.existingToken.secretRef)";
const TAKE_OVER_MESSAGE: &str = "to take over an existing token, spec.existingToken needs secretRef: the Secret key that holds its secret";
