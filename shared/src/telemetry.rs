//! Tracing set-up shared by both binaries: `RUST_LOG`-style filtering (`info` by default),
//! compact lines on stderr. Handlers add request ids and tenants to spans; they never record
//! passwords, tokens or patient fields.
//!
//! With the `otlp` cargo feature and `OTEL_EXPORTER_OTLP_ENDPOINT` set, the same spans (the same
//! filter) are also exported over OTLP/gRPC (see [`otlp`]).

#[cfg(feature = "otlp")]
pub mod otlp;

use tracing_subscriber::{EnvFilter, filter::Directive, fmt};

/// tokio-postgres logs every statement's parameter values at debug level: patient data and
/// token hashes. A blanket `RUST_LOG=debug` must not turn that on; naming the crate does.
const QUIET_DRIVER: &str = "tokio_postgres=info";

/// The variable naming the OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`.
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// What [`init`] set up. [`Telemetry::shutdown`] sends the spans still buffered.
#[must_use = "call shutdown() before exiting, or buffered spans are lost"]
#[derive(Default)]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops exporting (nothing to do without OTLP).
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider {
            otlp::shutdown(provider).await;
        }
    }
}

/// Installs the global subscriber for `service` (its OTLP `service.name`). Safe to call more
/// than once (later calls do nothing). A set `OTEL_EXPORTER_OTLP_ENDPOINT` that cannot be used
/// is logged and export stays off: tracing must not stop a service.
pub fn init(service: &'static str) -> Telemetry {
    let endpoint = crate::config::var(OTLP_ENDPOINT);
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = endpoint {
        return match otlp::init(&endpoint, service) {
            Ok(telemetry) => telemetry,
            Err(e) => {
                init_plain();
                tracing::error!(error = %e, "{OTLP_ENDPOINT}: spans are not exported");
                Telemetry::default()
            }
        };
    }
    init_plain();
    #[cfg(not(feature = "otlp"))]
    if endpoint.is_some() {
        tracing::warn!(
            service,
            "{OTLP_ENDPOINT} is set, but this build cannot export spans (cargo feature otlp)"
        );
    }
    Telemetry::default()
}

fn init_plain() {
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
