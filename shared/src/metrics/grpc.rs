//! The standard gRPC server series, as go-grpc-prometheus names them, counted by a tower layer
//! around every service of a listener:
//!
//! - `grpc_server_started_total{grpc_type, grpc_service, grpc_method}`: calls begun;
//! - `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`: calls ended;
//! - `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}`: from the call's start
//!   to its status.
//!
//! A call ends with its status: in the response headers (a trailers-only answer, the usual
//! error) or in the trailers after the last message (every OK, and a stream's end, so
//! `WatchAppointments` counts as handled when its stream ends). A call whose response is
//! dropped before a status was sent (the client went away, the request timed out) counts as
//! `Canceled`.
//!
//! Service and method labels come from the contract's descriptors, for the services a listener
//! serves; any other path is counted under `unknown`, so callers cannot invent label values.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use bytes::Bytes;
use http_body::Frame;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use prost::Message as _;
use tonic::{Code, body::Body};

use super::{MetricsError, register};

/// The label value of whatever is not a method of the listener's services.
pub const UNKNOWN: &str = "unknown";

/// Descriptor sets every listener's methods are looked up in: the contract, health, reflection.
const DESCRIPTOR_SETS: [&[u8]; 4] = [
    clinic_api::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
];

/// Services every listener serves besides its own (see `server::reflection`).
const PLUMBING: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The three gRPC series of one process, registered once; [`Self::layer`] for each listener.
#[derive(Clone)]
pub struct GrpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    seconds: HistogramVec,
}

impl GrpcMetrics {
    /// The series, registered in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, MetricsError> {
        const LABELS: [&str; 3] = ["grpc_type", "grpc_service", "grpc_method"];
        let started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "RPCs started on the server."),
            &LABELS,
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "RPCs completed on the server, whatever their status.",
            ),
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status (a stream's whole life).",
            ),
            &LABELS,
        )?;
        register(registry, &started)?;
        register(registry, &handled)?;
        register(registry, &seconds)?;
        Ok(Self { started, handled, seconds })
    }

    /// The layer of a listener serving `services` (full names, e.g. `identity.v1.AuthService`)
    /// plus health and reflection. Their methods start at 0 in `grpc_server_started_total`.
    pub fn layer(&self, services: &[&str]) -> GrpcMetricsLayer {
        let methods = method_table(services.iter().copied().chain(PLUMBING))
            .into_iter()
            .map(|(path, labels)| (path, Arc::new(self.series(labels))))
            .collect();
        let unknown =
            MethodLabels { kind: UNKNOWN, service: UNKNOWN.into(), method: UNKNOWN.into() };
        let unknown = Arc::new(self.series(unknown));
        GrpcMetricsLayer { shared: Arc::new(Shared { methods, unknown }) }
    }

    /// The series of one method, looked up once (a call then touches no label map).
    fn series(&self, labels: MethodLabels) -> Series {
        Series {
            started: self.started.with_label_values(&labels.values()),
            metrics: self.clone(),
            seconds: OnceLock::new(),
            handled: std::array::from_fn(|_| OnceLock::new()),
            labels,
        }
    }
}

/// One method's series, each looked up in its vector once: `started` from the start (every
/// method is listed, called or not), `seconds` and `handled` (per code) when first needed, so
/// only what happened is exported.
struct Series {
    labels: MethodLabels,
    metrics: GrpcMetrics,
    started: IntCounter,
    seconds: OnceLock<Histogram>,
    handled: [OnceLock<IntCounter>; 17],
}

impl Series {
    /// Counts a call ended with `code` after `seconds`.
    fn ended(&self, code: Code, seconds: f64) {
        let [kind, service, method] = self.labels.values();
        // `Code` has exactly the values 0 to 16 (the guard only keeps the index in bounds).
        let at = usize::try_from(i32::from(code)).map_or(2, |c| c.min(16));
        self.handled[at]
            .get_or_init(|| {
                self.metrics.handled.with_label_values(&[kind, service, method, code_name(code)])
            })
            .inc();
        self.seconds
            .get_or_init(|| self.metrics.seconds.with_label_values(&[kind, service, method]))
            .observe(seconds);
    }
}

/// The labels of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MethodLabels {
    kind: &'static str,
    service: Arc<str>,
    method: Arc<str>,
}

impl MethodLabels {
    fn values(&self) -> [&str; 3] {
        [self.kind, &self.service, &self.method]
    }
}

/// `/package.Service/Method` to its labels, for every method of `services` in the descriptors.
fn method_table<'a>(services: impl Iterator<Item = &'a str>) -> HashMap<String, MethodLabels> {
    let wanted: Vec<&str> = services.collect();
    let mut table = HashMap::new();
    for set in DESCRIPTOR_SETS {
        // The sets are compiled in and decoded by their own crates' tests; one that did not
        // decode would only leave its methods counted as unknown.
        let Ok(set) = prost_types::FileDescriptorSet::decode(set) else { continue };
        for file in set.file {
            for service in &file.service {
                let full = match file.package() {
                    "" => service.name().to_owned(),
                    package => format!("{package}.{}", service.name()),
                };
                if !wanted.contains(&full.as_str()) {
                    continue;
                }
                let service_label: Arc<str> = Arc::from(full.as_str());
                for method in &service.method {
                    let kind = match (method.client_streaming(), method.server_streaming()) {
                        (false, false) => "unary",
                        (false, true) => "server_stream",
                        (true, false) => "client_stream",
                        (true, true) => "bidi_stream",
                    };
                    let labels = MethodLabels {
                        kind,
                        service: service_label.clone(),
                        method: Arc::from(method.name()),
                    };
                    table.insert(format!("/{full}/{}", method.name()), labels);
                }
            }
        }
    }
    table
}

struct Shared {
    methods: HashMap<String, Arc<Series>>,
    /// Every path that is not a method of the listener's services.
    unknown: Arc<Series>,
}

/// Counts every call of the services it wraps (see the module header).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    shared: Arc<Shared>,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = Measured<S>;

    fn layer(&self, inner: S) -> Measured<S> {
        Measured { inner, shared: self.shared.clone() }
    }
}

/// The service [`GrpcMetricsLayer`] makes.
#[derive(Clone)]
pub struct Measured<S> {
    inner: S,
    shared: Arc<Shared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Measured<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = Call::start(&self.shared, request.uri().path());
        let answer = self.inner.call(request);
        Box::pin(async move {
            match answer.await {
                Ok(response) => Ok(call.respond(response)),
                Err(e) => {
                    call.finish(Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// One call in flight; counted as `Canceled` if dropped before its status.
struct Call {
    series: Arc<Series>,
    started: Instant,
    done: bool,
}

impl Call {
    fn start(shared: &Shared, path: &str) -> Self {
        let series = shared.methods.get(path).unwrap_or(&shared.unknown).clone();
        series.started.inc();
        Self { series, started: Instant::now(), done: false }
    }

    /// The response, its body watched for the status unless the headers carry it.
    fn respond(self, response: http::Response<Body>) -> http::Response<Body> {
        if let Some(code) = status_of(response.headers()) {
            self.finish(code);
            return response;
        }
        if http_body::Body::is_end_stream(response.body()) {
            // No status and nothing to come: not a gRPC answer.
            self.finish(Code::Unknown);
            return response;
        }
        let mut call = Some(self);
        response.map(|body| Body::new(Watched { body, call: call.take() }))
    }

    fn finish(mut self, code: Code) {
        self.record(code);
    }

    fn record(&mut self, code: Code) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.series.ended(code, self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.record(Code::Cancelled);
    }
}

/// A response body that ends its call when the trailers (or the end) go by.
struct Watched {
    body: Body,
    call: Option<Call>,
}

impl Watched {
    fn finish(&mut self, code: Code) {
        if let Some(call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.finish(status_of(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => this.finish(status.code()),
            Poll::Ready(None) => this.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The `grpc-status` of headers or trailers, if any (an unparsable one is `Unknown`).
fn status_of(headers: &http::HeaderMap) -> Option<Code> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok().and_then(|v| v.parse::<i32>().ok()).map(Code::from_i32);
    Some(code.unwrap_or(Code::Unknown))
}

/// The code's name as the other gRPC implementations print it (`OK`, `Unauthenticated`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_come_from_the_descriptors_of_the_services_served() {
        let table = method_table(["identity.v1.AuthService"].into_iter().chain(PLUMBING));
        let login = &table["/identity.v1.AuthService/Login"];
        assert_eq!(login.values(), ["unary", "identity.v1.AuthService", "Login"]);
        assert_eq!(table["/grpc.health.v1.Health/Watch"].kind, "server_stream");
        assert_eq!(
            table["/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"].kind,
            "bidi_stream"
        );
        assert!(
            !table.contains_key("/identity.v1.TokenService/ValidateToken"),
            "not served on this listener"
        );
    }

    #[test]
    fn status_comes_from_grpc_status_and_nonsense_is_unknown() {
        let cases = [
            (Some("0"), Some(Code::Ok)),
            (Some("16"), Some(Code::Unauthenticated)),
            (Some("x"), Some(Code::Unknown)),
            (None, None),
        ];
        for (value, expected) in cases {
            let mut headers = http::HeaderMap::new();
            if let Some(v) = value {
                headers.insert("grpc-status", http::HeaderValue::from_static(v));
            }
            assert_eq!(status_of(&headers), expected, "{value:?}");
        }
    }
}
