//! TLS for the server: rustls with ALPN `h2` and `http/1.1`, so one port serves both
//! protocols over TLS as it does in cleartext. The `ring` crypto provider is named
//! explicitly rather than installed process-wide, so nothing depends on which
//! provider another crate's features happen to enable.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

crate::choices! {
    /// The oldest TLS version the server accepts.
    #[derive(Debug, Hash)]
    pub enum TlsMin as "TLS version", default V1_2 {
        /// TLS 1.2 and 1.3 (rustls' safe default cipher suites only).
        V1_2 = "1.2",
        /// TLS 1.3 only: one round trip fewer, no RSA key exchange or CBC suites.
        V1_3 = "1.3",
    }
}

/// `Strict-Transport-Security` on every response of a TLS server: browsers that have
/// seen it use https only, for a year (the value hstspreload.org asks for).
pub const HSTS: &str = "max-age=31536000";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading certificate {path}: {cause}")]
    Certificate { path: String, cause: rustls::pki_types::pem::Error },
    #[error("{path} holds no certificate")]
    NoCertificate { path: String },
    #[error("reading private key {path}: {cause}")]
    Key { path: String, cause: rustls::pki_types::pem::Error },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

impl crate::failure::Classify for TlsError {
    fn failure(&self) -> crate::failure::Failure {
        match self {
            TlsError::Certificate { .. }
            | TlsError::NoCertificate { .. }
            | TlsError::Key { .. }
            | TlsError::Config(_) => crate::failure::Failure::BadInput,
            TlsError::Generate(_) => crate::failure::Failure::Internal,
        }
    }
}

/// An acceptor for the PEM certificate chain and private key at the given paths,
/// taking TLS `min` and later.
pub fn acceptor(cert: &Path, key: &Path, min: TlsMin) -> Result<TlsAcceptor, TlsError> {
    let cert_path = cert.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|cause| TlsError::Certificate { path: cert_path.clone(), cause })?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|cause| TlsError::Key { path: key.display().to_string(), cause })?;
    acceptor_of(chain, key, min, &cert_path)
}

/// [`acceptor`] for PEM text in memory (`self_signed`'s, for the workbench).
pub fn acceptor_from_pem(cert: &str, key: &str, min: TlsMin) -> Result<TlsAcceptor, TlsError> {
    let source = "the generated certificate";
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|cause| TlsError::Certificate { path: source.into(), cause })?;
    let key =
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|cause| TlsError::Key { path: source.into(), cause })?;
    acceptor_of(chain, key, min, source)
}

fn acceptor_of(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    min: TlsMin,
    source: &str,
) -> Result<TlsAcceptor, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: source.to_owned() });
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsMin::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMin::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A self-signed certificate and key (PEM) for `names`, for local testing only.
pub fn self_signed(names: &[String]) -> Result<(String, String), TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}
