//! The conversion webhook's own CA and each replica's serving certificate. Pure: no I/O.
//!
//! One CA for every replica, kept in a Secret (`keys`), so that any replica's certificate is
//! trusted by the bundle in the CRDs. A CA in the last third of its life is replaced; the
//! replaced one stays in the bundle until it expires, so certificates it signed keep working
//! while the replicas move on (cert-manager's dynamic serving authority works the same way).

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::sign::CertifiedKey;

/// The Secret's keys.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
/// CA certificates replaced but not yet expired, PEM, newest first.
pub const PREVIOUS: &str = "previous.crt";

/// Why a certificate could not be made or read. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("the CA in the Secret does not parse")]
    BadCa,
    #[error("could not generate a certificate: {0}")]
    Generate(String),
}

/// A CA: its certificate (PEM) and key (PEM). The key is never printed.
#[derive(Clone)]
pub struct Ca {
    pub cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("key", &"<redacted>").finish()
    }
}

fn gen_err(e: rcgen::Error) -> AuthorityError {
    AuthorityError::Generate(e.to_string())
}

fn validity(params: &mut CertificateParams, lifetime: Duration) -> Result<(), AuthorityError> {
    let now = time::OffsetDateTime::now_utc();
    let too_long = || AuthorityError::Generate("lifetime out of range".into());
    // A minute back, for API servers whose clock is slightly behind ours.
    params.not_before = now
        .checked_sub(time::Duration::minutes(1))
        .ok_or_else(too_long)?;
    let lifetime = time::Duration::try_from(lifetime).map_err(|_| too_long())?;
    params.not_after = now.checked_add(lifetime).ok_or_else(too_long)?;
    Ok(())
}

impl Ca {
    /// A new CA valid for `lifetime`.
    pub fn generate(lifetime: Duration) -> Result<Ca, AuthorityError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "frontegg-token-operator conversion CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, lifetime)?;
        let cert = params.self_signed(&key).map_err(gen_err)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA a Secret holds.
    pub fn from_pem(cert_pem: String, key_pem: String) -> Result<Ca, AuthorityError> {
        KeyPair::from_pem(&key_pem).map_err(|_| AuthorityError::BadCa)?;
        not_after(&cert_pem).ok_or(AuthorityError::BadCa)?;
        Ok(Ca { cert_pem, key_pem })
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Whether the CA is in the last third of its life (or past it).
    pub fn due(&self, now: jiff::Timestamp) -> bool {
        let (Some(from), Some(to)) = (not_before(&self.cert_pem), not_after(&self.cert_pem)) else {
            return true;
        };
        // Due once less than a third of its life is left.
        let left = to.duration_since(now);
        let life = to.duration_since(from);
        left.checked_mul(3).is_none_or(|l| l < life)
    }

    /// A serving certificate for `names`, signed by this CA, valid for `lifetime`.
    pub fn issue(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<Arc<CertifiedKey>, AuthorityError> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|_| AuthorityError::BadCa)?;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(|_| AuthorityError::BadCa)?;
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(gen_err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "frontegg-token-operator conversion");
        validity(&mut params, lifetime)?;
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        let der = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der())
            .map_err(|e| AuthorityError::Generate(e.to_string()))?;
        let signing =
            any_supported_type(&der).map_err(|e| AuthorityError::Generate(e.to_string()))?;
        Ok(Arc::new(CertifiedKey::new(
            vec![cert.der().clone()],
            signing,
        )))
    }
}

fn parse(pem: &str) -> Option<Vec<CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .ok()
}

fn validity_of(pem: &str) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let der = parse(pem)?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let from = jiff::Timestamp::from_second(cert.validity().not_before.timestamp()).ok()?;
    let to = jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok()?;
    Some((from, to))
}

pub fn not_before(pem: &str) -> Option<jiff::Timestamp> {
    validity_of(pem).map(|(from, _)| from)
}

pub fn not_after(pem: &str) -> Option<jiff::Timestamp> {
    validity_of(pem).map(|(_, to)| to)
}

/// Splits a PEM bundle into its certificates, each as PEM.
pub fn split(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    bundle
        .split_inclusive(END)
        .map(str::trim)
        .filter(|c| c.starts_with("-----BEGIN CERTIFICATE-----") && c.ends_with(END))
        .map(|c| format!("{c}\n"))
        .collect()
}

/// The bundle the API server trusts: the current CA, then the replaced ones still valid, at
/// most `keep` of them (a Secret deleted and recreated many times must not grow it forever).
pub fn bundle(current: &str, previous: &[String], now: jiff::Timestamp) -> String {
    const KEEP: usize = 2;
    let mut out = vec![current.to_string()];
    for cert in previous {
        let valid = not_after(cert).is_some_and(|t| t > now);
        if valid && !out.contains(cert) && out.len() <= KEEP {
            out.push(cert.clone());
        }
    }
    out.concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_signs_serving_certificates_and_the_bundle_keeps_the_replaced_ca() {
        let old = Ca::generate(Duration::from_secs(3600)).expect("ca");
        let new = Ca::generate(Duration::from_secs(3600)).expect("ca");
        let now = jiff::Timestamp::now();
        assert!(!new.due(now));
        assert!(new.due(now + jiff::SignedDuration::from_secs(2500)));
        let bundle = bundle(&new.cert_pem, &split(&old.cert_pem), now);
        assert_eq!(
            split(&bundle),
            vec![new.cert_pem.clone(), old.cert_pem.clone()]
        );
        let names = vec!["svc.ns.svc".to_string()];
        let key = new.issue(&names, Duration::from_secs(600)).expect("leaf");
        assert_eq!(key.cert.len(), 1);
        let reread = Ca::from_pem(new.cert_pem.clone(), new.key_pem().to_string()).expect("ca");
        assert!(reread.issue(&names, Duration::from_secs(600)).is_ok());
        assert!(Ca::from_pem("junk".into(), new.key_pem().to_string()).is_err());
        assert!(!format!("{new:?}").contains("PRIVATE"));
    }
}
