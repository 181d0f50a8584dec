use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Frontegg's public regions. Each maps to the API base URL documented by Frontegg.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    Eu,
    Us,
    Ca,
    Au,
}

impl Region {
    pub fn base_url(self) -> &'static str {
        match self {
            Region::Eu => "https://api.frontegg.com",
            Region::Us => "https://api.us.frontegg.com",
            Region::Ca => "https://api.ca.frontegg.com",
            Region::Au => "https://api.au.frontegg.com",
        }
    }
}

/// Where the vendor credentials (clientId and secret of a Frontegg environment) are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Name of the Secret. A FronteggEnvironment reads it from its own namespace; a
    /// ClusterFronteggEnvironment reads it from the operator's namespace.
    #[x_kube(validation = Rule::new("self != ''").message("credentialsSecretRef.name must not be empty"))]
    pub name: String,
    /// Key holding the environment's client ID.
    #[serde(default = "default_client_id_key")]
    pub client_id_key: String,
    /// Key holding the environment's API key (secret).
    #[serde(default = "default_secret_key")]
    pub secret_key: String,
}

fn default_client_id_key() -> String {
    "clientId".into()
}
fn default_secret_key() -> String {
    "secret".into()
}

/// Client-side limit on calls to Frontegg, shared by every token using this environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// Sustained requests per second.
    #[schemars(range(min = 1, max = 1000))]
    pub qps: u32,
    /// Requests allowed in a burst above the sustained rate.
    #[schemars(range(min = 1, max = 10000))]
    pub burst: u32,
}

/// What the credentials Secret holds, and so what the environment may do.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub enum AuthModeSpec {
    /// Vendor credentials (Keys & domains): any tenant, any user.
    #[default]
    Vendor,
    /// One user's API token (client ID and secret): that user's personal tokens only, on the
    /// environment's sub-domain. Frontegg itself enforces the boundary.
    UserApiToken,
}

/// How the environment authenticates.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentAuth {
    /// Vendor (default) or UserApiToken.
    #[serde(default)]
    pub mode: AuthModeSpec,
}

/// How to reach one Frontegg environment. Exactly one of `region`, `domain` and `baseUrl` is
/// set; a UserApiToken environment names its sub-domain (`domain`) or a custom `baseUrl`. The
/// host and the auth mode are immutable: a token is revoked where it was issued, so a move is
/// a new environment (and new token resources), never an edit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("[has(self.region), has(self.baseUrl), has(self.domain)].filter(x, x).size() == 1").message("set exactly one of region, domain and baseUrl"),
    validation = Rule::new("!has(self.auth) || !has(self.auth.mode) || self.auth.mode != 'UserApiToken' || !has(self.region)").message("a UserApiToken environment names its sub-domain (domain) or a baseUrl, not a region"),
    validation = Rule::new("has(self.baseUrl) == has(oldSelf.baseUrl) && (!has(self.baseUrl) || self.baseUrl == oldSelf.baseUrl) && has(self.region) == has(oldSelf.region) && (!has(self.region) || self.region == oldSelf.region) && has(self.domain) == has(oldSelf.domain) && (!has(self.domain) || self.domain == oldSelf.domain)").message("region, domain and baseUrl are immutable: a token is revoked through the host that issued it. To move, create a new environment, new token resources through it, then delete the old ones (docs/lifecycle.md#moving-tokens-to-another-environment)"),
    validation = Rule::new("(has(self.auth) && has(self.auth.mode) ? self.auth.mode : 'Vendor') == (has(oldSelf.auth) && has(oldSelf.auth.mode) ? oldSelf.auth.mode : 'Vendor')").message("auth.mode is immutable: create a new environment instead (docs/lifecycle.md#moving-tokens-to-another-environment)")
)]
pub struct EnvironmentConnection {
    /// Frontegg region: eu (api.frontegg.com), us, ca or au.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<Region>,
    /// The environment's Frontegg sub-domain: `acme` means `https://acme.frontegg.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("domain must be a DNS label such as acme"))]
    pub domain: Option<String>,
    /// How the credentials authenticate (default Vendor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EnvironmentAuth>,
    /// Custom API base URL (scheme and host, no path), e.g. for a proxy or a test fake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("baseUrl must be an http(s) URL"))]
    pub base_url: Option<String>,
    /// The Secret holding the environment's clientId and secret (Frontegg portal: Keys & domains).
    pub credentials_secret_ref: CredentialsSecretRef,
    /// Optional value sent as the `frontegg-environment-id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// Client-side rate limit for this environment. Defaults to the operator's --qps and --burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl EnvironmentConnection {
    pub fn resolved_base_url(&self) -> String {
        match (&self.base_url, &self.domain, self.region) {
            (Some(url), _, _) => url.trim_end_matches('/').to_string(),
            (None, Some(domain), _) => format!("https://{domain}.frontegg.com"),
            (None, None, Some(region)) => region.base_url().to_string(),
            (None, None, None) => Region::Eu.base_url().to_string(),
        }
    }

    pub fn auth_mode(&self) -> AuthModeSpec {
        self.auth.as_ref().map(|a| a.mode).unwrap_or_default()
    }
}

/// A Frontegg environment usable by token resources in the same namespace.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1alpha1",
    kind = "FronteggEnvironment",
    namespaced,
    status = "EnvironmentStatus",
    shortname = "fenv",
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
    printcolumn(name = "Base URL", type_ = "string", json_path = ".status.baseUrl"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FronteggEnvironmentSpec {
    #[serde(flatten)]
    pub connection: EnvironmentConnection,
}

/// Which namespaces may use a ClusterFronteggEnvironment. A namespace is allowed when it is
/// listed in `names` or matches `selector`. Both empty means no namespace is allowed, and so
/// does an empty `selector: {}` (unlike Kubernetes' usual "empty matches everything", a guard
/// rail opens only on purpose: to allow every namespace, select on the label every namespace
/// has, `kubernetes.io/metadata.name` with operator `Exists`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespace names allowed to use this environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Label selector over namespaces allowed to use this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A Frontegg environment shared across namespaces, with guard rails on which namespaces may
/// use it and which Frontegg tenants they may act on.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "tokens.frontegg-operator.io",
    version = "v1alpha1",
    kind = "ClusterFronteggEnvironment",
    status = "EnvironmentStatus",
    shortname = "cfenv",
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
    printcolumn(name = "Base URL", type_ = "string", json_path = ".status.baseUrl"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterFronteggEnvironmentSpec {
    #[serde(flatten)]
    pub connection: EnvironmentConnection,
    /// Namespaces whose token resources may use this environment.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
    /// Frontegg tenant IDs that token resources may act on; `*` allows every tenant.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Limits on the tokens this environment issues. Checked before any remote call that
    /// creates or changes a token; revoking is never refused.
    #[serde(default)]
    pub policy: TokenPolicy,
}

/// Limits on the tokens a ClusterFronteggEnvironment issues. An absent field allows anything;
/// an empty list allows nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPolicy {
    /// User ids user tokens may be issued for; `*` matches any run of characters, `?` one
    /// character (e.g. `svc-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), inner(length(max = 256)))]
    pub allowed_users: Option<Vec<String>>,
    /// Role ids tokens may be granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub allowed_role_ids: Option<Vec<String>>,
    /// Permission ids tenant API tokens may be granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256), inner(length(max = 256)))]
    pub allowed_permission_ids: Option<Vec<String>>,
    /// Longest lifetime a token may ask for (e.g. `720h`). When set, a token that never
    /// expires is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new("self.matches('^([0-9]+(h|m|s))+$') && duration(self) <= duration('87600h')").message("maxLifetime must be a duration like 720h, at most 87600h")
    )]
    pub max_lifetime: Option<String>,
}

/// Observed state of an environment (kstatus compatible).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentStatus {
    /// `Ready` is True when the last vendor authentication with these credentials succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The API base URL in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// UserApiToken environments: the user and tenant the token authenticates as (from the
    /// JWT's claims; never the JWT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<EnvironmentUser>,
    /// While this environment or its credentials Secret is being deleted: how many token
    /// resources still hold a live remote token issued through it. The deletion finishes
    /// when the last is revoked (its resource deleted) or orphaned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in_use: Option<u32>,
    /// Remote tokens this operator installation created through this environment whose token
    /// resource no longer exists (its finalizer was removed by hand); at most 20, oldest
    /// first. With --collect-leaked-tokens they are revoked after a full resync period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaked_tokens: Vec<LeakedToken>,
    /// How the background drift checks keep up with the budget: they list each (kind,
    /// tenant, user) group of the tokens issued through this environment once per resync
    /// period, with what issuance, rotation and revocation leave of the budget. The
    /// `DriftOnSchedule` condition turns False when they fall more than twice behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_checks: Option<DriftChecks>,
}

/// The background drift checks of one environment, as last measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DriftChecks {
    /// Groups listed in the background: one per kind, tenant and (for the personal kinds)
    /// user.
    pub groups: u32,
    /// The resync period the operator was configured with.
    pub configured_period_seconds: u64,
    /// The period achieved: how old the oldest group's listing is when its turn comes. It
    /// stretches past the configured period when the groups need more listings than the
    /// budget leaves, and shrinks back when they fit.
    pub achieved_period_seconds: u64,
    /// Percent of the environment's request budget used since the last measurement, all
    /// priorities together.
    pub budget_used_percent: u32,
    /// About how many groups fit in the configured period with what the budget now leaves
    /// for background work.
    pub groups_that_fit: u32,
}

/// A leaked remote token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeakedToken {
    /// The token resource kind that created it (UserApiToken, ...).
    pub kind: String,
    /// Frontegg token ID. Not a secret.
    pub id: String,
    /// The UID of the token resource that created it.
    pub resource_uid: String,
    /// When a listing first showed it without a resource.
    #[schemars(schema_with = "crate::api::shared::timestamp")]
    pub first_seen: jiff::Timestamp,
}

/// The user a UserApiToken environment acts as.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentUser {
    /// The user id (the JWT's `sub`).
    pub user_id: String,
    /// The tenant id (the JWT's `tenantId`).
    pub tenant_id: String,
}
