//! TLS for the services' listeners, their gRPC clients and their PostgreSQL connections, with
//! rustls and the `ring` provider only (no aws-lc, no OpenSSL).
//!
//! Why here: both services serve gRPC and call each other, so the certificate handling (PEM
//! files, hot reload, client certificates) is written once. Certificates are files that an
//! operator (or cert-manager) rotates in place: servers pick up new ones without a restart and
//! without dropping connections ([`ServerTls`]). The PostgreSQL side lives in
//! [`crate::pg::PgTls`] and uses the PEM helpers below.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

mod client;
mod incoming;
mod names;
mod reload;
mod server;
pub mod settings;
#[cfg(feature = "testing")]
pub mod testing;

pub use client::{ClientIdentity, ClientTls};
pub use incoming::{HANDSHAKE_TIMEOUT, TlsIncoming};
pub use names::{cert_names, peer_names};
pub use server::ServerTls;

/// Errors loading certificates and keys or building TLS configurations. Never carries key
/// material: PEM parse errors name the file, not its content.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not well-formed PEM.
    #[error("{path}: malformed PEM")]
    Pem {
        /// The file.
        path: PathBuf,
    },
    /// A certificate file holds no certificate.
    #[error("{path}: no PEM certificate found")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key.
    #[error("{path}: no PEM private key found")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("{path}: unusable key or certificate: {source}")]
    KeyPair {
        /// The key file.
        path: PathBuf,
        /// Why (rustls' reason, which never includes the key).
        source: rustls::Error,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("{path}: unusable CA certificate: {source}")]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A certificate is not valid X.509 DER.
    #[error("malformed X.509 certificate")]
    Certificate,
    /// A gRPC endpoint is not an `https://` URL (tonic would silently connect in plaintext).
    #[error("TLS endpoint must be an https:// URL")]
    NotHttps,
    /// tonic refused the endpoint or its TLS settings.
    #[error("gRPC endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

/// The crypto provider of every configuration built here.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

/// The certificates in PEM `bytes` read from `path`; at least one.
pub(crate) fn parse_certs(
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem { path: path.to_owned() })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in PEM `bytes` read from `path`.
pub(crate) fn parse_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey { path: path.to_owned() },
        _ => TlsError::Pem { path: path.to_owned() },
    })
}

/// The trust anchors of a CA PEM file (one or more certificates).
pub(crate) fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(path, &read(path)?)? {
        roots.add(cert).map_err(|source| TlsError::Ca { path: path.to_owned(), source })?;
    }
    Ok(roots)
}
