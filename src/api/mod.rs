// kube-derive takes one printcolumn(...) per column, each with its own `type_`; clippy reads
// those as one attribute repeated.
#![allow(clippy::duplicated_attributes)]

//! Custom resource types. Everything the user writes and reads lives here; the schema that
//! `kubectl explain` and admission use is generated from these types (see `crds/`).

mod environment;
mod token;

pub use environment::*;
pub use token::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every kind this operator serves.
pub const GROUP: &str = "tokens.frontegg-operator.io";
/// Label put on every Secret the operator writes; owned Secrets are watched by it, never all Secrets.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "frontegg-token-operator";
/// Label carrying the owning kind, so each kind's controller watches only its own Secrets.
pub const KIND_LABEL: &str = "tokens.frontegg-operator.io/kind";
/// Annotation whose change asks for an immediate rotation (any new value).
pub const ROTATE_ANNOTATION: &str = "tokens.frontegg-operator.io/rotate";
/// Finalizer that guards remote revocation.
pub const FINALIZER: &str = "tokens.frontegg-operator.io/revoke";

/// Every CRD the operator serves, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        FronteggEnvironment::crd(),
        ClusterFronteggEnvironment::crd(),
        UserApiToken::crd(),
        UserAccessToken::crd(),
        TenantApiToken::crd(),
        TenantAccessToken::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream, as written to `crds/`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
