//! Benchmark: a flood of password work must not take identity-service down.
//!
//! Starts the release binary as its own process (so its memory is measured alone) on a fresh
//! database, seeds 50 verified accounts, then measures in one run:
//! - the baseline: logins one after another on one connection (successful logins per second);
//! - a flood: 1,000 clients, each on its own connection from its own loopback address
//!   (127.1.x.y), send Login with a correct password at the same moment, in several waves;
//! - the same for Register (a new account per call).
//!
//! During each flood it samples the server's resident memory and its health (a separate
//! connection polls `grpc.health.v1.Health/Check`). It prints the peak RSS, every status code
//! returned, the slowest answer against the deadline, and the rate of successful calls during
//! the flood against the sequential rate.
//!
//! Run with `cargo bench -p identity-service --bench flood` (PostgreSQL at `TEST_DATABASE_URL`).
//! `FLOOD_CLIENTS` (1000) and `FLOOD_WAVES` (3) change the flood.

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../../clinic-service/benches/support/stack.rs"]
#[allow(dead_code)]
mod stack;

use stack::rss_kib;
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use clinic_api::identity::v1::{self as pb, auth_service_client::AuthServiceClient};
use clinic_shared::pg::TestDatabase;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpSocket,
    process::{Child, Command},
    sync::Barrier,
};
use tonic::transport::{Channel, Endpoint, Uri};

/// A call with the flood's deadline.
fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(DEADLINE);
    request
}
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const PASSWORD: &str = "correct horse battery staple";
const ACCOUNTS: usize = 50;
const SEQUENTIAL: usize = 40;
const DEADLINE: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `i`-th client address: 127.1.0.1, 127.1.0.2, … (all of 127.0.0.0/8 is loopback).
fn client_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (i / 62_500) as u8,
        ((i / 250) % 250) as u8,
        (i % 250 + 1) as u8,
    ))
}

/// A channel to `server` whose connection comes from `source`.
async fn channel_from(source: IpAddr, server: SocketAddr) -> Channel {
    Endpoint::from_static("http://identity.flood")
        .connect_with_connector(tower::service_fn(move |_: Uri| async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(server).await?;
            stream.set_nodelay(true)?;
            Ok::<_, std::io::Error>(TokioIo::new(stream))
        }))
        .await
        .expect("connect from a loopback address")
}

async fn start_server(db: &TestDatabase) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_identity-service"))
        .env("APP_MODE", "development")
        .env("IDENTITY_ADDR", "127.0.0.1:0")
        .env("IDENTITY_INTERNAL_ADDR", "127.0.0.1:0")
        .env("IDENTITY_DATABASE_URL", db.url())
        .env("MAIL_OUTBOX_DIR", std::env::temp_dir().join("identity-flood-outbox"))
        .env("SHUTDOWN_GRACE_SECS", "0")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start identity-service");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = lines.next_line().await.expect("stdout").expect("listening line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, line.rsplit(' ').next().expect("address").parse().expect("address"))
}

/// What one flood saw.
#[derive(Default)]
struct Outcome {
    codes: BTreeMap<String, usize>,
    ok: usize,
    slowest: Duration,
    elapsed: Duration,
    peak_rss_kib: u64,
    health_failures: usize,
    health_checks: usize,
}

/// Sends `clients × waves` calls: in each wave every client calls at the same moment.
async fn flood<F, Fut>(
    server: SocketAddr,
    pid: u32,
    health: HealthClient<Channel>,
    clients: usize,
    waves: usize,
    call: F,
) -> Outcome
where
    F: Fn(AuthServiceClient<Channel>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let mut channels = Vec::with_capacity(clients);
    for i in 0..clients {
        channels.push(channel_from(client_ip(i), server).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let prober = {
        let stop = stop.clone();
        let mut health = health;
        tokio::spawn(async move {
            let (mut checks, mut failures) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let mut request = tonic::Request::new(HealthCheckRequest::default());
                request.set_timeout(Duration::from_secs(1));
                let serving = health.check(request).await.is_ok_and(|r| r.into_inner().status == 1);
                checks += 1;
                failures += usize::from(!serving);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (checks, failures)
        })
    };

    let call = Arc::new(call);
    let mut outcome = Outcome::default();
    let mut elapsed = Duration::ZERO;
    for wave in 0..waves {
        // Every client waits at the barrier, so the wave's calls leave together.
        let barrier = Arc::new(Barrier::new(clients));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, channel) in channels.iter().enumerate() {
            let (call, barrier, channel) = (call.clone(), barrier.clone(), channel.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let result = call(AuthServiceClient::new(channel), wave * clients + i).await;
                (result.map_err(|s| s.code()), started, Instant::now())
            });
        }
        let (mut first, mut last) = (None::<Instant>, None::<Instant>);
        while let Some(joined) = tasks.join_next().await {
            let (result, started, ended) = joined.expect("client task");
            first = Some(first.map_or(started, |f| f.min(started)));
            last = Some(last.map_or(ended, |l| l.max(ended)));
            let code = match result {
                Ok(()) => "OK".to_owned(),
                Err(code) => format!("{code:?}"),
            };
            *outcome.codes.entry(code).or_default() += 1;
            outcome.ok += usize::from(result.is_ok());
            outcome.slowest = outcome.slowest.max(ended - started);
        }
        if let (Some(first), Some(last)) = (first, last) {
            elapsed += last - first;
        }
    }
    outcome.elapsed = elapsed;
    stop.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let (checks, failures) = prober.await.expect("prober");
    outcome.health_checks = checks;
    outcome.health_failures = failures;
    outcome.peak_rss_kib = peak.load(Ordering::Relaxed);
    outcome
}

fn report(label: &str, o: &Outcome, sequential_rate: f64) {
    let rate = o.ok as f64 / o.elapsed.as_secs_f64();
    println!("\n== {label}");
    println!("answers by code            {:?}", o.codes);
    println!(
        "slowest answer             {:.0} ms (deadline {} s)",
        o.slowest.as_secs_f64() * 1e3,
        DEADLINE.as_secs()
    );
    println!(
        "peak RSS during the flood  {:.1} MiB (target < 256 MiB)",
        o.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "health                     {} of {} checks not SERVING",
        o.health_failures, o.health_checks
    );
    println!(
        "successful calls           {} in {:.2} s = {:.1}/s, {:.2}x the sequential rate (target >= 0.5x)",
        o.ok,
        o.elapsed.as_secs_f64(),
        rate,
        rate / sequential_rate
    );
}

#[tokio::main]
async fn main() {
    let clients = env_usize("FLOOD_CLIENTS", 1000);
    let waves = env_usize("FLOOD_WAVES", 3);
    let db = TestDatabase::create(&TestDatabase::server(), "identity_flood").await;
    let (child, server) = start_server(&db).await;
    let pid = child.id().expect("pid");
    let health = HealthClient::new(channel_from(client_ip(0), server).await);

    // 50 verified accounts, registered from addresses of their own (registration is limited
    // per client).
    let mut emails = Vec::new();
    for i in 0..ACCOUNTS {
        let mut auth = AuthServiceClient::new(channel_from(client_ip(clients + i), server).await);
        let email = format!("flood-{i}@example.com");
        let request = pb::RegisterRequest {
            email: email.clone(),
            name: format!("flood {i}"),
            password: PASSWORD.into(),
        };
        let code = auth.register(request).await.expect("register").into_inner().verification_code;
        let request = pb::VerifyEmailRequest { email: email.clone(), code };
        auth.verify_email(request).await.expect("verify");
        emails.push(email);
    }
    let emails = Arc::new(emails);

    // Baseline: one login after another.
    let mut auth = AuthServiceClient::new(channel_from(client_ip(0), server).await);
    let started = Instant::now();
    for i in 0..SEQUENTIAL {
        let request =
            pb::LoginRequest { email: emails[i % ACCOUNTS].clone(), password: PASSWORD.into() };
        auth.login(request).await.expect("sequential login");
    }
    let login_rate = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();
    // Registration is limited per client: each sequential registration comes from an address
    // of its own, connected before the clock starts.
    let mut registrars = Vec::new();
    for i in 0..SEQUENTIAL {
        let channel = channel_from(client_ip(clients + ACCOUNTS + i), server).await;
        registrars.push(AuthServiceClient::new(channel));
    }
    let started = Instant::now();
    for (i, auth) in registrars.iter_mut().enumerate() {
        let request = pb::RegisterRequest {
            email: format!("seq-{i}@example.com"),
            name: format!("seq {i}"),
            password: PASSWORD.into(),
        };
        auth.register(request).await.expect("sequential register");
    }
    let register_rate = SEQUENTIAL as f64 / started.elapsed().as_secs_f64();
    println!("\n== baseline (sequential, one client)");
    println!("login     {login_rate:.1}/s");
    println!("register  {register_rate:.1}/s");
    println!("RSS after the baseline {:.1} MiB", rss_kib(pid, "VmRSS:") as f64 / 1024.0);

    let logins = {
        let emails = emails.clone();
        flood(server, pid, health.clone(), clients, waves, move |mut auth, n| {
            let email = emails[n % ACCOUNTS].clone();
            async move {
                let request = pb::LoginRequest { email, password: PASSWORD.into() };
                auth.login(with_deadline(request)).await.map(drop)
            }
        })
        .await
    };
    report(
        &format!(
            "{clients} parallel Login x {waves} waves, correct passwords, {ACCOUNTS} accounts"
        ),
        &logins,
        login_rate,
    );

    let registrations = flood(server, pid, health, clients, waves, |mut auth, n| async move {
        let request = pb::RegisterRequest {
            email: format!("new-{n}@example.com"),
            name: format!("new {n}"),
            password: PASSWORD.into(),
        };
        auth.register(with_deadline(request)).await.map(drop)
    })
    .await;
    report(
        &format!("{clients} parallel Register x {waves} waves, new accounts"),
        &registrations,
        register_rate,
    );
    println!(
        "\npeak RSS over the server's life (VmHWM) {:.1} MiB",
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    drop(child);
}
