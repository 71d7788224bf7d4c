//! The stack as its own processes, for benchmarks that measure a service alone (its memory, its
//! connections, its latency while another process is loaded): the release binaries next to the
//! benchmark's own directory (`target/release`, built by `cargo build --release --workspace --bins`), in
//! development mode on free ports, and a central database of a fixed name, dropped again at the
//! end (and at the start, if an earlier run left it).
//!
//! Also what such benchmarks share: a verified user signed up through the public API, a tally of
//! call latencies by status code, and the resident memory of a process.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use clinic_api::identity::v1::{self as ipb, auth_service_client::AuthServiceClient};
use clinic_shared::pg::{connect, parse_url, with_dbname};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery staple 42";
pub const SERVICE_TOKEN: &str = "bench-service-token";

/// The PostgreSQL server of the tests (`TEST_DATABASE_URL`, default 127.0.0.1:5432).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A URL of `server_url()`'s server naming database `name`.
pub fn database_url(name: &str) -> String {
    let base = server_url();
    let root = base.rsplit_once('/').map_or(base.as_str(), |(root, _)| root);
    format!("{root}/{name}")
}

async fn admin() -> tokio_postgres::Client {
    let server = parse_url(&server_url()).expect("TEST_DATABASE_URL");
    connect(&with_dbname(&server, "postgres")).await.expect("connect to the server")
}

/// Drops every database whose name starts with `prefix` (what an earlier run left, or this
/// run's); returns how many. Eight at a time: each DROP DATABASE waits for a checkpoint, which
/// concurrent drops share (one at a time, 1,000 tenants take a quarter of an hour).
pub async fn drop_databases(prefix: &str) -> usize {
    let rows = admin()
        .await
        .query("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", &[&prefix])
        .await
        .expect("list databases");
    let names: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let count = names.len();
    let names = std::sync::Arc::new(std::sync::Mutex::new(names));
    let mut droppers = tokio::task::JoinSet::new();
    for _ in 0..8.min(count) {
        let names = names.clone();
        droppers.spawn(async move {
            let admin = admin().await;
            loop {
                let Some(name) = names.lock().expect("names").pop() else { return };
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                admin.batch_execute(&sql).await.expect("drop database");
            }
        });
    }
    while let Some(done) = droppers.join_next().await {
        done.expect("dropper");
    }
    count
}

/// Drops the databases named by these prefixes when dropped, also on panic (on a thread of its
/// own: the runtime may be gone).
pub struct DropDatabases(pub Vec<String>);

impl Drop for DropDatabases {
    fn drop(&mut self) {
        let prefixes = std::mem::take(&mut self.0);
        let joined = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            runtime.expect("runtime").block_on(async {
                let mut dropped = 0;
                for prefix in &prefixes {
                    dropped += drop_databases(prefix).await;
                }
                eprintln!("dropped {dropped} databases ({})", prefixes.join(", "));
            })
        })
        .join();
        if joined.is_err() {
            eprintln!("could not drop the databases named {:?}*: drop them by hand", self.0);
        }
    }
}

/// A release binary of the workspace: beside this benchmark's directory (`target/release/deps`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --release --workspace --bins` first (same CARGO_TARGET_DIR)",
        path.display()
    );
    path
}

/// A service process; killed when dropped.
pub struct Service {
    pub child: Child,
    /// The addresses it printed, in order (identity: public, internal).
    pub addrs: Vec<SocketAddr>,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("pid")
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.addrs[i])
    }
}

async fn spawn(name: &str, env: &[(&str, String)], lines: usize) -> Service {
    let mut command = Command::new(binary(name));
    command
        .env("APP_MODE", "development")
        .env("SERVICE_TOKEN", SERVICE_TOKEN)
        .env("SHUTDOWN_GRACE_SECS", "0")
        // No spare databases: they would outlive the bench's dropped central database.
        .env("SPARE_DATABASES", "0")
        .env("RUST_LOG", "error,tokio_postgres=error")
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addrs = Vec::new();
    for _ in 0..lines {
        let line = out.next_line().await.expect("stdout").unwrap_or_else(|| {
            panic!("{name} stopped before listening (its stderr is above)");
        });
        addrs.push(line.rsplit(' ').next().expect("address").parse().expect("address"));
    }
    tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
    Service { child, addrs }
}

/// identity-service on free ports with its central database `central` (created by it).
pub async fn identity(central: &str, env: &[(&str, String)]) -> Service {
    let outbox = std::env::temp_dir().join(format!("bench-outbox-{}", std::process::id()));
    let mut all = vec![
        ("IDENTITY_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_INTERNAL_ADDR", "127.0.0.1:0".to_owned()),
        ("IDENTITY_DATABASE_URL", database_url(central)),
        ("MAIL_OUTBOX_DIR", outbox.display().to_string()),
    ];
    all.extend(env.iter().cloned());
    spawn("identity-service", &all, 2).await
}

/// clinic-service on a free port, reaching `identity`'s internal listener.
pub async fn clinic(identity: &Service, env: &[(&str, String)]) -> Service {
    let mut all =
        vec![("CLINIC_ADDR", "127.0.0.1:0".to_owned()), ("IDENTITY_URL", identity.url(1))];
    all.extend(env.iter().cloned());
    spawn("clinic-service", &all, 1).await
}

pub async fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).expect("url").connect().await.expect("connect")
}

/// Registers and verifies `email` (development mode answers the code); its access token.
pub async fn sign_up(identity: Channel, email: &str) -> String {
    let mut auth = AuthServiceClient::new(identity);
    let name = email.split('@').next().expect("local part").to_owned();
    let request =
        ipb::RegisterRequest { email: email.to_owned(), name, password: PASSWORD.to_owned() };
    let code = auth.register(request).await.expect("register").into_inner().verification_code;
    let request = ipb::VerifyEmailRequest { email: email.to_owned(), code };
    auth.verify_email(request).await.expect("verify");
    login(&mut auth, email).await.expect("login")
}

/// A login with the right password; the access token.
pub async fn login(
    auth: &mut AuthServiceClient<Channel>,
    email: &str,
) -> Result<String, tonic::Status> {
    let request = ipb::LoginRequest { email: email.to_owned(), password: PASSWORD.to_owned() };
    let tokens = auth.login(request).await?.into_inner().tokens.expect("tokens");
    Ok(tokens.access_token)
}

/// `authorization: Bearer <token>` on every call.
pub fn bearer(
    token: &str,
) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<> {
    let value: tonic::metadata::MetadataValue<_> =
        format!("Bearer {token}").parse().expect("header value");
    move |mut request: tonic::Request<()>| {
        request.metadata_mut().insert("authorization", value.clone());
        Ok(request)
    }
}

/// What clients saw: latencies of OK calls, RESOURCE_EXHAUSTED (shed) and other codes apart.
#[derive(Default)]
pub struct Tally {
    pub ok: Vec<Duration>,
    pub shed: u64,
    pub failed: BTreeMap<String, u64>,
    /// The message of the first RESOURCE_EXHAUSTED (which limit shed it).
    pub first_shed: Option<String>,
}

impl Tally {
    pub fn record<T>(&mut self, started: Instant, result: Result<T, tonic::Status>) {
        match result {
            Ok(_) => self.ok.push(started.elapsed()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                self.shed += 1;
                self.first_shed.get_or_insert_with(|| s.message().to_owned());
            }
            Err(s) => *self.failed.entry(format!("{:?}", s.code())).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        self.ok.extend(other.ok);
        self.shed += other.shed;
        self.first_shed = self.first_shed.take().or(other.first_shed);
        for (code, n) in other.failed {
            *self.failed.entry(code).or_default() += n;
        }
    }

    /// The `q` quantile of the OK latencies, in ms (call after sorting).
    pub fn ms(&self, q: f64) -> f64 {
        let i = ((self.ok.len().saturating_sub(1)) as f64 * q).round() as usize;
        self.ok.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    /// Failures by code, and which limit shed calls, if any did.
    pub fn failed(&self) -> String {
        let failed =
            if self.failed.is_empty() { "-".to_owned() } else { format!("{:?}", self.failed) };
        match &self.first_shed {
            Some(message) => format!("{failed} (shed: {message:?})"),
            None => failed,
        }
    }
}

/// A field of /proc/PID/status in KiB (`VmRSS:`, `VmHWM:`).
pub fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The 1-minute load average, to print beside a figure measured on a shared machine.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
