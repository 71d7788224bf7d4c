//! Test helpers: identity-service and clinic-service in-process on free ports, a fresh central
//! database per test, tenant databases named `clinic_<tag>_...` (the tag is unique per test) and
//! dropped when the [`TestApp`] is dropped, users registered/verified/logged in, clinics with
//! members, and typed clients carrying bearer tokens.

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
};

use clinic_api::{
    clinic::v1::{
        self as pb, member_service_client::MemberServiceClient,
        organization_service_client::OrganizationServiceClient,
    },
    identity::v1::{
        self as ipb, auth_service_client::AuthServiceClient,
        directory_service_client::DirectoryServiceClient,
    },
};
use clinic_service::config::TenantServer;
use clinic_shared::{
    pg::{TestDatabase, connect, create_database, drop_database, parse_url, with_dbname},
    server::ShutdownHandle,
    slug::quote_ident,
};
use tokio::net::TcpListener;
use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// A client with a bearer token (or a service token) on every call.
pub type Authed = InterceptedService<Channel, Meta>;

/// Adds one metadata entry to every request.
#[derive(Clone)]
pub struct Meta(&'static str, AsciiMetadataValue);

impl Interceptor for Meta {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert(self.0, self.1.clone());
        Ok(request)
    }
}

/// Everything the tests capture from tracing (this test binary's global subscriber).
pub fn captured_logs() -> String {
    let buffer = log_buffer();
    let bytes = buffer.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What the tests capture: everything of the services down to trace (debug for
/// identity-service).
const TEST_LOGS: &str = "info,clinic_service=trace,identity_service=debug";

fn log_buffer() -> Arc<Mutex<Vec<u8>>> {
    capture_logs(TEST_LOGS)
}

/// Installs the capturing subscriber with `filter`, unless one is installed already (the first
/// call wins: a benchmark calls this first to capture only what it reads, since formatting
/// every trace event would weigh on the side it measures).
pub fn capture_logs(filter: &str) -> Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = buffer.clone();
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(move || LogWriter(writer.clone()))
                .with_ansi(false)
                .try_init();
            buffer
        })
        .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The second PostgreSQL server: `TEST_SECOND_DATABASE_URL`, default port 5433.
pub fn second_server_url() -> String {
    std::env::var("TEST_SECOND_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433/postgres".to_owned())
}

/// The first tenant server: `TEST_DATABASE_URL`, default port 5432.
pub fn first_server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Options of [`spawn_with`].
pub struct Options {
    /// Also configure the second server (`b`).
    pub second_server: bool,
    /// Adjusts the clinic config before start.
    pub tweak: Box<dyn FnOnce(&mut clinic_service::Config) + Send>,
    /// Adjusts the identity config before start.
    pub identity_tweak: Box<dyn FnOnce(&mut identity_service::Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self { second_server: false, tweak: Box::new(|_| {}), identity_tweak: Box::new(|_| {}) }
    }
}

/// Both services running against a fresh central database.
pub struct TestApp {
    /// clinic-service's address.
    pub clinic_addr: SocketAddr,
    /// identity-service's public listener (AuthService).
    pub identity_addr: SocketAddr,
    /// identity-service's internal listener (TokenService, DirectoryService), the one
    /// clinic-service calls.
    pub identity_internal_addr: SocketAddr,
    /// identity-service's development mailer writes one file per message here.
    pub outbox: PathBuf,
    /// clinic-service's metrics listener, when the test's tweak sets `metrics_addr`.
    pub clinic_metrics: Option<SocketAddr>,
    /// identity-service's metrics listener, likewise.
    pub identity_metrics: Option<SocketAddr>,
    /// Unique per test; every tenant database of this test starts with `clinic_<tag>`.
    pub tag: String,
    /// The clinic config used.
    pub config: clinic_service::Config,
    /// Tenant access of the running clinic-service.
    pub access: clinic_service::tenancy::TenantAccess,
    clinic_shutdown: ShutdownHandle,
    identity_shutdown: ShutdownHandle,
    _cleanup: TenantCleanup,
    /// The central database (dropped last).
    central: TestDatabase,
}

/// A registered, verified, logged-in user.
#[derive(Clone, Debug)]
pub struct TestUser {
    /// User id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Access token.
    pub token: String,
    /// Refresh token (for Logout).
    pub refresh_token: String,
}

/// Starts both services with default options.
pub async fn spawn_app() -> TestApp {
    spawn_with(Options::default()).await
}

/// Starts both services.
pub async fn spawn_with(options: Options) -> TestApp {
    log_buffer();
    let central = TestDatabase::create(&TestDatabase::server(), "clinic_it_central").await;
    let mut identity_config = identity_service::Config::for_tests(central.config.clone());
    (options.identity_tweak)(&mut identity_config);
    let outbox = identity_config.mail.outbox_dir.clone();
    let identity = identity_service::Application::build(identity_config)
        .await
        .expect("build identity-service");
    let (identity_addr, identity_internal_addr) = (identity.address(), identity.internal_address());
    let identity_metrics = identity.metrics_address();
    let identity_shutdown = identity.shutdown_handle();
    tokio::spawn(identity.run_until_stopped());

    let mut servers = vec![server("main", &first_server_url())];
    if options.second_server {
        let url = second_server_url();
        let config = parse_url(&url).expect("TEST_SECOND_DATABASE_URL must be a PostgreSQL URL");
        if connect(&config).await.is_err() {
            panic!(
                "second PostgreSQL server at {url} is unreachable: start it (scripts/test.sh does) or set TEST_SECOND_DATABASE_URL"
            );
        }
        servers.push(server("b", &url));
    }
    let mut config = clinic_service::Config::for_tests(
        format!("http://{identity_internal_addr}"),
        servers.clone(),
    );
    let tag = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    // Spares of this test only (dropped with its clinics).
    config.spare_prefix = format!("spare_{tag}_");
    (options.tweak)(&mut config);
    let cleanup = TenantCleanup { tag: tag.clone(), servers };
    let clinic = clinic_service::Application::build(config.clone()).await.expect("build clinic");
    let clinic_addr = clinic.address();
    let clinic_metrics = clinic.metrics_address();
    let clinic_shutdown = clinic.shutdown_handle();
    let access = clinic.tenant_access();
    tokio::spawn(clinic.run_until_stopped());
    TestApp {
        clinic_addr,
        identity_addr,
        identity_internal_addr,
        outbox,
        clinic_metrics,
        identity_metrics,
        tag,
        config,
        access,
        clinic_shutdown,
        identity_shutdown,
        _cleanup: cleanup,
        central,
    }
}

fn server(key: &str, url: &str) -> TenantServer {
    TenantServer { key: key.to_owned(), config: parse_url(url).expect("server URL") }
}

/// Drops every database of one test (`clinic_<tag>%`, and its spares `spare_<tag>_%`) on every
/// server.
pub struct TenantCleanup {
    tag: String,
    servers: Vec<TenantServer>,
}

impl TenantCleanup {
    /// Drops `clinic_<tag>%` on the first server when dropped.
    pub fn first_server(tag: &str) -> Self {
        Self { tag: tag.to_owned(), servers: vec![server("main", &first_server_url())] }
    }
}

impl Drop for TenantCleanup {
    fn drop(&mut self) {
        let pattern = format!("clinic\\_{}%", self.tag);
        let spares = format!("spare\\_{}\\_%", self.tag);
        let servers: Vec<_> = self.servers.iter().map(|s| s.config.clone()).collect();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                for server in servers {
                    let Ok(client) = connect(&with_dbname(&server, "postgres")).await else {
                        continue;
                    };
                    let rows = client
                        .query(
                            "SELECT datname FROM pg_database \
                             WHERE (datname LIKE $1 AND datname NOT LIKE 'clinic\\_template%') \
                             OR datname LIKE $2",
                            &[&pattern, &spares],
                        )
                        .await
                        .unwrap_or_default();
                    for row in rows {
                        let database: &str = row.get(0);
                        // Its login roles go with it (roles are server-wide): the derived one,
                        // and whichever may connect to it (a spare's, renamed with it).
                        let granted = client
                            .query(
                                "SELECT r.rolname::text FROM pg_database d, \
                                 aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee \
                                 WHERE d.datname = $1 AND r.rolname LIKE 'clinic\\_tenant\\_%'",
                                &[&database],
                            )
                            .await
                            .unwrap_or_default();
                        let _ = drop_database(&client, database).await;
                        let derived = clinic_service::tenancy::login::TenantLogins::role(database);
                        let roles = granted.iter().map(|r| r.get::<_, String>(0));
                        for role in roles.chain(std::iter::once(derived)) {
                            let drop_role = format!("DROP ROLE IF EXISTS {}", quote_ident(&role));
                            let _ = client.batch_execute(&drop_role).await;
                        }
                    }
                }
                Ok::<_, std::io::Error>(())
            })
        })
        .join();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.clinic_shutdown.shutdown();
        self.identity_shutdown.shutdown();
        // The development mailer's folder is this test's own (a fresh temporary directory).
        let _ = std::fs::remove_dir_all(&self.outbox);
    }
}

/// `authorization: Bearer <token>` on every call.
pub fn bearer(token: &str) -> Meta {
    Meta("authorization", MetadataValue::try_from(format!("Bearer {token}")).expect("ascii"))
}

impl TestApp {
    /// The central database's connection settings (to start another identity-service on it).
    pub fn central_config(&self) -> tokio_postgres::Config {
        self.central.config.clone()
    }

    /// Stops the identity-service the app started.
    pub fn stop_identity(&self) {
        self.identity_shutdown.shutdown();
    }

    /// Stops the clinic-service the app started (gracefully, as on SIGTERM).
    pub fn stop_clinic(&self) {
        self.clinic_shutdown.shutdown();
    }

    /// A channel to clinic-service.
    pub fn clinic_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.clinic_addr)).expect("url").connect_lazy()
    }

    /// A channel to identity-service.
    pub fn identity_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.identity_addr)).expect("url").connect_lazy()
    }

    /// OrganizationService as `token`.
    pub fn orgs(&self, token: &str) -> OrganizationServiceClient<Authed> {
        OrganizationServiceClient::with_interceptor(self.clinic_channel(), bearer(token))
    }

    /// MemberService as `token`.
    pub fn members(&self, token: &str) -> MemberServiceClient<Authed> {
        MemberServiceClient::with_interceptor(self.clinic_channel(), bearer(token))
    }

    /// The caller's own member in `organization_id` (GetMember `me`); panics when refused.
    pub async fn me(&self, token: &str, organization_id: &str) -> pb::Member {
        let request = pb::GetMemberRequest {
            organization_id: organization_id.to_owned(),
            member_id: "me".into(),
        };
        self.members(token).get_member(request).await.unwrap().into_inner().member.unwrap()
    }

    /// identity-service's internal DirectoryService, with the service credential.
    pub fn directory(&self) -> DirectoryServiceClient<Authed> {
        let meta = Meta("x-service-token", MetadataValue::from_static("test-service-token"));
        let channel = Channel::from_shared(format!("http://{}", self.identity_internal_addr))
            .expect("url")
            .connect_lazy();
        DirectoryServiceClient::with_interceptor(channel, meta)
    }

    /// A unique organization name for this test (prefixed with the tag).
    pub fn org_name(&self, base: &str) -> String {
        format!("{} {base}", self.tag)
    }

    /// Registers a user (optionally verifying the email) and logs in.
    pub async fn user_with(&self, label: &str, verify: bool) -> TestUser {
        sign_up(self.identity_channel(), label, verify).await
    }

    /// A verified, logged-in user.
    pub async fn user(&self, label: &str) -> TestUser {
        self.user_with(label, true).await
    }

    /// Registers an ACTIVE organization `<tag> base` of `owner` on the first server directly
    /// through the directory, its database created empty or cloned from `template`, without
    /// clinic-service (no migration, no marker, no members).
    pub async fn register_org(
        &self,
        owner: &TestUser,
        base: &str,
        template: Option<&str>,
    ) -> ipb::Organization {
        let mut directory = self.directory();
        let org = directory
            .reserve_organization(ipb::ReserveOrganizationRequest {
                name: self.org_name(base),
                creator_user_id: owner.id.clone(),
                candidate_servers: vec!["main".into()],
                ..Default::default()
            })
            .await
            .expect("reserve")
            .into_inner()
            .organization
            .expect("organization");
        let maintenance =
            connect(&parse_url(&first_server_url()).expect("url")).await.expect("connect");
        create_database(&maintenance, &org.database_name, template).await.expect("create database");
        directory
            .activate_organization(ipb::ActivateOrganizationRequest {
                organization_id: org.id.clone(),
            })
            .await
            .expect("activate");
        org
    }

    /// Creates a clinic `<tag> base` as `owner`.
    pub async fn create_org(&self, owner: &TestUser, base: &str) -> pb::Organization {
        self.orgs(&owner.token)
            .create_organization(pb::CreateOrganizationRequest { name: self.org_name(base) })
            .await
            .unwrap_or_else(|e| {
                let logs = captured_logs();
                let errors: Vec<&str> = logs.lines().filter(|l| l.contains("ERROR")).collect();
                panic!("create organization: {e:?}\n{}", errors.join("\n"))
            })
            .into_inner()
            .organization
            .expect("organization")
    }

    /// Makes `user` an active member of `org` with `role` (and an optional profile): `admin`
    /// invites them (AddMember) and they accept (AcceptInvitation). Returns the member as the
    /// new member sees it.
    pub async fn add_member(
        &self,
        admin: &TestUser,
        org: &str,
        user: &TestUser,
        role: pb::Role,
        profile: Option<pb::MemberProfile>,
    ) -> pb::Member {
        self.invite(admin, org, &user.email, role, profile).await;
        self.accept(user, org).await.expect("accept invitation")
    }

    /// `admin` invites `email` to `org` with `role` (AddMember); the member is INVITED.
    pub async fn invite(
        &self,
        admin: &TestUser,
        org: &str,
        email: &str,
        role: pb::Role,
        profile: Option<pb::MemberProfile>,
    ) -> pb::Member {
        self.members(&admin.token)
            .add_member(pb::AddMemberRequest {
                organization_id: org.to_owned(),
                email: email.to_owned(),
                role: role as i32,
                profile,
            })
            .await
            .expect("add member")
            .into_inner()
            .member
            .expect("member")
    }

    /// `user` accepts their invitation to `org`.
    pub async fn accept(&self, user: &TestUser, org: &str) -> Result<pb::Member, Status> {
        let request = pb::AcceptInvitationRequest { organization_id: org.to_owned() };
        let response = self.members(&user.token).accept_invitation(request).await?;
        Ok(response.into_inner().member.expect("member"))
    }

    /// The invitation mails sent to `email`, oldest first, once there are at least `n` (the
    /// mail goes out in the background). Panics when they do not arrive within 10 seconds.
    pub async fn invitation_mails(&self, email: &str, n: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mails = invitation_mails_in(&self.outbox, email);
            if mails.len() >= n {
                return mails;
            }
            assert!(std::time::Instant::now() < deadline, "{n} mails to {email} never came");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A clinic with an admin, a doctor and a patient.
    pub async fn clinic(&self, base: &str) -> Clinic {
        let admin = self.user("admin").await;
        let doctor = self.user("doctor").await;
        let patient = self.user("patient").await;
        let org = self.create_org(&admin, base).await;
        let doctor_profile = pb::MemberProfile {
            kind: Some(pb::member_profile::Kind::Doctor(pb::DoctorProfile {
                specialization: "Cardiology".into(),
                license_number: "LIC-123".into(),
                phone_number: "+1 555 0100".into(),
            })),
        };
        let patient_profile = pb::MemberProfile {
            kind: Some(pb::member_profile::Kind::Patient(pb::PatientProfile {
                date_of_birth: "1980-02-03".into(),
                phone_number: "+1 555 0199".into(),
                blood_type: "O+".into(),
                ..Default::default()
            })),
        };
        let doctor_member =
            self.add_member(&admin, &org.id, &doctor, pb::Role::Doctor, Some(doctor_profile)).await;
        let patient_member = self
            .add_member(&admin, &org.id, &patient, pb::Role::Patient, Some(patient_profile))
            .await;
        let admin_member = self
            .members(&admin.token)
            .get_member(pb::GetMemberRequest {
                organization_id: org.id.clone(),
                member_id: "me".into(),
            })
            .await
            .expect("get me")
            .into_inner()
            .member
            .expect("member");
        Clinic { org, admin, doctor, patient, admin_member, doctor_member, patient_member }
    }

    /// Connects to a tenant database of this test directly (server key `main` or `b`).
    pub async fn tenant_client(&self, server: &str, database: &str) -> tokio_postgres::Client {
        let url = if server == "b" { second_server_url() } else { first_server_url() };
        let config = with_dbname(&parse_url(&url).expect("url"), database);
        connect(&config).await.expect("connect tenant")
    }
}

/// A clinic with one member of each role.
pub struct Clinic {
    /// The organization.
    pub org: pb::Organization,
    /// Its creator.
    pub admin: TestUser,
    /// A doctor.
    pub doctor: TestUser,
    /// A patient.
    pub patient: TestUser,
    /// The admin's member row.
    pub admin_member: pb::Member,
    /// The doctor's member row.
    pub doctor_member: pb::Member,
    /// The patient's member row.
    pub patient_member: pb::Member,
}

/// The invitation mails (subject `You are invited to a clinic`) to `email` in `outbox`, oldest
/// first.
fn invitation_mails_in(outbox: &Path, email: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    // Messages appear whole as `.eml` (written as `.partial`, then renamed); file names start
    // with the time they were written.
    files.retain(|f| f.extension().is_some_and(|e| e == "eml"));
    files.sort();
    let to = format!("To: {email}\n");
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter(|text| text.contains(&to) && text.contains("Subject: You are invited to a clinic"))
        .collect()
}

/// Registers a user with identity-service at `identity` (optionally verifying the email; the
/// code comes back in development mode) and logs in.
pub async fn sign_up(identity: Channel, label: &str, verify: bool) -> TestUser {
    let mut auth = AuthServiceClient::new(identity);
    let email = format!("{label}-{}@example.com", uuid::Uuid::new_v4().simple());
    let name = format!("{label} {}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let password = "correct horse battery staple 42".to_owned();
    let reg = auth
        .register(ipb::RegisterRequest {
            email: email.clone(),
            name: name.clone(),
            password: password.clone(),
        })
        .await
        .expect("register")
        .into_inner();
    if verify {
        auth.verify_email(ipb::VerifyEmailRequest {
            email: email.clone(),
            code: reg.verification_code,
        })
        .await
        .expect("verify");
    }
    let login = auth
        .login(ipb::LoginRequest { email: email.clone(), password })
        .await
        .expect("login")
        .into_inner();
    let tokens = login.tokens.expect("tokens");
    TestUser {
        id: login.user.expect("user").id,
        email,
        name,
        token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    }
}

/// Forwards connections accepted on `listener` to `target` until aborted (which closes them).
pub async fn forward(listener: TcpListener, target: SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((mut inbound, _)) = listener.accept().await {
        connections.spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Every weekday, Monday first: a doctor's whole week.
pub const WEEK: [pb::Weekday; 7] = [
    pb::Weekday::Monday,
    pb::Weekday::Tuesday,
    pb::Weekday::Wednesday,
    pb::Weekday::Thursday,
    pb::Weekday::Friday,
    pb::Weekday::Saturday,
    pb::Weekday::Sunday,
];
