//! TLS for the services' gRPC clients (tonic channels).

use std::path::PathBuf;

use rustls::sign::CertifiedKey;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::{TlsError, parse_certs, parse_key, provider, read};

/// A client certificate chain and its key (PEM files), for servers that require one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key of the leaf.
    pub key_file: PathBuf,
}

/// How a gRPC client verifies its server (only against `ca_file`, not the system roots) and,
/// optionally, presents a certificate of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM file of the CA certificate(s) the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// The client certificate to present, if any.
    pub identity: Option<ClientIdentity>,
    /// The name to verify the server's certificate against, instead of the URL's host.
    pub domain: Option<String>,
}

impl ClientTls {
    /// Trust `ca_file`, present no certificate, verify the URL's host name.
    pub fn new(ca_file: impl Into<PathBuf>) -> Self {
        Self { ca_file: ca_file.into(), identity: None, domain: None }
    }

    /// The same, presenting `cert_file` with `key_file`.
    pub fn with_identity(
        self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        let identity = ClientIdentity { cert_file: cert_file.into(), key_file: key_file.into() };
        Self { identity: Some(identity), ..self }
    }

    /// The same, verifying the server's certificate against `domain`.
    pub fn with_domain(self, domain: impl Into<String>) -> Self {
        Self { domain: Some(domain.into()), ..self }
    }

    /// Reads and checks the files (so a bad one fails at start-up, naming the file, rather than
    /// on the first call) and builds tonic's configuration.
    pub fn config(&self) -> Result<ClientTlsConfig, TlsError> {
        let ca = read(&self.ca_file)?;
        parse_certs(&self.ca_file, &ca)?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(identity) = &self.identity {
            let (cert, key) = (read(&identity.cert_file)?, read(&identity.key_file)?);
            let chain = parse_certs(&identity.cert_file, &cert)?;
            CertifiedKey::from_der(chain, parse_key(&identity.key_file, &key)?, &provider())
                .map_err(|source| TlsError::KeyPair { path: identity.key_file.clone(), source })?;
            config = config.identity(Identity::from_pem(cert, key));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }

    /// An endpoint for `url` with this configuration. The URL must be `https://`: tonic
    /// connects to an `http://` URL in plaintext even when TLS is configured.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(url.to_owned())?;
        if endpoint.uri().scheme_str() != Some("https") {
            return Err(TlsError::NotHttps);
        }
        Ok(endpoint.tls_config(self.config()?)?)
    }
}
