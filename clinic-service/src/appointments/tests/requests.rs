//! Parsing proto requests into validated values: every bad field named (no database).

use chrono::{DateTime, Duration, Utc};
use clinic_api::clinic::v1 as pb;
use uuid::Uuid;

use crate::appointments::{
    error::Error,
    page_token::PageToken,
    requests::{CreateAppointment, ListAppointments, MemberRef, Transition},
};

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn fields(result: Result<impl std::fmt::Debug, Error>) -> Vec<String> {
    match result {
        Err(Error::InvalidArgument(v)) => v.into_iter().map(|v| v.field).collect(),
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

fn valid_create(now: DateTime<Utc>) -> pb::CreateAppointmentRequest {
    pb::CreateAppointmentRequest {
        organization_id: Uuid::new_v4().to_string(),
        patient_id: "me".into(),
        doctor_id: Uuid::new_v4().to_string(),
        start_time: Some(ts(now + Duration::hours(1))),
        duration_minutes: 0,
        notes: "ok".into(),
        request_id: String::new(),
        schedule_override: false,
    }
}

#[test]
fn create_accepts_a_valid_request_with_defaults() {
    let now = Utc::now();
    let parsed = CreateAppointment::parse(valid_create(now), now).expect("valid");
    assert_eq!(parsed.duration_minutes, 30);
    assert_eq!(parsed.patient, MemberRef::Me);
    for minutes in [5, 45, 480] {
        let req = pb::CreateAppointmentRequest { duration_minutes: minutes, ..valid_create(now) };
        assert_eq!(CreateAppointment::parse(req, now).unwrap().duration_minutes, minutes);
    }
}

#[test]
fn create_names_each_bad_field() {
    let now = Utc::now();
    type Edit = fn(&mut pb::CreateAppointmentRequest, DateTime<Utc>);
    let cases: [(&str, Edit, &str); 12] = [
        (
            "start in the past",
            |r, now| r.start_time = Some(ts(now - Duration::minutes(1))),
            "start_time",
        ),
        ("start exactly now", |r, now| r.start_time = Some(ts(now)), "start_time"),
        ("no start", |r, _| r.start_time = None, "start_time"),
        (
            "bad nanos",
            |r, _| r.start_time = Some(prost_types::Timestamp { seconds: 1, nanos: -1 }),
            "start_time",
        ),
        ("negative duration", |r, _| r.duration_minutes = -30, "duration_minutes"),
        ("too short", |r, _| r.duration_minutes = 4, "duration_minutes"),
        ("too long", |r, _| r.duration_minutes = 481, "duration_minutes"),
        ("notes too long", |r, _| r.notes = "é".repeat(2001), "notes"),
        ("doctor not a uuid", |r, _| r.doctor_id = "me".into(), "doctor_id"),
        ("doctor missing", |r, _| r.doctor_id.clear(), "doctor_id"),
        ("patient missing", |r, _| r.patient_id.clear(), "patient_id"),
        ("organization bad", |r, _| r.organization_id = "acme".into(), "organization_id"),
    ];
    for (name, edit, field) in cases {
        let mut req = valid_create(now);
        edit(&mut req, now);
        assert_eq!(fields(CreateAppointment::parse(req, now)), vec![field], "{name}");
    }
    // Notes of exactly 2000 characters (multi-byte) are fine.
    let req = pb::CreateAppointmentRequest { notes: "é".repeat(2000), ..valid_create(now) };
    assert!(CreateAppointment::parse(req, now).is_ok());
}

#[test]
fn reasons() {
    let org = Uuid::new_v4().to_string();
    let id = Uuid::new_v4().to_string();
    let decline = |reason: &str| {
        Transition::try_from(pb::DeclineAppointmentRequest {
            organization_id: org.clone(),
            appointment_id: id.clone(),
            reason: reason.into(),
        })
    };
    let cancel = |reason: &str| {
        Transition::try_from(pb::CancelAppointmentRequest {
            organization_id: org.clone(),
            appointment_id: id.clone(),
            reason: reason.into(),
        })
    };
    assert_eq!(fields(decline("")), vec!["reason"]);
    assert_eq!(fields(decline("   ")), vec!["reason"]);
    assert_eq!(fields(cancel("")), vec!["reason"]);
    assert_eq!(fields(cancel(&"x".repeat(501))), vec!["reason"]);
    assert!(decline("fully booked").is_ok());
    assert!(cancel(&"x".repeat(500)).is_ok());
    let approve = Transition::try_from(pb::ApproveAppointmentRequest {
        organization_id: org.clone(),
        appointment_id: "nope".into(),
    });
    assert_eq!(fields(approve), vec!["appointment_id"]);
}

#[test]
fn list_requests() {
    let org = Uuid::new_v4().to_string();
    let base = pb::ListAppointmentsRequest { organization_id: org, ..Default::default() };
    let parsed = ListAppointments::try_from(base.clone()).unwrap();
    assert_eq!((parsed.page_size, parsed.doctor, parsed.after), (20, None, None));
    let big = pb::ListAppointmentsRequest { page_size: 1000, ..base.clone() };
    assert_eq!(ListAppointments::try_from(big).unwrap().page_size, 100);
    let me = pb::ListAppointmentsRequest { doctor_id: "me".into(), ..base.clone() };
    assert_eq!(ListAppointments::try_from(me).unwrap().doctor, Some(MemberRef::Me));
    let token = PageToken {
        start_time: DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
        id: Uuid::new_v4(),
    };
    let paged = pb::ListAppointmentsRequest { page_token: token.encode(), ..base.clone() };
    assert_eq!(ListAppointments::try_from(paged).unwrap().after, Some(token));

    let bad = [
        (pb::ListAppointmentsRequest { page_size: -1, ..base.clone() }, "page_size"),
        (pb::ListAppointmentsRequest { page_token: "junk".into(), ..base.clone() }, "page_token"),
        (pb::ListAppointmentsRequest { statuses: vec![0], ..base.clone() }, "statuses"),
        (pb::ListAppointmentsRequest { statuses: vec![42], ..base.clone() }, "statuses"),
        (pb::ListAppointmentsRequest { patient_id: "x".into(), ..base.clone() }, "patient_id"),
    ];
    for (req, field) in bad {
        assert_eq!(fields(ListAppointments::try_from(req)), vec![field]);
    }
}
