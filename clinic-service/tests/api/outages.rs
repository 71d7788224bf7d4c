//! Lost database connections: the service's own backends (found by this test's unique
//! `application_name`, never anyone else's) are terminated with `pg_terminate_backend`, the way
//! a PostgreSQL restart or failover ends them. A call caught mid-query answers UNAVAILABLE (the
//! client may retry), nothing internal leaks, and the calls after it succeed because the pool
//! discards the broken connections.

use std::time::{Duration, Instant};

use chrono::{DurationRound, Utc};
use clinic_api::clinic::v1::{self as pb, appointment_service_client::AppointmentServiceClient};
use tokio_postgres::Client;
use tonic::Code;

use crate::helpers::{Authed, Clinic, TestApp, bearer, first_server_url, spawn_app};

fn appointments(app: &TestApp, token: &str) -> AppointmentServiceClient<Authed> {
    AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(token))
}

fn booking(c: &Clinic, hours_ahead: i64) -> pb::CreateAppointmentRequest {
    let start = (Utc::now() + chrono::Duration::hours(hours_ahead))
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("trunc");
    pb::CreateAppointmentRequest {
        organization_id: c.org.id.clone(),
        patient_id: "me".into(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(prost_types::Timestamp { seconds: start.timestamp(), nanos: 0 }),
        ..Default::default()
    }
}

fn list(c: &Clinic) -> pb::ListAppointmentsRequest {
    pb::ListAppointmentsRequest { organization_id: c.org.id.clone(), ..Default::default() }
}

/// A connection of the test itself (default application_name), to watch and end the service's.
async fn monitor() -> Client {
    let config = clinic_shared::pg::parse_url(&first_server_url()).expect("url");
    clinic_shared::pg::connect(&config).await.expect("connect")
}

/// The pid of a booking's backend of `application_name` waiting for a lock, once there is one.
async fn blocked_backend(monitor: &Client, application_name: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = monitor
            .query_opt(
                "SELECT pid FROM pg_stat_activity \
                 WHERE application_name = $1 AND wait_event_type = 'Lock' \
                 AND query LIKE 'INSERT INTO appointment %' LIMIT 1",
                &[&application_name],
            )
            .await
            .expect("pg_stat_activity");
        if let Some(row) = row {
            return row.get(0);
        }
        assert!(Instant::now() < deadline, "the call never waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Terminates every backend of `application_name`; returns how many there were.
async fn terminate_all(monitor: &Client, application_name: &str) -> i64 {
    monitor
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("terminate")
        .get(0)
}

#[tokio::test]
async fn a_call_whose_backend_is_terminated_answers_unavailable() {
    let app = spawn_app().await;
    let c = app.clinic("outage").await;
    let mut api = appointments(&app, &c.patient.token);
    api.create_appointment(booking(&c, 24)).await.expect("warm-up booking");

    // Holds the booking inside its INSERT until its backend is terminated.
    let blocker = app.tenant_client("main", &c.org.database_name).await;
    blocker.batch_execute("BEGIN; LOCK TABLE appointment IN EXCLUSIVE MODE").await.expect("lock");
    let mut caught = api.clone();
    let request = booking(&c, 48);
    let call = tokio::spawn(async move { caught.create_appointment(request).await });
    let monitor = monitor().await;
    let pid = blocked_backend(&monitor, &app.config.application_name).await;
    monitor.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.expect("terminate");
    let status = call.await.expect("join").expect_err("the booking lost its connection");
    blocker.batch_execute("ROLLBACK").await.expect("unlock");

    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    let message = status.message().to_lowercase();
    assert!(!message.contains("terminat") && !message.contains("sql"), "{message}");
    // The retry books.
    api.create_appointment(booking(&c, 48)).await.expect("retried booking");
}

#[tokio::test]
async fn calls_after_every_backend_was_terminated_succeed() {
    let app = spawn_app().await;
    let c = app.clinic("recovery").await;
    let mut api = appointments(&app, &c.patient.token);
    // Several connections in the pool at once.
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let mut api = api.clone();
        let request = list(&c);
        warm.spawn(async move { api.list_appointments(request).await });
    }
    while let Some(result) = warm.join_next().await {
        result.expect("join").expect("warm-up list");
    }

    let monitor = monitor().await;
    assert!(terminate_all(&monitor, &app.config.application_name).await > 0);
    for hours in 1..=4 {
        api.list_appointments(list(&c)).await.expect("list after the outage");
        api.create_appointment(booking(&c, 24 * hours)).await.expect("book after the outage");
    }
}
