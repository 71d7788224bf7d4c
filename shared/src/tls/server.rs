//! The settings of a TLS listener and the rustls configuration they make.

use std::{path::PathBuf, sync::Arc, time::Duration};

use rustls::{ServerConfig, server::WebPkiClientVerifier};

use super::{TlsError, load_roots, provider, reload::ReloadingCert};

/// How a TLS listener authenticates itself and, optionally, its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first. Re-read when it changes.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 or SEC1). Re-read when it changes.
    pub key_file: PathBuf,
    /// When set, every client must present a certificate issued by one of this PEM file's CAs
    /// (mutual TLS); connections without one fail the handshake.
    pub client_ca_file: Option<PathBuf>,
    /// How often, at most, the certificate files are checked for changes (on a handshake).
    pub reload_every: Duration,
}

impl ServerTls {
    /// How often certificate files are checked by default: cheap, and soon enough for rotation.
    pub const DEFAULT_RELOAD_EVERY: Duration = Duration::from_secs(1);

    /// A listener presenting `cert_file` with `key_file`, without client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            reload_every: Self::DEFAULT_RELOAD_EVERY,
        }
    }

    /// The same, requiring client certificates issued by a CA of `ca_file`.
    pub fn with_client_ca(self, ca_file: impl Into<PathBuf>) -> Self {
        Self { client_ca_file: Some(ca_file.into()), ..self }
    }

    /// The same, checking the certificate files at most every `interval` (zero: every handshake).
    pub fn with_reload_every(self, interval: Duration) -> Self {
        Self { reload_every: interval, ..self }
    }

    /// Reads the files and builds the configuration: TLS 1.2 and 1.3 with ring, ALPN `h2`, the
    /// certificate from a resolver that reloads it. Unreadable or mismatched files are an
    /// error here; after start-up, a bad reload only keeps the previous certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca_file {
            // Mandatory: the builder allows unauthenticated clients only when asked to.
            Some(ca_file) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(
                    Arc::new(load_roots(ca_file)?),
                    provider,
                )
                .build()?,
            ),
            None => builder.with_no_client_auth(),
        };
        let resolver = ReloadingCert::load(&self.cert_file, &self.key_file, self.reload_every)?;
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}
