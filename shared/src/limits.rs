//! Explicit limits on what one server takes on: requests in flight (beyond them a request is
//! shed at once with `RESOURCE_EXHAUSTED` and `RetryInfo` instead of queueing until its deadline),
//! concurrent streams per connection, time to answer, and message sizes.
//!
//! Health and reflection are never shed, so a load balancer sees SERVING while the server sheds
//! work it cannot take. The request timeout bounds the time until a handler answers; a server
//! stream's handler answers once it has returned its stream, so long-lived streams are not cut.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::sync::Semaphore;

use crate::config::{self as env, ConfigError};

/// The limits of one server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `MAX_CONCURRENT_REQUESTS`, default 256: requests in flight on the whole server.
    pub max_concurrent_requests: usize,
    /// `MAX_CONCURRENT_STREAMS`, default 64: HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// `REQUEST_TIMEOUT_SECS`, default 30: longest time until a handler answers.
    pub request_timeout: Duration,
    /// `MAX_REQUEST_BYTES`, default 65536: largest request message accepted.
    pub max_request_bytes: usize,
    /// Largest response message sent (4 MiB).
    pub max_response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 256,
            max_concurrent_streams: 64,
            request_timeout: Duration::from_secs(30),
            max_request_bytes: 64 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Reads the limits from the environment; zero is an error (no limit can be switched off).
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Limits::default();
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match env::parse(name, default)? {
                0 => Err(ConfigError::new(name, "must be at least 1")),
                n => Ok(n),
            }
        };
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Self {
            max_concurrent_requests: to_usize(positive(
                "MAX_CONCURRENT_REQUESTS",
                d.max_concurrent_requests as u64,
            )?),
            max_concurrent_streams: u32::try_from(positive(
                "MAX_CONCURRENT_STREAMS",
                u64::from(d.max_concurrent_streams),
            )?)
            .unwrap_or(u32::MAX),
            request_timeout: Duration::from_secs(positive(
                "REQUEST_TIMEOUT_SECS",
                d.request_timeout.as_secs(),
            )?),
            max_request_bytes: to_usize(positive("MAX_REQUEST_BYTES", d.max_request_bytes as u64)?),
            max_response_bytes: d.max_response_bytes,
        })
    }

    /// The layer shedding requests beyond `max_concurrent_requests`.
    pub fn shed_layer(&self) -> ShedLayer {
        ShedLayer { permits: Arc::new(Semaphore::new(self.max_concurrent_requests)) }
    }
}

/// Paths never shed: probes must keep answering under load.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

/// Sheds requests beyond a fixed number in flight (see [`Limits::shed_layer`]).
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, permits: self.permits.clone() }
    }
}

/// The service [`ShedLayer`] makes.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let answer = self.inner.call(request);
                Box::pin(async move {
                    let response = answer.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                let status = crate::error::throttled(
                    "server busy: too many requests in flight, retry shortly",
                    Duration::from_secs(1),
                );
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
