//! Logins per second per core at the service's own argon2id parameters (OWASP: m = 19 MiB, t = 2,
//! p = 1), against Keycloak's sizing figure of 15 per vCPU; and what a login flood does to
//! clinic-service's reads.
//!
//! identity-service and clinic-service run as their own processes (release binaries; see
//! clinic-service's `benches/support/stack.rs`) with a central database of their own, dropped at
//! the end. `LOGIN_ACCOUNTS` (64) verified accounts log in with correct passwords, each client
//! cycling through them, so no per-account or per-client limit refuses them.
//!
//! 1. Throughput: `LOGIN_CLIENTS` (8: the hashing pool's workers and queue stay full, and
//!    nobody is refused) log in back to back for `--secs`, against identity-service as
//!    configured by default (`HASH_WORKERS` = all cores but one), then against a second
//!    identity-service process with `HASH_WORKERS` = all cores. Printed: logins/s, cores,
//!    logins/s per core and per hashing worker, beside 15/vCPU.
//! 2. Flood: a clinic with a patient; 8 clients read `GetMember me` as the patient for `--secs`
//!    without a flood, then while `FLOOD_CLIENTS` (8) clients log in back to back on the default
//!    identity-service, then without again. Printed: p50/p99 of each and the ratio of the
//!    flooded p99 to the quiet ones (target <= 2x). The patient's token is verified once before
//!    (clinic-service verifies tokens locally; the first call fetches the signing keys).
//!
//! Run with `cargo build --release --workspace --bins && cargo bench -p identity-service --bench logins --
//! [--secs 10]` (PostgreSQL at `TEST_DATABASE_URL`).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../../clinic-service/benches/support/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use clinic_api::{
    clinic::v1::{
        self as pb, member_service_client::MemberServiceClient,
        organization_service_client::OrganizationServiceClient,
    },
    identity::v1::auth_service_client::AuthServiceClient,
};
use stack::{Service, Tally, bearer, channel};

const CENTRAL: &str = "bench_logins_central";
const TENANT_PREFIX: &str = "clinic_bench_logins";
const KEYCLOAK_PER_VCPU: f64 = 15.0;
const READERS: usize = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn secs_arg() -> u64 {
    let mut secs = 10;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--bench" => {}
            "--secs" => secs = it.next().and_then(|v| v.parse().ok()).expect("--secs N"),
            _ => panic!(
                "unknown option {flag}; see the header of identity-service/benches/logins.rs"
            ),
        }
    }
    secs
}

/// `clients` clients logging in back to back until `deadline`, cycling through `emails`.
async fn logins(
    identity: &Service,
    emails: &Arc<Vec<String>>,
    clients: usize,
    deadline: Instant,
) -> Tally {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let mut auth = AuthServiceClient::new(channel(&identity.url(0)).await);
        let emails = emails.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut i = c;
            while Instant::now() < deadline {
                let started = Instant::now();
                tally.record(started, stack::login(&mut auth, &emails[i % emails.len()]).await);
                i += clients;
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(one) = tasks.join_next().await {
        tally.merge(one.expect("login client"));
    }
    tally
}

/// The largest attempt counters in the central database (the registrations' per-client one is
/// `LOGIN_ACCOUNTS`; every login here succeeds, so its counts are taken back: anything else
/// left over is a leak).
async fn largest_counters() -> Vec<i32> {
    let url = clinic_shared::pg::parse_url(&stack::database_url(CENTRAL)).expect("url");
    let db = clinic_shared::pg::connect(&url).await.expect("connect central");
    let row = db
        .query("SELECT count FROM throttle_counter ORDER BY count DESC LIMIT 4", &[])
        .await
        .expect("throttle_counter");
    row.iter().map(|r| r.get(0)).collect()
}

/// Logins/s of `clients` clients for `secs`; prints a row.
async fn throughput(
    label: &str,
    identity: &Service,
    emails: &Arc<Vec<String>>,
    secs: u64,
    workers: usize,
) {
    let clients = env_usize("LOGIN_CLIENTS", 8);
    let began = Instant::now();
    let tally = logins(identity, emails, clients, began + Duration::from_secs(secs)).await;
    let rate = tally.ok.len() as f64 / began.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "{label:<28} {:>6} {rate:>9.1} {cores:>6} {:>10.1} {workers:>8} {:>12.1} {:>6} {:>6}  {}",
        tally.ok.len(),
        rate / cores as f64,
        rate / workers as f64,
        tally.shed,
        stack::load_average(),
        tally.failed(),
    );
    println!("  largest attempt counters in the central database: {:?}", largest_counters().await);
}

/// `READERS` clients reading GetMember(me) for `secs`; sorted tally and req/s.
async fn reads(clinic: &Service, token: &str, org: &str, secs: u64) -> (Tally, f64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..READERS {
        let mut members =
            MemberServiceClient::with_interceptor(channel(&clinic.url(0)).await, bearer(token));
        let org = org.to_owned();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let request =
                    pb::GetMemberRequest { organization_id: org.clone(), member_id: "me".into() };
                let started = Instant::now();
                tally.record(started, members.get_member(request).await);
            }
            tally
        });
    }
    let began = Instant::now();
    let mut tally = Tally::default();
    while let Some(one) = tasks.join_next().await {
        tally.merge(one.expect("reader"));
    }
    tally.ok.sort();
    let rate = tally.ok.len() as f64 / began.elapsed().as_secs_f64();
    (tally, rate)
}

fn read_row(label: &str, tally: &Tally, rate: f64, logins: Option<&Tally>, secs: u64) {
    let flood = logins.map_or("-".to_owned(), |l| {
        format!("{:.1}/s ok, {} shed, {}", l.ok.len() as f64 / secs as f64, l.shed, l.failed())
    });
    println!(
        "{label:<16} {:>8} {rate:>8.0} {:>8.2} {:>8.2} {:>6} {:>6}  {}  logins: {flood}",
        tally.ok.len(),
        tally.ms(0.5),
        tally.ms(0.99),
        tally.shed,
        stack::load_average(),
        tally.failed(),
    );
}

/// A clinic created by `admin` with `patient` as an accepted patient; its id.
async fn clinic_with_patient(clinic: &Service, admin: &str, patient: (&str, &str)) -> String {
    let ch = channel(&clinic.url(0)).await;
    let request = pb::CreateOrganizationRequest { name: "bench logins".into() };
    let org = OrganizationServiceClient::with_interceptor(ch.clone(), bearer(admin))
        .create_organization(request)
        .await
        .expect("create organization")
        .into_inner()
        .organization
        .expect("organization");
    let add = pb::AddMemberRequest {
        organization_id: org.id.clone(),
        email: patient.0.to_owned(),
        role: pb::Role::Patient as i32,
        profile: None,
    };
    MemberServiceClient::with_interceptor(ch.clone(), bearer(admin))
        .add_member(add)
        .await
        .expect("add member");
    let accept = pb::AcceptInvitationRequest { organization_id: org.id.clone() };
    MemberServiceClient::with_interceptor(ch, bearer(patient.1))
        .accept_invitation(accept)
        .await
        .expect("accept invitation");
    org.id
}

#[tokio::main]
async fn main() {
    let secs = secs_arg();
    let accounts = env_usize("LOGIN_ACCOUNTS", 64);
    let flooders = env_usize("FLOOD_CLIENTS", 8);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    stack::drop_databases(TENANT_PREFIX).await;
    stack::drop_databases(CENTRAL).await;
    // From here on, also on panic: every database this bench made goes.
    let _cleanup = stack::DropDatabases(vec![TENANT_PREFIX.to_owned(), CENTRAL.to_owned()]);
    // Every account registers from this one client.
    let registrations = ("REGISTER_MAX_PER_PEER", (accounts + 10).to_string());
    let identity = stack::identity(CENTRAL, &[registrations]).await;
    let clinic = stack::clinic(&identity, &[]).await;

    let id_channel = channel(&identity.url(0)).await;
    let mut signups = tokio::task::JoinSet::new();
    let mut emails = Vec::with_capacity(accounts);
    for i in 0..accounts {
        let id_channel = id_channel.clone();
        signups.spawn(async move {
            let email = format!("bench-login-{i}@example.com");
            stack::sign_up(id_channel, &email).await;
            email
        });
        // The hashing pool's queue is 8 deep: keep fewer sign-ups than that in flight.
        while signups.len() >= 4 {
            emails.push(signups.join_next().await.expect("sign-up").expect("sign-up"));
        }
    }
    emails.extend(signups.join_all().await);
    // Every account: client c logs in as accounts c, c + clients, ... (see `logins`), so while
    // the clients divide the accounts evenly no two of them share one, and no account sees
    // parallel attempts (beyond its limit, those are refused and stay counted).
    assert_eq!(emails.len(), accounts, "every account signed up");
    let emails = Arc::new(emails);
    // The clinic before the throughput runs: a login of the one client address after them was
    // once refused "too many failed attempts" (see the report in the README).
    let admin = stack::sign_up(id_channel.clone(), "bench-login-admin@example.com").await;
    let patient_email = "bench-login-patient@example.com";
    let patient = stack::sign_up(id_channel.clone(), patient_email).await;
    let org = clinic_with_patient(&clinic, &admin, (patient_email, &patient)).await;

    println!(
        "\n== logins/s, correct passwords, argon2id m = 19 MiB t = 2 p = 1, {} clients, {secs} s \
         each, {accounts} accounts; Keycloak sizing: {KEYCLOAK_PER_VCPU}/vCPU",
        env_usize("LOGIN_CLIENTS", 8)
    );
    println!(
        "{:<28} {:>6} {:>9} {:>6} {:>10} {:>8} {:>12} {:>6} {:>6}  failed by code",
        "identity-service",
        "ok",
        "logins/s",
        "cores",
        "per core",
        "workers",
        "per worker",
        "shed",
        "load1"
    );
    let default_workers = cores.saturating_sub(1).max(1);
    throughput("HASH_WORKERS default", &identity, &emails, secs, default_workers).await;
    {
        let all = stack::identity(CENTRAL, &[("HASH_WORKERS", cores.to_string())]).await;
        throughput("HASH_WORKERS = all cores", &all, &emails, secs, cores).await;
    }

    // The flood's effect on clinic-service's reads.
    reads(&clinic, &patient, &org, 1).await; // warm: keys fetched, pools filled
    println!(
        "\n== clinic-service GetMember(me), {READERS} clients, {secs} s each; flood: {flooders} \
         clients logging in back to back ({accounts} accounts)"
    );
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6}  failed by code",
        "run", "ok", "req/s", "p50 ms", "p99 ms", "shed", "load1"
    );
    let (before, rate) = reads(&clinic, &patient, &org, secs).await;
    read_row("no flood", &before, rate, None, secs);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (flooded, flood) = tokio::join!(
        reads(&clinic, &patient, &org, secs),
        logins(&identity, &emails, flooders, deadline)
    );
    read_row("login flood", &flooded.0, flooded.1, Some(&flood), secs);
    let (after, rate) = reads(&clinic, &patient, &org, secs).await;
    read_row("no flood, after", &after, rate, None, secs);
    let p99 = flooded.0.ms(0.99);
    println!(
        "flooded p99 / quiet p99: {:.2}x before, {:.2}x after (target <= 2x)",
        p99 / before.ms(0.99),
        p99 / after.ms(0.99)
    );
    drop(clinic);
    drop(identity);
}
