//! Which versions each CRD serves and stores, and how the API server converts between them.
//!
//! Crossplane's promotion rule: a release that adds a version keeps storing the old one, so
//! that rolling back to the previous release still reads every stored object. `v1alpha1` is
//! stored until the user switches (the chart's `crds.storageVersion`), then migrates
//! (`kubectl frontegg migrate`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceConversion, CustomResourceDefinition, ServiceReference, WebhookClientConfig,
    WebhookConversion,
};
use kube::core::crd::merge_crds;

/// The version stored unless the user switches.
pub const STORAGE_VERSION: &str = "v1alpha1";
/// Path and port the conversion webhook listens on.
pub const CONVERSION_PATH: &str = "/convert";
pub const CONVERSION_PORT: i32 = 9443;
/// Where a plain install (crds/ without the chart) expects the conversion Service.
pub const DEFAULT_NAMESPACE: &str = "frontegg-token-operator";
pub const DEFAULT_SERVICE: &str = "frontegg-token-operator-conversion";

/// How a CRD converts between its versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conversion {
    /// Through the operator's webhook at the default Service.
    Webhook,
    /// Through the operator's webhook at this URL: an operator outside the cluster that the
    /// API server reaches directly (`make dev`).
    Url(String),
    /// No webhook: only `v1alpha1` is served, and nothing needs converting. For running the
    /// operator outside the cluster (tests, benchmarks), where no Service reaches it.
    AlphaOnly,
}

/// A token kind's CRD: both versions, `v1alpha1` deprecated and stored.
pub fn token_crd(
    alpha: CustomResourceDefinition,
    beta: CustomResourceDefinition,
    conversion: &Conversion,
) -> CustomResourceDefinition {
    let mut crd = merged(alpha, beta);
    match conversion {
        Conversion::Webhook => crd.spec.conversion = Some(webhook(None, None)),
        Conversion::Url(url) => crd.spec.conversion = Some(webhook(None, Some(url))),
        Conversion::AlphaOnly => serve_alpha_only(&mut crd),
    }
    crd
}

/// An environment kind's CRD: `v1beta1` has the same schema, so the API server converts by
/// changing `apiVersion` alone, and no webhook is involved.
pub fn environment_crd(alpha: CustomResourceDefinition) -> CustomResourceDefinition {
    let mut beta = alpha.clone();
    for version in &mut beta.spec.versions {
        version.name = "v1beta1".into();
    }
    merged(alpha, beta)
}

fn merged(
    alpha: CustomResourceDefinition,
    beta: CustomResourceDefinition,
) -> CustomResourceDefinition {
    let kind = alpha.spec.names.kind.clone();
    // Both come from our own types with one version each: merging cannot fail; if it ever
    // did, the alpha CRD alone keeps every stored object readable.
    let mut crd = merge_crds(vec![alpha.clone(), beta], STORAGE_VERSION).unwrap_or(alpha);
    for version in &mut crd.spec.versions {
        version.storage = version.name == STORAGE_VERSION;
        if version.name == "v1alpha1" {
            version.deprecated = Some(true);
            version.deprecation_warning = Some(format!(
                "tokens.frontegg-operator.io/v1alpha1 {kind} is deprecated; use v1beta1 (docs/upgrading.md)"
            ));
        }
    }
    crd
}

fn serve_alpha_only(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        version.served = version.name == "v1alpha1";
    }
    crd.spec.conversion = None;
}

/// The webhook conversion stanza: at the default Service, or at `url`; with `ca_bundle` when
/// known.
pub fn webhook(ca_bundle: Option<Vec<u8>>, url: Option<&str>) -> CustomResourceConversion {
    let service = ServiceReference {
        namespace: DEFAULT_NAMESPACE.into(),
        name: DEFAULT_SERVICE.into(),
        path: Some(CONVERSION_PATH.into()),
        port: Some(CONVERSION_PORT),
    };
    CustomResourceConversion {
        strategy: "Webhook".into(),
        webhook: Some(WebhookConversion {
            conversion_review_versions: vec!["v1".into()],
            client_config: Some(WebhookClientConfig {
                service: url.is_none().then_some(service),
                ca_bundle: ca_bundle.map(k8s_openapi::ByteString),
                url: url.map(str::to_string),
            }),
        }),
    }
}

/// Rewrites a rendered CRD for the chart: the Service of the release, the stored version from
/// `.Values.crds.storageVersion`, and with `.Values.conversion.webhook` off, `v1alpha1` only.
pub fn templated(yaml: &str) -> String {
    let mut out = gate_webhook(yaml);
    out = out
        .replace(
            &format!("namespace: {DEFAULT_NAMESPACE}\n"),
            "namespace: {{ .Release.Namespace }}\n",
        )
        .replace(
            &format!("name: {DEFAULT_SERVICE}\n"),
            "name: {{ include \"fto.fullname\" . }}-conversion\n",
        );
    set_storage(&mut out);
    out
}

/// Wraps the conversion stanza in the chart's switch, and serves `v1beta1` only with it.
fn gate_webhook(yaml: &str) -> String {
    let (Some(start), Some(end)) = (yaml.find("\n  conversion:\n"), yaml.find("\n  group:")) else {
        return yaml.to_string();
    };
    let (Some(head), Some(stanza), Some(tail)) =
        (yaml.get(..start), yaml.get(start..end), yaml.get(end..))
    else {
        return yaml.to_string();
    };
    let tail = serve_beta_with_webhook(tail);
    // cert-manager's CA injector fills caBundle where it finds this annotation.
    let head = head.replacen(
        "\n  annotations:\n",
        "\n  annotations:\n    {{- if and .Values.conversion.webhook .Values.conversion.certManager.enabled }}\n    cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include \"fto.fullname\" . }}-conversion\n    {{- end }}\n",
        1,
    );
    format!("{head}\n  {{{{- if .Values.conversion.webhook }}}}{stanza}\n  {{{{- end }}}}{tail}")
}

fn serve_beta_with_webhook(tail: &str) -> String {
    let Some(at) = tail.find("name: v1beta1\n") else {
        return tail.to_string();
    };
    let (head, rest) = tail.split_at(at);
    let rest = rest.replacen(
        "served: true",
        "served: {{ .Values.conversion.webhook }}",
        1,
    );
    format!("{head}{rest}")
}

fn set_storage(out: &mut String) {
    for version in ["v1alpha1", "v1beta1"] {
        let Some(at) = out.find(&format!("name: {version}\n")) else {
            continue;
        };
        let Some(rest) = out.get(at..) else { continue };
        let Some(offset) = rest.find("storage: ").map(|o| o.saturating_add(at)) else {
            continue;
        };
        let line_end = out
            .get(offset..)
            .and_then(|r| r.find('\n'))
            .map_or(out.len(), |e| e.saturating_add(offset));
        out.replace_range(
            offset..line_end,
            &format!("storage: {{{{ eq .Values.crds.storageVersion \"{version}\" }}}}"),
        );
    }
}

/// The versions this release reads and writes.
pub const KNOWN_VERSIONS: [&str; 2] = ["v1alpha1", "v1beta1"];
/// The version the operator itself reads and writes.
pub const OPERATOR_VERSION: &str = "v1alpha1";

/// Why this release cannot run against `crd`, if it cannot: a version stored that it does not
/// know (a newer release stored it), or the version it reads not served. The message names the
/// fix.
pub fn unreadable(crd: &CustomResourceDefinition) -> Option<String> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let stored = crd
        .status
        .as_ref()
        .and_then(|s| s.stored_versions.clone())
        .unwrap_or_default();
    if let Some(unknown) = stored
        .iter()
        .find(|v| !KNOWN_VERSIONS.contains(&v.as_str()))
    {
        return Some(format!(
            "CRD {name} has objects stored as {unknown}, which this release cannot read: run the release that stores {unknown}, or with it switch storage back and run `kubectl frontegg migrate` before going back to this one (docs/upgrading.md)"
        ));
    }
    let serves = crd
        .spec
        .versions
        .iter()
        .any(|v| v.name == OPERATOR_VERSION && v.served);
    (!serves).then(|| {
        format!(
            "CRD {name} does not serve {OPERATOR_VERSION}, which this release reads: install this release's CRDs (the chart with crds.install, or crds/)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn a_crd_storing_an_unknown_version_or_not_serving_ours_is_refused_with_the_fix() {
        let mut crd = token_crd(
            crate::api::UserApiToken::crd(),
            crate::api::v1beta1::UserApiToken::crd(),
            &Conversion::Webhook,
        );
        assert_eq!(unreadable(&crd), None, "no status yet");
        crd.status = Some(Default::default());
        if let Some(s) = crd.status.as_mut() {
            s.stored_versions = Some(vec!["v1alpha1".into(), "v1beta1".into()]);
        }
        assert_eq!(unreadable(&crd), None);
        if let Some(s) = crd.status.as_mut() {
            s.stored_versions = Some(vec!["v1".into()]);
        }
        let refused = unreadable(&crd).unwrap_or_default();
        assert!(refused.contains("stored as v1") && refused.contains("kubectl frontegg migrate"));
        crd.status = None;
        for v in &mut crd.spec.versions {
            v.served = v.name != "v1alpha1";
        }
        assert!(
            unreadable(&crd)
                .unwrap_or_default()
                .contains("does not serve v1alpha1")
        );
    }
}
