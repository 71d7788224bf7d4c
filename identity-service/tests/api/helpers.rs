//! `spawn_app()`: a real identity-service on a fresh database per test, typed clients, and
//! shortcuts for the usual account set-up.

use std::path::PathBuf;

use clinic_api::identity::v1::{
    self as pb, auth_service_client::AuthServiceClient,
    directory_service_client::DirectoryServiceClient, token_service_client::TokenServiceClient,
};
use clinic_shared::{auth::AttachServiceToken, pg::TestDatabase, server::ShutdownHandle};
use identity_service::{Application, Config};
use secrecy::SecretString;
use tonic::{
    Code, Request, Status,
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};
use tonic_types::StatusExt;

/// A client with the service credential attached.
pub type Internal = InterceptedService<Channel, AttachServiceToken>;

/// A running identity-service and clients for it.
pub struct TestApp {
    /// The public listener (AuthService, health, reflection).
    pub channel: Channel,
    /// The internal listener (TokenService, DirectoryService, health, reflection).
    pub internal: Channel,
    pub auth: AuthServiceClient<Channel>,
    pub tokens: TokenServiceClient<Internal>,
    pub directory: DirectoryServiceClient<Internal>,
    /// A direct connection to the service's database, to inspect rows.
    pub db: tokio_postgres::Client,
    pub outbox: PathBuf,
    /// The metrics listener, when the test's configuration sets `metrics_addr`.
    pub metrics: Option<std::net::SocketAddr>,
    shutdown: ShutdownHandle,
    _database: TestDatabase,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.shutdown();
        // The development mailer's folder is this test's own (a fresh temporary directory).
        let _ = std::fs::remove_dir_all(&self.outbox);
    }
}

/// A user who registered, verified and can log in.
pub struct TestUser {
    pub user: pb::User,
    pub email: String,
    pub password: String,
}

/// A logged-in user.
pub struct Session {
    pub user: TestUser,
    pub tokens: pb::TokenPair,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the test's changes to the test configuration.
pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    let database = TestDatabase::create(&TestDatabase::server(), "identity_test").await;
    let mut config = Config::for_tests(database.config.clone());
    change(&mut config);
    if config.mode == clinic_shared::config::Mode::Production {
        // Production refuses a superuser: run as deploy/bootstrap.sql's clinic_identity, owning
        // the test database as it owns clinic_db.
        let admin = clinic_shared::pg::connect(&database.config).await.expect("connect");
        let owner = format!(
            "ALTER DATABASE {} OWNER TO clinic_identity",
            clinic_shared::slug::quote_ident(&database.name)
        );
        admin.batch_execute(&owner).await.expect("run deploy/bootstrap.sql first");
        config.database.user("clinic_identity");
    }
    let outbox = config.mail.outbox_dir.clone();
    let token = config.service_token.clone();
    let app = Application::build(config).await.expect("build identity-service");
    let (address, internal) = (app.address(), app.internal_address());
    let metrics = app.metrics_address();
    let shutdown = app.shutdown_handle();
    tokio::spawn(app.run_until_stopped());
    let channel = connect(address).await;
    let internal = connect(internal).await;
    let attach = AttachServiceToken::new(&token.unwrap_or_else(|| SecretString::from("none")))
        .expect("ascii token");
    let db = clinic_shared::pg::connect(&database.config).await.expect("connect to test database");
    TestApp {
        auth: AuthServiceClient::new(channel.clone()),
        tokens: TokenServiceClient::with_interceptor(internal.clone(), attach.clone()),
        directory: DirectoryServiceClient::with_interceptor(internal.clone(), attach),
        channel,
        internal,
        db,
        outbox,
        metrics,
        shutdown,
        _database: database,
    }
}

/// A channel to a listener of the test's server.
pub async fn connect(address: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to identity-service")
}

pub const PASSWORD: &str = "correct horse battery staple";

impl TestApp {
    pub async fn register(
        &self,
        email: &str,
        name: &str,
        password: &str,
    ) -> Result<pb::RegisterResponse, Status> {
        let request = pb::RegisterRequest {
            email: email.into(),
            name: name.into(),
            password: password.into(),
        };
        self.auth.clone().register(request).await.map(|r| r.into_inner())
    }

    pub async fn verify(&self, email: &str, code: &str) -> Result<pb::VerifyEmailResponse, Status> {
        let request = pb::VerifyEmailRequest { email: email.into(), code: code.into() };
        self.auth.clone().verify_email(request).await.map(|r| r.into_inner())
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<pb::LoginResponse, Status> {
        let request = pb::LoginRequest { email: email.into(), password: password.into() };
        self.auth.clone().login(request).await.map(|r| r.into_inner())
    }

    pub async fn refresh(&self, token: &str) -> Result<pb::TokenPair, Status> {
        let request = pb::RefreshTokenRequest { refresh_token: token.into() };
        self.auth
            .clone()
            .refresh_token(request)
            .await
            .map(|r| r.into_inner().tokens.expect("tokens"))
    }

    pub async fn validate(&self, access_token: &str) -> Result<pb::ValidateTokenResponse, Status> {
        let request = pb::ValidateTokenRequest { access_token: access_token.into() };
        self.tokens.clone().validate_token(request).await.map(|r| r.into_inner())
    }

    /// Registers and verifies `name` (email `<name>@example.com`).
    pub async fn verified_user(&self, name: &str) -> TestUser {
        let email = format!("{name}@example.com");
        let registered = self.register(&email, name, PASSWORD).await.expect("register");
        let verified = self.verify(&email, &registered.verification_code).await.expect("verify");
        TestUser { user: verified.user.expect("user"), email, password: PASSWORD.into() }
    }

    /// A verified user with one session.
    pub async fn logged_in(&self, name: &str) -> Session {
        let user = self.verified_user(name).await;
        let tokens =
            self.login(&user.email, &user.password).await.expect("login").tokens.expect("tokens");
        Session { user, tokens }
    }

    /// Rows in `table` (a fixed name from the test code).
    pub async fn count(&self, table: &str) -> i64 {
        self.db
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .expect("count")
            .get(0)
    }
}

/// `request` with `authorization: Bearer <token>`.
pub fn bearer<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

/// Asserts INVALID_ARGUMENT with a BadRequest violation naming `field`.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Status>, field: &str) {
    let status = result.expect_err("expected INVALID_ARGUMENT");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("BadRequest details");
    assert!(
        bad.field_violations.iter().any(|v| v.field == field),
        "no violation of {field}: {:?}",
        bad.field_violations
    );
}

/// Asserts the call failed with `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    status
}
