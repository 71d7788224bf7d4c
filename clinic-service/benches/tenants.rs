//! Many tenants, one connection budget: `TENANTS` clinics (default 1,000; ~7.5 MB of disk each)
//! behind clinic-service's `DB_CONNECTION_BUDGET` of 50.
//!
//! identity-service and clinic-service run as their own processes (release binaries; see
//! `support/stack.rs`) with a central database of their own. One verified user creates every
//! clinic through the public API (so is each one's admin; `TENANTS_SEEDERS` callers at once,
//! default 4). Then, each for `--secs` with `--clients` clients (each its own HTTP/2 channel),
//! `GetMember me` spread over the tenants:
//! - one tenant (the baseline);
//! - uniformly over all of them;
//! - Zipf-like (s = 1): the tenant of rank k is asked with weight 1/k.
//!
//! Then the floor of a call that finds no idle connection, without the service: the same
//! clients connecting to a uniformly picked tenant database, `SELECT 1`, disconnecting
//! (`pgbench -C`-like; `raw conn`).
//!
//! Printed per spread: OK calls, req/s, p50, p99, shed (RESOURCE_EXHAUSTED) and other failures by
//! code. Meanwhile a monitor counts clinic-service's connections in `pg_stat_activity` (by its
//! `application_name`) every 20 ms: the maximum is printed beside the budget. At the end:
//! clinic-service's peak (VmHWM) and current RSS beside 150 MB. Every tenant database and the
//! central one are dropped at the end, also after a panic, and at the start when an earlier run
//! left them (fixed names: `clinic_bench_tenants_*`, `bench_tenants_central`).
//!
//! Run with `cargo build --release --workspace --bins && cargo bench -p clinic-service --bench tenants --
//! [--clients 8] [--secs 10]` (PostgreSQL at `TEST_DATABASE_URL`, on a disk with 20 MB free per
//! tenant).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "support/stack.rs"]
#[allow(dead_code)]
mod stack;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clinic_api::clinic::v1::{
    self as pb, member_service_client::MemberServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use clinic_api::identity::v1::auth_service_client::AuthServiceClient;
use clinic_shared::pg::{connect, parse_url, with_dbname};
use stack::{Service, Tally, bearer, channel};

const BUDGET: usize = 50;
const RSS_TARGET_MB: f64 = 150.0;
const TENANT_PREFIX: &str = "clinic_bench_tenants_";
const CENTRAL: &str = "bench_tenants_central";
const EMAIL: &str = "bench-tenants-admin@example.com";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn args() -> (usize, u64) {
    let (mut clients, mut secs) = (8, 10);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value: u64 = it.next().and_then(|v| v.parse().ok()).expect("a number after the flag");
        match flag.as_str() {
            "--clients" => clients = value as usize,
            "--secs" => secs = value,
            _ => {
                panic!("unknown option {flag}; see the header of clinic-service/benches/tenants.rs")
            }
        }
    }
    (clients, secs)
}

/// Free space where PostgreSQL keeps its data, in MiB (`df`).
async fn free_mib() -> u64 {
    let db = connect(&parse_url(&stack::server_url()).expect("url")).await.expect("connect");
    let row = db.query_one("SHOW data_directory", &[]).await.expect("data_directory");
    let dir: String = row.get(0);
    let out = std::process::Command::new("df").args(["-Pk", &dir]).output().expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1).expect("df line");
    line.split_whitespace().nth(3).and_then(|v| v.parse::<u64>().ok()).expect("df avail") / 1024
}

/// Creates `tenants` clinics with `seeders` callers at once; their ids, in creation order.
async fn seed(clinic: &Service, token: &str, tenants: usize, seeders: usize) -> Vec<String> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..seeders {
        let mut orgs = OrganizationServiceClient::with_interceptor(
            channel(&clinic.url(0)).await,
            bearer(token),
        );
        let next = next.clone();
        tasks.spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tenants {
                    return made;
                }
                let request = pb::CreateOrganizationRequest { name: format!("bench tenants {i}") };
                let org = orgs
                    .create_organization(request)
                    .await
                    .unwrap_or_else(|s| panic!("create tenant {i}: {s:?}"))
                    .into_inner()
                    .organization
                    .expect("organization");
                assert_eq!(org.database_name, format!("{TENANT_PREFIX}{i}"), "the slug mapping");
                if (i + 1).is_multiple_of(50) {
                    let secs = started.elapsed().as_secs_f64();
                    println!("  created {} of {tenants} in {secs:.0} s", i + 1);
                }
                made.push((i, org.id));
            }
        });
    }
    let mut ids = vec![String::new(); tenants];
    while let Some(made) = tasks.join_next().await {
        for (i, id) in made.expect("seeder") {
            ids[i] = id;
        }
    }
    println!("created {tenants} clinics in {:.0} s", started.elapsed().as_secs_f64());
    ids
}

/// Connections ever opened to the bench's tenant databases (`pg_stat_database.sessions`,
/// flushed by PostgreSQL about once a second: read after a pause).
async fn sessions() -> i64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let db = connect(&parse_url(&stack::server_url()).expect("url")).await.expect("connect");
    let sql = "SELECT coalesce(sum(sessions), 0)::int8 FROM pg_stat_database \
               WHERE starts_with(datname, $1)";
    db.query_one(sql, &[&TENANT_PREFIX]).await.expect("sessions").get(0)
}

/// How calls pick their tenant.
#[derive(Clone, Copy, Debug)]
enum Spread {
    One,
    Uniform,
    Zipf,
}

/// xorshift64*: enough for picking tenants, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks tenant indexes for `spread` over `n`.
struct Picker {
    spread: Spread,
    /// Zipf: cumulative weights 1/k, normalised.
    cdf: Arc<Vec<f64>>,
    rng: Rng,
}

impl Picker {
    fn pick(&mut self) -> usize {
        let u = self.rng.next();
        match self.spread {
            Spread::One => 0,
            Spread::Uniform => ((u * self.cdf.len() as f64) as usize).min(self.cdf.len() - 1),
            Spread::Zipf => self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1),
        }
    }
}

fn zipf_cdf(n: usize) -> Vec<f64> {
    let total: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
    let mut acc = 0.0;
    (1..=n)
        .map(|k| {
            acc += 1.0 / k as f64 / total;
            acc
        })
        .collect()
}

type Counter = Arc<AtomicU64>;

/// Samples clinic-service's connections (by application_name) and its RSS; keeps the maxima.
struct Monitor {
    stop: Arc<AtomicBool>,
    connections: Counter,
    rss_kib: Counter,
    samples: Counter,
    task: tokio::task::JoinHandle<()>,
}

impl Monitor {
    async fn start(application_name: String, pid: u32) -> Self {
        let db = connect(&parse_url(&stack::server_url()).expect("url")).await.expect("connect");
        let query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1";
        let statement = db.prepare(query).await.expect("prepare");
        let stop = Arc::new(AtomicBool::new(false));
        let (connections, rss_kib, samples): (Counter, Counter, Counter) = Default::default();
        let task = {
            let (stop, connections, rss_kib, samples) =
                (stop.clone(), connections.clone(), rss_kib.clone(), samples.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let row = db.query_one(&statement, &[&application_name]).await.expect("count");
                    connections.fetch_max(row.get::<_, i64>(0) as u64, Ordering::Relaxed);
                    rss_kib.fetch_max(stack::rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                    samples.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        Monitor { stop, connections, rss_kib, samples, task }
    }

    /// (maximum connections, maximum RSS in KiB, samples) since the last call.
    fn take(&self) -> (u64, u64, u64) {
        (
            self.connections.swap(0, Ordering::Relaxed),
            self.rss_kib.swap(0, Ordering::Relaxed),
            self.samples.swap(0, Ordering::Relaxed),
        )
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("monitor");
    }
}

/// `clients` clients calling GetMember(me) for `secs`, tenants picked by `spread`; prints a row.
async fn run(
    clinic: &Service,
    token: &str,
    ids: &Arc<Vec<String>>,
    spread: Spread,
    (clients, secs): (usize, u64),
    monitor: &Monitor,
) -> f64 {
    let cdf = Arc::new(zipf_cdf(ids.len()));
    let mut made = Vec::new();
    for c in 0..clients {
        let members =
            MemberServiceClient::with_interceptor(channel(&clinic.url(0)).await, bearer(token));
        let rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (c as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9));
        made.push((members, Picker { spread, cdf: cdf.clone(), rng }));
    }
    let sessions_before = sessions().await;
    monitor.take();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (mut members, mut picker) in made {
        let ids = ids.clone();
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let organization_id = ids[picker.pick()].clone();
                let request = pb::GetMemberRequest { organization_id, member_id: "me".into() };
                let started = Instant::now();
                tally.record(started, members.get_member(request).await);
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(one) = tasks.join_next().await {
        tally.merge(one.expect("client"));
    }
    let elapsed = began.elapsed();
    let (connections, rss, samples) = monitor.take();
    let opened = sessions().await - sessions_before;
    tally.ok.sort();
    let rate = tally.ok.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{:<10} {:>8} {rate:>8.0} {:>8.2} {:>8.2} {:>6} {:>11} {opened:>9} {:>9.1} {:>6}  {}",
        format!("{spread:?}"),
        tally.ok.len(),
        tally.ms(0.5),
        tally.ms(0.99),
        tally.shed,
        format!("{connections} ({samples})"),
        rss as f64 / 1024.0,
        stack::load_average(),
        tally.failed(),
    );
    rate
}

/// The baseline of a call that finds no idle connection: what PostgreSQL itself takes to open
/// one (`pgbench -C`): `clients` clients each connecting to a tenant database picked uniformly,
/// running `SELECT 1` and disconnecting, for `secs`; prints a row.
async fn raw_connects(tenants: usize, (clients, secs): (usize, u64)) -> f64 {
    let server = parse_url(&stack::server_url()).expect("url");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let server = server.clone();
        let mut rng = Rng(0x2545_F491_4F6C_DD1D ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9));
        tasks.spawn(async move {
            let mut tally = Tally::default();
            while Instant::now() < deadline {
                let i = ((rng.next() * tenants as f64) as usize).min(tenants - 1);
                let config = with_dbname(&server, &format!("{TENANT_PREFIX}{i}"));
                let started = Instant::now();
                let db = connect(&config).await.expect("connect to a tenant");
                db.simple_query("SELECT 1").await.expect("SELECT 1");
                tally.ok.push(started.elapsed());
            }
            tally
        });
    }
    let mut tally = Tally::default();
    while let Some(one) = tasks.join_next().await {
        tally.merge(one.expect("raw client"));
    }
    tally.ok.sort();
    let rate = tally.ok.len() as f64 / began.elapsed().as_secs_f64();
    println!(
        "{:<10} {:>8} {rate:>8.0} {:>8.2} {:>8.2} {:>6} {:>11} {:>9} {:>9} {:>6}  -",
        "raw conn",
        tally.ok.len(),
        tally.ms(0.5),
        tally.ms(0.99),
        "-",
        "-",
        tally.ok.len(),
        "-",
        stack::load_average(),
    );
    rate
}

#[tokio::main]
async fn main() {
    let (clients, secs) = args();
    let tenants = env_usize("TENANTS", 1000);
    let seeders = env_usize("TENANTS_SEEDERS", 4);
    assert!(tenants > 0 && clients > 0 && secs > 0, "TENANTS, --clients and --secs positive");
    let left = stack::drop_databases(TENANT_PREFIX).await + stack::drop_databases(CENTRAL).await;
    if left > 0 {
        println!("dropped {left} databases an earlier run left");
    }
    let (free, needed) = (free_mib().await, tenants as u64 * 20);
    if free < needed {
        eprintln!(
            "refusing: {free} MiB free where PostgreSQL keeps its data, {needed} MiB wanted \
             ({tenants} tenants x 20 MiB: ~7.5 MB each plus room); lower TENANTS"
        );
        std::process::exit(1);
    }
    // From here on, also on panic: every database this bench made goes.
    let _cleanup = stack::DropDatabases(vec![TENANT_PREFIX.to_owned(), CENTRAL.to_owned()]);

    let plenty = (tenants * 2 + 10).to_string();
    let identity = stack::identity(
        CENTRAL,
        &[("MAX_CLINICS_PER_USER", plenty.clone()), ("CREATE_ORGANIZATION_MAX_PER_USER", plenty)],
    )
    .await;
    let application_name = format!("bench-tenants-{}", std::process::id());
    let clinic = stack::clinic(
        &identity,
        &[
            ("DB_CONNECTION_BUDGET", BUDGET.to_string()),
            ("DB_APPLICATION_NAME", application_name.clone()),
        ],
    )
    .await;
    let monitor = Monitor::start(application_name, clinic.pid()).await;

    let token = stack::sign_up(channel(&identity.url(0)).await, EMAIL).await;
    println!("seeding {tenants} clinics through CreateOrganization, {seeders} callers at once");
    let ids = Arc::new(seed(&clinic, &token, tenants, seeders).await);
    let (seed_connections, seed_rss, _) = monitor.take();
    // A fresh token: seeding may have taken a good part of its lifetime.
    let mut auth = AuthServiceClient::new(channel(&identity.url(0)).await);
    let token = stack::login(&mut auth, EMAIL).await.expect("login");

    println!(
        "\n== GetMember(me) over {tenants} tenants, {clients} clients, {secs} s each; budget \
         {BUDGET} connections; {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>11} {:>9} {:>9} {:>6}  failed by code",
        "spread",
        "ok",
        "req/s",
        "p50 ms",
        "p99 ms",
        "shed",
        "max conns",
        "opened",
        "RSS MiB",
        "load1"
    );
    let shape = (clients, secs);
    let one = run(&clinic, &token, &ids, Spread::One, shape, &monitor).await;
    let uniform = run(&clinic, &token, &ids, Spread::Uniform, shape, &monitor).await;
    let zipf = run(&clinic, &token, &ids, Spread::Zipf, shape, &monitor).await;
    let raw = raw_connects(tenants, shape).await;
    println!(
        "raw conn: connect + SELECT 1 + disconnect on a uniformly picked tenant database, no \
         service (the floor of a call that must open a connection); uniform/raw {:.2}x",
        uniform / raw
    );
    println!(
        "req/s against one tenant: uniform {:.2}x, Zipf {:.2}x   (max conns: most connections \
         seen at once (samples); target <= {BUDGET}; opened: tenant connections opened)",
        uniform / one,
        zipf / one
    );
    println!(
        "while seeding: max conns {seed_connections}, max RSS {:.1} MiB",
        seed_rss as f64 / 1024.0
    );
    let pid = clinic.pid();
    println!(
        "clinic-service RSS: peak (VmHWM) {:.1} MiB, now {:.1} MiB (target <= {RSS_TARGET_MB} MB = {:.0} MiB)",
        stack::rss_kib(pid, "VmHWM:") as f64 / 1024.0,
        stack::rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        RSS_TARGET_MB * 1e6 / 1048576.0
    );
    monitor.stop().await;
    drop(clinic);
    drop(identity);
}
