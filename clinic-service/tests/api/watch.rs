//! WatchAppointments over gRPC: both services in-process, real clinics, changes made through
//! the API (and, for a transaction that commits late, directly in the tenant database). Waits
//! are bounded (a stream that never delivers fails the test) but nothing asserts on speed.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use clinic_api::{
    clinic::v1::{
        self as pb, AppointmentStatus as S, appointment_service_client::AppointmentServiceClient,
    },
    identity::v1 as ipb,
};
use prost_types::FieldMask;
use tonic::{Code, Status, Streaming};
use tonic_types::StatusExt;

use crate::helpers::{Authed, Clinic, Options, TestApp, TestUser, bearer, spawn_with};

type Client = AppointmentServiceClient<Authed>;
type Stream = Streaming<pb::WatchAppointmentsResponse>;

/// The longest any test waits for a message it expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// Both services, with heartbeats (and access re-checks) every 200 ms and polls every 100 ms,
/// so tests of idle streams and ended access are quick.
async fn spawn() -> TestApp {
    spawn_with(Options { tweak: Box::new(quick), ..Default::default() }).await
}

fn quick(c: &mut clinic_service::Config) {
    c.feed.heartbeat = Duration::from_millis(200);
    c.feed.poll = Duration::from_millis(100);
}

fn client(app: &TestApp, user: &TestUser) -> Client {
    AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(&user.token))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

/// The start of slot `n`: one hour apart, from tomorrow on, so bookings never overlap.
fn slot(n: i64) -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::days(1) + chrono::Duration::hours(n))
        .duration_trunc(chrono::Duration::hours(1))
        .expect("trunc")
}

/// `c.admin` books slot `n` for `patient_id` with `doctor_id`.
async fn book_with(app: &TestApp, c: &Clinic, patient_id: &str, doctor_id: &str, n: i64) -> String {
    let request = pb::CreateAppointmentRequest {
        organization_id: c.org.id.clone(),
        patient_id: patient_id.into(),
        doctor_id: doctor_id.into(),
        start_time: Some(ts(slot(n))),
        ..Default::default()
    };
    let response = client(app, &c.admin).create_appointment(request).await.expect("book");
    response.into_inner().appointment.expect("appointment").id
}

/// `c.admin` books slot `n` for the clinic's patient with its doctor.
async fn book(app: &TestApp, c: &Clinic, n: i64) -> String {
    book_with(app, c, &c.patient_member.id, &c.doctor_member.id, n).await
}

async fn approve(app: &TestApp, c: &Clinic, id: &str) {
    let request = pb::ApproveAppointmentRequest {
        organization_id: c.org.id.clone(),
        appointment_id: id.into(),
    };
    client(app, &c.admin).approve_appointment(request).await.expect("approve");
}

/// The watch token `user`'s first page of ListAppointments returns.
async fn list_token(app: &TestApp, user: &TestUser, org: &str) -> String {
    let request = pb::ListAppointmentsRequest { organization_id: org.into(), ..Default::default() };
    let token = client(app, user).list_appointments(request).await.expect("list").into_inner();
    assert!(!token.watch_token.is_empty(), "the first page carries a watch token");
    token.watch_token
}

async fn open(app: &TestApp, user: &TestUser, org: &str, resume: &str) -> Result<Stream, Status> {
    let request =
        pb::WatchAppointmentsRequest { organization_id: org.into(), resume_token: resume.into() };
    Ok(client(app, user).watch_appointments(request).await?.into_inner())
}

/// A stream as `user`, once it has caught up (its first heartbeat).
async fn watch(app: &TestApp, user: &TestUser, org: &str, resume: &str) -> Stream {
    let mut stream = open(app, user, org, resume).await.expect("watch");
    let first = next(&mut stream).await.expect("first message");
    assert!(first.heartbeat, "nothing to catch up on: the first message is a heartbeat");
    stream
}

/// The next message; `Err` when the stream ended with a status.
async fn next(stream: &mut Stream) -> Result<pb::WatchAppointmentsResponse, Status> {
    match tokio::time::timeout(PATIENCE, stream.message()).await {
        Ok(Ok(Some(m))) => Ok(m),
        Ok(Ok(None)) => panic!("the stream ended without a status"),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no message within {PATIENCE:?}"),
    }
}

/// The next change (heartbeats skipped) and its resume token.
async fn next_change(stream: &mut Stream) -> (pb::AppointmentChange, String) {
    loop {
        let m = next(stream).await.expect("a change");
        if let Some(change) = m.change {
            assert!(!m.heartbeat);
            return (change, m.resume_token);
        }
    }
}

/// Every change up to the first heartbeat: what a stream opened now catches up on.
async fn until_heartbeat(stream: &mut Stream) -> Vec<pb::AppointmentChange> {
    let mut changes = Vec::new();
    loop {
        let m = next(stream).await.expect("a message");
        match m.change {
            Some(change) => changes.push(change),
            None => return changes,
        }
    }
}

/// The status a stream ends with (messages before it skipped).
async fn end_of(stream: &mut Stream) -> Status {
    loop {
        if let Err(status) = next(stream).await {
            return status;
        }
    }
}

fn key(c: &pb::AppointmentChange) -> (String, i32) {
    (c.appointment_id.clone(), c.to_status)
}

#[tokio::test]
async fn a_stream_cut_in_a_burst_and_resumed_sees_each_change_exactly_once() {
    let app = spawn().await;
    let c = app.clinic("watch burst").await;
    let mut stream = watch(&app, &c.admin, &c.org.id, "").await;
    // The burst: 8 bookings, then each approved, while the stream is read and cut.
    let burst = {
        let (app_org, c_org) = (&app, &c);
        async move {
            let mut expected = Vec::new();
            for n in 0..8 {
                expected.push((book(app_org, c_org, n).await, S::Pending as i32));
            }
            for (id, _) in expected.clone() {
                approve(app_org, c_org, &id).await;
                expected.push((id, S::Approved as i32));
            }
            expected
        }
    };
    let read_three = async {
        let mut seen = Vec::new();
        let mut token = String::new();
        for _ in 0..3 {
            let (change, resume) = next_change(&mut stream).await;
            seen.push(key(&change));
            token = resume;
        }
        (seen, token)
    };
    let (expected, (mut seen, token)) = tokio::join!(burst, read_three);
    drop(stream);
    let mut resumed = open(&app, &c.admin, &c.org.id, &token).await.expect("resume");
    seen.extend(until_heartbeat(&mut resumed).await.iter().map(key));
    assert_eq!(seen, expected, "every change once, in commit order");
}

#[tokio::test]
async fn each_role_sees_only_its_own_changes() {
    let app = spawn().await;
    let c = app.clinic("watch scope").await;
    let (other_patient, other_doctor) = (app.user("patient2").await, app.user("doctor2").await);
    let p2 = app.add_member(&c.admin, &c.org.id, &other_patient, pb::Role::Patient, None).await;
    let doctor_profile = pb::MemberProfile {
        kind: Some(pb::member_profile::Kind::Doctor(pb::DoctorProfile {
            specialization: "Dermatology".into(),
            license_number: "LIC-456".into(),
            phone_number: "+1 555 0101".into(),
        })),
    };
    let d2 = app
        .add_member(&c.admin, &c.org.id, &other_doctor, pb::Role::Doctor, Some(doctor_profile))
        .await;
    let watchers = [&c.admin, &c.doctor, &c.patient, &other_patient, &other_doctor];
    let mut tokens = Vec::new();
    for user in watchers {
        tokens.push(list_token(&app, user, &c.org.id).await);
    }
    let mine = book(&app, &c, 0).await; // patient 1 with doctor 1
    let theirs = book_with(&app, &c, &p2.id, &c.doctor_member.id, 1).await; // patient 2, doctor 1
    let elsewhere = book_with(&app, &c, &p2.id, &d2.id, 2).await; // patient 2, doctor 2
    approve(&app, &c, &mine).await;
    let ids = |changes: Vec<pb::AppointmentChange>| -> Vec<String> {
        changes.into_iter().map(|c| c.appointment_id).collect()
    };
    let expected = [
        vec![&mine, &theirs, &elsewhere, &mine],
        vec![&mine, &theirs, &mine],
        vec![&mine, &mine],
        vec![&theirs, &elsewhere],
        vec![&elsewhere],
    ];
    for ((user, token), expected) in watchers.iter().zip(&tokens).zip(expected) {
        let mut stream = open(&app, user, &c.org.id, token).await.expect("watch");
        let seen = ids(until_heartbeat(&mut stream).await);
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(seen, expected, "{}", user.email);
    }
    // Live too: a patient's stream stays silent while another patient's appointment changes.
    let mut patient = watch(&app, &c.patient, &c.org.id, "").await;
    approve(&app, &c, &theirs).await;
    let own = book(&app, &c, 3).await;
    let (change, _) = next_change(&mut patient).await;
    assert_eq!(change.appointment_id, own, "the other patient's approval never reached them");
    assert_eq!(change.patient_id, c.patient_member.id);
}

#[tokio::test]
async fn a_restart_between_two_changes_loses_nothing_and_sends_nothing_twice() {
    let app = spawn().await;
    let c = app.clinic("watch restart").await;
    let mut stream = watch(&app, &c.admin, &c.org.id, "").await;
    let first = book(&app, &c, 0).await;
    let (change, token) = next_change(&mut stream).await;
    assert_eq!(change.appointment_id, first);
    // Shutdown ends the stream explicitly, so the client reconnects elsewhere.
    app.stop_clinic();
    let status = end_of(&mut stream).await;
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Another clinic-service (the restarted one) takes over; the second change is made there.
    let restarted =
        clinic_service::Application::build(app.config.clone()).await.expect("build clinic");
    let address = restarted.address();
    let handle = restarted.shutdown_handle();
    tokio::spawn(restarted.run_until_stopped());
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))
        .expect("url")
        .connect_lazy();
    let mut api = AppointmentServiceClient::with_interceptor(channel, bearer(&c.admin.token));
    let second = api
        .create_appointment(pb::CreateAppointmentRequest {
            organization_id: c.org.id.clone(),
            patient_id: c.patient_member.id.clone(),
            doctor_id: c.doctor_member.id.clone(),
            start_time: Some(ts(slot(1))),
            ..Default::default()
        })
        .await
        .expect("book on the restarted service")
        .into_inner()
        .appointment
        .expect("appointment")
        .id;
    let request =
        pb::WatchAppointmentsRequest { organization_id: c.org.id.clone(), resume_token: token };
    let mut resumed = api.watch_appointments(request).await.expect("resume").into_inner();
    let seen: Vec<String> =
        until_heartbeat(&mut resumed).await.into_iter().map(|c| c.appointment_id).collect();
    assert_eq!(seen, vec![second]);
    handle.shutdown();
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_not_skipped() {
    let app = spawn().await;
    let c = app.clinic("watch late").await;
    let early = book(&app, &c, 0).await;
    let mut stream = watch(&app, &c.admin, &c.org.id, "").await;
    // A transaction starts first and changes `early` (as another replica would)...
    let org = app.access.organization(c.org.id.parse().expect("uuid")).await.expect("org");
    let mut db = app.tenant_client(&org.location.server, &org.location.database).await;
    let late = db.transaction().await.expect("begin");
    let early_id: uuid::Uuid = early.parse().expect("uuid");
    late.execute("UPDATE appointment SET status = 'APPROVED' WHERE id = $1", &[&early_id])
        .await
        .expect("approve in SQL");
    late.execute(
        "INSERT INTO appointment_status_history (appointment_id, from_status, to_status) \
         VALUES ($1, 'PENDING', 'APPROVED')",
        &[&early_id],
    )
    .await
    .expect("history");
    // ...another commits meanwhile, and the watcher gets it...
    let quick = book(&app, &c, 1).await;
    let (change, _) = next_change(&mut stream).await;
    assert_eq!(change.appointment_id, quick);
    // ...then the first one commits: it is delivered after, not skipped.
    late.commit().await.expect("commit");
    let (change, _) = next_change(&mut stream).await;
    assert_eq!(key(&change), (early, S::Approved as i32));
    assert_eq!(change.from_status, S::Pending as i32);
}

#[tokio::test]
async fn a_rolled_back_change_is_never_sent() {
    let app = spawn().await;
    let c = app.clinic("watch rollback").await;
    let early = book(&app, &c, 0).await;
    let mut stream = watch(&app, &c.admin, &c.org.id, "").await;
    let org = app.access.organization(c.org.id.parse().expect("uuid")).await.expect("org");
    let mut db = app.tenant_client(&org.location.server, &org.location.database).await;
    let tx = db.transaction().await.expect("begin");
    let early_id: uuid::Uuid = early.parse().expect("uuid");
    tx.execute(
        "INSERT INTO appointment_status_history (appointment_id, from_status, to_status) \
         VALUES ($1, 'PENDING', 'CANCELLED')",
        &[&early_id],
    )
    .await
    .expect("history");
    // Takes the head lock now, as a commit would, then gives it back.
    tx.batch_execute("SET CONSTRAINTS ALL IMMEDIATE").await.expect("fire the trigger");
    tx.rollback().await.expect("rollback");
    let next_one = book(&app, &c, 1).await;
    let (change, _) = next_change(&mut stream).await;
    assert_eq!(change.appointment_id, next_one, "the rolled-back change was never sent");
}

#[tokio::test]
async fn the_lists_watch_token_continues_without_a_gap() {
    let app = spawn().await;
    let c = app.clinic("watch list").await;
    let listed = book(&app, &c, 0).await;
    let token = list_token(&app, &c.doctor, &c.org.id).await;
    let request = pb::ListAppointmentsRequest {
        organization_id: c.org.id.clone(),
        page_size: 1,
        ..Default::default()
    };
    let page = client(&app, &c.doctor).list_appointments(request).await.expect("list");
    assert_eq!(page.get_ref().appointments[0].id, listed);
    let next_page = pb::ListAppointmentsRequest {
        organization_id: c.org.id.clone(),
        page_token: page.into_inner().next_page_token,
        ..Default::default()
    };
    if !next_page.page_token.is_empty() {
        let later = client(&app, &c.doctor).list_appointments(next_page).await.expect("page 2");
        assert!(later.into_inner().watch_token.is_empty(), "only the first page has one");
    }
    let after = book(&app, &c, 1).await;
    approve(&app, &c, &listed).await;
    let mut stream = open(&app, &c.doctor, &c.org.id, &token).await.expect("watch");
    let seen: Vec<_> = until_heartbeat(&mut stream).await.iter().map(key).collect();
    assert_eq!(seen, vec![(after, S::Pending as i32), (listed, S::Approved as i32)]);
}

#[tokio::test]
async fn a_token_older_than_the_kept_history_is_out_of_range() {
    let app = spawn().await;
    let c = app.clinic("watch pruned").await;
    let before = list_token(&app, &c.admin, &c.org.id).await;
    book(&app, &c, 0).await;
    let mut stream = open(&app, &c.admin, &c.org.id, &before).await.expect("watch");
    let (_, last) = next_change(&mut stream).await;
    drop(stream);
    let org = c.org.id.parse().expect("uuid");
    let week = Duration::from_secs(7 * 24 * 3600);
    let prune = |retention| {
        clinic_service::feed::janitor::prune_tenant(&app.access, org, retention, Utc::now())
    };
    assert_eq!(prune(week).await.expect("prune"), 0, "a week's history is kept");
    assert_eq!(prune(Duration::ZERO).await.expect("prune"), 1);
    let status = open(&app, &c.admin, &c.org.id, &before).await.expect_err("pruned");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    // The last token received is still good: nothing after it was pruned.
    let mut stream = watch(&app, &c.admin, &c.org.id, &last).await;
    let newer = book(&app, &c, 1).await;
    assert_eq!(next_change(&mut stream).await.0.appointment_id, newer);
}

#[tokio::test]
async fn bad_requests_name_the_field_and_non_members_learn_nothing() {
    let app = spawn().await;
    let a = app.clinic("watch a").await;
    let b = app.clinic("watch b").await;
    let token_of_b = list_token(&app, &b.admin, &b.org.id).await;
    let cases = [
        (a.org.id.as_str(), token_of_b.as_str(), "resume_token", "belongs to another clinic"),
        (a.org.id.as_str(), "not-a-token", "resume_token", "is not a resume token"),
        ("nope", "", "organization_id", ""),
    ];
    for (org, token, field, says) in cases {
        let status = open(&app, &a.admin, org, token).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{org} {token}");
        let violations = status.get_details_bad_request().expect("bad request").field_violations;
        assert_eq!(violations[0].field, field);
        assert!(violations[0].description.contains(says), "{}", violations[0].description);
    }
    // B's admin is no member of A: NOT_FOUND, as for a clinic that does not exist.
    let status = open(&app, &b.admin, &a.org.id, "").await.expect_err("not a member");
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn an_idle_stream_gets_heartbeats_with_its_resume_token() {
    let app = spawn().await;
    let c = app.clinic("watch idle").await;
    book(&app, &c, 0).await;
    let token = list_token(&app, &c.patient, &c.org.id).await;
    let mut stream = watch(&app, &c.patient, &c.org.id, &token).await;
    for _ in 0..3 {
        let m = next(&mut stream).await.expect("heartbeat");
        assert!(m.heartbeat && m.change.is_none());
        assert_eq!(m.resume_token, token, "nothing happened since the list");
    }
}

#[tokio::test]
async fn the_stream_ends_when_the_session_is_logged_out() {
    let app = spawn().await;
    let c = app.clinic("watch logout").await;
    let mut stream = watch(&app, &c.patient, &c.org.id, "").await;
    ipb::auth_service_client::AuthServiceClient::new(app.identity_channel())
        .logout(ipb::LogoutRequest { refresh_token: c.patient.refresh_token.clone() })
        .await
        .expect("logout");
    let status = end_of(&mut stream).await;
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn the_stream_ends_when_the_member_is_removed() {
    let app = spawn().await;
    let c = app.clinic("watch removed").await;
    let mut stream = watch(&app, &c.patient, &c.org.id, "").await;
    app.members(&c.admin.token)
        .remove_member(pb::RemoveMemberRequest {
            organization_id: c.org.id.clone(),
            member_id: c.patient_member.id.clone(),
        })
        .await
        .expect("remove");
    let status = end_of(&mut stream).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
}

#[tokio::test]
async fn the_stream_ends_when_the_role_changes() {
    let app = spawn().await;
    let c = app.clinic("watch role").await;
    let mut stream = watch(&app, &c.patient, &c.org.id, "").await;
    app.members(&c.admin.token)
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: c.patient_member.id.clone(),
            profile: None,
            update_mask: Some(FieldMask { paths: vec!["role".into()] }),
            role: pb::Role::Admin as i32,
        })
        .await
        .expect("make the patient an admin");
    let status = end_of(&mut stream).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

#[tokio::test]
async fn streams_outlive_the_request_timeout_and_are_not_counted_as_requests_in_flight() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            quick(c);
            c.limits.request_timeout = Duration::from_secs(1);
            c.limits.max_concurrent_requests = 2;
        }),
        ..Default::default()
    })
    .await;
    let c = app.clinic("watch limits").await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        streams.push(watch(&app, &c.admin, &c.org.id, "").await);
    }
    // Heartbeats for longer than the request timeout: the streams are still open.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert!(next(&mut streams[0]).await.expect("heartbeat").heartbeat);
    }
    // Four streams open, a limit of two requests in flight: a unary call still goes through,
    // and its change reaches every stream.
    let id = book(&app, &c, 0).await;
    for stream in &mut streams {
        assert_eq!(next_change(stream).await.0.appointment_id, id);
    }
}
