use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};

use super::limits;
use serde::{Deserialize, Serialize};

/// Which kind of environment a token uses.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum EnvironmentKind {
    /// A FronteggEnvironment in the token's own namespace.
    FronteggEnvironment,
    /// A cluster-wide ClusterFronteggEnvironment.
    #[default]
    ClusterFronteggEnvironment,
}

/// Reference to the environment that issues a token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentRef {
    /// FronteggEnvironment (same namespace) or ClusterFronteggEnvironment.
    #[serde(default)]
    pub kind: EnvironmentKind,
    /// Name of the environment.
    #[x_kube(validation = Rule::new("self != ''").message("environmentRef.name must not be empty"))]
    pub name: String,
}

/// What happens to the remote token and the Secret when the resource is deleted.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum DeletionPolicy {
    /// Revoke the remote token; the Secret is garbage-collected with the resource.
    #[default]
    Delete,
    /// Keep the remote token and the Secret (its owner reference is removed).
    Orphan,
}

/// Extra keys rendered into the Secret from the credential.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    /// Map of Secret key to a MiniJinja (Jinja2) template. Variables: clientId, secret (API
    /// tokens), token (access tokens), tokenId, expiresAt, baseUrl, tenantId, userId.
    /// Example: `.env: "CLIENT_ID={{ clientId }}\nCLIENT_SECRET={{ secret }}"` or
    /// `creds.json: "{{ {'id': clientId, 'secret': secret} | tojson }}"`.
    /// Only `{{ }}` expressions, `if` and `for` are allowed, with the filters tojson, upper,
    /// lower, trim, default, length, first, last, string and escape; at most 32 keys of 4 KiB,
    /// each rendering to at most 64 KiB.
    #[serde(default)]
    #[schemars(schema_with = "template_data_schema")]
    pub data: BTreeMap<String, String>,
}

/// The Kubernetes Secret the credential is written to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTarget {
    /// Secret name; defaults to the resource name. An existing Secret not created for this
    /// resource is never overwritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(
        validation = Rule::new("size(self) <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("secret.name must be a valid DNS-1123 subdomain name")
    )]
    pub name: Option<String>,
    /// Labels added to the Secret (valid Kubernetes label keys and values, at most 32).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "labels_schema")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the Secret (valid Kubernetes annotation keys, at most 32 of 4 KiB).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "annotations_schema")]
    pub annotations: BTreeMap<String, String>,
    /// Extra keys built from the credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
    /// API tokens only: also write a ready bearer JWT (`accessToken`, `accessTokenExpiresAt`),
    /// exchanged from the client credentials and kept fresh by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<AccessTokenDelivery>,
}

/// A JWT exchanged from the API token's client credentials at
/// `POST /identity/resources/auth/v2/api-token`, refreshed before it expires, so workloads
/// mount a bearer token and need no Frontegg SDK.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessTokenDelivery {
    /// Write `accessToken` and `accessTokenExpiresAt` into the Secret.
    #[serde(default)]
    pub enabled: bool,
    /// Refresh this long before the JWT expires (default 10m; at most half the JWT's lifetime
    /// is used when it is shorter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) <= duration('24h')").message("accessToken.refreshBefore must be a duration like 10m, at most 24h")
    )]
    pub refresh_before: Option<String>,
}

/// Whether the operator manages the token or only watches one that exists.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum ManagementPolicy {
    /// Issue, rotate, repair and revoke the token (the default).
    #[default]
    Manage,
    /// Only watch the existing remote token `spec.tokenId`: report its existence, expiry and
    /// drift. Never create, patch or revoke, and write no Secret.
    Observe,
}

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

/// One key of a Secret in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
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

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// A remote token the operator issued and still tracks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedTokenRecord {
    /// Frontegg token ID (clientId for API tokens). Not a secret.
    pub id: String,
    /// When the operator issued it.
    #[schemars(schema_with = "timestamp")]
    pub issued_at: Timestamp,
    /// When it expires; absent for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub expires_at: Option<Timestamp>,
    /// Secret that holds it.
    pub secret_name: String,
    /// Digest of the spec fields it was issued from; a change requires a new token.
    pub issued_spec_hash: String,
    /// Digest of the fields that can be patched in place (TenantApiToken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patched_spec_hash: Option<String>,
    /// The issuance attempt that created it; part of the marker in its remote description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_id: Option<String>,
    /// SHA-256 of the credential written to the Secret, to detect a Secret edited by hand.
    /// Frontegg's secrets are long random values, so the digest reveals nothing about them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_digest: Option<String>,
    /// When the operator last changed the remote token in place; listings older than this
    /// cannot show drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub updated_at: Option<Timestamp>,
    /// Taken over with spec.import rather than issued by the operator.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub imported: bool,
    /// Issued to replace a token changed outside the operator (onRemoteDrift: Reissue). If
    /// this one differs from the spec too, Frontegg itself keeps those fields as they are:
    /// it is reported, not replaced again, so a spec Frontegg never matches cannot loop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reissued_for_drift: bool,
    /// The connection it was issued through; absent for tokens issued by earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<IssuedConnection>,
}

/// The connection a token was issued through. Every later request about that token (a drift
/// check, a patch, its revocation) goes through this connection, or nowhere.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuedConnection {
    pub environment_kind: EnvironmentKind,
    /// A FronteggEnvironment's is in the token's namespace.
    pub environment_name: String,
    /// The environment object's UID at the time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_uid: Option<String>,
    /// `scheme://host[:port]` the token was created at.
    pub base_url: String,
    pub auth_mode: crate::api::AuthModeSpec,
    /// With vendor authentication, a digest of the vendor client ID (16 hex digits of its
    /// SHA-256): on a regional host shared by every Frontegg account it tells the account
    /// apart, and namespace users who read the status do not learn the platform's client ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id_digest: Option<String>,
}

/// What an observed (`managementPolicy: Observe`) remote token looks like.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObservedToken {
    /// The remote token's id.
    pub id: String,
    /// Whether the last listing had it.
    pub exists: bool,
    /// Its expiry, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub expires_at: Option<Timestamp>,
    /// Fields that differ from the spec (description, metadata, roleIds, permissionIds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
}

/// A superseded remote token whose revocation has not happened yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRevocation {
    /// Frontegg token ID.
    pub id: String,
    /// Why it was superseded.
    pub reason: String,
    /// Not revoked before this time: the grace period in which workloads still holding it
    /// pick up its replacement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_timestamp")]
    pub not_before: Option<Timestamp>,
    /// The connection it was issued through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<IssuedConnection>,
}

/// A remote create that was started and not yet recorded: the issuance journal, kept in the
/// `tokens.frontegg-operator.io/issue-journal` annotation. If the operator stops between the
/// create and the status write, the next pass finds the token by its marker and either adopts
/// it (the Secret holds it) or revokes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueIntent {
    /// Random id of this attempt, carried in the remote token's description marker.
    pub attempt_id: String,
    /// When the attempt started.
    pub started_at: Timestamp,
    /// Why a token is being issued (Initial, Rotation, ...).
    pub operation: String,
}

/// The last remote operation the operator attempted, for crash recovery and diagnosis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    /// Issue, Patch or Revoke.
    pub operation: String,
    /// Succeeded or the failure reason.
    pub result: String,
    /// When it was attempted.
    #[schemars(schema_with = "timestamp")]
    pub at: Timestamp,
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

/// A resource's failed issuances in a row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuanceBackoff {
    /// Failed issuances in a row.
    pub failures: u32,
    /// No new token is created before this time.
    #[schemars(schema_with = "timestamp")]
    pub next_attempt_at: Timestamp,
    /// The reason of the last failure.
    pub last_failure: String,
    /// The spec generation the failures were counted under; another generation starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// The rotate annotation the failures were counted under; a new request starts over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_request: Option<String>,
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

pub(crate) fn timestamp(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

fn optional_timestamp(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time", "nullable": true })
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

/// The answer to remote drift a kind cannot patch back.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum RemoteDriftAction {
    #[default]
    Report,
    Reissue,
}

/// A workload to restart when the credential changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestartTarget {
    pub kind: WorkloadKind,
    /// Name of the workload in the token's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Workload kinds that can be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
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
    validation = Rule::new("has(self.environmentRef) == has(oldSelf.environmentRef) && (!has(self.environmentRef) || self.environmentRef == oldSelf.environmentRef)").message("environmentRef is immutable")
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
    validation = Rule::new("has(self.environmentRef) == has(oldSelf.environmentRef) && (!has(self.environmentRef) || self.environmentRef == oldSelf.environmentRef)").message("environmentRef is immutable")
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
    validation = Rule::new("has(self.environmentRef) == has(oldSelf.environmentRef) && (!has(self.environmentRef) || self.environmentRef == oldSelf.environmentRef)").message("environmentRef is immutable")
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
    validation = Rule::new("has(self.environmentRef) == has(oldSelf.environmentRef) && (!has(self.environmentRef) || self.environmentRef == oldSelf.environmentRef)").message("environmentRef is immutable")
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
const POLICY_IMMUTABLE_RULE: &str = "(has(self.managementPolicy) ? self.managementPolicy : 'Manage') == (has(oldSelf.managementPolicy) ? oldSelf.managementPolicy : 'Manage')";
const POLICY_IMMUTABLE_MESSAGE: &str = "managementPolicy is immutable; to take over an observed token, create a resource with spec.import";
const NO_JWT_RULE: &str =
    "!has(self.secret) || !has(self.secret.accessToken) || !self.secret.accessToken.enabled";
const NO_JWT_MESSAGE: &str =
    "secret.accessToken applies to API tokens only (UserApiToken, TenantApiToken)";

/// A string map whose keys and values admission checks with CEL and length limits.
fn bounded_map(
    description: &str,
    key_rule: &str,
    key_message: &str,
    value_max: usize,
    value_rule: Option<(&str, &str)>,
) -> schemars::Schema {
    let mut rules = vec![serde_json::json!({ "rule": key_rule, "message": key_message })];
    if let Some((rule, message)) = value_rule {
        rules.push(serde_json::json!({ "rule": rule, "message": message }));
    }
    schemars::json_schema!({
        "type": "object",
        "description": description,
        "maxProperties": limits::MAX_ENTRIES,
        "additionalProperties": { "type": "string", "maxLength": value_max },
        "x-kubernetes-validations": rules,
    })
}

fn template_data_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    bounded_map(
        "Map of Secret key to a MiniJinja template.",
        "self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))",
        "template keys must be valid Secret keys: letters, digits, '-', '_' and '.'",
        limits::MAX_TEMPLATE_SOURCE,
        None,
    )
}

const QUALIFIED_NAME_RULE: &str = "self.all(k, size(k) <= 317 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))";

fn labels_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    bounded_map(
        "Labels added to the Secret.",
        QUALIFIED_NAME_RULE,
        "label keys must be valid Kubernetes label keys",
        63,
        Some((
            "self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))",
            "label values must be valid Kubernetes label values",
        )),
    )
}

fn annotations_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    bounded_map(
        "Annotations added to the Secret.",
        QUALIFIED_NAME_RULE,
        "annotation keys must be valid Kubernetes annotation keys",
        limits::MAX_ANNOTATION_VALUE,
        None,
    )
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Extra claims encoded into JWTs issued for this token.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}
