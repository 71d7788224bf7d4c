//! AppointmentService over gRPC: both services in-process, a real clinic with members. The
//! rules themselves (all 25 transitions, 50 concurrent bookings, paging, 100k-row plans) are
//! tested against the database inside `clinic_service::appointments`; these tests check the
//! wire: codes, field violations, role scope through the auth layer, and what reaches the logs.

use chrono::{DateTime, Duration, DurationRound, Utc};
use clinic_api::clinic::v1::{
    self as pb, AppointmentStatus as S, appointment_service_client::AppointmentServiceClient,
};
use tonic::{
    Code, Request, Status,
    metadata::AsciiMetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};
use tonic_types::StatusExt;

use crate::helpers::{Clinic, TestApp, TestUser, captured_logs, spawn_app};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
struct Bearer(AsciiMetadataValue);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = AppointmentServiceClient<InterceptedService<Channel, Bearer>>;

fn client(app: &TestApp, user: &TestUser) -> Client {
    let value = format!("Bearer {}", user.token).parse().expect("ascii token");
    AppointmentServiceClient::with_interceptor(app.clinic_channel(), Bearer(value))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

fn hours_ahead(hours: i64) -> DateTime<Utc> {
    (Utc::now() + Duration::hours(hours)).duration_trunc(Duration::minutes(1)).expect("trunc")
}

fn booking(
    c: &Clinic,
    patient_id: &str,
    start: DateTime<Utc>,
    notes: &str,
) -> pb::CreateAppointmentRequest {
    pb::CreateAppointmentRequest {
        organization_id: c.org.id.clone(),
        patient_id: patient_id.into(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(start)),
        duration_minutes: 0,
        notes: notes.into(),
        request_id: String::new(),
        schedule_override: false,
    }
}

fn target(c: &Clinic, id: &str) -> (String, String) {
    (c.org.id.clone(), id.to_owned())
}

async fn book(
    api: &mut Client,
    req: pb::CreateAppointmentRequest,
) -> Result<pb::Appointment, Status> {
    Ok(api.create_appointment(req).await?.into_inner().appointment.expect("appointment"))
}

async fn approve(
    api: &mut Client,
    (organization_id, appointment_id): (String, String),
) -> Result<i32, Status> {
    let r =
        api.approve_appointment(pb::ApproveAppointmentRequest { organization_id, appointment_id });
    Ok(r.await?.into_inner().appointment.expect("appointment").status)
}

async fn complete(
    api: &mut Client,
    (organization_id, appointment_id): (String, String),
) -> Result<i32, Status> {
    let r = api
        .complete_appointment(pb::CompleteAppointmentRequest { organization_id, appointment_id });
    Ok(r.await?.into_inner().appointment.expect("appointment").status)
}

async fn decline(
    api: &mut Client,
    (organization_id, appointment_id): (String, String),
    reason: &str,
) -> Result<i32, Status> {
    let r = api.decline_appointment(pb::DeclineAppointmentRequest {
        organization_id,
        appointment_id,
        reason: reason.into(),
    });
    Ok(r.await?.into_inner().appointment.expect("appointment").status)
}

async fn cancel(
    api: &mut Client,
    (organization_id, appointment_id): (String, String),
    reason: &str,
) -> Result<i32, Status> {
    let r = api.cancel_appointment(pb::CancelAppointmentRequest {
        organization_id,
        appointment_id,
        reason: reason.into(),
    });
    Ok(r.await?.into_inner().appointment.expect("appointment").status)
}

/// The fields named by an INVALID_ARGUMENT's BadRequest details.
fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest details");
    bad.field_violations.iter().map(|v| v.field.clone()).collect()
}

async fn count_rows(app: &TestApp, c: &Clinic) -> (i64, i64) {
    let db = app.tenant_client("main", &c.org.database_name).await;
    let n = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.expect("count").get::<_, i64>(0) }
    };
    (
        n("SELECT count(*) FROM appointment").await,
        n("SELECT count(*) FROM appointment_status_history").await,
    )
}

/// Book, approve, complete; book and cancel; book and decline; the history of each, and
/// nothing of the notes or reasons in the logs.
#[tokio::test]
async fn lifecycle_over_grpc() {
    let app = spawn_app().await;
    let c = app.clinic("appts").await;
    let (mut admin, mut doctor, mut patient) =
        (client(&app, &c.admin), client(&app, &c.doctor), client(&app, &c.patient));
    let secret_notes = "NOTES-7f3a9c chest pain since Tuesday";
    let secret_reason = "REASON-51b2e8 patient travelling";

    let first = book(&mut patient, booking(&c, "me", hours_ahead(24), secret_notes)).await.unwrap();
    assert_eq!(first.status, S::Pending as i32);
    assert_eq!(first.patient_id, c.patient_member.id);
    assert_eq!(first.duration_minutes, 30);
    assert_eq!(
        first.end_time.as_ref().unwrap().seconds - first.start_time.as_ref().unwrap().seconds,
        30 * 60
    );
    assert_eq!(approve(&mut doctor, target(&c, &first.id)).await.unwrap(), S::Approved as i32);
    assert_eq!(complete(&mut doctor, target(&c, &first.id)).await.unwrap(), S::Completed as i32);

    let second = book(&mut patient, booking(&c, "me", hours_ahead(25), "")).await.unwrap();
    assert_eq!(
        cancel(&mut patient, target(&c, &second.id), secret_reason).await.unwrap(),
        S::Cancelled as i32
    );

    let third =
        book(&mut admin, booking(&c, &c.patient_member.id, hours_ahead(26), "")).await.unwrap();
    assert_eq!(
        decline(&mut doctor, target(&c, &third.id), secret_reason).await.unwrap(),
        S::Declined as i32
    );

    // Final states stay final.
    let again = approve(&mut admin, target(&c, &third.id)).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);

    let got = patient
        .get_appointment(pb::GetAppointmentRequest {
            organization_id: c.org.id.clone(),
            appointment_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.appointment.unwrap().notes, secret_notes);
    let steps: Vec<(i32, i32, String)> = got
        .history
        .iter()
        .map(|h| (h.from_status, h.to_status, h.changed_by_member_id.clone()))
        .collect();
    assert_eq!(
        steps,
        vec![
            (S::Unspecified as i32, S::Pending as i32, c.patient_member.id.clone()),
            (S::Pending as i32, S::Approved as i32, c.doctor_member.id.clone()),
            (S::Approved as i32, S::Completed as i32, c.doctor_member.id.clone()),
        ]
    );
    let history = doctor
        .list_appointment_history(pb::ListAppointmentHistoryRequest {
            organization_id: c.org.id.clone(),
            appointment_id: third.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .changes;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].reason, secret_reason);
    assert_eq!(history[1].changed_by_member_id, c.doctor_member.id);

    let listed = doctor
        .list_appointments(pb::ListAppointmentsRequest {
            organization_id: c.org.id.clone(),
            doctor_id: "me".into(),
            statuses: vec![S::Cancelled as i32, S::Declined as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = listed.appointments.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids, vec![second.id.clone(), third.id.clone()]);
    assert!(listed.next_page_token.is_empty());

    let logs = captured_logs();
    for secret in ["NOTES-7f3a9c", "REASON-51b2e8"] {
        assert!(!logs.contains(secret), "{secret} reached the logs");
    }
}

/// Bad input answers INVALID_ARGUMENT naming the field (or NOT_FOUND for unknown members),
/// overlaps ALREADY_EXISTS naming the party, and none of it writes a row.
#[tokio::test]
async fn refusals_over_grpc() {
    let app = spawn_app().await;
    let c = app.clinic("appt-bad").await;
    let mut admin = client(&app, &c.admin);
    let start = hours_ahead(48);
    let unknown = uuid::Uuid::new_v4().to_string();
    type Edit = Box<dyn Fn(&mut pb::CreateAppointmentRequest)>;
    let invalid: Vec<(&str, Edit)> = vec![
        ("start_time", Box::new(|r| r.start_time = Some(ts(Utc::now() - Duration::hours(1))))),
        ("duration_minutes", Box::new(|r| r.duration_minutes = -5)),
        ("duration_minutes", Box::new(|r| r.duration_minutes = 481)),
        ("notes", Box::new(|r| r.notes = "n".repeat(2001))),
        ("doctor_id", Box::new(|r| r.doctor_id = "not-a-uuid".into())),
        ("doctor_id", Box::new(|r| r.doctor_id = r.patient_id.clone())),
        ("organization_id", Box::new(|r| r.organization_id.clear())),
    ];
    for (field, edit) in invalid {
        let mut req = booking(&c, &c.patient_member.id, start, "");
        edit(&mut req);
        let status = book(&mut admin, req).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec![field.to_owned()], "{status:?}");
    }
    for (field, edit) in [
        (
            "doctor_id",
            Box::new(|r: &mut pb::CreateAppointmentRequest| r.doctor_id = unknown.clone())
                as Box<dyn Fn(&mut _)>,
        ),
        (
            "patient_id",
            Box::new(|r: &mut pb::CreateAppointmentRequest| r.patient_id = unknown.clone()),
        ),
    ] {
        let mut req = booking(&c, &c.patient_member.id, start, "");
        edit(&mut req);
        let status = book(&mut admin, req).await.unwrap_err();
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(field), "{status:?}");
    }
    assert_eq!(count_rows(&app, &c).await, (0, 0), "nothing written");

    let booked = book(&mut admin, booking(&c, &c.patient_member.id, start, "")).await.unwrap();
    let clash =
        book(&mut admin, booking(&c, &c.patient_member.id, start + Duration::minutes(15), ""))
            .await
            .unwrap_err();
    assert_eq!(clash.code(), Code::AlreadyExists);
    assert!(clash.message().contains("doctor") || clash.message().contains("patient"), "{clash:?}");
    for reason in ["", "  "] {
        let status = cancel(&mut admin, target(&c, &booked.id), reason).await.unwrap_err();
        assert_eq!(violated_fields(&status), vec!["reason".to_owned()]);
    }
    assert_eq!(count_rows(&app, &c).await, (1, 1), "only the one booking");
}

/// An invited member who has not accepted is no participant: booking them answers NOT_FOUND
/// naming the field, as for an unknown member.
#[tokio::test]
async fn invited_members_cannot_be_booked() {
    let app = spawn_app().await;
    let c = app.clinic("appt-invited").await;
    let email = |label: &str| format!("{label}-{}@example.com", uuid::Uuid::new_v4().simple());
    let patient = app.invite(&c.admin, &c.org.id, &email("p"), pb::Role::Patient, None).await;
    let doctor = app.invite(&c.admin, &c.org.id, &email("d"), pb::Role::Doctor, None).await;
    let mut admin = client(&app, &c.admin);
    let status = book(&mut admin, booking(&c, &patient.id, hours_ahead(30), "")).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("patient_id"), "{status:?}");
    let mut request = booking(&c, &c.patient_member.id, hours_ahead(30), "");
    request.doctor_id = doctor.id.clone();
    let status = book(&mut admin, request).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("doctor_id"), "{status:?}");
    assert_eq!(count_rows(&app, &c).await, (0, 0), "nothing written");
}

/// Who may do what, through the auth layer: the clinic's roles, a member of another clinic and
/// a user with no membership.
#[tokio::test]
async fn role_scope_over_grpc() {
    let app = spawn_app().await;
    let c = app.clinic("appt-roles").await;
    let other = app.clinic("appt-other").await;
    let outsider = app.user("outsider").await;
    let second_patient = app.user("patient2").await;
    let p2 = app.add_member(&c.admin, &c.org.id, &second_patient, pb::Role::Patient, None).await;
    let mut admin = client(&app, &c.admin);
    let mine =
        book(&mut admin, booking(&c, &c.patient_member.id, hours_ahead(30), "")).await.unwrap();
    let theirs = book(&mut admin, booking(&c, &p2.id, hours_ahead(31), "")).await.unwrap();

    // A patient books for themself only; a doctor does not book.
    let status = book(&mut client(&app, &c.patient), booking(&c, &p2.id, hours_ahead(40), ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status =
        book(&mut client(&app, &c.doctor), booking(&c, &c.patient_member.id, hours_ahead(40), ""))
            .await
            .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // (caller, sees `mine`, code of approving `mine`)
    let cases: [(&str, &TestUser, bool, Code); 5] = [
        ("the patient", &c.patient, true, Code::PermissionDenied),
        ("another patient", &second_patient, false, Code::NotFound),
        ("member of another clinic", &other.admin, false, Code::NotFound),
        ("no membership", &outsider, false, Code::NotFound),
        ("the doctor", &c.doctor, true, Code::Ok),
    ];
    for (name, user, sees, approve_code) in cases {
        let mut api = client(&app, user);
        let got = api
            .get_appointment(pb::GetAppointmentRequest {
                organization_id: c.org.id.clone(),
                appointment_id: mine.id.clone(),
            })
            .await;
        assert_eq!(got.is_ok(), sees, "{name} get: {got:?}");
        let listed = api
            .list_appointments(pb::ListAppointmentsRequest {
                organization_id: c.org.id.clone(),
                ..Default::default()
            })
            .await;
        if let Ok(list) = &listed {
            let ids: Vec<_> = list.get_ref().appointments.iter().map(|a| a.id.as_str()).collect();
            assert_eq!(ids.contains(&mine.id.as_str()), sees, "{name} list");
        }
        let code =
            approve(&mut api, target(&c, &mine.id)).await.err().map_or(Code::Ok, |s| s.code());
        assert_eq!(code, approve_code, "{name} approve");
    }

    // A patient naming another patient gets nothing of theirs.
    let listed = client(&app, &c.patient)
        .list_appointments(pb::ListAppointmentsRequest {
            organization_id: c.org.id.clone(),
            patient_id: p2.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.appointments.is_empty(), "{:?}", listed.appointments);
    // Ids from clinic A used with clinic B's organization_id never reach A's rows.
    let cross = client(&app, &other.admin)
        .get_appointment(pb::GetAppointmentRequest {
            organization_id: other.org.id.clone(),
            appointment_id: theirs.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(cross.code(), Code::NotFound);
}

/// A booking retried with its `request_id` (the response was lost) answers the first booking;
/// the key with other parameters, or one that is not a UUID, is refused and books nothing.
#[tokio::test]
async fn retried_bookings_over_grpc() {
    let app = spawn_app().await;
    let c = app.clinic("retries").await;
    let mut api = client(&app, &c.patient);
    let key = uuid::Uuid::new_v4().to_string();
    let request = pb::CreateAppointmentRequest {
        request_id: key.clone(),
        ..booking(&c, "me", hours_ahead(26), "")
    };
    let first = book(&mut api, request.clone()).await.expect("first call");
    let retried = book(&mut api, request.clone()).await.expect("retry");
    assert_eq!(retried, first);

    let moved = pb::CreateAppointmentRequest { start_time: Some(ts(hours_ahead(30))), ..request };
    let status = book(&mut api, moved).await.expect_err("another booking under the same key");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("request_id"), "{status:?}");

    let malformed = pb::CreateAppointmentRequest {
        request_id: "not-a-uuid".into(),
        ..booking(&c, "me", hours_ahead(40), "")
    };
    assert_eq!(violated_fields(&book(&mut api, malformed).await.unwrap_err()), ["request_id"]);
    assert_eq!(count_rows(&app, &c).await, (1, 1));
}
