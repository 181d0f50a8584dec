//! Every replica, every tick: reads the CA Secret (creating or renewing it when due), keeps
//! the token CRDs' `caBundle` equal to the bundle, and serves a certificate from the newest CA
//! the CRDs already trust. Replicas agree through the Secret's resourceVersion: when two
//! renew at once, one write wins and the other reads it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::authority::{self, CA_CERT, CA_KEY, Ca, PREVIOUS};
use super::{Options, ServingCert};
use crate::api::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// The token kinds' CRDs, the ones with a conversion webhook.
pub const TOKEN_CRDS: [&str; 4] = [
    "userapitokens.tokens.frontegg-operator.io",
    "useraccesstokens.tokens.frontegg-operator.io",
    "tenantapitokens.tokens.frontegg-operator.io",
    "tenantaccesstokens.tokens.frontegg-operator.io",
];

/// What this replica serves: the certificate, and the CA that signed it.
pub struct Maintainer {
    pub client: Client,
    pub options: Options,
    pub serving: Arc<ServingCert>,
    /// The CA of the certificate served now, and when it expires.
    signed_by: Option<(String, jiff::Timestamp)>,
    /// When this replica first saw each CA trusted by every token CRD.
    trusted_since: BTreeMap<String, std::time::Instant>,
}

impl Maintainer {
    pub fn new(client: Client, options: Options, serving: Arc<ServingCert>) -> Maintainer {
        Maintainer {
            client,
            options,
            serving,
            signed_by: None,
            trusted_since: BTreeMap::new(),
        }
    }

    /// One round: the Secret, the CRDs, then the certificate.
    pub async fn tick(&mut self) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let (ca, previous) = self.current_ca(now).await?;
        let bundle = authority::bundle(&ca.cert_pem, &previous, now);
        let trusted = self.inject(&bundle).await?;
        self.serve_from(&ca, &trusted, now);
        Ok(())
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.options.namespace)
    }

    /// The CA from the Secret: created when absent or unreadable, replaced when due.
    async fn current_ca(&self, now: jiff::Timestamp) -> Result<(Ca, Vec<String>), kube::Error> {
        let api = self.secrets();
        let stored = api.get_opt(&self.options.ca_secret).await?;
        let read = stored.as_ref().and_then(read_ca);
        if let Some((ca, previous)) = &read
            && !ca.due(now)
        {
            return Ok((ca.clone(), previous.clone()));
        }
        // Replaced: the old CA (or, with the Secret gone, what the CRDs trust) stays trusted.
        let mut previous = match read {
            Some((old, mut previous)) => {
                previous.insert(0, old.cert_pem);
                previous
            }
            None => self.trusted_by_crds().await?,
        };
        previous.retain(|c| authority::not_after(c).is_some_and(|t| t > now));
        let ca = Ca::generate(self.options.ca_lifetime).map_err(other)?;
        let secret = ca_secret(&self.options.ca_secret, &ca, &previous, stored.as_ref());
        let written = match stored {
            Some(_) => {
                api.replace(&self.options.ca_secret, &PostParams::default(), &secret)
                    .await
            }
            None => api.create(&PostParams::default(), &secret).await,
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %self.options.ca_secret, "new conversion webhook CA");
                Ok((ca, previous))
            }
            // Another replica wrote first: use its CA.
            Err(kube::Error::Api(e)) if e.code == 409 => {
                let stored = api.get(&self.options.ca_secret).await?;
                read_ca(&stored).ok_or_else(|| other(authority::AuthorityError::BadCa))
            }
            Err(e) => Err(e),
        }
    }

    /// The CA certificates the token CRDs' conversion trusts now.
    async fn trusted_by_crds(&self) -> Result<Vec<String>, kube::Error> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut out = Vec::new();
        for name in TOKEN_CRDS {
            if let Some(crd) = api.get_opt(name).await? {
                for cert in authority::split(&ca_bundle_of(&crd)) {
                    if !out.contains(&cert) {
                        out.push(cert);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes the bundle into every token CRD whose conversion lacks it. Returns the CA
    /// certificates every CRD trusts before this round's writes.
    async fn inject(&self, bundle: &str) -> Result<Vec<String>, kube::Error> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let mut trusted: Option<Vec<String>> = None;
        for name in TOKEN_CRDS {
            let Some(crd) = api.get_opt(name).await? else {
                continue;
            };
            let has = authority::split(&ca_bundle_of(&crd));
            trusted = Some(match trusted {
                None => has.clone(),
                Some(t) => t.into_iter().filter(|c| has.contains(c)).collect(),
            });
            if !names_our_service(&crd, &self.options) {
                tracing::warn!(
                    crd = name,
                    "the CRD's conversion does not name this installation's Service; its CA bundle is left alone"
                );
                continue;
            }
            if ca_bundle_of(&crd) != bundle {
                let params = PatchParams::apply(FIELD_MANAGER).force();
                let patch = self.conversion(name, bundle);
                api.patch(name, &params, &Patch::Apply(&patch)).await?;
                tracing::info!(crd = name, "conversion webhook CA bundle updated");
            }
        }
        Ok(trusted.unwrap_or_default())
    }

    /// The whole conversion stanza, applied as ours: the chart writes the same Service, and
    /// because both own it, a rollback to a chart without it (0.1) leaves a valid stanza
    /// behind instead of a lone caBundle the API server refuses.
    fn conversion(&self, name: &str, bundle: &str) -> serde_json::Value {
        use crate::api::versions::{CONVERSION_PATH, CONVERSION_PORT};
        let ca_bundle = ByteString(bundle.as_bytes().to_vec());
        let client_config = match &self.options.url {
            Some(url) => json!({ "url": url, "caBundle": ca_bundle }),
            None => json!({
                "service": {
                    "namespace": self.options.namespace,
                    "name": self.options.service,
                    "path": CONVERSION_PATH,
                    "port": CONVERSION_PORT,
                },
                "caBundle": ca_bundle,
            }),
        };
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": client_config,
            }}},
        })
    }

    /// Serves a certificate from the current CA once the CRDs have trusted it since an earlier
    /// round: the API server reads a changed bundle a moment after the write, and until then
    /// only the old CA works. A process with no certificate yet takes the current CA at once.
    fn serve_from(&mut self, ca: &Ca, trusted: &[String], now: jiff::Timestamp) {
        if trusted.contains(&ca.cert_pem) {
            self.trusted_since
                .entry(ca.cert_pem.clone())
                .or_insert_with(std::time::Instant::now);
        }
        let settled = self
            .trusted_since
            .get(&ca.cert_pem)
            .is_some_and(|t| t.elapsed() >= SETTLE);
        let lifetime = self.options.cert_lifetime;
        if !needs_certificate(
            self.signed_by.as_ref(),
            &ca.cert_pem,
            settled,
            lifetime,
            now,
        ) {
            return;
        }
        match ca.issue(&self.options.names(), lifetime) {
            Ok(key) => {
                self.serving.set(key);
                let life = jiff::SignedDuration::try_from(lifetime).unwrap_or_default();
                self.signed_by = Some((ca.cert_pem.clone(), now.checked_add(life).unwrap_or(now)));
                tracing::info!("conversion webhook serving certificate issued");
            }
            Err(e) => tracing::warn!(error = %e, "could not issue the serving certificate"),
        }
    }
}

/// Whether to issue a serving certificate from `ca`: none served yet; one from another CA
/// once the CRDs trust `ca` (`settled`); one with less than a third of its life left.
fn needs_certificate(
    served: Option<&(String, jiff::Timestamp)>,
    ca: &str,
    settled: bool,
    lifetime: Duration,
    now: jiff::Timestamp,
) -> bool {
    let Some((signer, until)) = served else {
        return true;
    };
    if signer != ca {
        return settled;
    }
    let third = jiff::SignedDuration::try_from(lifetime.checked_div(3).unwrap_or_default())
        .unwrap_or_default();
    now >= until.checked_sub(third).unwrap_or(*until)
}

fn other(e: authority::AuthorityError) -> kube::Error {
    kube::Error::Service(Box::new(e))
}

fn ca_bundle_of(crd: &CustomResourceDefinition) -> String {
    crd.spec
        .conversion
        .as_ref()
        .and_then(|c| c.webhook.as_ref())
        .and_then(|w| w.client_config.as_ref())
        .and_then(|c| c.ca_bundle.as_ref())
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .unwrap_or_default()
}

/// Only a CRD whose conversion is the webhook at our Service gets a bundle: one installed
/// without it (the chart's `conversion.webhook: false`) stays as it is, and so does one that
/// names another installation's Service, which two installations would otherwise take from
/// each other every round.
fn names_our_service(crd: &CustomResourceDefinition, options: &Options) -> bool {
    let conversion = crd.spec.conversion.as_ref();
    let config = conversion
        .and_then(|c| c.webhook.as_ref())
        .and_then(|w| w.client_config.as_ref());
    let ours = match &options.url {
        Some(url) => config.and_then(|c| c.url.as_ref()) == Some(url),
        None => config
            .and_then(|c| c.service.as_ref())
            .is_some_and(|s| s.namespace == options.namespace && s.name == options.service),
    };
    conversion.is_some_and(|c| c.strategy == "Webhook") && ours
}

fn read_ca(secret: &Secret) -> Option<(Ca, Vec<String>)> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
    };
    let ca = Ca::from_pem(text(CA_CERT)?, text(CA_KEY)?).ok()?;
    let previous = text(PREVIOUS)
        .map(|p| authority::split(&p))
        .unwrap_or_default();
    Some((ca, previous))
}

fn ca_secret(name: &str, ca: &Ca, previous: &[String], stored: Option<&Secret>) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        CA_CERT.to_string(),
        ByteString(ca.cert_pem.as_bytes().to_vec()),
    );
    data.insert(
        CA_KEY.to_string(),
        ByteString(ca.key_pem().as_bytes().to_vec()),
    );
    data.insert(
        PREVIOUS.to_string(),
        ByteString(previous.concat().into_bytes()),
    );
    let mut secret = Secret {
        data: Some(data),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.to_string());
    secret.metadata.labels = Some(BTreeMap::from([(
        MANAGED_BY_LABEL.to_string(),
        MANAGED_BY_VALUE.to_string(),
    )]));
    // A replace carries the version read: a concurrent renewal makes it fail with 409.
    secret.metadata.resource_version = stored.and_then(|s| s.metadata.resource_version.clone());
    secret
}

/// The interval between rounds.
pub const TICK: Duration = Duration::from_secs(10);
/// How long the CRDs must have trusted a new CA before certificates it signed are served.
const SETTLE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ca_is_served_only_once_the_crds_trust_it_and_certificates_renew_at_two_thirds() {
        let now = jiff::Timestamp::now();
        let day = Duration::from_secs(86_400);
        let until = now + jiff::SignedDuration::from_hours(24);
        let served = ("old".to_string(), until);
        assert!(
            needs_certificate(None, "new", false, day, now),
            "nothing served yet"
        );
        assert!(!needs_certificate(Some(&served), "new", false, day, now));
        assert!(needs_certificate(Some(&served), "new", true, day, now));
        assert!(!needs_certificate(Some(&served), "old", false, day, now));
        let late = now + jiff::SignedDuration::from_hours(17);
        assert!(needs_certificate(Some(&served), "old", false, day, late));
    }
}
