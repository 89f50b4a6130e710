//! The TLS both ends of the agent protocol build from PEM files: the agent's server (its
//! certificate, and the CAs of the clients it admits) and the worker's client (the CAs of the
//! agents it trusts, and its own certificate for mutual TLS). Both run rustls on aws-lc, and
//! read a file whole or refuse it, naming the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {why}", path.display())]
pub struct PemError {
    pub path: PathBuf,
    pub why: String,
}

impl PemError {
    fn new(path: &Path, why: impl ToString) -> PemError {
        PemError {
            path: path.to_owned(),
            why: why.to_string(),
        }
    }
}

/// The crypto both ends use: aws-lc, as the AWS SDK and the JWT library.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Every certificate of a PEM file (a chain, leaf first, or a CA bundle); at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::new(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::new(path, e))?;
    if certs.is_empty() {
        return Err(PemError::new(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::new(path, e))
}

/// Adds a PEM bundle's CAs to `roots`: every one must be a usable CA certificate.
pub fn add_cas(roots: &mut RootCertStore, path: &Path) -> Result<(), PemError> {
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| PemError::new(path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_whole_or_refused_by_name() {
        let dir =
            std::env::temp_dir().join(format!("dcbackup-protocol-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").expect("write");
        let refused = certificates(&empty).expect_err("no certificate");
        assert_eq!(
            refused.to_string(),
            format!("{}: holds no PEM certificate", empty.display())
        );
        let missing = dir.join("missing.pem");
        let refused = private_key(&missing).expect_err("no file");
        assert!(refused
            .to_string()
            .starts_with(&format!("{}: ", missing.display())));
        let mut roots = RootCertStore::empty();
        assert!(add_cas(&mut roots, &empty).is_err());
        assert!(roots.is_empty());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
