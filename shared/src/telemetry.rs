//! Tracing set-up shared by both binaries: `RUST_LOG`-style filtering (`info` by default),
//! plain text or JSON-less compact lines on stderr. Handlers add request ids and tenants to
//! spans; they never record passwords, tokens or patient fields.

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = fmt().with_env_filter(filter).with_target(true).with_writer(std::io::stderr).try_init();
}
