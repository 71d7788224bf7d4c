//! A gRPC proxy in front of identity-service's internal listener that counts every call by
//! method, records the resume token of each `WatchRevocations`, can cut the revocation streams
//! (and refuse new ones) while unary calls go on, can refuse every `DirectoryService` call (the
//! central index out of reach while tokens are still checked), and can be pointed at another
//! identity-service (a restart with other keys).

use std::{
    collections::HashMap,
    convert::Infallible,
    marker::PhantomData,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use clinic_api::identity::v1 as ipb;
use http_body_util::BodyExt;
use prost::Message;
use tokio::sync::watch;
use tonic::{
    Status,
    body::Body,
    codegen::Bytes,
    server::NamedService,
    transport::{Channel, Server},
};
use tower::{Service, ServiceExt};

#[derive(Default)]
struct State {
    backend: Mutex<Option<Channel>>,
    calls: Mutex<HashMap<String, usize>>,
    resume_tokens: Mutex<Vec<String>>,
    streams_cut: watch::Sender<bool>,
    directory_cut: std::sync::atomic::AtomicBool,
}

/// The running proxy.
#[derive(Clone)]
pub struct IdentityProxy {
    /// Where clinic-service should send its identity calls.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl IdentityProxy {
    /// Binds and serves; calls are refused (UNAVAILABLE) until [`Self::point_at`].
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let router = Server::builder()
            .add_service(Forward::<Tokens>::new(state.clone()))
            .add_service(Forward::<Directory>::new(state.clone()));
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(router.serve_with_incoming(incoming));
        Self { addr, state }
    }

    /// Forwards to the internal listener at `target` from now on.
    pub fn point_at(&self, target: SocketAddr) {
        let channel = Channel::from_shared(format!("http://{target}")).expect("url").connect_lazy();
        *self.state.backend.lock().unwrap() = Some(channel);
    }

    /// Calls so far of `method` (e.g. `ValidateToken`), or of every method with `""`.
    pub fn calls(&self, method: &str) -> usize {
        let calls = self.state.calls.lock().unwrap();
        calls
            .iter()
            .filter(|(path, _)| path.ends_with(&format!("/{method}")) || method.is_empty())
            .map(|(_, n)| n)
            .sum()
    }

    /// The resume tokens `WatchRevocations` was opened with, in order.
    pub fn resume_tokens(&self) -> Vec<String> {
        self.state.resume_tokens.lock().unwrap().clone()
    }

    /// Refuses every `DirectoryService` call with UNAVAILABLE (`true`), or forwards them again.
    pub fn cut_directory(&self, cut: bool) {
        self.state.directory_cut.store(cut, std::sync::atomic::Ordering::SeqCst);
    }

    /// Cuts every revocation stream and refuses new ones (`true`), or lets them through again.
    pub fn cut_streams(&self, cut: bool) {
        self.state.streams_cut.send_replace(cut);
    }
}

trait Named: Send + Sync + 'static {
    const NAME: &'static str;
}
struct Tokens;
impl Named for Tokens {
    const NAME: &'static str = "identity.v1.TokenService";
}
struct Directory;
impl Named for Directory {
    const NAME: &'static str = "identity.v1.DirectoryService";
}

struct Forward<N> {
    state: Arc<State>,
    _named: PhantomData<fn() -> N>,
}

impl<N> Clone for Forward<N> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), _named: PhantomData }
    }
}

impl<N> Forward<N> {
    fn new(state: Arc<State>) -> Self {
        Self { state, _named: PhantomData }
    }
}

impl<N: Named> NamedService for Forward<N> {
    const NAME: &'static str = N::NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<N: Named> Service<http::Request<Body>> for Forward<N> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { Ok(forward(state, request).await.unwrap_or_else(Status::into_http)) })
    }
}

async fn forward(
    state: Arc<State>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, Status> {
    let path = request.uri().path().to_owned();
    *state.calls.lock().unwrap().entry(path.clone()).or_default() += 1;
    let watching = path.ends_with("/WatchRevocations");
    if path.starts_with("/identity.v1.DirectoryService/")
        && state.directory_cut.load(std::sync::atomic::Ordering::SeqCst)
    {
        return Err(Status::unavailable("proxy: DirectoryService is cut"));
    }
    if watching && *state.streams_cut.borrow() {
        return Err(Status::unavailable("proxy: revocation streams are cut"));
    }
    let channel = state.backend.lock().unwrap().clone();
    let channel = channel.ok_or_else(|| Status::unavailable("proxy: no identity-service yet"))?;
    let request = if watching {
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.map_err(|e| Status::internal(e.to_string()))?.to_bytes();
        let message = ipb::WatchRevocationsRequest::decode(bytes.get(5..).unwrap_or_default())
            .map_err(|e| Status::internal(e.to_string()))?;
        state.resume_tokens.lock().unwrap().push(message.resume_token);
        http::Request::from_parts(parts, Body::new(http_body_util::Full::new(bytes)))
    } else {
        request
    };
    let response =
        channel.oneshot(request).await.map_err(|e| Status::unavailable(format!("proxy: {e}")))?;
    if !watching {
        return Ok(response);
    }
    let mut cut = state.streams_cut.subscribe();
    let cut = Box::pin(async move {
        let _ = cut.wait_for(|c| *c).await;
    });
    Ok(response.map(|inner| Body::new(Cuttable { inner, cut })))
}

/// A response body that fails as soon as the streams are cut.
struct Cuttable {
    inner: Body,
    cut: BoxFuture<()>,
}

impl http_body::Body for Cuttable {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if self.cut.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Status::unavailable("proxy: stream cut"))));
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }
}
