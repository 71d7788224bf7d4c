//! Span export over OTLP/gRPC (cargo feature `otlp`): the spans the fmt layer sees (same
//! filter), batched and sent to `OTEL_EXPORTER_OTLP_ENDPOINT` on the tonic stack the services
//! already build. The exporter's own transport (tonic, hyper, h2) is never exported, so an
//! export cannot make spans of its own.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

use super::{Telemetry, filter};

/// Longest wait for the collector to take one batch.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Targets never exported: the exporter's own transport.
const TRANSPORT: [&str; 5] = ["h2", "hyper", "hyper_util", "tonic", "tower"];

/// OTLP export that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The exporter refused the endpoint.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// Another global subscriber was installed first.
    #[error("a tracing subscriber is installed already")]
    AlreadyInstalled,
}

/// Installs the global subscriber: the fmt lines of [`super::init`] and export to `endpoint`
/// (`http://host:4317`) as `service`. Must run inside a tokio runtime (the exporter's channel
/// lives on it).
pub fn init(endpoint: &str, service: &'static str) -> Result<Telemetry, OtlpError> {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let mut export_filter = filter();
    for target in TRANSPORT {
        if let Ok(directive) = format!("{target}=off").parse() {
            export_filter = export_filter.add_directive(directive);
        }
    }
    let export = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(service))
        .with_filter(export_filter);
    let lines = tracing_subscriber::fmt::layer()
        .with_target(true)
        .with_writer(std::io::stderr)
        .with_filter(filter());
    tracing_subscriber::registry()
        .with(lines)
        .with(export)
        .try_init()
        .map_err(|_| OtlpError::AlreadyInstalled)?;
    tracing::info!(endpoint, "exporting spans over OTLP");
    Ok(Telemetry { provider: Some(provider) })
}

/// Flushes and stops `provider`. Its exporter runs on a thread of its own that waits for the
/// runtime's I/O: block a blocking-pool thread on it, never a runtime worker.
pub(super) async fn shutdown(provider: SdkTracerProvider) {
    let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(error = %e, "OTLP export did not shut down cleanly");
    }
}
