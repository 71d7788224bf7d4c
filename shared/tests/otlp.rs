//! OTLP export (cargo feature `otlp`): a server built by `server::builder` answers a health check
//! that carries a request id; its request span reaches a small collector run in the test (a
//! tonic server implementing OTLP's `TraceService`), with the id, the method and the service
//! name. One test in its own binary: it installs the process's global subscriber.

use std::time::Duration;

use clinic_shared::{
    limits::Limits,
    metrics::grpc::GrpcMetrics,
    server::{self, REQUEST_ID_KEY, ShutdownHandle},
    telemetry,
};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value::Value},
    trace::v1::Span,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, transport::Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// Keeps every export it receives.
struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(request.into_inner());
        Ok(Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| match &kv.value {
        Some(AnyValue { value: Some(Value::StringValue(s)) }) => Some(s.as_str()),
        _ => None,
    })
}

// The exporter runs on a thread of its own that needs the runtime's I/O: several workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_with_their_request_id() {
    let (exports, mut received) = mpsc::unbounded_channel();
    let (listener, collector) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop_collector, collector_stopped) = ShutdownHandle::new();
    let collector_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(exports)))
            .serve_with_incoming_shutdown(server::tcp_incoming(listener), collector_stopped),
    );
    let telemetry =
        telemetry::otlp::init(&format!("http://{collector}"), "otlp-test").expect("OTLP set up");

    let (health, health_service) = tonic_health::server::health_reporter();
    let metrics = GrpcMetrics::register(&Default::default()).unwrap().layer(&[]);
    let router = server::builder(&Limits::default(), metrics).add_service(health_service);
    let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (stop, stopped) = ShutdownHandle::new();
    let served =
        tokio::spawn(server::serve(router, listener, health, &[], Duration::ZERO, stopped));
    let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert(REQUEST_ID_KEY, "otlp-req-1".parse().unwrap());
    HealthClient::new(channel).check(request).await.unwrap();
    stop.shutdown();
    served.await.unwrap().unwrap();

    // Shutting down sends what is buffered.
    telemetry.shutdown().await;
    stop_collector.shutdown();
    collector_task.await.unwrap().unwrap();
    let mut spans: Vec<(Option<String>, Span)> = Vec::new();
    while let Ok(export) = received.try_recv() {
        for resource in export.resource_spans {
            let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
            let service = text(&attributes, "service.name").map(str::to_owned);
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
            }
        }
    }
    let (service, span) = spans
        .iter()
        .find(|(_, s)| text(&s.attributes, "request_id") == Some("otlp-req-1"))
        .unwrap_or_else(|| panic!("no span with the request id among {spans:?}"));
    assert_eq!(span.name, "grpc");
    assert_eq!(text(&span.attributes, "method"), Some("/grpc.health.v1.Health/Check"));
    assert_eq!(service.as_deref(), Some("otlp-test"));
}
