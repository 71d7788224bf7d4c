//! Both services over TLS, as production runs them: clients verify the listeners against a CA,
//! clinic-service reaches identity-service's internal listener with a client certificate as its
//! only service credential (no shared token on either side), and the internal listener refuses
//! clients without a certificate from the right CA and name.

use clinic_api::{
    clinic::v1::{self as pb, organization_service_client::OrganizationServiceClient},
    identity::v1::{ValidateTokenRequest, token_service_client::TokenServiceClient},
};
use clinic_shared::{
    pg::TestDatabase,
    tls::{
        ClientTls, ServerTls,
        testing::{Ca, TempDir},
    },
};
use tonic::{Code, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::helpers::{TenantCleanup, bearer, first_server_url, sign_up};

async fn tls_channel(tls: &ClientTls, port: u16) -> Result<Channel, tonic::transport::Error> {
    tls.endpoint(&format!("https://localhost:{port}")).expect("endpoint").connect().await
}

#[tokio::test]
async fn both_services_over_tls_with_a_client_certificate_as_the_service_credential() {
    let dir = TempDir::new();
    let ca = Ca::new("clinic test CA");
    let ca_file = dir.write("ca.pem", &ca.pem());
    let server = ca.issue("localhost", &["localhost", "127.0.0.1"]);
    let (cert, key) =
        (dir.write("server.pem", &server.cert_pem), dir.write("server.key", &server.key_pem));
    let clinic_leaf = ca.issue("clinic-service", &["clinic-service"]);
    let clinic_cert = dir.write("clinic.pem", &clinic_leaf.cert_pem);
    let clinic_key = dir.write("clinic.key", &clinic_leaf.key_pem);

    let central = TestDatabase::create(&TestDatabase::server(), "clinic_tls_central").await;
    let mut identity_config = identity_service::Config::for_tests(central.config.clone());
    identity_config.tls = Some(ServerTls::new(&cert, &key));
    identity_config.internal_client_ca = Some(ca_file.clone());
    identity_config.service_token = None;
    let identity = identity_service::Application::build(identity_config).await.expect("identity");
    let (public, internal) = (identity.address().port(), identity.internal_address().port());
    let _identity = identity.shutdown_handle();
    tokio::spawn(identity.run_until_stopped());

    let tag = format!("s{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let _cleanup = TenantCleanup::first_server(&tag);
    let servers = vec![clinic_service::config::TenantServer {
        key: "main".into(),
        config: clinic_shared::pg::parse_url(&first_server_url()).unwrap(),
    }];
    let mut config =
        clinic_service::Config::for_tests(format!("https://localhost:{internal}"), servers);
    config.identity_tls = Some(ClientTls::new(&ca_file).with_identity(&clinic_cert, &clinic_key));
    config.service_token = None;
    config.tls = Some(ServerTls::new(&cert, &key));
    let clinic = clinic_service::Application::build(config).await.expect("clinic");
    let clinic_port = clinic.address().port();
    let _clinic = clinic.shutdown_handle();
    tokio::spawn(clinic.run_until_stopped());

    // A user signs up on the public listener, over TLS.
    let trusting = ClientTls::new(&ca_file);
    let user =
        sign_up(tls_channel(&trusting, public).await.expect("public listener"), "tls", true).await;

    // Creating a clinic validates the token and reserves the name over mutual TLS.
    let channel = tls_channel(&trusting, clinic_port).await.expect("clinic listener");
    let org = OrganizationServiceClient::with_interceptor(channel, bearer(&user.token))
        .create_organization(pb::CreateOrganizationRequest { name: format!("{tag} Secure") })
        .await
        .expect("create a clinic over TLS")
        .into_inner()
        .organization
        .unwrap();
    assert_eq!(org.status(), pb::OrganizationStatus::Active);

    // Plaintext to a TLS listener gets nowhere.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{clinic_port}")).unwrap();
    let answered = match plain.connect().await {
        Ok(channel) => {
            HealthClient::new(channel).check(HealthCheckRequest::default()).await.is_ok()
        }
        Err(_) => false,
    };
    assert!(!answered, "a plaintext client was served");

    // The internal listener: no certificate, another CA's certificate → no connection; the
    // right CA but a name not in INTERNAL_CLIENT_NAMES → UNAUTHENTICATED.
    let validate = || ValidateTokenRequest { access_token: user.token.clone() };
    let no_cert = async {
        let channel = tls_channel(&trusting, internal).await.ok()?;
        TokenServiceClient::new(channel).validate_token(validate()).await.ok()
    };
    assert!(no_cert.await.is_none(), "served without a client certificate");
    let other_ca = Ca::new("another CA");
    let stranger = other_ca.issue("clinic-service", &["clinic-service"]);
    let with_stranger = ClientTls::new(&ca_file).with_identity(
        dir.write("stranger.pem", &stranger.cert_pem),
        dir.write("stranger.key", &stranger.key_pem),
    );
    let stranger_call = async {
        let channel = tls_channel(&with_stranger, internal).await.ok()?;
        TokenServiceClient::new(channel).validate_token(validate()).await.ok()
    };
    assert!(stranger_call.await.is_none(), "served a certificate of another CA");
    let other_name = ca.issue("reporting", &["reporting"]);
    let with_other_name = ClientTls::new(&ca_file).with_identity(
        dir.write("other.pem", &other_name.cert_pem),
        dir.write("other.key", &other_name.key_pem),
    );
    let channel = tls_channel(&with_other_name, internal).await.expect("handshake");
    let refused = TokenServiceClient::new(channel).validate_token(validate()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let accepted = ClientTls::new(&ca_file).with_identity(&clinic_cert, &clinic_key);
    let channel = tls_channel(&accepted, internal).await.expect("handshake");
    TokenServiceClient::new(channel)
        .validate_token(validate())
        .await
        .expect("clinic-service's certificate");
}

/// Runs the clinic-service binary with `env` and returns its exit status and stderr.
fn run_clinic(env: &[(&str, &str)]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_clinic-service"))
        .env_remove("APP_MODE")
        .env("CLINIC_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run clinic-service");
    (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn production_refuses_plaintext_unless_told_tls_ends_in_front() {
    let dir = TempDir::new();
    let ca = dir.write("ca.pem", &Ca::new("ca").pem());
    let cases: &[(&[(&str, &str)], &str)] = &[
        // Plaintext towards identity-service.
        (&[("APP_MODE", "production"), ("SERVICE_TOKEN", "t")], "IDENTITY_URL"),
        // Tenants served by clinic-service's own role.
        (
            &[("APP_MODE", "production"), ("SERVICE_TOKEN", "t"), ("TLS_DISABLED", "true")],
            "TENANT_ROLE_SECRET",
        ),
        // TLS towards identity-service, but a plaintext listener.
        (
            &[
                ("APP_MODE", "production"),
                ("SERVICE_TOKEN", "t"),
                ("TENANT_ROLE_SECRET", "s"),
                ("IDENTITY_URL", "https://identity:50061"),
                ("IDENTITY_CA_FILE", ca.to_str().unwrap()),
            ],
            "TLS_CERT_FILE",
        ),
        // A database URL asking for TLS without a CA.
        (
            &[
                ("APP_MODE", "production"),
                ("SERVICE_TOKEN", "t"),
                ("TENANT_ROLE_SECRET", "s"),
                ("TLS_DISABLED", "true"),
                ("TENANT_SERVERS", "main=postgres://clinic@db:5432/postgres?sslmode=require"),
            ],
            "TENANT_SERVERS",
        ),
    ];
    for (env, named) in cases {
        let (ok, stderr) = run_clinic(env);
        assert!(!ok, "{env:?} started");
        assert!(stderr.contains(named), "{env:?}: the error does not name {named}: {stderr}");
    }
}
