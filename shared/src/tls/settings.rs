//! TLS settings read from the environment, the same way in both services.
//!
//! | variable | meaning |
//! |---|---|
//! | `TLS_CERT_FILE`, `TLS_KEY_FILE` | the listeners' certificate chain and key (PEM), re-read when they change |
//! | `TLS_DISABLED` | `true`: serve plaintext because TLS ends in front of the service (a proxy or mesh) |
//! | `DATABASE_CA_FILE` | CA (PEM) that PostgreSQL servers' certificates must chain to; used where a URL says `sslmode=require` |
//!
//! Production mode refuses to start without a certificate unless `TLS_DISABLED=true` says so:
//! plaintext is never what a production deployment gets by forgetting a setting.

use std::path::PathBuf;

use super::ServerTls;
use crate::{
    config::{self as env, ConfigError, Mode},
    pg::PgTls,
};

/// The listeners' TLS settings: `Some` to serve TLS, `None` for plaintext (development, or
/// production with `TLS_DISABLED=true`).
pub fn server_from_env(mode: Mode) -> Result<Option<ServerTls>, ConfigError> {
    let disabled = env::flag("TLS_DISABLED", false)?;
    match (env::var("TLS_CERT_FILE"), env::var("TLS_KEY_FILE")) {
        (Some(_), Some(_)) if disabled => Err(ConfigError::new(
            "TLS_DISABLED",
            "contradicts TLS_CERT_FILE and TLS_KEY_FILE: set one or the other",
        )),
        (Some(cert), Some(key)) => Ok(Some(ServerTls::new(cert, key))),
        (Some(_), None) => Err(ConfigError::new("TLS_KEY_FILE", "required with TLS_CERT_FILE")),
        (None, Some(_)) => Err(ConfigError::new("TLS_CERT_FILE", "required with TLS_KEY_FILE")),
        (None, None) if mode == Mode::Production && !disabled => Err(ConfigError::new(
            "TLS_CERT_FILE",
            "production mode serves TLS: set TLS_CERT_FILE and TLS_KEY_FILE, or TLS_DISABLED=true \
             when TLS ends in front of the service",
        )),
        (None, None) => Ok(None),
    }
}

/// Whether `TLS_DISABLED=true` (TLS ends in front of the service).
pub fn disabled_from_env() -> Result<bool, ConfigError> {
    env::flag("TLS_DISABLED", false)
}

/// An optional path variable.
pub fn path(name: &str) -> Option<PathBuf> {
    env::var(name).map(PathBuf::from)
}

/// PostgreSQL TLS: verified against `DATABASE_CA_FILE` where a URL asks for it.
pub fn database_from_env() -> Result<PgTls, ConfigError> {
    match path("DATABASE_CA_FILE") {
        None => Ok(PgTls::none()),
        Some(ca) => PgTls::from_ca_file(&ca)
            .map_err(|e| ConfigError::new("DATABASE_CA_FILE", e.to_string())),
    }
}
