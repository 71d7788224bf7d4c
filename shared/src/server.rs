//! gRPC server plumbing shared by both services: reflection (v1 and v1alpha, so both current
//! grpcurl and grpcurl 1.8 work), `grpc.health.v1`, a tracing span per request carrying a request
//! id, graceful shutdown (health NOT_SERVING first, then stop accepting and drain), on plaintext
//! or TLS listeners.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::layer::util::{Identity, Stack};

use crate::{
    limits::{Limits, ShedLayer},
    metrics::grpc::GrpcMetricsLayer,
};

/// Metadata key of the request id; generated when the caller sends none.
pub const REQUEST_ID_KEY: &str = "x-request-id";

/// Reflection services `(v1, v1alpha)` describing the whole contract but advertising only
/// `services` (the ones this server serves) and health, so `grpcurl list` tells the truth.
pub fn reflection(
    services: &[&str],
) -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        services.iter().copied().chain(["grpc.health.v1.Health"]).fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(clinic_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc error details, so grpcurl can decode BadRequest and RetryInfo.
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET),
            |builder, name| builder.with_service_name(name),
        )
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

/// The tracing span of one request: method and request id (from `x-request-id`, or new).
/// Never carries metadata values such as tokens. The id is made only when the span is enabled:
/// nobody sees a disabled span's fields.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!(
        "grpc",
        method = %request.uri().path(),
        request_id = tracing::field::Empty
    );
    if span.is_disabled() {
        return span;
    }
    match request
        .headers()
        .get(REQUEST_ID_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        Some(id) => span.record("request_id", tracing::field::display(id)),
        None => span.record("request_id", tracing::field::display(uuid::Uuid::new_v4())),
    };
    span
}

/// The layers every server has, outermost first: the gRPC metrics (so shed and refused calls are
/// counted too), then shedding.
pub type Layers = Stack<ShedLayer, Stack<GrpcMetricsLayer, Identity>>;

/// A server's settings common to both services, with explicit `limits`: requests in flight
/// (shed beyond), streams per connection, time to answer, header size, keep-alive; every call
/// counted by `metrics` (see [`crate::metrics::grpc`]).
pub fn builder(limits: &Limits, metrics: GrpcMetricsLayer) -> tonic::transport::Server<Layers> {
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .timeout(limits.request_timeout)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(16 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .trace_fn(request_span)
        .layer(metrics)
        .layer(limits.shed_layer())
}

/// Binds `addr` (port 0 picks a free port) and returns the listener and the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn os_shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received");
}

/// Lets a test (or an embedding program) stop a running server, like a signal would.
#[derive(Clone)]
pub struct ShutdownHandle(watch::Sender<bool>);

impl ShutdownHandle {
    /// A handle and the future that resolves once it fires.
    pub fn new() -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (tx, mut rx) = watch::channel(false);
        let fired = async move {
            let _ = rx.wait_for(|v| *v).await;
        };
        (Self(tx), fired)
    }

    /// Starts a graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }

    /// Another future that resolves once the handle fires (one per listener).
    pub fn fired(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    }
}

/// Where [`serve`] accepts connections. A bare `TcpListener` converts into `Plain`.
#[derive(Debug)]
pub enum Listener {
    /// Plaintext HTTP/2.
    Plain(TcpListener),
    /// TLS with this configuration (see [`crate::tls::ServerTls::server_config`]).
    Tls(TcpListener, Arc<rustls::ServerConfig>),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::Plain(listener)
    }
}

impl Listener {
    /// `listener`, serving TLS with `tls` when given (its files are read now: a missing or
    /// mismatched certificate is a start-up error).
    pub fn new(
        listener: TcpListener,
        tls: Option<&crate::tls::ServerTls>,
    ) -> Result<Self, crate::tls::TlsError> {
        Ok(match tls {
            Some(tls) => Self::Tls(listener, tls.server_config()?),
            None => Self::Plain(listener),
        })
    }
}

/// Accepted TCP connections of `listener`, with TCP_NODELAY and keepalive set.
pub fn tcp_incoming(listener: TcpListener) -> TcpIncoming {
    // serve_with_incoming ignores the builder's tcp_nodelay: set it on the incoming stream, or
    // Nagle's algorithm and delayed ACKs add ~40 ms to every multi-frame response.
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// Serves `router` on `listener` (plaintext or TLS) until `shutdown` resolves; then marks every service in
/// `services` (and the server as a whole) NOT_SERVING, waits `drain_grace` so load balancers
/// see it, stops accepting and waits for in-flight calls.
pub async fn serve<L>(
    router: Router<L>,
    listener: impl Into<Listener>,
    health: HealthReporter,
    services: &'static [&'static str],
    drain_grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    L: tower::Layer<tonic::service::Routes> + Clone,
    L::Service: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Future: Send + 'static,
    <L::Service as tower::Service<http::Request<tonic::body::Body>>>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    for name in services.iter().copied().chain([""]) {
        health.set_service_status(name, ServingStatus::Serving).await;
    }
    let reporter = health.clone();
    let signal = async move {
        shutdown.await;
        for name in services.iter().copied().chain([""]) {
            reporter.set_service_status(name, ServingStatus::NotServing).await;
        }
        tokio::time::sleep(drain_grace).await;
        tracing::info!("draining in-flight requests");
    };
    match listener.into() {
        Listener::Plain(listener) => {
            router.serve_with_incoming_shutdown(tcp_incoming(listener), signal).await
        }
        Listener::Tls(listener, config) => {
            let incoming = crate::tls::TlsIncoming::new(listener, config);
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
    }
}
