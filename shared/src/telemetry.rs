//! Tracing set-up shared by both binaries: `RUST_LOG`-style filtering (`info` by default),
//! compact lines on stderr. Handlers add request ids and tenants to spans; they never record
//! passwords, tokens or patient fields.

use tracing_subscriber::{EnvFilter, filter::Directive, fmt};

/// tokio-postgres logs every statement's parameter values at debug level: patient data and
/// token hashes. A blanket `RUST_LOG=debug` must not turn that on; naming the crate does.
const QUIET_DRIVER: &str = "tokio_postgres=info";

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init() {
    let _ =
        fmt().with_env_filter(filter()).with_target(true).with_writer(std::io::stderr).try_init();
}

/// The filter from `RUST_LOG` (default `info`), with the database driver kept at `info` unless
/// `RUST_LOG` names it explicitly.
pub fn filter() -> EnvFilter {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = EnvFilter::try_new(if spec.trim().is_empty() { "info" } else { &spec })
        .unwrap_or_else(|_| EnvFilter::new("info"));
    if spec.contains("tokio_postgres") {
        return filter;
    }
    match QUIET_DRIVER.parse::<Directive>() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}
