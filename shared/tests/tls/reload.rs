//! Certificate rotation: new connections get the new certificate, open ones carry on, and a
//! bad pair on disk changes nothing.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clinic_shared::tls::{ClientTls, ServerTls, TlsError, cert_names};
use rustls::{ClientConfig, RootCertStore, pki_types::ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use clinic_shared::tls::testing::Leaf;

use crate::grpc::{Fixture, TestServer};

/// The names in the certificate the server presents to a new connection.
async fn presented_names(addr: SocketAddr, ca_pem: &str) -> Vec<String> {
    let mut roots = RootCertStore::empty();
    for cert in certs_of(ca_pem) {
        roots.add(cert).unwrap();
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(ServerName::from(addr.ip()), TcpStream::connect(addr).await.unwrap())
        .await
        .unwrap();
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    cert_names(&leaf).unwrap()
}

fn certs_of(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem.as_bytes()).map(Result::unwrap).collect()
}

fn install(dir: &clinic_shared::tls::testing::TempDir, leaf: &Leaf) {
    dir.write("server.pem", &leaf.cert_pem);
    dir.write("server.key", &leaf.key_pem);
}

#[tokio::test]
async fn new_connections_get_the_new_certificate_and_open_ones_keep_working() {
    let f = Fixture::new();
    let first = f.ca.issue("identity", &["v1.identity.internal", "127.0.0.1"]);
    install(&f.dir, &first);
    // Checked on every handshake, so the test needs no waiting.
    let server = TestServer::start(&f.server.clone().with_reload_every(Duration::ZERO)).await;
    let ca_pem = f.ca.pem();
    assert_eq!(presented_names(server.addr, &ca_pem).await, ["v1.identity.internal", "identity"]);

    let channel = ClientTls::new(&f.ca_file).endpoint(&server.url()).unwrap();
    let mut open = HealthClient::new(channel.connect().await.unwrap());
    open.check(HealthCheckRequest::default()).await.unwrap();

    // Half a rotation (a key that is not the certificate's): the old pair stays in service.
    let next = f.ca.issue("identity", &["v2.identity.internal", "127.0.0.1"]);
    f.dir.write("server.key", &next.key_pem);
    assert_eq!(presented_names(server.addr, &ca_pem).await, ["v1.identity.internal", "identity"]);
    f.dir.write("server.pem", "not a certificate");
    assert_eq!(presented_names(server.addr, &ca_pem).await, ["v1.identity.internal", "identity"]);

    install(&f.dir, &next);
    assert_eq!(presented_names(server.addr, &ca_pem).await, ["v2.identity.internal", "identity"]);

    open.check(HealthCheckRequest::default()).await.unwrap();
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].1, seen[1].1, "both calls came over the connection opened before");
}

#[tokio::test]
async fn a_bad_pair_at_start_up_is_an_error_that_shows_no_key() {
    let f = Fixture::new();
    let other = f.ca.issue("other", &["other.internal"]);
    let wrong_key = f.dir.write("wrong.key", &other.key_pem);
    let mismatched = ServerTls::new(&f.server.cert_file, &wrong_key);
    assert!(matches!(mismatched.server_config(), Err(TlsError::KeyPair { .. })));

    let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBtYXRlcmlhbA==\n";
    let broken = ServerTls::new(&f.server.cert_file, f.dir.write("broken.key", secret));
    let error = broken.server_config().unwrap_err().to_string();
    assert!(error.contains("broken.key") && !error.contains("c2VjcmV0"), "{error}");

    let missing_ca = f.server.clone().with_client_ca(f.dir.path().join("missing.pem"));
    assert!(matches!(missing_ca.server_config(), Err(TlsError::Read { .. })));
}
