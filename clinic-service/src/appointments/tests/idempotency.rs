//! Idempotent booking: a retry with the same `request_id` returns the first booking, also when
//! the retries race; the same key with other parameters is refused; keys expire after 24 hours.

use std::sync::Arc;

use chrono::Duration;
use uuid::Uuid;

use super::{Tenant, booking, hours_ahead, trail};
use crate::appointments::{
    error::Error,
    requests::{CreateAppointment, REQUEST_ID_TTL},
    service,
};

fn keyed(req: CreateAppointment, key: Uuid) -> CreateAppointment {
    CreateAppointment { request_id: Some(key), ..req }
}

#[tokio::test]
async fn a_retry_returns_the_first_booking() {
    let mut t = Tenant::new().await;
    let (doctor, patient) = (t.doctor().await, t.patient().await);
    let req =
        keyed(booking(patient.member_id, doctor.member_id, hours_ahead(5), 30), Uuid::new_v4());
    let first = service::create(&mut t.client, &patient, &req, &mut trail(&patient)).await.unwrap();
    let again = service::create(&mut t.client, &patient, &req, &mut trail(&patient)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(t.count("appointment").await, 1);
    assert_eq!(t.count("appointment_status_history").await, 1);

    // Without a key, the same request is a new booking (and overlaps the first).
    let unkeyed = CreateAppointment { request_id: None, ..req };
    assert!(matches!(
        service::create(&mut t.client, &patient, &unkeyed, &mut trail(&patient)).await,
        Err(Error::Overlap(_))
    ));
}

#[tokio::test]
async fn concurrent_retries_book_once() {
    let t = Tenant::new().await;
    let (doctor, patient) = (t.doctor().await, t.patient().await);
    let req =
        keyed(booking(patient.member_id, doctor.member_id, hours_ahead(5), 30), Uuid::new_v4());
    let pool = Arc::new(crate::tenancy::Pools::new(
        8,
        8,
        std::time::Duration::from_secs(30),
        clinic_shared::pg::PgTls::none(),
    ));
    let (org, config) = (Uuid::new_v4(), Arc::new(t.db.config.clone()));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (pool, barrier, req, config) =
                (pool.clone(), barrier.clone(), req.clone(), config.clone());
            tokio::spawn(async move {
                let mut conn = pool.get(org, &config).await.expect("connection");
                barrier.wait().await;
                service::create(&mut conn, &patient, &req, &mut trail(&patient)).await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().expect("every retry answers the booking").id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(t.count("appointment").await, 1);
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_refused() {
    let mut t = Tenant::new().await;
    let (doctor, patient) = (t.doctor().await, t.patient().await);
    let key = Uuid::new_v4();
    let first = keyed(booking(patient.member_id, doctor.member_id, hours_ahead(5), 30), key);
    service::create(&mut t.client, &patient, &first, &mut trail(&patient)).await.unwrap();
    let changes = [
        CreateAppointment { start_time: hours_ahead(9), ..first.clone() },
        CreateAppointment { duration_minutes: 45, ..first.clone() },
        CreateAppointment { notes: "other".into(), ..first.clone() },
    ];
    for other in changes {
        let result = service::create(&mut t.client, &patient, &other, &mut trail(&patient)).await;
        assert!(matches!(result, Err(Error::RequestIdReused)), "{result:?}");
    }
    assert_eq!(t.count("appointment").await, 1);
}

#[tokio::test]
async fn keys_belong_to_their_caller() {
    let mut t = Tenant::new().await;
    let (doctor, admin, patient) = (t.doctor().await, t.admin().await, t.patient().await);
    let key = Uuid::new_v4();
    let mine = keyed(booking(patient.member_id, doctor.member_id, hours_ahead(5), 30), key);
    let theirs = keyed(booking(patient.member_id, doctor.member_id, hours_ahead(7), 30), key);
    let a = service::create(&mut t.client, &patient, &mine, &mut trail(&patient)).await.unwrap();
    let b = service::create(&mut t.client, &admin, &theirs, &mut trail(&admin)).await.unwrap();
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn keys_expire_and_are_pruned() {
    let mut t = Tenant::new().await;
    let (doctor, patient) = (t.doctor().await, t.patient().await);
    let key = Uuid::new_v4();
    let req = keyed(booking(patient.member_id, doctor.member_id, hours_ahead(5), 30), key);
    let first = service::create(&mut t.client, &patient, &req, &mut trail(&patient)).await.unwrap();
    let other =
        keyed(booking(patient.member_id, doctor.member_id, hours_ahead(50), 30), Uuid::new_v4());
    service::create(&mut t.client, &patient, &other, &mut trail(&patient)).await.unwrap();

    // A day later the key is free: the same key books anew (a later slot, so no overlap), and
    // the other expired key is gone.
    let later =
        req.received_at + Duration::from_std(REQUEST_ID_TTL).unwrap() + Duration::seconds(1);
    let retry =
        CreateAppointment { received_at: later, start_time: hours_ahead(30), ..req.clone() };
    let second =
        service::create(&mut t.client, &patient, &retry, &mut trail(&patient)).await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(t.count("appointment").await, 3);
    assert_eq!(t.count("appointment_request").await, 1);
}
