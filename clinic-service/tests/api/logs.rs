//! Patient data and tokens never reach the logs.

use clinic_api::clinic::v1::{self as pb, member_profile::Kind};
use prost_types::FieldMask;

use crate::helpers::{captured_logs, spawn_app};

#[tokio::test]
async fn patient_fields_and_tokens_never_appear_in_logs() {
    let app = spawn_app().await;
    let c = app.clinic("Logs").await;
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let secret_values = [
        format!("Allergy{marker}"),
        format!("Condition{marker}"),
        format!("Street{marker}"),
        format!("Contact{marker}"),
    ];
    let phone = format!(
        "+9 {}",
        &marker
            .chars()
            .filter(char::is_ascii_digit)
            .chain("12345678".chars())
            .take(8)
            .collect::<String>()
    );
    let profile = pb::PatientProfile {
        allergies: secret_values[0].clone(),
        chronic_conditions: secret_values[1].clone(),
        address: secret_values[2].clone(),
        emergency_contact_name: secret_values[3].clone(),
        emergency_contact_phone: phone.clone(),
        phone_number: phone.clone(),
        blood_type: "B-".into(),
        date_of_birth: "1977-07-07".into(),
    };
    let patient = app.user("logpatient").await;
    let mut admin = app.members(&c.admin.token);
    let added = app
        .add_member(
            &c.admin,
            &c.org.id,
            &patient,
            pb::Role::Patient,
            Some(pb::MemberProfile { kind: Some(Kind::Patient(profile.clone())) }),
        )
        .await;
    admin
        .get_member(pb::GetMemberRequest {
            organization_id: c.org.id.clone(),
            member_id: added.id.clone(),
        })
        .await
        .unwrap();
    admin
        .list_members(pb::ListMembersRequest {
            organization_id: c.org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    // A rejected update carrying a bad value, and a good one.
    let bad = format!("Bad{marker}");
    let _ = app
        .members(&patient.token)
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: "me".into(),
            profile: Some(pb::MemberProfile {
                kind: Some(Kind::Patient(pb::PatientProfile {
                    blood_type: bad.clone(),
                    phone_number: bad.clone(),
                    ..Default::default()
                })),
            }),
            update_mask: Some(FieldMask {
                paths: vec!["patient.blood_type".into(), "patient.phone_number".into()],
            }),
            role: 0,
        })
        .await
        .unwrap_err();
    app.members(&patient.token)
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: "me".into(),
            profile: Some(pb::MemberProfile { kind: Some(Kind::Patient(profile)) }),
            update_mask: Some(FieldMask { paths: vec!["patient".into()] }),
            role: 0,
        })
        .await
        .unwrap();
    let logs = captured_logs();
    assert!(logs.contains("member invited"), "the capture works");
    assert!(logs.contains("invitation accepted"), "the capture works");
    assert!(logs.contains(&c.org.id), "the tenant is in the spans");
    for value in secret_values.iter().chain([&phone, &bad, &patient.token, &c.admin.token]) {
        assert!(!logs.contains(value.as_str()), "logs leak a seeded value");
    }
    // Invitations are logged by ids only: neither service logs who was invited.
    for value in [&patient.email, &patient.name] {
        assert!(!logs.contains(value.as_str()), "logs leak the invited person");
    }
}

/// A raw `organization_id` is client input: it may carry a forged log line. Only parsed ids
/// enter spans, so the forgery never reaches the logs, whatever the RPC.
#[tokio::test]
async fn raw_organization_ids_never_reach_logs_or_spans() {
    let app = spawn_app().await;
    let c = app.clinic("Forged").await;
    let marker = format!("FORGED{}", uuid::Uuid::new_v4().simple());
    let forged = format!("{}\n2026-01-01T00:00:00Z  INFO {marker} admin granted", c.org.id);
    let get = pb::GetOrganizationRequest { organization_id: forged.clone() };
    let status = app.orgs(&c.admin.token).get_organization(get).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let list = pb::ListMembersRequest { organization_id: forged.clone(), ..Default::default() };
    app.members(&c.admin.token).list_members(list).await.unwrap_err();
    let appointments =
        pb::ListAppointmentsRequest { organization_id: forged, ..Default::default() };
    clinic_api::clinic::v1::appointment_service_client::AppointmentServiceClient::with_interceptor(
        app.clinic_channel(),
        crate::helpers::bearer(&c.admin.token),
    )
    .list_appointments(appointments)
    .await
    .unwrap_err();
    assert!(!captured_logs().contains(&marker), "a raw organization_id reached the logs");
}
