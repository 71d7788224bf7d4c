//! A tonic server (the health service) on a TLS listener, and clients that do or do not trust
//! it, with and without client certificates.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use clinic_shared::{
    metrics::grpc::GrpcMetrics,
    server::{self, Listener, ShutdownHandle},
    tls::{ClientTls, ServerTls, TlsError, peer_names},
};
use tokio::{net::TcpStream, task::JoinHandle};
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use clinic_shared::tls::testing::{Ca, TempDir};

/// What the server saw of one request: the client certificate's names and the peer address.
pub type Seen = (Vec<String>, Option<SocketAddr>);

/// The health service served over TLS on a free port, stopped on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    shutdown: ShutdownHandle,
    _task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestServer {
    pub async fn start(tls: &ServerTls) -> Self {
        let config = tls.server_config().unwrap();
        let (health, service) = tonic_health::server::health_reporter();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let service = InterceptedService::new(service, move |request: tonic::Request<()>| {
            record.lock().unwrap().push((peer_names(&request), request.remote_addr()));
            Ok(request)
        });
        let (listener, addr) = server::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let metrics = GrpcMetrics::register(&Default::default()).unwrap().layer(&[]);
        let router = server::builder(&Default::default(), metrics).add_service(service);
        let (shutdown, fired) = ShutdownHandle::new();
        let listener = Listener::Tls(listener, config);
        let task =
            tokio::spawn(server::serve(router, listener, health, &[], Duration::ZERO, fired));
        Self { addr, seen, shutdown, _task: task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// A CA, a server certificate for `identity.internal` and 127.0.0.1, and its files.
pub struct Fixture {
    pub dir: TempDir,
    pub ca: Ca,
    pub ca_file: PathBuf,
    pub server: ServerTls,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = TempDir::new();
        let ca = Ca::new("test CA");
        let leaf = ca.issue("identity", &["identity.internal", "127.0.0.1"]);
        let ca_file = dir.write("ca.pem", &ca.pem());
        let server = ServerTls::new(
            dir.write("server.pem", &leaf.cert_pem),
            dir.write("server.key", &leaf.key_pem),
        );
        Self { dir, ca, ca_file, server }
    }
}

/// One health check over a new channel to `url`.
pub async fn check(client: &ClientTls, url: &str) -> Result<(), String> {
    let channel = client.endpoint(url).map_err(|e| e.to_string())?;
    let channel = channel.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|e| format!("call: {e:?}"))
}

#[tokio::test]
async fn a_client_trusting_the_ca_is_served() {
    let f = Fixture::new();
    let server = TestServer::start(&f.server).await;

    check(&ClientTls::new(&f.ca_file), &server.url()).await.unwrap();
    // The name in the URL's stead, as when connecting by address to a named service.
    let by_name = ClientTls::new(&f.ca_file).with_domain("identity.internal");
    check(&by_name, &server.url()).await.unwrap();

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for (names, remote) in seen {
        assert!(names.is_empty(), "no client certificate was asked for");
        assert_eq!(remote.map(|a| a.ip()), Some([127, 0, 0, 1].into()));
    }
}

#[tokio::test]
async fn a_client_not_trusting_the_ca_or_the_name_is_refused() {
    let f = Fixture::new();
    let server = TestServer::start(&f.server).await;
    let other_ca = f.dir.write("other-ca.pem", &Ca::new("other CA").pem());

    assert!(check(&ClientTls::new(&other_ca), &server.url()).await.is_err());
    let wrong_name = ClientTls::new(&f.ca_file).with_domain("clinic.internal");
    assert!(check(&wrong_name, &server.url()).await.is_err());
    assert!(server.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn with_a_client_ca_only_clients_with_a_certificate_are_served() {
    let f = Fixture::new();
    let server = TestServer::start(&f.server.clone().with_client_ca(&f.ca_file)).await;
    let leaf = f.ca.issue("clinic-service", &["clinic-service.internal"]);
    let (cert, key) =
        (f.dir.write("client.pem", &leaf.cert_pem), f.dir.write("client.key", &leaf.key_pem));
    let stranger = Ca::new("other CA").issue("intruder", &["clinic-service.internal"]);
    let (other_cert, other_key) =
        (f.dir.write("other.pem", &stranger.cert_pem), f.dir.write("other.key", &stranger.key_pem));

    assert!(check(&ClientTls::new(&f.ca_file), &server.url()).await.is_err());
    let untrusted = ClientTls::new(&f.ca_file).with_identity(&other_cert, &other_key);
    assert!(check(&untrusted, &server.url()).await.is_err());
    check(&ClientTls::new(&f.ca_file).with_identity(&cert, &key), &server.url()).await.unwrap();

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "only the client with a certificate got through");
    assert_eq!(seen[0].0, ["clinic-service.internal", "clinic-service"]);
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let f = Fixture::new();
    let server = TestServer::start(&f.server).await;
    // Connects and says nothing: its handshake waits, in its own task.
    let _stalled = TcpStream::connect(server.addr).await.unwrap();

    let served = tokio::time::timeout(
        Duration::from_secs(5),
        check(&ClientTls::new(&f.ca_file), &server.url()),
    )
    .await;
    assert_eq!(served, Ok(Ok(())));
}

#[tokio::test]
async fn bad_client_settings_fail_before_connecting() {
    let f = Fixture::new();
    let client = ClientTls::new(&f.ca_file);
    assert!(matches!(client.endpoint("http://127.0.0.1:1"), Err(TlsError::NotHttps)));

    let missing = ClientTls::new(f.dir.path().join("missing.pem"));
    assert!(matches!(missing.config(), Err(TlsError::Read { .. })));

    // A key that is not the certificate's, and a key file without a key.
    let other = f.ca.issue("other", &["other.internal"]);
    let wrong_key = f.dir.write("wrong.key", &other.key_pem);
    let mismatched = client.clone().with_identity(&f.server.cert_file, &wrong_key);
    let error = mismatched.config().unwrap_err();
    assert!(matches!(error, TlsError::KeyPair { .. }), "{error}");
    let no_key = client.with_identity(&f.server.cert_file, &f.ca_file);
    assert!(matches!(no_key.config(), Err(TlsError::NoKey { .. })));
}
