//! Abuse limits across processes: two identity-service binaries against one central database
//! enforce one limit, a restart forgets nothing, and a setting that would weaken a limit is a
//! start-up error.

use std::{process::Stdio, time::Duration};

use clinic_api::identity::v1::{self as pb, auth_service_client::AuthServiceClient};
use clinic_shared::pg::TestDatabase;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::{Code, transport::Channel};

/// A running identity-service binary.
struct Replica {
    _child: Child,
    auth: AuthServiceClient<Channel>,
}

fn command(db: &TestDatabase, extra: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_identity-service"));
    command
        .env("APP_MODE", "development")
        .env("IDENTITY_ADDR", "127.0.0.1:0")
        .env("IDENTITY_INTERNAL_ADDR", "127.0.0.1:0")
        .env("IDENTITY_DATABASE_URL", db.url())
        .env("MAIL_OUTBOX_DIR", std::env::temp_dir().join("identity-replica-outbox"))
        .env("SHUTDOWN_GRACE_SECS", "0")
        .env("RUST_LOG", "warn")
        .envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn replica(db: &TestDatabase, extra: &[(&str, &str)]) -> Replica {
    let mut child =
        command(db, extra).stderr(Stdio::inherit()).spawn().expect("start identity-service");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("identity-service did not start in time")
        .expect("read stdout")
        .expect("identity-service exited before listening");
    // Keep reading, so the process never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let address = line.rsplit(' ').next().expect("address");
    let channel =
        Channel::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
    Replica { _child: child, auth: AuthServiceClient::new(channel) }
}

async fn wrong_login(replica: &Replica) -> Code {
    let request =
        pb::LoginRequest { email: "ann@example.com".into(), password: "wrong password".into() };
    replica.auth.clone().login(request).await.expect_err("wrong password").code()
}

#[tokio::test]
async fn two_replicas_enforce_one_limit_that_survives_a_restart() {
    let db = TestDatabase::create(&TestDatabase::server(), "identity_replicas").await;
    let limits = [("LOGIN_MAX_FAILURES_PER_ACCOUNT", "4"), ("LOGIN_MAX_FAILURES_PER_PEER", "1000")];
    let a = replica(&db, &limits).await;
    let b = replica(&db, &limits).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        codes.push(wrong_login(if i % 2 == 0 { &a } else { &b }).await);
    }
    assert_eq!(codes, vec![Code::Unauthenticated; 4], "4 attempts evaluated, across both");
    assert_eq!(wrong_login(&a).await, Code::ResourceExhausted);
    assert_eq!(wrong_login(&b).await, Code::ResourceExhausted);

    drop((a, b));
    let restarted = replica(&db, &limits).await;
    assert_eq!(wrong_login(&restarted).await, Code::ResourceExhausted, "forgotten on restart");
}

#[tokio::test]
async fn settings_that_would_weaken_a_limit_or_transport_refuse_to_start() {
    let db = TestDatabase::create(&TestDatabase::server(), "identity_bad_limits").await;
    for (name, value) in [
        ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
        ("REGISTER_MAX_PER_PEER", "-1"),
        ("THROTTLE_WINDOW_SECS", "0"),
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.example"),
        ("HASH_WORKERS", "0"),
        ("MAX_CONCURRENT_REQUESTS", "0"),
        ("MAX_CLINICS_PER_USER", "lots"),
        // Production serves TLS unless told that TLS ends in front of the service, and sends
        // real mail.
        ("APP_MODE", "production"),
        ("TLS_DISABLED", "true"),
        ("TLS_CLIENT_CA_FILE", "/etc/clinic/ca.pem"),
    ] {
        // Production also needs a signing key; its file is only read once the rest is valid.
        let production = [("APP_MODE", "production"), ("JWT_PRIVATE_KEY_FILE", "/nonexistent")];
        let env: Vec<(&str, &str)> = match name {
            "APP_MODE" => production.to_vec(),
            "TLS_DISABLED" => [(name, value)].into_iter().chain(production).collect(),
            _ => vec![(name, value)],
        };
        let output = tokio::time::timeout(Duration::from_secs(30), command(&db, &env).output())
            .await
            .expect("exits promptly")
            .expect("run identity-service");
        assert!(!output.status.success(), "{name}={value} must not start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let named = match name {
            "APP_MODE" => "TLS_CERT_FILE",
            "TLS_DISABLED" => "SMTP_URL",
            _ => name,
        };
        assert!(stderr.contains(named), "{name}={value}: error does not name {named}: {stderr}");
    }
}
