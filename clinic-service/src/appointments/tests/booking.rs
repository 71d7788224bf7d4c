//! Booking: the no-overlap rule under concurrency, and bad input that must write nothing.

use std::{sync::Arc, time::Duration as StdDuration};

use chrono::Duration;
use uuid::Uuid;

use super::{Tenant, booking, hours_ahead, trail};
use crate::appointments::{
    domain::{Actor, AppointmentStatus, Role},
    error::{Error, Party},
    service,
};
use crate::tenancy::Db;

/// 50 patients book the same doctor's slot at once: PostgreSQL lets exactly one through.
#[tokio::test]
async fn fifty_concurrent_bookings_of_one_slot() {
    let t = Tenant::new().await;
    let doctor = t.doctor().await;
    let mut patients = Vec::new();
    for _ in 0..50 {
        patients.push(t.patient().await);
    }
    // A pool, as the service uses; 20 connections keep the test within the server's limit
    // while many transactions still race.
    let pool = Arc::new(crate::tenancy::Pools::new(
        20,
        20,
        StdDuration::from_secs(30),
        clinic_shared::pg::PgTls::none(),
    ));
    let (org, config) = (Uuid::new_v4(), Arc::new(t.db.config.clone()));
    let start = hours_ahead(5);
    let barrier = Arc::new(tokio::sync::Barrier::new(patients.len()));
    let tasks: Vec<_> = patients
        .iter()
        .map(|p| {
            let (pool, barrier, p, config) = (pool.clone(), barrier.clone(), *p, config.clone());
            let req = booking(p.member_id, doctor.member_id, start, 30);
            tokio::spawn(async move {
                barrier.wait().await;
                let mut conn = pool.get(org, &config).await.expect("connection");
                service::create(&mut conn, &p, &req, &mut trail(&p)).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Overlap(Party::Doctor)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(t.count("appointment").await, 1);
    assert_eq!(t.count("appointment_status_history").await, 1);
}

/// A booking that PostgreSQL aborts to break a deadlock is run again, not reported as a
/// failure. The deadlock is built step by step: another transaction holds a booking of the
/// same doctor that the service's overlaps, so the service's insert waits for it; that
/// transaction then books the doctor right after its first visit, overlapping the service's
/// uncommitted row, so it waits for the service. The service's backend waited first, finds the
/// cycle first and is aborted; once the other transaction rolls back, the rerun books the slot.
#[tokio::test]
async fn a_booking_aborted_to_break_a_deadlock_is_run_again() {
    let t = Tenant::new().await;
    let doctor = t.doctor().await;
    let (p1, p2) = (t.patient().await, t.patient().await);
    let start = hours_ahead(30);
    let insert = "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time) \
                  VALUES ($1, $2, $3)";

    let mut other = t.connect().await;
    let other = other.transaction().await.unwrap();
    other.execute(insert, &[&p1.member_id, &doctor.member_id, &start]).await.unwrap();

    let mut conn = t.connect().await;
    let req = booking(p2.member_id, doctor.member_id, start + Duration::minutes(15), 30);
    let booked =
        tokio::spawn(async move { service::create(&mut conn, &p2, &req, &mut trail(&p2)).await });
    t.wait_for_lock_waiters(1).await;
    // PostgreSQL looks for a cycle `deadlock_timeout` (1 s) after a backend starts waiting, and
    // the backend that finds it is the one aborted; a head start keeps that the service's.
    tokio::time::sleep(StdDuration::from_millis(300)).await;

    // Back-to-back with its own first visit, overlapping the service's uncommitted one.
    let second = start + Duration::minutes(30);
    other
        .execute(insert, &[&p1.member_id, &doctor.member_id, &second])
        .await
        .expect("the service's backend waited first, so it is the one PostgreSQL aborts");
    t.wait_for_lock_waiters(1).await; // the rerun waits for `other` again
    other.rollback().await.unwrap();

    let booked = booked.await.unwrap().expect("the rerun books the slot");
    assert_eq!(booked.parties.patient_id, Some(p2.member_id));
    assert_eq!(t.count("appointment").await, 1);
    assert_eq!(t.count("appointment_status_history").await, 1);
}

#[tokio::test]
async fn overlap_rules() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let (d1, d2) = (t.doctor().await, t.doctor().await);
    let (p1, p2) = (t.patient().await, t.patient().await);
    let nine = hours_ahead(24);
    let m = |minutes: i64| nine + Duration::minutes(minutes);

    let first = t.book(&admin, p1.member_id, d1.member_id, nine, 30).await.unwrap();
    // Back-to-back on both sides is fine: slots are [start, end).
    t.book(&admin, p2.member_id, d1.member_id, m(30), 30).await.unwrap();
    t.book(&admin, p2.member_id, d1.member_id, m(-30), 30).await.unwrap();
    // Overlapping the doctor's slot, by one minute at either end or containing it.
    for (start, minutes) in [(m(29), 30), (m(-29), 30), (m(-60), 120), (m(10), 5)] {
        let r = t.book(&admin, p2.member_id, d1.member_id, start, minutes).await;
        assert!(matches!(r, Err(Error::Overlap(_))), "{start} {minutes}: {r:?}");
    }
    // The patient may not be in two places at once either, even with another doctor.
    let r = t.book(&admin, p1.member_id, d2.member_id, m(15), 30).await;
    assert!(matches!(r, Err(Error::Overlap(Party::Patient))), "{r:?}");
    // Another patient with another doctor at the same time is fine.
    let other = t.book(&admin, t.patient().await.member_id, d2.member_id, nine, 30).await;
    assert!(other.is_ok());

    // DECLINED, CANCELLED and COMPLETED free the slot; PENDING and APPROVED hold it.
    for status in AppointmentStatus::ALL {
        t.force_status(first.id, status).await;
        let r = t.book(&admin, p1.member_id, d1.member_id, nine, 30).await;
        if status.holds_slot() {
            assert!(matches!(r, Err(Error::Overlap(_))), "{status:?} holds: {r:?}");
        } else {
            let again = r.unwrap_or_else(|e| panic!("{status:?} frees the slot: {e}"));
            t.force_status(again.id, AppointmentStatus::Cancelled).await;
        }
    }
}

/// Bad references: NOT_FOUND or INVALID_ARGUMENT naming the field, and nothing written.
#[tokio::test]
async fn bad_members_write_nothing() {
    let mut t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    let other_patient = t.patient().await;
    let start = hours_ahead(2);
    let unknown = Uuid::new_v4();
    type Case = (&'static str, Actor, Uuid, Uuid, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        ("unknown doctor", admin, patient.member_id, unknown, |e| {
            matches!(e, Error::MemberNotFound(Party::Doctor))
        }),
        ("unknown patient", admin, unknown, doctor.member_id, |e| {
            matches!(e, Error::MemberNotFound(Party::Patient))
        }),
        (
            "a patient as doctor",
            admin,
            patient.member_id,
            other_patient.member_id,
            |e| matches!(e, Error::InvalidArgument(v) if v[0].field == "doctor_id"),
        ),
        (
            "an admin as doctor",
            admin,
            patient.member_id,
            admin.member_id,
            |e| matches!(e, Error::InvalidArgument(v) if v[0].field == "doctor_id"),
        ),
        (
            "a doctor as patient",
            admin,
            doctor.member_id,
            doctor.member_id,
            |e| matches!(e, Error::InvalidArgument(v) if v[0].field == "patient_id"),
        ),
        ("a patient for another", patient, other_patient.member_id, doctor.member_id, |e| {
            matches!(e, Error::PermissionDenied(_))
        }),
        ("a doctor booking", doctor, patient.member_id, doctor.member_id, |e| {
            matches!(e, Error::PermissionDenied(_))
        }),
    ];
    for (name, actor, patient_id, doctor_id, expected) in cases {
        let r = t.book(&actor, patient_id, doctor_id, start, 30).await;
        match r {
            Err(e) => assert!(expected(&e), "{name}: {e:?}"),
            Ok(_) => panic!("{name}: booked"),
        }
        assert_eq!(t.count("appointment").await, 0, "{name}");
        assert_eq!(t.count("appointment_status_history").await, 0, "{name}");
    }
    // The roles check the right member kinds: a patient booking for themself works.
    assert!(matches!(patient.role, Role::Patient));
    t.book(&patient, patient.member_id, doctor.member_id, start, 30).await.unwrap();
}

/// The database backs the request validation up: out-of-range durations and long notes are
/// refused even if a bug let them past the edge.
#[tokio::test]
async fn database_checks_are_the_last_line() {
    let t = Tenant::new().await;
    let doctor = t.doctor().await;
    let patient = t.patient().await;
    for (minutes, notes) in [(0, 0), (4, 0), (481, 0), (-1, 0), (30, 2001)] {
        let r = t
            .client
            .execute(
                "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, \
                 duration_minutes, notes) VALUES ($1, $2, now() + interval '1 day', $3, repeat('n', $4))",
                &[&patient.member_id, &doctor.member_id, &minutes, &notes],
            )
            .await;
        assert!(r.is_err(), "{minutes} min, {notes} chars");
    }
    assert_eq!(t.count("appointment").await, 0);
}

/// "Approving two overlapping requests cannot both succeed": two overlapping requests cannot
/// both exist as PENDING in the first place (the constraint covers PENDING too), so racing
/// bookings leave one request, and racing approvals of everything leave one APPROVED visit.
#[tokio::test]
async fn overlapping_requests_cannot_both_be_approved() {
    let t = Tenant::new().await;
    let admin = t.admin().await;
    let doctor = t.doctor().await;
    let (p1, p2) = (t.patient().await, t.patient().await);
    let ten = hours_ahead(72);
    let (r1, r2) = (booking(p1.member_id, doctor.member_id, ten, 30), {
        booking(p2.member_id, doctor.member_id, ten + Duration::minutes(15), 30)
    });
    let (mut c1, mut c2) = (t.connect().await, t.connect().await);
    let (mut t1, mut t2) = (trail(&p1), trail(&p2));
    let (b1, b2) = tokio::join!(
        service::create(&mut c1, &p1, &r1, &mut t1),
        service::create(&mut c2, &p2, &r2, &mut t2)
    );
    assert_eq!([b1.is_ok(), b2.is_ok()].iter().filter(|ok| **ok).count(), 1, "{b1:?} {b2:?}");
    let refused = if b1.is_err() { b1 } else { b2 };
    assert!(matches!(refused, Err(Error::Overlap(Party::Doctor))), "{refused:?}");

    let ids: Vec<Uuid> = t
        .client
        .query("SELECT id FROM appointment", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut approvals = Vec::new();
    for id in ids.iter().chain(ids.iter()) {
        let mut conn = t.connect().await;
        let req = crate::appointments::requests::Transition {
            target: crate::appointments::requests::AppointmentRef {
                organization_id: Uuid::nil(),
                appointment_id: *id,
            },
            action: crate::appointments::domain::Action::Approve,
            reason: String::new(),
        };
        approvals.push(tokio::spawn(async move {
            service::transition(&mut conn, &admin, &req, &mut trail(&admin)).await.is_ok()
        }));
    }
    let mut approved = 0;
    for a in approvals {
        approved += usize::from(a.await.unwrap());
    }
    assert_eq!(approved, 1);
    let row = t
        .client
        .query_one("SELECT count(*) FROM appointment WHERE status = 'APPROVED'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
}
