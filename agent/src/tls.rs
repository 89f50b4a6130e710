//! HTTPS for the agent: rustls (aws-lc) with the certificate chain and key given on the
//! command line, and optionally mutual TLS: only clients presenting a certificate signed by
//! the given CA get past the handshake.

use std::path::PathBuf;
use std::sync::Arc;

use dcbackup_protocol::tls::{self, PemError};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The PEM files of the agent's HTTPS (`--cert`, `--key`, `--client-ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The agent's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{flag} {}: {why}", path.display())]
    File {
        flag: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    fn file(flag: &'static str, pem: PemError) -> TlsError {
        TlsError::File {
            flag,
            path: pem.path,
            why: pem.why,
        }
    }
}

/// Reads the files and builds the acceptor; every problem names the flag and file.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let provider = tls::provider();
    let chain = tls::certificates(&files.cert).map_err(|e| TlsError::file("--cert", e))?;
    let key = tls::private_key(&files.key).map_err(|e| TlsError::file("--key", e))?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            tls::add_cas(&mut roots, path).map_err(|e| TlsError::file("--client-ca", e))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("--cert and --key do not go together: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
