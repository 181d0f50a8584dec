//! The `v1alpha1` token kinds: deprecated, still served and (until the storage switch) stored.
//! The operator reads and writes them; `convert` maps them to and from `v1beta1`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::shared::*;

/// Take over a token created elsewhere (the portal, Terraform) instead of issuing one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImportSpec {
    /// The remote token's id (`clientId` for API tokens). It must exist for the resource's
    /// tenant (and user), and must not carry another resource's mark.
    #[schemars(length(min = 1, max = 256))]
    pub token_id: String,
    /// The Secret, in the same namespace, that holds the token's secret. It is read once and
    /// never modified or deleted.
    pub secret_ref: SecretKeyRef,
}

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
    /// Token lifetime in minutes, 1 to 5256000 (ten years). Absent (and no expiresIn) means
    /// the token never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5256000))]
    pub expires_in_minutes: Option<u64>,
    /// Token lifetime as a duration such as `720h` or `90m` (alternative to expiresInMinutes),
    /// from 1m to 87600h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) >= duration('1m') && duration(self) <= duration('87600h')").message("expiresIn must be a duration like 720h or 90m, from 1m to 87600h")
    )]
    pub expires_in: Option<String>,
    /// Rotate this long before expiry: a duration shorter than the lifetime (e.g. `24h`), or
    /// a share of the lifetime from 1% to 99% (e.g. `33%`, as cert-manager's
    /// renewBeforePercentage). Defaults to a third of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^[1-9][0-9]?%$') || (self.matches('^([0-9]+(h|m|s))+$') && duration(self) <= duration('87600h'))").message("renewBefore must be a duration like 24h or 30m (at most 87600h), or a percentage like 33%")
    )]
    pub renew_before: Option<String>,
    /// How tokens are replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    /// Where to write the credential.
    #[serde(default)]
    pub secret: SecretTarget,
    /// Delete (default) revokes the remote token on deletion; Orphan keeps it and the Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Manage (default) or Observe. Immutable.
    #[serde(default, skip_serializing_if = "is_default")]
    pub management_policy: ManagementPolicy,
    /// Observe only: the id of the remote token to watch (`clientId` for API tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub token_id: Option<String>,
    /// Take over an existing token instead of issuing one; used only while no token is
    /// recorded in the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportSpec>,
}

/// Observed state of a token resource (kstatus compatible: `Ready` + `observedGeneration`).
/// Plain `JsonSchema`: it has no CEL rules, and `KubeSchema`'s copy of the struct would keep
/// the in-memory journal as a field nothing reads.
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
    /// Superseded remote tokens still to be revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_revocations: Vec<PendingRevocation>,
    /// In memory only: the open issuance journal, read from the annotation (see
    /// `controller::steps::journal`). Never part of the stored status.
    #[serde(skip)]
    pub pending_issue: Option<IssueIntent>,
    /// The attempt id of the last issuance journal the operator closed (issued, adopted or
    /// abandoned): a journal annotation naming it is settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_attempt: Option<String>,
    /// When the current token will be replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub next_renewal: Option<Timestamp>,
    /// The last remote operation attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<AttemptRecord>,
    /// The last value of the rotate annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotation_request: Option<String>,
    /// Observe only: the watched remote token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<ObservedToken>,
    /// Issuances that failed after their create was sent (the Secret could not be written,
    /// the new token failed verification, the create itself failed), and when the next one
    /// may be tried. Each failure doubles the wait, from --min-reissue-interval up to
    /// --max-reissue-backoff; a spec change or a rotate request starts over. Kept in the
    /// status so that restarts and failovers keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuance_backoff: Option<IssuanceBackoff>,
}

impl TokenStatus {
    /// Closes the open journal: its attempt is settled, whatever became of it.
    pub fn close_journal(&mut self) {
        if let Some(journal) = self.pending_issue.take() {
            self.settled_attempt = Some(journal.attempt_id);
        }
    }

    /// The status as stored: without the in-memory journal.
    pub fn durable(&self) -> TokenStatus {
        TokenStatus {
            pending_issue: None,
            ..self.clone()
        }
    }
}

/// How rotation replaces a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RotationSpec {
    /// How long a replaced token keeps working after the Secret switched to its successor,
    /// so that workloads pick up the new one first (kubelet refreshes mounted Secrets within
    /// about a minute). Defaults to the operator's --grace-period (10m); at most 168h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) <= duration('168h')").message("gracePeriod must be a duration like 10m, at most 168h")
    )]
    pub grace_period: Option<String>,
    /// API tokens only: before switching the Secret, exchange the new credentials at
    /// `POST /identity/resources/auth/v2/api-token` to prove they work. A token that fails
    /// is revoked and the Secret keeps the old one; the issue is retried.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verify: bool,
    /// Workloads in this namespace restarted (like `kubectl rollout restart`) when the Secret's
    /// credential is replaced, for those that read it only at start. At most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub restart_targets: Vec<RestartTarget>,
    /// What to do when the remote token's attributes were changed outside the operator and
    /// the kind cannot be patched back (all but TenantApiToken, which is always repaired in
    /// place): Report (default) sets the RemoteDrift condition; Reissue replaces the token.
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_remote_drift: RemoteDriftAction,
}

/// A user's client-credentials (API) token: the Secret gets `clientId` and `secret`.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1alpha1",
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
    validation = Rule::new("!(has(self.expiresInMinutes) && has(self.expiresIn))").message("set at most one of expiresInMinutes and expiresIn"),
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_NEEDS_TOKEN_ID_RULE).message(OBSERVE_NEEDS_TOKEN_ID_MESSAGE),
    validation = Rule::new(TOKEN_ID_ONLY_OBSERVE_RULE).message(TOKEN_ID_ONLY_OBSERVE_MESSAGE),
    validation = Rule::new(POLICY_IMMUTABLE_RULE).message(POLICY_IMMUTABLE_MESSAGE),
    validation = Rule::new("!has(self.expiresInMinutes) || self.expiresInMinutes <= 5256000").message("expiresInMinutes must be between 1 and 5256000 for user API tokens"),
    validation = Rule::new("!has(self.expiresIn) || duration(self.expiresIn) <= duration('87600h')").message("expiresIn must be at most 87600h (5256000 minutes) for user API tokens"),
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
    version = "v1alpha1",
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
    validation = Rule::new("!(has(self.expiresInMinutes) && has(self.expiresIn))").message("set at most one of expiresInMinutes and expiresIn"),
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_NEEDS_TOKEN_ID_RULE).message(OBSERVE_NEEDS_TOKEN_ID_MESSAGE),
    validation = Rule::new(TOKEN_ID_ONLY_OBSERVE_RULE).message(TOKEN_ID_ONLY_OBSERVE_MESSAGE),
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
    version = "v1alpha1",
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
    validation = Rule::new("!(has(self.expiresInMinutes) && has(self.expiresIn))").message("set at most one of expiresInMinutes and expiresIn"),
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_NEEDS_TOKEN_ID_RULE).message(OBSERVE_NEEDS_TOKEN_ID_MESSAGE),
    validation = Rule::new(TOKEN_ID_ONLY_OBSERVE_RULE).message(TOKEN_ID_ONLY_OBSERVE_MESSAGE),
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
    version = "v1alpha1",
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
    validation = Rule::new("!(has(self.expiresInMinutes) && has(self.expiresIn))").message("set at most one of expiresInMinutes and expiresIn"),
    validation = Rule::new(RENEW_BEFORE_RULE).message(RENEW_BEFORE_MESSAGE),
    validation = Rule::new(OBSERVE_NEEDS_TOKEN_ID_RULE).message(OBSERVE_NEEDS_TOKEN_ID_MESSAGE),
    validation = Rule::new(TOKEN_ID_ONLY_OBSERVE_RULE).message(TOKEN_ID_ONLY_OBSERVE_MESSAGE),
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

/// `renewBefore` must leave part of the lifetime before renewal, or every pass would renew.
const RENEW_BEFORE_RULE: &str = "!has(self.renewBefore) || self.renewBefore.endsWith('%') || ((!has(self.expiresIn) || duration(self.renewBefore) < duration(self.expiresIn)) && (!has(self.expiresInMinutes) || duration(self.renewBefore).getSeconds() < self.expiresInMinutes * 60))";
const RENEW_BEFORE_MESSAGE: &str = "renewBefore must be shorter than the token lifetime";
const OBSERVE_NEEDS_TOKEN_ID_RULE: &str = "!has(self.managementPolicy) || self.managementPolicy != 'Observe' || (has(self.tokenId) && !has(self.__import__))";
const OBSERVE_NEEDS_TOKEN_ID_MESSAGE: &str =
    "managementPolicy Observe needs spec.tokenId and takes no spec.import";
const TOKEN_ID_ONLY_OBSERVE_RULE: &str =
    "!has(self.tokenId) || (has(self.managementPolicy) && self.managementPolicy == 'Observe')";
const TOKEN_ID_ONLY_OBSERVE_MESSAGE: &str =
    "spec.tokenId is for managementPolicy Observe; to take over a token, use spec.import";
