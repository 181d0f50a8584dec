//! The serving certificate from files, for a chart that lets cert-manager issue it
//! (`conversion.certManager`): cert-manager writes `tls.crt` and `tls.key` into a Secret the
//! pod mounts, and its CA injector writes the CA into the CRDs. The operator then keeps no CA
//! and writes no CRD; it only serves what is mounted, and picks up a renewal when the kubelet
//! updates the files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::crypto::ring::sign::any_supported_type;
use tokio_rustls::rustls::sign::CertifiedKey;

use super::ServingCert;

/// Reads `tls.crt` (the certificate and its chain) and `tls.key` from `dir`. The error says
/// which file is wrong, never what it holds.
pub fn load(dir: &Path) -> Result<Arc<CertifiedKey>, String> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()))
    };
    let (chain, key) = (read("tls.crt")?, read("tls.key")?);
    let certs = rustls_pemfile::certs(&mut chain.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "tls.crt is not PEM certificates".to_string())?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = rustls_pemfile::private_key(&mut key.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| "tls.key holds no private key".to_string())?;
    let signing =
        any_supported_type(&key).map_err(|_| "tls.key is not a usable key".to_string())?;
    Ok(Arc::new(CertifiedKey::new(certs, signing)))
}

/// Serves the mounted certificate, read again every `every` while its files change.
pub async fn follow(dir: PathBuf, serving: Arc<ServingCert>, every: std::time::Duration) {
    let mut last: Option<Vec<u8>> = None;
    loop {
        let now = std::fs::read(dir.join("tls.crt")).ok();
        if now.is_some() && now != last {
            match load(&dir) {
                Ok(key) => {
                    serving.set(key);
                    tracing::info!(dir = %dir.display(), "conversion webhook serving the mounted certificate");
                    last = now;
                }
                Err(e) => tracing::warn!(error = %e, "cannot serve the mounted certificate"),
            }
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::authority::Ca;

    #[test]
    fn a_mounted_pair_loads_and_a_broken_one_says_which_file() {
        let dir = tempfile::tempdir().expect("dir");
        assert!(load(dir.path()).unwrap_err().contains("tls.crt"));
        let ca = Ca::generate(std::time::Duration::from_secs(600)).expect("ca");
        std::fs::write(dir.path().join("tls.crt"), &ca.cert_pem).expect("write");
        std::fs::write(dir.path().join("tls.key"), "not a key").expect("write");
        assert_eq!(
            load(dir.path()).err(),
            Some("tls.key holds no private key".into())
        );
        std::fs::write(dir.path().join("tls.key"), ca.key_pem()).expect("write");
        assert!(load(dir.path()).is_ok());
    }
}
