//! PostgreSQL over verified TLS, against a private cluster started with `ssl=on` and a
//! certificate made here: TLS exactly where the URL asks for it, verified against the CA.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use clinic_shared::pg::{self, PgError, PgTls};

use clinic_shared::tls::testing::{Ca, TempDir};

/// A PostgreSQL cluster of its own in a temporary directory, stopped and removed on drop
/// (also when the test fails).
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// Removed after the server has stopped (fields drop after `drop` runs).
    _dir: TempDir,
}

impl Cluster {
    /// initdb and start with TLS on, presenting `cert_pem`/`key_pem`.
    fn start(dir: TempDir, cert_pem: &str, key_pem: &str) -> Self {
        let bin = pg_bin_dir();
        let data = dir.path().join("data");
        let cert = dir.write("server.crt", cert_pem);
        let key = dir.write("server.key", key_pem);
        own_for_postgres(dir.path(), &[&cert, &key]);
        run(as_db_user(&bin.join("initdb"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data));
        let port = free_port();
        let options = format!(
            "-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off -c ssl=on \
             -c ssl_cert_file={cert} -c ssl_key_file={key}",
            dir = dir.path().display(),
            cert = cert.display(),
            key = key.display(),
        );
        let cluster = Self { bin, data, port, _dir: dir };
        // -w: returns once the server accepts connections.
        run(as_db_user(&cluster.bin.join("pg_ctl"))
            .args(["-w", "-t", "30", "-o", &options, "-l"])
            .arg(cluster.data.with_file_name("server.log"))
            .arg("-D")
            .arg(&cluster.data)
            .arg("start"));
        cluster
    }

    fn url(&self, params: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres{params}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_db_user(&self.bin.join("pg_ctl"))
            .args(["-m", "immediate", "-w", "-D"])
            .arg(&self.data)
            .arg("stop")
            .output();
    }
}

/// The newest installed PostgreSQL's binaries.
fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql")
        .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|bin| bin.parent().and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok()));
    dirs.pop().expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    String::from_utf8_lossy(&run(Command::new("id").arg("-u"))).trim() == "0"
}

/// `program`, run as the `postgres` system user when we are root (initdb refuses root).
fn as_db_user(program: &Path) -> Command {
    let mut command = if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.current_dir("/");
    command
}

/// Hands the directory to the user the server runs as; the key must be theirs, mode 0600.
fn own_for_postgres(dir: &Path, files: &[&Path]) {
    use std::os::unix::fs::PermissionsExt;
    if is_root() {
        let id = |flag| {
            let out = run(Command::new("id").args([flag, "postgres"]));
            String::from_utf8_lossy(&out).trim().parse::<u32>().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        for path in std::iter::once(dir).chain(files.iter().copied()) {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
        }
    }
    for file in files {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

fn run(command: &mut Command) -> Vec<u8> {
    let output = command.output().unwrap();
    assert!(output.status.success(), "{command:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether the session of `client` is encrypted, as the server sees it.
async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    let row = client
        .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn tls_only_where_the_url_asks_and_always_verified() {
    let dir = TempDir::new();
    let ca = Ca::new("database CA");
    let leaf = ca.issue("db", &["db.internal", "127.0.0.1"]);
    let ca_file = dir.write("ca.pem", &ca.pem());
    let other_ca = dir.write("other-ca.pem", &Ca::new("other CA").pem());
    let cluster = Cluster::start(dir, &leaf.cert_pem, &leaf.key_pem);

    let verified = PgTls::from_ca_file(&ca_file).unwrap();
    let untrusting = PgTls::from_ca_file(&other_ca).unwrap();
    let require = cluster.url("?sslmode=require");
    let config = |url: &str| pg::parse_url(url).unwrap();

    // Verified TLS, one connection and through a pool.
    let client = pg::connect_with_tls(&config(&require), &verified).await.unwrap();
    assert!(uses_tls(&client).await);
    let pool = pg::pool_with_tls(config(&require), 2, Duration::from_secs(5), &verified).unwrap();
    assert!(uses_tls(&pool.get().await.unwrap()).await);
    pg::ensure_database_with_tls(&config(&require), &verified).await.unwrap();
    // On a stream the caller opened, as clinic-service does with its own sockets.
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", cluster.port)).await.unwrap();
    let raw = verified.apply(&config(&require)).unwrap();
    let (client, connection) =
        raw.connect_raw(stream, verified.tls_connect("127.0.0.1")).await.unwrap();
    tokio::spawn(connection);
    assert!(uses_tls(&client).await);

    // Plain URLs (sslmode prefer, given or by default) and disable stay plaintext, CA or not.
    for params in ["", "?sslmode=prefer", "?sslmode=disable"] {
        for tls in [&verified, &PgTls::none()] {
            let client = pg::connect_with_tls(&config(&cluster.url(params)), tls).await.unwrap();
            assert!(!uses_tls(&client).await, "{params} with {tls:?}");
        }
    }
    let client = pg::connect(&config(&cluster.url(""))).await.unwrap();
    assert!(!uses_tls(&client).await);

    // A server the CA did not vouch for, or a host name the certificate does not carry.
    let error = pg::connect_with_tls(&config(&require), &untrusting).await.unwrap_err();
    assert!(matches!(error, PgError::Postgres(_)), "{error}");
    let by_other_name = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres \
                                 sslmode=require",
        cluster.port
    );
    assert!(pg::connect_with_tls(&config(&by_other_name), &verified).await.is_err());

    // TLS asked for without a CA: refused before connecting, never unverified.
    let error = pg::connect(&config(&require)).await.unwrap_err();
    assert!(matches!(error, PgError::TlsWithoutCa), "{error}");
    let error = pg::pool(config(&require), 2, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(error, PgError::TlsWithoutCa), "{error}");
    // And the connector itself refuses, for callers that skip PgTls::apply (connect_raw).
    let Err(error) = config(&require).connect(PgTls::none()).await else {
        panic!("connected without a CA");
    };
    let cause = std::error::Error::source(&error).map(ToString::to_string);
    assert!(cause.is_some_and(|c| c.contains("no CA is configured")), "{error:?}");
}

/// `deploy/bootstrap.sql` (run by scripts/test.sh) makes roles that pass; the superuser does not.
#[tokio::test]
async fn only_unprivileged_roles_pass_the_run_time_check() {
    use clinic_shared::pg::{PgError, TestDatabase, connect, refuse_privileged, with_dbname};
    let server = with_dbname(&TestDatabase::server(), "postgres");
    let superuser = connect(&server).await.unwrap();
    assert!(matches!(refuse_privileged(&superuser).await, Err(PgError::Privileged(_))));
    for role in ["clinic_identity", "clinic_service"] {
        let mut config = server.clone();
        config.user(role);
        let client = connect(&config)
            .await
            .unwrap_or_else(|e| panic!("{role}: run deploy/bootstrap.sql first ({e})"));
        refuse_privileged(&client).await.unwrap_or_else(|e| panic!("{role}: {e}"));
    }
}
