//! End to end: both real binaries, each on a free port with a fresh central database. Three
//! users register and verify, one creates a clinic and invites a doctor and a patient, who
//! accept; each reads what they may and is refused what they may not; the patient books three
//! visits, which are approved and completed, cancelled and declined. `clinic-service migrate` then reports the
//! clinic. Needs `cargo build --workspace --bins` first (the test script does it).

use std::{path::PathBuf, process::Stdio, time::Duration};

use clinic_api::clinic::v1::{
    self as pb, appointment_service_client::AppointmentServiceClient, member_profile::Kind,
    member_service_client::MemberServiceClient,
    organization_service_client::OrganizationServiceClient,
};
use clinic_shared::pg::TestDatabase;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};
use tonic::{Code, transport::Channel};

use crate::helpers::{TenantCleanup, TestUser, bearer, first_server_url, sign_up};

fn binary(name: &str) -> PathBuf {
    let clinic = PathBuf::from(env!("CARGO_BIN_EXE_clinic-service"));
    if name == "clinic-service" {
        return clinic;
    }
    let path = clinic.with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Starts a binary and reads the addresses its first `lines` lines end with (`... listening on
/// ADDR`).
async fn start(name: &str, env: &[(&str, String)], lines: usize) -> (Child, Vec<String>) {
    let mut child = Command::new(binary(name))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    let stdout = child.stdout.take().expect("stdout");
    let mut output = BufReader::new(stdout).lines();
    let mut urls = Vec::new();
    for _ in 0..lines {
        let line = tokio::time::timeout(Duration::from_secs(30), output.next_line())
            .await
            .unwrap_or_else(|_| panic!("{name} did not start in time"))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("{name} exited before listening"));
        urls.push(format!("http://{}", line.rsplit(' ').next().expect("address")));
    }
    (child, urls)
}

async fn user(identity: &str, label: &str) -> TestUser {
    let channel = Channel::from_shared(identity.to_owned()).expect("identity url").connect_lazy();
    sign_up(channel, label, true).await
}

#[tokio::test]
async fn both_binaries_end_to_end() {
    let central = TestDatabase::create(&TestDatabase::server(), "clinic_e2e_central").await;
    let token = format!("e2e-{}", uuid::Uuid::new_v4().simple());
    let outbox = std::env::temp_dir().join(format!("e2e-outbox-{}", uuid::Uuid::new_v4().simple()));
    let (_identity, identity_urls) = start(
        "identity-service",
        &[
            ("APP_MODE", "development".into()),
            ("IDENTITY_ADDR", "127.0.0.1:0".into()),
            ("IDENTITY_INTERNAL_ADDR", "127.0.0.1:0".into()),
            ("IDENTITY_DATABASE_URL", central.url()),
            ("SERVICE_TOKEN", token.clone()),
            ("MAIL_OUTBOX_DIR", outbox.display().to_string()),
            ("SHUTDOWN_GRACE_SECS", "0".into()),
        ],
        2,
    )
    .await;
    let (identity_url, identity_internal_url) = (&identity_urls[0], &identity_urls[1]);
    // The clinic-service binary keeps its default spares: named after this test, so the cleanup
    // (dropped after the binary is killed) drops them with the test's clinic.
    let tag = format!("e{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let _cleanup = TenantCleanup::first_server(&tag);
    let clinic_env = [
        ("APP_MODE", "development".to_owned()),
        ("SPARE_DATABASE_PREFIX", format!("spare_{tag}_")),
        ("CLINIC_ADDR", "127.0.0.1:0".into()),
        ("IDENTITY_URL", identity_internal_url.clone()),
        ("SERVICE_TOKEN", token.clone()),
        ("TENANT_SERVERS", format!("main={}", first_server_url())),
        ("SHUTDOWN_GRACE_SECS", "0".into()),
        ("TEMPLATE_DATABASE", clinic_service::config::test_template_database()),
    ];
    let (_clinic, clinic_urls) = start("clinic-service", &clinic_env, 1).await;
    let channel =
        Channel::from_shared(clinic_urls[0].clone()).unwrap().connect().await.expect("clinic up");

    // Health and reflection need no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health")
        .into_inner()
        .status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let admin = user(identity_url, "admin").await;
    let doctor = user(identity_url, "doctor").await;
    let patient = user(identity_url, "patient").await;
    let orgs = |t: &str| OrganizationServiceClient::with_interceptor(channel.clone(), bearer(t));
    let members = |t: &str| MemberServiceClient::with_interceptor(channel.clone(), bearer(t));

    let org = orgs(&admin.token)
        .create_organization(pb::CreateOrganizationRequest { name: format!("{tag} Riverside") })
        .await
        .expect("create clinic")
        .into_inner()
        .organization
        .unwrap();
    let org_id = org.id.clone();
    let add = |email: &str, role: pb::Role, kind: Kind| pb::AddMemberRequest {
        organization_id: org_id.clone(),
        email: email.to_owned(),
        role: role as i32,
        profile: Some(pb::MemberProfile { kind: Some(kind) }),
    };
    let doctor_member = members(&admin.token)
        .add_member(add(
            &doctor.email,
            pb::Role::Doctor,
            Kind::Doctor(pb::DoctorProfile {
                specialization: "Pediatrics".into(),
                license_number: "PED-1".into(),
                phone_number: "+1 555 0101".into(),
            }),
        ))
        .await
        .expect("add doctor")
        .into_inner()
        .member
        .unwrap();
    let patient_member = members(&admin.token)
        .add_member(add(
            &patient.email,
            pb::Role::Patient,
            Kind::Patient(pb::PatientProfile { blood_type: "A+".into(), ..Default::default() }),
        ))
        .await
        .expect("add patient")
        .into_inner()
        .member
        .unwrap();
    // Members join by invitation: each accepts and becomes ACTIVE.
    for (user, invited) in [(&doctor, &doctor_member), (&patient, &patient_member)] {
        assert_eq!(invited.status(), pb::MembershipStatus::Invited);
        let accepted = members(&user.token)
            .accept_invitation(pb::AcceptInvitationRequest { organization_id: org_id.clone() })
            .await
            .expect("accept invitation")
            .into_inner()
            .member
            .unwrap();
        assert_eq!(
            (accepted.id.as_str(), accepted.user_id.as_str()),
            (invited.id.as_str(), user.id.as_str())
        );
    }
    let get =
        |id: &str| pb::GetMemberRequest { organization_id: org_id.clone(), member_id: id.into() };
    let list = || pb::ListMembersRequest { organization_id: org_id.clone(), ..Default::default() };

    // Admin: everyone.
    assert_eq!(
        members(&admin.token).list_members(list()).await.unwrap().into_inner().members.len(),
        3
    );
    // Doctor: themself and doctors; not the patient (no appointment yet), not the admin.
    members(&doctor.token).get_member(get("me")).await.expect("doctor reads self");
    let err = members(&doctor.token).get_member(get(&patient_member.id)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Patient: themself and the doctor's public fields; refused admin work.
    let me =
        members(&patient.token).get_member(get("me")).await.unwrap().into_inner().member.unwrap();
    assert_eq!(me.id, patient_member.id);
    let doc = members(&patient.token)
        .get_member(get(&doctor_member.id))
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert!(doc.email.is_empty());
    let err = members(&patient.token)
        .add_member(add(&admin.email, pb::Role::Patient, Kind::Patient(Default::default())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = members(&patient.token)
        .remove_member(pb::RemoveMemberRequest {
            organization_id: org_id.clone(),
            member_id: doctor_member.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Each sees the clinic in their list with their role.
    let listed = orgs(&doctor.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.organizations.len(), 1);
    assert_eq!(listed.organizations[0].role, pb::Role::Doctor as i32);
    // No token: refused.
    let err = OrganizationServiceClient::new(channel.clone())
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // Appointments: the patient books three visits with the doctor; one is approved and
    // completed, one cancelled by the patient, one declined by the doctor.
    let appts = |t: &str| AppointmentServiceClient::with_interceptor(channel.clone(), bearer(t));
    let tomorrow = chrono::Utc::now().timestamp() / 60 * 60 + 24 * 3600;
    let mut booked = Vec::new();
    for slot in 0..3 {
        let appointment = appts(&patient.token)
            .create_appointment(pb::CreateAppointmentRequest {
                organization_id: org_id.clone(),
                patient_id: "me".into(),
                doctor_id: doctor_member.id.clone(),
                start_time: Some(prost_types::Timestamp {
                    seconds: tomorrow + slot * 30 * 60,
                    nanos: 0,
                }),
                duration_minutes: 30,
                ..Default::default()
            })
            .await
            .expect("book")
            .into_inner()
            .appointment
            .unwrap();
        assert_eq!(appointment.status, pb::AppointmentStatus::Pending as i32);
        booked.push(appointment.id);
    }
    let target = |id: &str| (org_id.clone(), id.to_owned());
    let status = |a: Option<pb::Appointment>| a.map(|a| a.status).unwrap_or_default();
    let (organization_id, appointment_id) = target(&booked[0]);
    let approved = appts(&doctor.token)
        .approve_appointment(pb::ApproveAppointmentRequest { organization_id, appointment_id })
        .await
        .expect("approve");
    assert_eq!(status(approved.into_inner().appointment), pb::AppointmentStatus::Approved as i32);
    let (organization_id, appointment_id) = target(&booked[0]);
    let completed = appts(&doctor.token)
        .complete_appointment(pb::CompleteAppointmentRequest { organization_id, appointment_id })
        .await
        .expect("complete");
    assert_eq!(status(completed.into_inner().appointment), pb::AppointmentStatus::Completed as i32);
    let (organization_id, appointment_id) = target(&booked[1]);
    let cancelled = appts(&patient.token)
        .cancel_appointment(pb::CancelAppointmentRequest {
            organization_id,
            appointment_id,
            reason: "cannot make it".into(),
        })
        .await
        .expect("cancel");
    assert_eq!(status(cancelled.into_inner().appointment), pb::AppointmentStatus::Cancelled as i32);
    let (organization_id, appointment_id) = target(&booked[2]);
    let declined = appts(&doctor.token)
        .decline_appointment(pb::DeclineAppointmentRequest {
            organization_id,
            appointment_id,
            reason: "on leave".into(),
        })
        .await
        .expect("decline");
    assert_eq!(status(declined.into_inner().appointment), pb::AppointmentStatus::Declined as i32);
    // The patient may not approve; final states stay final.
    let (organization_id, appointment_id) = target(&booked[2]);
    let err = appts(&patient.token)
        .approve_appointment(pb::ApproveAppointmentRequest { organization_id, appointment_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let (organization_id, appointment_id) = target(&booked[2]);
    let err = appts(&admin.token)
        .approve_appointment(pb::ApproveAppointmentRequest { organization_id, appointment_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Each party lists the three in start order; the history shows who did what.
    for token in [&patient.token, &doctor.token, &admin.token] {
        let listed = appts(token)
            .list_appointments(pb::ListAppointmentsRequest {
                organization_id: org_id.clone(),
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner();
        let ids: Vec<_> = listed.appointments.into_iter().map(|a| a.id).collect();
        assert_eq!(ids, booked);
    }
    let history = appts(&patient.token)
        .get_appointment(pb::GetAppointmentRequest {
            organization_id: org_id.clone(),
            appointment_id: booked[0].clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .history;
    let who: Vec<_> = history.iter().map(|h| h.changed_by_member_id.as_str()).collect();
    assert_eq!(who, [&patient_member.id, &doctor_member.id, &doctor_member.id]);
    // With an appointment between them, the doctor may now read the patient.
    members(&doctor.token).get_member(get(&patient_member.id)).await.expect("doctor reads patient");

    // `clinic-service migrate` reports the clinic and succeeds.
    let output = Command::new(binary("clinic-service"))
        .arg("migrate")
        .envs(clinic_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("run migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "migrate failed: {stdout}");
    assert!(stdout.contains(&format!("{org_id} main/{}: ok", org.database_name)), "{stdout}");
    // A tenant whose history diverges is reported and makes the run fail.
    let tenant = clinic_shared::pg::connect(&clinic_shared::pg::with_dbname(
        &clinic_shared::pg::parse_url(&first_server_url()).unwrap(),
        &org.database_name,
    ))
    .await
    .unwrap();
    tenant
        .execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1", &[])
        .await
        .unwrap();
    let output = Command::new(binary("clinic-service"))
        .arg("migrate")
        .envs(clinic_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "off")
        .output()
        .await
        .expect("run migrate");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("{org_id} main/{}: FAILED", org.database_name)), "{stdout}");
    let _ = std::fs::remove_dir_all(outbox);
}
