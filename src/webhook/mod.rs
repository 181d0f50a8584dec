//! The conversion webhook: the API server asks it to convert token objects between
//! `v1alpha1` and `v1beta1` (`api::convert`). Every replica serves it, leader or not, on its
//! own port with TLS from the operator's own CA (`authority`), which `maintain` keeps in a
//! Secret and in the CRDs' `caBundle`.
//!
//! May use: `api`. Nothing of the controllers: conversion must keep working while they wait
//! for leadership or are stopped.

pub mod authority;
pub mod maintain;
pub mod mounted;
mod serve;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

pub use serve::{convert_review, serve};

/// Where the webhook listens and how its certificates are kept.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    /// The operator's namespace: the CA Secret's and the Service's.
    pub namespace: String,
    /// The Service the CRDs name.
    pub service: String,
    /// Or the URL they name instead (an operator outside the cluster).
    pub url: Option<String>,
    /// With cert-manager: the mounted certificate's folder. No CA is kept and no CRD written.
    pub tls_dir: Option<std::path::PathBuf>,
    pub ca_secret: String,
    pub ca_lifetime: Duration,
    pub cert_lifetime: Duration,
}

impl Options {
    /// The names the API server dials: the URL's host, or the Service's.
    pub fn names(&self) -> Vec<String> {
        if let Some(host) = self.url.as_deref().and_then(url_host) {
            return vec![host];
        }
        let base = format!("{}.{}.svc", self.service, self.namespace);
        vec![base.clone(), format!("{base}.cluster.local")]
    }
}

/// The host of `https://HOST[:PORT]/path` (an IPv6 host in brackets loses them).
fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// The certificate served now; swapped in place when renewed.
#[derive(Debug, Default)]
pub struct ServingCert {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    ready: AtomicBool,
}

impl ServingCert {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut current) = self.current.write() {
            *current = Some(key);
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a certificate is served: until then the pod is not ready, so the Service
    /// sends no conversion to it.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().and_then(|c| c.clone())
    }
}

/// How long the webhook keeps answering after shutdown begins: until the Service has dropped
/// this pod's endpoint, conversions still arrive, and each refused one fails an API request.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Runs the webhook until `shutdown`, then for `DRAIN`: the maintenance rounds and the server.
pub async fn run(
    client: kube::Client,
    options: Options,
    serving: Arc<ServingCert>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let rounds = match options.tls_dir.clone() {
        Some(dir) => tokio::spawn(mounted::follow(dir, serving.clone(), maintain::TICK)),
        None => {
            let mut maintainer =
                maintain::Maintainer::new(client, options.clone(), serving.clone());
            tokio::spawn(async move {
                loop {
                    if let Err(e) = maintainer.tick().await {
                        tracing::warn!(error = %e, "conversion webhook certificates: will retry");
                    }
                    tokio::time::sleep(maintain::TICK).await;
                }
            })
        }
    };
    let drained = async move {
        shutdown.await;
        tokio::time::sleep(DRAIN).await;
    };
    let served = serve(options.addr, serving, drained).await;
    rounds.abort();
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_names_the_host_the_api_server_dials() {
        let options = |url: Option<&str>| Options {
            addr: ([127, 0, 0, 1], 9443).into(),
            namespace: "ns".into(),
            service: "svc".into(),
            url: url.map(str::to_string),
            tls_dir: None,
            ca_secret: "ca".into(),
            ca_lifetime: Duration::from_secs(60),
            cert_lifetime: Duration::from_secs(60),
        };
        assert_eq!(
            options(None).names(),
            vec!["svc.ns.svc", "svc.ns.svc.cluster.local"]
        );
        assert_eq!(
            options(Some("https://127.0.0.1:9443/convert")).names(),
            vec!["127.0.0.1"]
        );
        assert_eq!(
            options(Some("https://[::1]:9443/convert")).names(),
            vec!["::1"]
        );
        assert_eq!(
            options(Some("https://dev.local/convert")).names(),
            vec!["dev.local"]
        );
    }
}
