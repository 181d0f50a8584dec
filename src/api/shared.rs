//! Types both API versions share: references, the Secret target, the records of issued
//! tokens, and the schema helpers for bounded maps and timestamps.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::limits;

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

pub(crate) fn is_default<T: Default + PartialEq>(value: &T) -> bool {
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

pub(crate) fn timestamp(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time" })
}

pub(crate) fn optional_timestamp(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "string", "format": "date-time", "nullable": true })
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

/// A string map whose keys and values admission checks with CEL and length limits.
pub(crate) fn bounded_map(
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

pub(crate) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "description": "Extra claims encoded into JWTs issued for this token.",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

pub(crate) const POLICY_IMMUTABLE_RULE: &str = "(has(self.managementPolicy) ? self.managementPolicy : 'Manage') == (has(oldSelf.managementPolicy) ? oldSelf.managementPolicy : 'Manage')";
pub(crate) const POLICY_IMMUTABLE_MESSAGE: &str = "managementPolicy is immutable; to take over an observed token, create a resource with spec.import";
pub(crate) const NO_JWT_RULE: &str =
    "!has(self.secret) || !has(self.secret.accessToken) || !self.secret.accessToken.enabled";
pub(crate) const NO_JWT_MESSAGE: &str =
    "secret.accessToken applies to API tokens only (UserApiToken, TenantApiToken)";
pub(crate) const ENVIRONMENT_IMMUTABLE_RULE: &str = "has(self.environmentRef) == has(oldSelf.environmentRef) && (!has(self.environmentRef) || self.environmentRef == oldSelf.environmentRef)";
pub(crate) const ENVIRONMENT_IMMUTABLE_MESSAGE: &str = "environmentRef is immutable";
