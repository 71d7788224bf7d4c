//! The live appointment feed under load: `WATCHERS` concurrent WatchAppointments streams
//! (default 1,000) over `CLINICS` clinics (default 50), 20 per clinic: 4 of its admin, 3 of each
//! of its 2 doctors, 2 of each of its 5 patients (the same 8 users belong to every clinic), spread
//! over `--channels` HTTP/2 connections (default 25: a connection carries at most
//! `MAX_CONCURRENT_STREAMS`, 64, streams). Once every stream has caught up, `--rate` changes per
//! second (default 100) are made through the API for `--secs` (default 20), round-robin over the
//! clinics, alternating a booking (admin books a patient with a doctor) and the approval of the
//! clinic's oldest pending booking. A change reaches 9 streams: the admin's 4, its doctor's 3 and
//! its patient's 2.
//!
//! Printed: changes made, deliveries received against expected (and any delivered to a stream
//! that should not see it), latency from commit (the `commit_time` the log entry records, same
//! clock) to each stream's receipt, p50/p99/max, beside the baseline measured in the same run:
//! the writing calls' own round trip (p50/p99). Meanwhile a monitor counts clinic-service's
//! connections in `pg_stat_activity` (by its `application_name`) every 20 ms: the peak is
//! printed beside `DB_CONNECTION_BUDGET` (40). The target: p99 under 500 ms, every change
//! delivered, the budget never exceeded.
//!
//! identity-service and clinic-service run as their own processes (release binaries, see
//! `support/stack.rs`). Every clinic database and the central one are dropped at the end, also
//! after a panic, and at the start when an earlier run left them (`clinic_bench_watch_*`,
//! `bench_watch_central`).
//!
//! Run with `cargo build --release --workspace --bins && cargo bench -p clinic-service --bench watch --
//! [--secs 20] [--rate 100] [--channels 25] [--budget 40]`.

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "support/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, DurationRound, Utc};
use clinic_api::clinic::v1::{
    self as pb, appointment_service_client::AppointmentServiceClient,
    member_service_client::MemberServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use clinic_shared::pg::{connect, parse_url};
use stack::{Tally, bearer, channel};
use tonic::transport::Channel;

/// clinic-service's default `DB_CONNECTION_BUDGET`; `--budget` sets another.
const BUDGET: usize = 40;
const TENANT_PREFIX: &str = "clinic_bench_watch_";
const CENTRAL: &str = "bench_watch_central";
const TARGET_P99_MS: f64 = 500.0;
/// Streams per clinic: (role, users of it, streams per user).
const ADMIN_STREAMS: usize = 4;
const DOCTORS: usize = 2;
const DOCTOR_STREAMS: usize = 3;
const PATIENTS: usize = 5;
const PATIENT_STREAMS: usize = 2;
const PER_CHANGE: u64 = (ADMIN_STREAMS + DOCTOR_STREAMS + PATIENT_STREAMS) as u64;

struct Args {
    secs: u64,
    rate: u64,
    channels: usize,
    budget: usize,
}

fn args() -> Args {
    let mut a = Args { secs: 20, rate: 100, channels: 25, budget: BUDGET };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value: u64 = it.next().and_then(|v| v.parse().ok()).expect("a number after the flag");
        match flag.as_str() {
            "--secs" => a.secs = value,
            "--rate" => a.rate = value,
            "--channels" => a.channels = value as usize,
            "--budget" => a.budget = value as usize,
            _ => panic!("unknown option {flag}; see the header of clinic-service/benches/watch.rs"),
        }
    }
    a
}

/// `authorization: Bearer <token>` on every call (a named type, so clients clone).
#[derive(Clone)]
struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Api =
    AppointmentServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

fn api(channel: Channel, token: &str) -> Api {
    let value = format!("Bearer {token}").parse().expect("header value");
    AppointmentServiceClient::with_interceptor(channel, Bearer(value))
}

/// One clinic: its id and the member ids of its doctors and patients.
struct Clinic {
    id: String,
    doctors: Vec<String>,
    patients: Vec<String>,
}

/// The users every clinic shares.
struct Users {
    admin: String,
    doctors: Vec<(String, String)>,
    patients: Vec<(String, String)>,
}

async fn users(identity: Channel) -> Users {
    let run = uuid::Uuid::new_v4().simple().to_string();
    let email = |who: &str| format!("bench-watch-{who}-{}@example.com", &run[..8]);
    let mut doctors = Vec::new();
    for i in 0..DOCTORS {
        let e = email(&format!("doctor{i}"));
        doctors.push((e.clone(), stack::sign_up(identity.clone(), &e).await));
    }
    let mut patients = Vec::new();
    for i in 0..PATIENTS {
        let e = email(&format!("patient{i}"));
        patients.push((e.clone(), stack::sign_up(identity.clone(), &e).await));
    }
    Users { admin: stack::sign_up(identity, &email("admin")).await, doctors, patients }
}

/// Creates clinic `i` with every user of `users` a member.
async fn seed_clinic(ch: Channel, users: Arc<Users>, i: usize) -> Clinic {
    let mut orgs = OrganizationServiceClient::with_interceptor(ch.clone(), bearer(&users.admin));
    let request = pb::CreateOrganizationRequest { name: format!("bench watch {i}") };
    let org = orgs.create_organization(request).await.expect("create clinic").into_inner();
    let id = org.organization.expect("organization").id;
    let mut members = MemberServiceClient::with_interceptor(ch.clone(), bearer(&users.admin));
    let mut join = async |(email, token): &(String, String), role: pb::Role| -> String {
        let add = pb::AddMemberRequest {
            organization_id: id.clone(),
            email: email.clone(),
            role: role as i32,
            profile: None,
        };
        members.add_member(add).await.expect("add member");
        let accept = pb::AcceptInvitationRequest { organization_id: id.clone() };
        MemberServiceClient::with_interceptor(ch.clone(), bearer(token))
            .accept_invitation(accept)
            .await
            .expect("accept")
            .into_inner()
            .member
            .expect("member")
            .id
    };
    let mut doctors = Vec::new();
    for d in &users.doctors {
        doctors.push(join(d, pb::Role::Doctor).await);
    }
    let mut patients = Vec::new();
    for p in &users.patients {
        patients.push(join(p, pb::Role::Patient).await);
    }
    Clinic { id, doctors, patients }
}

/// What the watchers received.
#[derive(Default)]
struct Received {
    latencies_ms: Mutex<Vec<f64>>,
    delivered: AtomicU64,
    /// Changes a stream got although its caller may not see them (must stay 0).
    out_of_scope: AtomicU64,
    caught_up: AtomicU64,
    ended: AtomicU64,
    /// Opening calls shed, and streams ended by a shortage, opened again.
    retries: AtomicU64,
}

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("time");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("time")
}

/// One stream, as a client keeps it: records the latency of each change; `scope` is the member
/// it is limited to (`None`: an admin's, sees all). Opening calls shed while 1,000 streams open
/// at once (RESOURCE_EXHAUSTED, or UNAVAILABLE when no connection could be had in time), and
/// streams ended for the same reasons, are opened again from the last resume token.
async fn watcher(mut api: Api, org: String, scope: Option<String>, received: Arc<Received>) {
    let mut resume = String::new();
    let mut caught_up = false;
    loop {
        let request = pb::WatchAppointmentsRequest {
            organization_id: org.clone(),
            resume_token: resume.clone(),
        };
        let mut stream = match api.watch_appointments(request).await {
            Ok(stream) => stream.into_inner(),
            Err(s) if retryable(&s) => {
                received.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(s) => panic!("watch: {s:?}"),
        };
        let ended = loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    resume = m.resume_token.clone();
                    if !caught_up {
                        caught_up = true;
                        received.caught_up.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(change) = m.change {
                        record(&received, &change, &scope);
                    }
                }
                Ok(None) => break None,
                Err(s) => break Some(s),
            }
        };
        match ended {
            Some(s) if retryable(&s) => {
                received.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => {
                received.ended.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

fn retryable(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::ResourceExhausted | tonic::Code::Unavailable)
}

fn record(received: &Received, change: &pb::AppointmentChange, scope: &Option<String>) {
    let ms = (Utc::now() - time(&change.commit_time)).num_microseconds().unwrap_or(0) as f64 / 1e3;
    received.latencies_ms.lock().expect("latencies").push(ms);
    received.delivered.fetch_add(1, Ordering::Relaxed);
    if let Some(member) = scope
        && change.patient_id != *member
        && change.doctor_id != *member
    {
        received.out_of_scope.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts clinic-service's connections every 20 ms; keeps the peak.
async fn monitor(application_name: String, stop: Arc<AtomicBool>, peak: Arc<AtomicU64>) {
    let db = connect(&parse_url(&stack::server_url()).expect("url")).await.expect("connect");
    let query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
    let statement = db.prepare(query).await.expect("prepare");
    while !stop.load(Ordering::Relaxed) {
        let row = db.query_one(&statement, &[&application_name]).await.expect("count");
        peak.fetch_max(row.get::<_, i64>(0) as u64, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() {
    let a = args();
    let budget = a.budget;
    let clinics_n: usize = std::env::var("CLINICS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    stack::drop_databases(TENANT_PREFIX).await;
    stack::drop_databases(CENTRAL).await;
    let _cleanup = stack::DropDatabases(vec![TENANT_PREFIX.into(), CENTRAL.into()]);
    let application_name = format!("bench-watch-{}", std::process::id());
    let plenty = (clinics_n * 2 + 10).to_string();
    let identity = stack::identity(
        CENTRAL,
        &[("MAX_CLINICS_PER_USER", plenty.clone()), ("CREATE_ORGANIZATION_MAX_PER_USER", plenty)],
    )
    .await;
    let clinic = stack::clinic(
        &identity,
        &[
            ("DB_CONNECTION_BUDGET", budget.to_string()),
            ("DB_APPLICATION_NAME", application_name.clone()),
        ],
    )
    .await;
    let users = Arc::new(users(channel(&identity.url(0)).await).await);
    let started = Instant::now();
    let mut seeding = tokio::task::JoinSet::new();
    let seed_channel = channel(&clinic.url(0)).await;
    let mut clinics = Vec::new();
    for i in 0..clinics_n {
        seeding.spawn(seed_clinic(seed_channel.clone(), users.clone(), i));
        // Four clinics created at once.
        if seeding.len() == 4 {
            clinics.push(seeding.join_next().await.expect("seeder").expect("seed"));
        }
    }
    while let Some(c) = seeding.join_next().await {
        clinics.push(c.expect("seed"));
    }
    println!("{clinics_n} clinics with 8 members each in {:.0} s", started.elapsed().as_secs_f64());

    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let monitoring = tokio::spawn(monitor(application_name, stop.clone(), peak.clone()));
    let mut channels = Vec::new();
    for _ in 0..a.channels.max(1) {
        channels.push(channel(&clinic.url(0)).await);
    }
    let received = Arc::new(Received::default());
    let mut streams = 0;
    for c in &clinics {
        let mut open = |token: &str, scope: Option<String>| {
            let ch = channels[streams % channels.len()].clone();
            tokio::spawn(watcher(api(ch, token), c.id.clone(), scope, received.clone()));
            streams += 1;
        };
        for _ in 0..ADMIN_STREAMS {
            open(&users.admin, None);
        }
        for (d, (_, token)) in c.doctors.iter().zip(&users.doctors) {
            for _ in 0..DOCTOR_STREAMS {
                open(token, Some(d.clone()));
            }
        }
        for (p, (_, token)) in c.patients.iter().zip(&users.patients) {
            for _ in 0..PATIENT_STREAMS {
                open(token, Some(p.clone()));
            }
        }
    }
    let opening = Instant::now();
    while received.caught_up.load(Ordering::Relaxed) < streams as u64 {
        assert!(opening.elapsed() < Duration::from_secs(120), "streams never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "{streams} streams open and caught up in {:.1} s ({} shed openings or ended streams opened again)",
        opening.elapsed().as_secs_f64(),
        received.retries.load(Ordering::Relaxed)
    );

    // The load: `rate` changes per second, round-robin over the clinics.
    // The writes on connections of their own: on a watchers' connection they would wait for one
    // of the few stream slots its 40 watchers leave free (MAX_CONCURRENT_STREAMS).
    let mut writers = Vec::new();
    for _ in 0..4 {
        writers.push(api(channel(&clinic.url(0)).await, &users.admin));
    }
    let pending: Arc<Vec<Mutex<VecDeque<String>>>> =
        Arc::new(clinics.iter().map(|_| Mutex::new(VecDeque::new())).collect());
    let clinics = Arc::new(clinics);
    let calls = Arc::new(Mutex::new(Tally::default()));
    let base = (Utc::now() + chrono::Duration::days(1))
        .duration_trunc(chrono::Duration::hours(1))
        .expect("trunc");
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / a.rate.max(1)));
    let total = a.secs * a.rate;
    let mut writes = tokio::task::JoinSet::new();
    let mut turns: HashMap<usize, u64> = HashMap::new();
    for n in 0..total {
        ticks.tick().await;
        let i = (n as usize) % clinics.len();
        let turn = turns.entry(i).or_default();
        let (book, slot) =
            ((*turn).is_multiple_of(2) || pending[i].lock().expect("q").is_empty(), *turn);
        *turn += 1;
        let (mut writer, clinics, pending, calls) = (
            writers[n as usize % writers.len()].clone(),
            clinics.clone(),
            pending.clone(),
            calls.clone(),
        );
        writes.spawn(async move {
            let c = &clinics[i];
            let begun = Instant::now();
            let result = if book {
                let request = pb::CreateAppointmentRequest {
                    organization_id: c.id.clone(),
                    patient_id: c.patients[(slot as usize / 2) % c.patients.len()].clone(),
                    doctor_id: c.doctors[(slot as usize / 2) % c.doctors.len()].clone(),
                    start_time: Some(prost_types::Timestamp {
                        seconds: (base + chrono::Duration::hours(slot as i64)).timestamp(),
                        nanos: 0,
                    }),
                    ..Default::default()
                };
                writer.create_appointment(request).await.map(|r| {
                    let id = r.into_inner().appointment.expect("appointment").id;
                    pending[i].lock().expect("q").push_back(id);
                })
            } else {
                // Taken by an approval still in flight: nothing to approve this turn.
                let Some(id) = pending[i].lock().expect("q").pop_front() else { return };
                let request = pb::ApproveAppointmentRequest {
                    organization_id: c.id.clone(),
                    appointment_id: id,
                };
                writer.approve_appointment(request).await.map(|_| ())
            };
            calls.lock().expect("calls").record(begun, result);
        });
    }
    while writes.join_next().await.is_some() {}
    let made = calls.lock().expect("calls").ok.len() as u64;
    let expected = made * PER_CHANGE;
    let waiting = Instant::now();
    while received.delivered.load(Ordering::Relaxed) < expected
        && waiting.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A moment more, so that anything delivered twice or out of scope would be counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = monitoring.await;

    let mut calls = std::mem::take(&mut *calls.lock().expect("calls"));
    calls.ok.sort();
    let mut lat = std::mem::take(&mut *received.latencies_ms.lock().expect("latencies"));
    lat.sort_by(f64::total_cmp);
    println!(
        "\n== {streams} watchers over {} clinics, {} changes/s for {} s, {} channels ==",
        clinics.len(),
        a.rate,
        a.secs,
        channels.len()
    );
    println!("changes made: {made} (failed: {})", calls.failed());
    println!(
        "deliveries: {} of {expected} expected; out of scope: {}; streams ended for good: {}; \
         openings retried or streams reopened (whole run): {}",
        received.delivered.load(Ordering::Relaxed),
        received.out_of_scope.load(Ordering::Relaxed),
        received.ended.load(Ordering::Relaxed),
        received.retries.load(Ordering::Relaxed),
    );
    println!(
        "commit -> watcher: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target p99 < {TARGET_P99_MS} ms)",
        quantile(&lat, 0.5),
        quantile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "baseline, the writing call's round trip: p50 {:.1} ms, p99 {:.1} ms",
        calls.ms(0.5),
        calls.ms(0.99)
    );
    println!("clinic-service connections: peak {} (budget {budget})", peak.load(Ordering::Relaxed));
    println!("load average: {}", stack::load_average());
    drop(clinic);
    drop(identity);
}
