//! PostgreSQL restarted under a booking load. A private PostgreSQL cluster (initdb/pg_ctl from
//! `PG_BIN`, default /usr/lib/postgresql/15/bin, run as the `postgres` user when started as
//! root) serves identity-service and clinic-service, both in-process. Four clients book
//! appointments, each booking with its own `request_id` and retried with it while the answer
//! is retryable; after `LOAD_SECS` the cluster is restarted (`pg_ctl restart -m fast`), and the
//! load runs `LOAD_SECS` more. Printed: bookings acknowledged, bookings found afterwards (lost =
//! acknowledged − found must be 0, and no booking twice), failed calls by status code (INTERNAL
//! must be 0) and how long the service took to recover. The cluster is removed at the end.
//!
//! Run with `cargo bench -p clinic-service --bench restart` (release build; not part of the
//! tests). Needs no PostgreSQL running: it brings its own.

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "support/cluster.rs"]
mod cluster;
#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clinic_api::clinic::v1::{self as pb, appointment_service_client::AppointmentServiceClient};
use cluster::{Cluster, Removed};
use helpers::{Clinic, Options, TestApp, bearer, spawn_with};
use tonic::Code;

const CLIENTS: u64 = 4;
const LOAD_SECS: u64 = 8;

/// What the clients saw.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<String>,
    failures: BTreeMap<String, u64>,
    /// Times of failed calls and of acknowledgements, since the load began.
    failed_at: Vec<Duration>,
    acked_at: Vec<Duration>,
}

fn main() {
    let cluster = Removed(Cluster::start());
    let cluster = &cluster.0;
    // The test helpers put every database on TEST_DATABASE_URL's server; set before any thread.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("TEST_DATABASE_URL", cluster.url()) };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(cluster));
}

async fn run(cluster: &Cluster) {
    // Tenants are served as the server's user (no bootstrap on the private cluster).
    let options = Options {
        second_server: false,
        tweak: Box::new(|config| config.tenant_role_secret = None),
        ..Options::default()
    };
    let app = spawn_with(options).await;
    let c = Arc::new(app.clinic("restart").await);
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let slots = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let api = AppointmentServiceClient::with_interceptor(
            app.clinic_channel(),
            bearer(&c.patient.token),
        );
        let (c, tally, stop, slots) = (c.clone(), tally.clone(), stop.clone(), slots.clone());
        clients.spawn(book_until_stopped(api, c, tally, stop, slots, began));
    }

    tokio::time::sleep(Duration::from_secs(LOAD_SECS)).await;
    let restart_began = began.elapsed();
    let restarting = cluster.clone();
    tokio::task::spawn_blocking(move || restarting.pg_ctl("restart -m fast")).await.unwrap();
    let restart_done = began.elapsed();
    tokio::time::sleep(Duration::from_secs(LOAD_SECS)).await;
    stop.store(true, Ordering::SeqCst);
    while clients.join_next().await.is_some() {}

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    report(&app, &c, &tally, restart_began, restart_done).await;
}

type Api = AppointmentServiceClient<helpers::Authed>;

/// Books the next free slot, retrying it with the same `request_id` while the answer is
/// retryable, until `stop`.
async fn book_until_stopped(
    mut api: Api,
    c: Arc<Clinic>,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
    slots: Arc<AtomicU64>,
    began: Instant,
) {
    let base = chrono::Utc::now().timestamp() / 3600 * 3600 + 24 * 3600;
    while !stop.load(Ordering::SeqCst) {
        let slot = slots.fetch_add(1, Ordering::SeqCst) as i64;
        let request = pb::CreateAppointmentRequest {
            organization_id: c.org.id.clone(),
            patient_id: "me".into(),
            doctor_id: c.doctor_member.id.clone(),
            start_time: Some(prost_types::Timestamp { seconds: base + slot * 30 * 60, nanos: 0 }),
            duration_minutes: 30,
            request_id: uuid::Uuid::new_v4().to_string(),
            ..Default::default()
        };
        loop {
            let result = api.create_appointment(request.clone()).await;
            let retry = {
                let mut t = tally.lock().unwrap();
                match result {
                    Ok(response) => {
                        let appointment = response.into_inner().appointment;
                        t.acknowledged.push(appointment.map(|a| a.id).unwrap_or_default());
                        t.acked_at.push(began.elapsed());
                        false
                    }
                    Err(status) => {
                        *t.failures.entry(format!("{:?}", status.code())).or_default() += 1;
                        t.failed_at.push(began.elapsed());
                        let retryable = matches!(
                            status.code(),
                            Code::Unavailable
                                | Code::Aborted
                                | Code::ResourceExhausted
                                | Code::DeadlineExceeded
                                | Code::Cancelled
                                | Code::Unknown
                        );
                        retryable && !stop.load(Ordering::SeqCst)
                    }
                }
            };
            if !retry {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn report(
    app: &TestApp,
    c: &Clinic,
    t: &Tally,
    restart_began: Duration,
    restart_done: Duration,
) {
    let db = app.tenant_client("main", &c.org.database_name).await;
    let ids: Vec<uuid::Uuid> = t.acknowledged.iter().filter_map(|id| id.parse().ok()).collect();
    let found: i64 = db
        .query_one("SELECT count(*) FROM appointment WHERE id = ANY($1)", &[&ids])
        .await
        .unwrap()
        .get(0);
    let rows: i64 = db.query_one("SELECT count(*) FROM appointment", &[]).await.unwrap().get(0);
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let after = |ts: &[Duration], from: Duration| ts.iter().copied().find(|&x| x >= from);
    let last_failure = t.failed_at.iter().copied().max();
    let first_ack_after_restart = after(&t.acked_at, restart_done);
    let recovered = last_failure
        .and_then(|last| after(&t.acked_at, last))
        .or(first_ack_after_restart)
        .unwrap_or_default();

    println!("restart under load: {CLIENTS} clients, {LOAD_SECS} s before and after the restart");
    println!("  bookings acknowledged        {}", t.acknowledged.len());
    println!("  distinct appointments acked  {}", distinct.len());
    println!("  acknowledged and found       {found}");
    println!("  lost (acked - found)         {}", distinct.len() as i64 - found);
    println!("  appointment rows in total    {rows} (more than acked: a booking made twice)");
    println!("  failed calls by code         {:?}", t.failures);
    println!("  INTERNAL                     {}", t.failures.get("Internal").copied().unwrap_or(0));
    println!("  pg_ctl restart -m fast       {:.0} ms", ms(restart_done - restart_began));
    println!(
        "  recovery: first failure +{:.0} ms, last failure +{:.0} ms, first booking after it +{:.0} ms (from the restart's start)",
        t.failed_at.first().map_or(0.0, |f| ms(f.saturating_sub(restart_began))),
        last_failure.map_or(0.0, |f| ms(f.saturating_sub(restart_began))),
        ms(recovered.saturating_sub(restart_began)),
    );
    println!(
        "  first booking after pg_ctl returned: +{:.0} ms",
        first_ack_after_restart.map_or(f64::NAN, |a| ms(a - restart_done))
    );
}
