//! Lost database connections: the service's own backends (those on this test's database, never
//! the test's own connections) are terminated with `pg_terminate_backend`, the way a PostgreSQL
//! restart or failover ends them. A call caught mid-query answers UNAVAILABLE, and the calls
//! after it succeed because the pool discards the broken connections.

use std::time::{Duration, Instant};

use clinic_shared::pg::{TestDatabase, connect, with_dbname};
use tokio_postgres::Client;
use tonic::Code;

use crate::helpers::{PASSWORD, TestApp, spawn_app};

/// A second connection of the test to its database, to watch and end the service's backends.
async fn monitor(app: &TestApp) -> Client {
    let name: String =
        app.db.query_one("SELECT current_database()", &[]).await.expect("name").get(0);
    connect(&with_dbname(&TestDatabase::server(), &name)).await.expect("connect")
}

/// The service's backends: on the test's database, and neither the test's `db` nor `monitor`.
const SERVICE_BACKENDS: &str = "FROM pg_stat_activity WHERE datname = current_database() \
     AND pid <> pg_backend_pid() AND pid <> $1";

async fn test_pid(app: &TestApp) -> i32 {
    app.db.query_one("SELECT pg_backend_pid()", &[]).await.expect("pid").get(0)
}

#[tokio::test]
async fn a_call_whose_backend_is_terminated_answers_unavailable() {
    let app = spawn_app().await;
    let monitor = monitor(&app).await;
    let blocker = test_pid(&app).await;
    // Holds registrations at the user table until their backend is terminated.
    app.db.batch_execute("BEGIN; LOCK TABLE app_user IN EXCLUSIVE MODE").await.expect("lock");
    let auth = app.auth.clone();
    let call = tokio::spawn(async move {
        let mut auth = auth;
        let request = clinic_api::identity::v1::RegisterRequest {
            email: "caught@example.com".into(),
            name: "caught".into(),
            password: PASSWORD.into(),
        };
        auth.register(request).await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid: i32 = loop {
        // The registration's INSERT (the janitor's DELETE may be waiting for the lock too).
        let sql = format!(
            "SELECT pid {SERVICE_BACKENDS} AND wait_event_type = 'Lock' \
             AND query LIKE 'INSERT INTO app_user%' LIMIT 1"
        );
        if let Some(row) = monitor.query_opt(&sql, &[&blocker]).await.expect("activity") {
            break row.get(0);
        }
        assert!(Instant::now() < deadline, "the call never waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    monitor.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminate");
    let status = call.await.expect("join").expect_err("the call lost its connection");
    app.db.batch_execute("ROLLBACK").await.expect("unlock");

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(!status.message().to_lowercase().contains("terminat"), "{status:?}");
    app.register("caught@example.com", "caught", PASSWORD).await.expect("retried registration");
}

#[tokio::test]
async fn calls_after_every_backend_was_terminated_succeed() {
    let app = spawn_app().await;
    let user = app.verified_user("recovering").await;
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (app_auth, email) = (app.auth.clone(), user.email.clone());
        warm.spawn(async move {
            let request =
                clinic_api::identity::v1::LoginRequest { email, password: PASSWORD.into() };
            app_auth.clone().login(request).await
        });
    }
    while let Some(result) = warm.join_next().await {
        result.expect("join").expect("warm-up login");
    }

    let monitor = monitor(&app).await;
    let sql = format!("SELECT count(pg_terminate_backend(pid)) {SERVICE_BACKENDS}");
    let terminated: i64 =
        monitor.query_one(&sql, &[&test_pid(&app).await]).await.expect("terminate").get(0);
    assert!(terminated > 0);
    for _ in 0..4 {
        app.login(&user.email, &user.password).await.expect("login after the outage");
    }
}
