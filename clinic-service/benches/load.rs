//! Load: many clients at once, each scenario on its own, against the same statements run
//! directly on PostgreSQL.
//!
//! The stack is identity-service and clinic-service in-process against the local PostgreSQL
//! (`TEST_DATABASE_URL`, default 127.0.0.1:5432), or a running one (`--clinic URL --identity URL`,
//! identity's public URL, development mode: Register returns the verification code; the clinic
//! stays). One clinic is seeded through the public API: an admin creates it, invites a doctor
//! and a patient who accept, and the patient books `SEEDED` appointments.
//!
//! Scenarios, each for `--secs` with `--clients` clients, every client with its own HTTP/2
//! channel: GetMember (`me`, as the patient), GetAppointment, ListAppointments (a page of 20)
//! and CreateAppointment (distinct future slots with the one doctor, each with a `request_id`).
//! A call counts when its status is OK; shed calls (RESOURCE_EXHAUSTED) and failures are counted
//! apart, by code. The three reads are also run as raw SQL: the very statement text the service
//! issues for each (one per call, the caller's membership folded in, see
//! `TenantAccess::read_with`), prepared once, on one tokio-postgres connection per client to the same tenant database (`--database-url`
//! server, default `TEST_DATABASE_URL`). Printed: req/s, p50 and p99, and service/raw.
//!
//! Run with `cargo bench -p clinic-service --bench load -- [--clients 8] [--secs 10]
//! [--clinic URL --identity URL] [--database-url URL] [--pool N] [--seed-only]` (`--pool`: the
//! in-process service's tenant pool size; the raw side always has one connection per client;
//! `--seed-only`: seed a running stack, print what `benches/h2load.sh` needs and stop).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, Instant},
};

use clinic_api::clinic::v1::{
    self as pb, appointment_service_client::AppointmentServiceClient,
    member_service_client::MemberServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use clinic_service::appointments::{listing::list_for_caller_query, requests::ListAppointments};
use clinic_shared::pg::{connect, parse_url, with_dbname};
use helpers::{Authed, Options, TestApp, TestUser, bearer, first_server_url, sign_up, spawn_with};
use tokio_postgres::Statement;
use tonic::transport::Channel;
use uuid::Uuid;

/// Appointments the patient has before the reads start.
const SEEDED: usize = 20;
const PAGE: i32 = 20;

/// The service's own statements (so the raw side runs exactly what it runs): each read is one
/// statement with the caller's membership folded in (`TenantAccess::read_with`).
fn statements(ctx_list: &pb::ListAppointmentsRequest) -> [String; 3] {
    let list = ListAppointments::try_from(ctx_list.clone()).expect("list request");
    [
        clinic_service::members::read::GET_FOR_CALLER.clone(),
        clinic_service::appointments::repository::GET_FOR_CALLER.clone(),
        list_for_caller_query(&list).sql,
    ]
}

struct Args {
    clients: usize,
    secs: u64,
    remote: Option<(String, String)>,
    /// In-process only: the tenant pool size (default: the tests' configuration).
    pool: Option<usize>,
    database_url: String,
    /// Seed, print what an external load generator needs, and stop.
    seed_only: bool,
}

fn args() -> Args {
    let mut args = Args {
        clients: 8,
        secs: 10,
        remote: None,
        pool: None,
        database_url: first_server_url(),
        seed_only: false,
    };
    let (mut clinic, mut identity) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // cargo bench passes --bench to every bench binary.
        if flag == "--bench" {
            continue;
        }
        if flag == "--seed-only" {
            args.seed_only = true;
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse().unwrap_or_else(|_| panic!("{flag}: not a number"));
        match flag.as_str() {
            "--clients" => args.clients = number() as usize,
            "--secs" => args.secs = number(),
            "--clinic" => clinic = Some(value),
            "--identity" => identity = Some(value),
            "--database-url" => args.database_url = value,
            "--pool" => args.pool = Some(number() as usize),
            _ => panic!("unknown option {flag}; see the header of clinic-service/benches/load.rs"),
        }
    }
    args.remote = match (clinic, identity) {
        (Some(c), Some(i)) => Some((c, i)),
        (None, None) => None,
        _ => panic!("--clinic and --identity go together"),
    };
    assert!(args.clients > 0 && args.secs > 0, "--clients and --secs must be positive");
    args
}

/// The seeded clinic, as the load needs it.
struct Seed {
    org: pb::Organization,
    patient: TestUser,
    doctor_member: String,
    appointments: Vec<String>,
    /// The next free half-hour slot (shared by seeding and CreateAppointment).
    slots: Arc<AtomicI64>,
}

async fn seed(clinic: &str, identity: &str, org_name: String) -> Seed {
    let identity = channel(identity).await;
    let admin = sign_up(identity.clone(), "load-admin", true).await;
    let doctor = sign_up(identity.clone(), "load-doctor", true).await;
    let patient = sign_up(identity, "load-patient", true).await;
    let channel = channel(clinic).await;
    let org = OrganizationServiceClient::with_interceptor(channel.clone(), bearer(&admin.token))
        .create_organization(pb::CreateOrganizationRequest { name: org_name })
        .await
        .expect("create organization")
        .into_inner()
        .organization
        .expect("organization");
    let mut members = Vec::new();
    for (user, role) in [(&doctor, pb::Role::Doctor), (&patient, pb::Role::Patient)] {
        let add = pb::AddMemberRequest {
            organization_id: org.id.clone(),
            email: user.email.clone(),
            role: role as i32,
            profile: None,
        };
        MemberServiceClient::with_interceptor(channel.clone(), bearer(&admin.token))
            .add_member(add)
            .await
            .expect("add member");
        let accept = pb::AcceptInvitationRequest { organization_id: org.id.clone() };
        let member = MemberServiceClient::with_interceptor(channel.clone(), bearer(&user.token))
            .accept_invitation(accept)
            .await
            .expect("accept invitation")
            .into_inner()
            .member
            .expect("member");
        members.push(member.id);
    }
    let mut seed = Seed {
        org,
        patient,
        doctor_member: members.swap_remove(0),
        appointments: Vec::new(),
        slots: Arc::new(AtomicI64::new(0)),
    };
    let mut api = appointments(channel, &seed.patient.token);
    for _ in 0..SEEDED {
        let created = api.create_appointment(booking(&seed)).await.expect("seed appointment");
        seed.appointments.push(created.into_inner().appointment.expect("appointment").id);
    }
    seed
}

/// A booking of the next free slot (30 minutes each, from tomorrow on).
fn booking(seed: &Seed) -> pb::CreateAppointmentRequest {
    let base = chrono::Utc::now().timestamp() / 3600 * 3600 + 24 * 3600;
    let slot = seed.slots.fetch_add(1, Ordering::Relaxed);
    pb::CreateAppointmentRequest {
        organization_id: seed.org.id.clone(),
        patient_id: "me".into(),
        doctor_id: seed.doctor_member.clone(),
        start_time: Some(prost_types::Timestamp { seconds: base + slot * 30 * 60, nanos: 0 }),
        duration_minutes: 30,
        request_id: Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("url").connect().await.expect("connect")
}

fn appointments(channel: Channel, token: &str) -> AppointmentServiceClient<Authed> {
    AppointmentServiceClient::with_interceptor(channel, bearer(token))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    GetMember,
    GetAppointment,
    ListAppointments,
    CreateAppointment,
}

/// Everything a client needs, shared.
struct Ctx {
    seed: Seed,
    clinic_url: String,
    /// The tenant database, for the raw clients.
    tenant: tokio_postgres::Config,
    /// The patient's central user id (what the service's caller lookup is keyed by).
    user_id: Uuid,
}

impl Ctx {
    fn list_request(&self) -> pb::ListAppointmentsRequest {
        pb::ListAppointmentsRequest {
            organization_id: self.seed.org.id.clone(),
            page_size: PAGE,
            ..Default::default()
        }
    }
}

/// One client: gRPC over its own channel, or its own connection with the statements prepared.
// A handful of them, each moved once into its task: their size does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Service { members: MemberServiceClient<Authed>, appointments: AppointmentServiceClient<Authed> },
    Raw { db: tokio_postgres::Client, member: Statement, appointment: Statement, list: Statement },
}

impl Client {
    async fn service(ctx: &Ctx) -> Self {
        let channel = channel(&ctx.clinic_url).await;
        let token = &ctx.seed.patient.token;
        Client::Service {
            members: MemberServiceClient::with_interceptor(channel.clone(), bearer(token)),
            appointments: appointments(channel, token),
        }
    }

    async fn raw(ctx: &Ctx) -> Self {
        let db = connect(&ctx.tenant).await.expect("connect tenant");
        let prepare = async |sql: &str| db.prepare(sql).await.expect("prepare");
        let [member, appointment, list] = statements(&ctx.list_request());
        Client::Raw {
            member: prepare(&member).await,
            appointment: prepare(&appointment).await,
            list: prepare(&list).await,
            db,
        }
    }

    /// One call of `scenario` (the `i`th of this client) into `tally`.
    async fn call(&mut self, scenario: Scenario, ctx: &Ctx, i: usize, tally: &mut Tally) {
        let org = || ctx.seed.org.id.clone();
        let appointment_id = &ctx.seed.appointments[i % ctx.seed.appointments.len()];
        let started = Instant::now();
        let result = match self {
            Client::Service { members, appointments } => match scenario {
                Scenario::GetMember => {
                    let req =
                        pb::GetMemberRequest { organization_id: org(), member_id: "me".into() };
                    let answer = members.get_member(req).await;
                    answer.map(|r| assert!(r.into_inner().member.is_some(), "no member"))
                }
                Scenario::GetAppointment => {
                    let req = pb::GetAppointmentRequest {
                        organization_id: org(),
                        appointment_id: appointment_id.clone(),
                    };
                    let answer = appointments.get_appointment(req).await;
                    answer.map(|r| assert!(!r.into_inner().history.is_empty(), "no history"))
                }
                Scenario::ListAppointments => {
                    let answer = appointments.list_appointments(ctx.list_request()).await;
                    answer.map(|r| assert_eq!(r.into_inner().appointments.len(), PAGE as usize))
                }
                Scenario::CreateAppointment => {
                    appointments.create_appointment(booking(&ctx.seed)).await.map(drop)
                }
            },
            Client::Raw { .. } => {
                let outcome = self.raw_call(scenario, ctx, appointment_id).await;
                return tally.record(started, outcome.map_err(|e| sql_code(&e)));
            }
        };
        tally.record(started, result.map_err(|s| format!("{:?}", s.code())));
    }

    /// The service's statements for `scenario`.
    async fn raw_call(
        &mut self,
        scenario: Scenario,
        ctx: &Ctx,
        appointment_id: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let Client::Raw { db, member, appointment, list } = self else {
            unreachable!("raw_call on a service client")
        };
        match scenario {
            Scenario::GetMember => {
                let me: Option<Uuid> = None;
                let row = db.query_one(&*member, &[&ctx.user_id, &me]).await?;
                assert!(row.get::<_, bool>("visible"), "member not visible");
            }
            Scenario::GetAppointment => {
                let id: Uuid = appointment_id.parse().expect("appointment id");
                let rows = db.query(&*appointment, &[&ctx.user_id, &id]).await?;
                assert!(rows.first().is_some_and(|r| r.get::<_, Option<Uuid>>(2).is_some()));
            }
            Scenario::ListAppointments => {
                let req = ListAppointments::try_from(ctx.list_request()).expect("list request");
                let q = list_for_caller_query(&req);
                let mut params = q.param_refs();
                params.insert(0, &ctx.user_id);
                assert_eq!(db.query(&*list, &params).await?.len(), PAGE as usize);
            }
            Scenario::CreateAppointment => unreachable!("no raw CreateAppointment"),
        }
        Ok(())
    }
}

/// The raw statements as pgbench scripts (into `dir` when it is set), as the service runs
/// them. Variables: `uid` and `aid` (given with `-D`).
fn pgbench_scripts(dir: &std::path::Path) {
    if dir.as_os_str().is_empty() {
        return;
    }
    let list_request = pb::ListAppointmentsRequest {
        organization_id: Uuid::nil().to_string(),
        page_size: PAGE,
        ..Default::default()
    };
    let [member, appointment, list] = statements(&list_request);
    let scripts = [
        // `$2::uuid IS NULL`: "me".
        ("GetMember", member.replace("$1", ":uid").replace("$2::uuid", "NULL::uuid")),
        ("GetAppointment", appointment.replace("$1", ":uid").replace("$2", ":aid")),
        ("ListAppointments", list.replace("$1", ":uid").replace("$2", &(PAGE + 1).to_string())),
    ];
    for (name, script) in scripts {
        std::fs::write(dir.join(format!("{name}.sql")), format!("{script};\n"))
            .expect("write pgbench script");
    }
}

fn sql_code(e: &tokio_postgres::Error) -> String {
    e.code().map_or_else(|| "connection".to_owned(), |c| format!("SQLSTATE {}", c.code()))
}

/// What the clients of one run saw.
#[derive(Default)]
struct Tally {
    /// Latencies of the OK calls.
    ok: Vec<Duration>,
    /// RESOURCE_EXHAUSTED answers.
    shed: u64,
    /// Other failures by code.
    failed: BTreeMap<String, u64>,
}

impl Tally {
    fn record(&mut self, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok.push(started.elapsed()),
            Err(code) if code == "ResourceExhausted" => self.shed += 1,
            Err(code) => *self.failed.entry(code).or_default() += 1,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.shed += other.shed;
        for (code, n) in other.failed {
            *self.failed.entry(code).or_default() += n;
        }
    }
}

/// `clients` clients (made before the clock starts) calling `scenario` for `secs`; the tally
/// and its req/s.
async fn run(ctx: &Arc<Ctx>, raw: bool, scenario: Scenario, clients: usize, secs: u64) -> f64 {
    let mut made = Vec::with_capacity(clients);
    for _ in 0..clients {
        made.push(if raw { Client::raw(ctx).await } else { Client::service(ctx).await });
    }
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in made {
        let ctx = ctx.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut i = 0;
            while Instant::now() < deadline {
                client.call(scenario, &ctx, i, &mut tally).await;
                i += 1;
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(one) = tasks.join_next().await {
        tally.merge(one.expect("client task"));
    }
    let elapsed = began.elapsed();
    let label = format!("{scenario:?} {}", if raw { "raw SQL" } else { "service" });
    print(&label, &mut tally, elapsed)
}

/// Prints one row of the table; returns req/s.
fn print(label: &str, tally: &mut Tally, elapsed: Duration) -> f64 {
    tally.ok.sort();
    let ms = |p: f64| {
        let i = ((tally.ok.len().saturating_sub(1)) as f64 * p).round() as usize;
        tally.ok.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    let rate = tally.ok.len() as f64 / elapsed.as_secs_f64();
    let failed =
        if tally.failed.is_empty() { "-".to_owned() } else { format!("{:?}", tally.failed) };
    println!(
        "{label:<30} {:>8} {rate:>9.0} {:>8.2} {:>8.2} {:>6}  {failed}",
        tally.ok.len(),
        ms(0.5),
        ms(0.99),
        tally.shed,
    );
    rate
}

#[tokio::main]
async fn main() {
    let args = args();
    // Kept to the end: dropping it stops the services and drops the test's databases.
    let mut app: Option<TestApp> = None;
    let (clinic_url, identity_url, org_name) = match args.remote.clone() {
        Some((clinic, identity)) => {
            (clinic, identity, format!("load {}", &Uuid::new_v4().simple().to_string()[..8]))
        }
        None => {
            let pool = args.pool;
            let tweak = Box::new(move |c: &mut clinic_service::Config| {
                c.tenant_pool_size = pool.unwrap_or(c.tenant_pool_size)
            });
            let a = app.insert(spawn_with(Options { tweak, ..Options::default() }).await);
            let urls = (format!("http://{}", a.clinic_addr), format!("http://{}", a.identity_addr));
            (urls.0, urls.1, a.org_name("load"))
        }
    };
    let seed = seed(&clinic_url, &identity_url, org_name).await;
    if args.seed_only {
        // For `benches/h2load.sh`: shell assignments, no personal data beyond the load users'.
        println!("ORG_ID={}", seed.org.id);
        println!("TENANT_DATABASE={}", seed.org.database_name);
        println!("USER_ID={}", seed.patient.id);
        println!("APPOINTMENT_ID={}", seed.appointments[0]);
        println!("TOKEN={}", seed.patient.token);
        pgbench_scripts(std::path::Path::new(&std::env::var("PGBENCH_DIR").unwrap_or_default()));
        return;
    }
    let server = parse_url(&args.database_url).expect("--database-url");
    let ctx = Arc::new(Ctx {
        tenant: with_dbname(&server, &seed.org.database_name),
        user_id: seed.patient.id.parse().expect("user id"),
        seed,
        clinic_url,
    });

    let (n, secs) = (args.clients, args.secs);
    let stack = app.as_ref().map_or("a running stack".to_owned(), |a| {
        format!("in-process stack, tenant pool {}", a.config.tenant_pool_size)
    });
    println!(
        "\n== load: {n} clients, {secs} s per run, {stack}; raw SQL = the service's statements"
    );
    println!(
        "{:<30} {:>8} {:>9} {:>8} {:>8} {:>6}  failed by code",
        "scenario", "ok", "req/s", "p50 ms", "p99 ms", "shed"
    );
    let mut ratios = Vec::new();
    for scenario in [Scenario::GetMember, Scenario::GetAppointment, Scenario::ListAppointments] {
        let service = run(&ctx, false, scenario, n, secs).await;
        let raw = run(&ctx, true, scenario, n, secs).await;
        ratios.push(format!("{scenario:?} {:.2}x", service / raw));
    }
    // Last: it adds appointments to the patient the reads page through.
    run(&ctx, false, Scenario::CreateAppointment, n, secs).await;
    println!("service/raw: {}", ratios.join(", "));
    drop(app);
}
