//! PostgreSQL over TLS, verified. tokio-postgres understands `sslmode` disable, prefer and
//! require, but checks no certificate itself; the rustls connector here verifies the server's
//! chain against a configured CA and its name against the host the URL names.
//!
//! Policy: TLS exactly where the URL asks for it. `sslmode=require` means verified TLS, and
//! without a CA it is refused (fail closed, never unverified). `sslmode=prefer`, which is also
//! what a URL without `sslmode` gets, is treated as `disable`: "TLS if the server offers it"
//! with nothing to verify against protects against no one, and local servers with a snakeoil
//! certificate must keep working with plain URLs.

use std::{fmt, future::Future, io, path::Path, pin::Pin};

use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::{
    Config,
    config::SslMode,
    tls::{MakeTlsConnect, TlsConnect},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::PgError;
use crate::tls::{TlsError, load_roots, provider};

/// How PostgreSQL servers are verified, and the tokio-postgres connector doing it. The default
/// has no CA: plaintext connections only. Cheap to clone.
#[derive(Clone, Default)]
pub struct PgTls {
    verified: Option<MakeRustlsConnect>,
}

impl PgTls {
    /// Plaintext only: URLs asking for TLS are refused (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Verifies servers against the CA certificate(s) in `ca_file` (not the system roots).
    pub fn from_ca_file(ca_file: &Path) -> Result<Self, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(load_roots(ca_file)?)
            .with_no_client_auth();
        // What libpq sends; PostgreSQL 17 requires it with sslnegotiation=direct.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(Self { verified: Some(MakeRustlsConnect::new(config)) })
    }

    /// Whether a CA is configured.
    pub fn verifies(&self) -> bool {
        self.verified.is_some()
    }

    /// `config` as it is to be used with this connector: `sslmode=prefer` becomes `disable`;
    /// any mode asking for TLS without a CA configured is an error.
    pub fn apply(&self, config: &Config) -> Result<Config, PgError> {
        let mut config = config.clone();
        match config.get_ssl_mode() {
            SslMode::Disable => {}
            SslMode::Prefer => {
                config.ssl_mode(SslMode::Disable);
            }
            _ if self.verifies() => {}
            _ => return Err(PgError::TlsWithoutCa),
        }
        Ok(config)
    }

    /// The connector of one connection to `host`, for `Config::connect_raw` on a stream the
    /// caller opened (pass a config from [`PgTls::apply`]). `host` is the name (or IP address)
    /// the server's certificate must carry.
    pub fn tls_connect(&self, host: &str) -> PgTlsConnect {
        PgTlsConnect { verified: self.verified.clone(), host: host.to_owned() }
    }
}

impl fmt::Debug for PgTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTls").field("verifies", &self.verifies()).finish()
    }
}

impl<S> MakeTlsConnect<S> for PgTls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = PgTlsConnect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<PgTlsConnect, io::Error> {
        // Called for every connection, TLS or not: refusing happens when TLS is attempted.
        Ok(self.tls_connect(host))
    }
}

/// The TLS handshake of one PostgreSQL connection (see [`PgTls::tls_connect`]). Without a CA it
/// fails instead of connecting unverified.
pub struct PgTlsConnect {
    verified: Option<MakeRustlsConnect>,
    host: String,
}

type Handshake<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

impl<S> TlsConnect<S> for PgTlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type Error = io::Error;
    type Future = Handshake<Self::Stream>;

    fn connect(self, stream: S) -> Self::Future {
        let Some(mut make) = self.verified else {
            return Box::pin(std::future::ready(Err(io::Error::other(PgError::TlsWithoutCa))));
        };
        match MakeTlsConnect::<S>::make_tls_connect(&mut make, &self.host) {
            Ok(connect) => Box::pin(connect.connect(stream)),
            Err(e) => Box::pin(std::future::ready(Err(io::Error::other(e)))),
        }
    }
}
