//! MemberService: the role × RPC permission matrix, visibility, cross-tenant isolation,
//! validation, field-mask updates, role changes, removal and pagination. Invitations (how
//! members join) are in `invitations.rs`; `add_member` here invites and accepts.

use clinic_api::clinic::v1::{self as pb, member_profile::Kind};
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{TestApp, TestUser, spawn_app};

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask { paths: paths.iter().map(|p| (*p).to_owned()).collect() })
}

fn patient(p: pb::PatientProfile) -> Option<pb::MemberProfile> {
    Some(pb::MemberProfile { kind: Some(Kind::Patient(p)) })
}

fn doctor(d: pb::DoctorProfile) -> Option<pb::MemberProfile> {
    Some(pb::MemberProfile { kind: Some(Kind::Doctor(d)) })
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rpc {
    GetOrganization,
    ListOrganizations,
    AddMember,
    GetMe,
    GetPatient,
    GetDoctor,
    GetAdmin,
    ListMembers,
    UpdateMe,
    UpdateOther,
    ChangeRole,
    RemoveMember,
    AcceptInvitation,
}

/// Runs one RPC as `who` (whose own role decides the `UpdateMe` path) and returns its code.
async fn call(app: &TestApp, ctx: &Ctx, who: &TestUser, own: &str, rpc: Rpc) -> Code {
    let org = ctx.org.clone();
    let mut m = app.members(&who.token);
    let mut o = app.orgs(&who.token);
    let get =
        |id: &str| pb::GetMemberRequest { organization_id: org.clone(), member_id: id.into() };
    let result = match rpc {
        Rpc::GetOrganization => o
            .get_organization(pb::GetOrganizationRequest { organization_id: org.clone() })
            .await
            .map(|_| ()),
        Rpc::ListOrganizations => {
            o.list_organizations(pb::ListOrganizationsRequest::default()).await.map(|_| ())
        }
        Rpc::AddMember => m
            .add_member(pb::AddMemberRequest {
                organization_id: org.clone(),
                email: ctx.newcomer.email.clone(),
                role: pb::Role::Patient as i32,
                profile: None,
            })
            .await
            .map(|_| ()),
        Rpc::GetMe => m.get_member(get("me")).await.map(|_| ()),
        Rpc::GetPatient => m.get_member(get(&ctx.patient_id)).await.map(|_| ()),
        Rpc::GetDoctor => m.get_member(get(&ctx.doctor_id)).await.map(|_| ()),
        Rpc::GetAdmin => m.get_member(get(&ctx.admin_id)).await.map(|_| ()),
        Rpc::ListMembers => m
            .list_members(pb::ListMembersRequest {
                organization_id: org.clone(),
                ..Default::default()
            })
            .await
            .map(|_| ()),
        Rpc::UpdateMe => {
            let (path, profile) = match own {
                "doctor" => (
                    "doctor.specialization",
                    doctor(pb::DoctorProfile {
                        specialization: "Neurology".into(),
                        ..Default::default()
                    }),
                ),
                "patient" => (
                    "patient.phone_number",
                    patient(pb::PatientProfile {
                        phone_number: "+44 20 7946 0000".into(),
                        ..Default::default()
                    }),
                ),
                _ => (
                    "admin",
                    Some(pb::MemberProfile { kind: Some(Kind::Admin(pb::AdminProfile {})) }),
                ),
            };
            m.update_member_profile(pb::UpdateMemberProfileRequest {
                organization_id: org.clone(),
                member_id: "me".into(),
                profile,
                update_mask: mask(&[path]),
                role: 0,
            })
            .await
            .map(|_| ())
        }
        Rpc::UpdateOther => m
            .update_member_profile(pb::UpdateMemberProfileRequest {
                organization_id: org.clone(),
                member_id: ctx.other_patient_id.clone(),
                profile: patient(pb::PatientProfile {
                    address: "1 Main St".into(),
                    ..Default::default()
                }),
                update_mask: mask(&["patient.address"]),
                role: 0,
            })
            .await
            .map(|_| ()),
        Rpc::ChangeRole => m
            .update_member_profile(pb::UpdateMemberProfileRequest {
                organization_id: org.clone(),
                member_id: ctx.other_patient_id.clone(),
                profile: None,
                update_mask: mask(&["role"]),
                role: pb::Role::Patient as i32,
            })
            .await
            .map(|_| ()),
        Rpc::RemoveMember => m
            .remove_member(pb::RemoveMemberRequest {
                organization_id: org.clone(),
                member_id: ctx.other_patient_id.clone(),
            })
            .await
            .map(|_| ()),
        Rpc::AcceptInvitation => m
            .accept_invitation(pb::AcceptInvitationRequest { organization_id: org.clone() })
            .await
            .map(|_| ()),
    };
    result.map_or_else(|s| s.code(), |_| Code::Ok)
}

struct Ctx {
    org: String,
    admin_id: String,
    doctor_id: String,
    patient_id: String,
    other_patient_id: String,
    newcomer: TestUser,
}

#[tokio::test]
async fn permission_matrix_role_by_rpc() {
    use Code::{AlreadyExists as AE, NotFound as NF, Ok as OK, PermissionDenied as PD};
    let app = spawn_app().await;
    let c = app.clinic("Matrix").await;
    let other_clinic = app.clinic("Elsewhere").await;
    let stranger = app.user("stranger").await;
    let other_patient = app.user("patient2").await;
    let other_member =
        app.add_member(&c.admin, &c.org.id, &other_patient, pb::Role::Patient, None).await;
    let invited_admin = app.user("invited").await;
    app.invite(&c.admin, &c.org.id, &invited_admin.email, pb::Role::Admin, None).await;
    let ctx = Ctx {
        org: c.org.id.clone(),
        admin_id: c.admin_member.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        patient_id: c.patient_member.id.clone(),
        other_patient_id: other_member.id.clone(),
        newcomer: app.user("newcomer").await,
    };
    // Columns: stranger (verified, no membership), outsider (member of another clinic),
    // invited (an admin invited, not accepted yet), patient, doctor, admin. Admin runs last in
    // each row, so destructive rows work once. Non-members learn nothing: NOT_FOUND, exactly as
    // for a clinic that does not exist; an invited admin is such a non-member until accepting
    // (the last row, so every row above sees them invited). AddMember invites since the
    // invitations change (it no longer needs the newcomer to have an account).
    #[rustfmt::skip]
    let matrix: &[(Rpc, [Code; 6])] = &[
        (Rpc::GetOrganization,   [NF, NF, NF, OK, OK, OK]),
        (Rpc::ListOrganizations, [OK, OK, OK, OK, OK, OK]),
        (Rpc::AddMember,         [NF, NF, NF, PD, PD, OK]),
        (Rpc::GetMe,             [NF, NF, NF, OK, OK, OK]),
        (Rpc::GetPatient,        [NF, NF, NF, OK, PD, OK]),
        (Rpc::GetDoctor,         [NF, NF, NF, OK, OK, OK]),
        (Rpc::GetAdmin,          [NF, NF, NF, PD, PD, OK]),
        (Rpc::ListMembers,       [NF, NF, NF, OK, OK, OK]),
        (Rpc::UpdateMe,          [NF, NF, NF, OK, OK, OK]),
        (Rpc::UpdateOther,       [NF, NF, NF, PD, PD, OK]),
        (Rpc::ChangeRole,        [NF, NF, NF, PD, PD, OK]),
        (Rpc::RemoveMember,      [NF, NF, NF, PD, PD, OK]),
        (Rpc::AcceptInvitation,  [NF, NF, OK, AE, AE, AE]),
    ];
    let callers: [(&TestUser, &str); 6] = [
        (&stranger, "none"),
        (&other_clinic.admin, "admin"),
        (&invited_admin, "admin"),
        (&c.patient, "patient"),
        (&c.doctor, "doctor"),
        (&c.admin, "admin"),
    ];
    let mut failures = Vec::new();
    for (rpc, expected) in matrix {
        for ((who, own), want) in callers.iter().zip(expected) {
            let got = call(&app, &ctx, who, own, *rpc).await;
            if got != *want {
                failures.push(format!("{rpc:?} as {own}/{}: got {got:?}, want {want:?}", who.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_non_member_cannot_tell_a_clinic_from_an_unknown_id() {
    let app = spawn_app().await;
    let c = app.clinic("Hidden").await;
    let stranger = app.user("stranger").await;
    let get = |id: String| {
        let mut orgs = app.orgs(&stranger.token);
        async move {
            orgs.get_organization(pb::GetOrganizationRequest { organization_id: id })
                .await
                .unwrap_err()
        }
    };
    let existing = get(c.org.id.clone()).await;
    let unknown = get(uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(existing.code(), Code::NotFound);
    assert_eq!(
        (existing.code(), existing.message(), existing.details()),
        (unknown.code(), unknown.message(), unknown.details())
    );
    let list = |id: String| {
        let mut members = app.members(&stranger.token);
        async move {
            let request = pb::ListMembersRequest { organization_id: id, ..Default::default() };
            members.list_members(request).await.unwrap_err()
        }
    };
    let (existing, unknown) =
        (list(c.org.id.clone()).await, list(uuid::Uuid::new_v4().to_string()).await);
    assert_eq!((existing.code(), existing.message()), (unknown.code(), unknown.message()));
}

#[tokio::test]
async fn visibility_of_fields_and_patients_with_appointments() {
    let app = spawn_app().await;
    let c = app.clinic("Visibility").await;
    // A patient sees a doctor's public fields only.
    let seen = app
        .members(&c.patient.token)
        .get_member(pb::GetMemberRequest {
            organization_id: c.org.id.clone(),
            member_id: c.doctor_member.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(seen.name, c.doctor.name);
    assert!(seen.email.is_empty() && seen.user_id.is_empty());
    match seen.profile.and_then(|p| p.kind) {
        Some(Kind::Doctor(d)) => {
            assert_eq!(d.specialization, "Cardiology");
            assert!(d.license_number.is_empty() && d.phone_number.is_empty());
        }
        other => panic!("unexpected profile {other:?}"),
    }
    // A patient lists themself and the doctors only.
    let listed = app
        .members(&c.patient.token)
        .list_members(pb::ListMembersRequest {
            organization_id: c.org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    let mut ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    let mut want = vec![c.patient_member.id.clone(), c.doctor_member.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    // The doctor sees the patient once they have an appointment together.
    let get_patient = pb::GetMemberRequest {
        organization_id: c.org.id.clone(),
        member_id: c.patient_member.id.clone(),
    };
    let err = app.members(&c.doctor.token).get_member(get_patient.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let tenant = app.tenant_client("main", &c.org.database_name).await;
    let (p, d): (uuid::Uuid, uuid::Uuid) =
        (c.patient_member.id.parse().unwrap(), c.doctor_member.id.parse().unwrap());
    tenant
        .execute(
            "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time) VALUES ($1, $2, now() + interval '1 day')",
            &[&p, &d],
        )
        .await
        .unwrap();
    let seen = app
        .members(&c.doctor.token)
        .get_member(get_patient)
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    match seen.profile.and_then(|p| p.kind) {
        Some(Kind::Patient(p)) => assert_eq!(p.blood_type, "O+"),
        other => panic!("unexpected profile {other:?}"),
    }
}

#[tokio::test]
async fn ids_from_one_clinic_never_reach_another() {
    let app = spawn_app().await;
    let a = app.clinic("Clinic A").await;
    let b = app.clinic("Clinic B").await;
    let mut admin_b = app.members(&b.admin.token);
    let get = pb::GetMemberRequest {
        organization_id: b.org.id.clone(),
        member_id: a.patient_member.id.clone(),
    };
    assert_eq!(admin_b.get_member(get).await.unwrap_err().code(), Code::NotFound);
    let update = pb::UpdateMemberProfileRequest {
        organization_id: b.org.id.clone(),
        member_id: a.patient_member.id.clone(),
        profile: patient(pb::PatientProfile {
            phone_number: "+1 000".into(),
            ..Default::default()
        }),
        update_mask: mask(&["patient.phone_number"]),
        role: 0,
    };
    assert_eq!(admin_b.update_member_profile(update).await.unwrap_err().code(), Code::NotFound);
    let remove = pb::RemoveMemberRequest {
        organization_id: b.org.id.clone(),
        member_id: a.patient_member.id.clone(),
    };
    assert_eq!(admin_b.remove_member(remove).await.unwrap_err().code(), Code::NotFound);
    // A's admin naming B's organization learns nothing: NOT_FOUND, as for an unknown clinic.
    let get = pb::GetMemberRequest {
        organization_id: b.org.id.clone(),
        member_id: b.patient_member.id.clone(),
    };
    assert_eq!(
        app.members(&a.admin.token).get_member(get).await.unwrap_err().code(),
        Code::NotFound
    );
    // A's patient is untouched.
    let still = app
        .members(&a.admin.token)
        .get_member(pb::GetMemberRequest {
            organization_id: a.org.id.clone(),
            member_id: a.patient_member.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(still.profile, a.patient_member.profile);
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_writes_nothing() {
    let app = spawn_app().await;
    let c = app.clinic("Validation").await;
    let newcomer = app.user("newcomer").await;
    let mut admin = app.members(&c.admin.token);
    let add = |role: pb::Role, profile| pb::AddMemberRequest {
        organization_id: c.org.id.clone(),
        email: newcomer.email.clone(),
        role: role as i32,
        profile,
    };
    let cases: Vec<(pb::AddMemberRequest, &str)> = vec![
        (
            add(
                pb::Role::Patient,
                patient(pb::PatientProfile { blood_type: "Q-".into(), ..Default::default() }),
            ),
            "profile.patient.blood_type",
        ),
        (
            add(
                pb::Role::Patient,
                patient(pb::PatientProfile {
                    date_of_birth: "2999-01-01".into(),
                    ..Default::default()
                }),
            ),
            "profile.patient.date_of_birth",
        ),
        (
            add(
                pb::Role::Patient,
                patient(pb::PatientProfile {
                    phone_number: "call me maybe".into(),
                    ..Default::default()
                }),
            ),
            "profile.patient.phone_number",
        ),
        (
            add(
                pb::Role::Patient,
                patient(pb::PatientProfile { allergies: "x".repeat(2001), ..Default::default() }),
            ),
            "profile.patient.allergies",
        ),
        (
            add(
                pb::Role::Doctor,
                doctor(pb::DoctorProfile { license_number: "x".repeat(51), ..Default::default() }),
            ),
            "profile.doctor.license_number",
        ),
        (add(pb::Role::Doctor, patient(pb::PatientProfile::default())), "profile"),
        (add(pb::Role::Unspecified, None), "role"),
        (
            pb::AddMemberRequest { organization_id: "nope".into(), ..add(pb::Role::Patient, None) },
            "organization_id",
        ),
        (
            pb::AddMemberRequest { email: "not-an-email".into(), ..add(pb::Role::Patient, None) },
            "email",
        ),
        (
            pb::AddMemberRequest {
                email: "two words@example.com".into(),
                ..add(pb::Role::Patient, None)
            },
            "email",
        ),
    ];
    for (request, field) in cases {
        let err = admin.add_member(request).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
        assert!(!err.message().contains("Q-") && !err.message().contains("call me"));
    }
    let listed = admin
        .list_members(pb::ListMembersRequest {
            organization_id: c.org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(listed.len(), 3, "nothing was written");
    let err = admin
        .list_members(pb::ListMembersRequest {
            organization_id: c.org.id.clone(),
            page_size: -1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: c.patient_member.id.clone(),
            profile: patient(pb::PatientProfile::default()),
            update_mask: None,
            role: 0,
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("update_mask"));
    // Since invitations, an email without an account is no longer NOT_FOUND: AddMember invites
    // it like any other (see invitations.rs). The email of an active member is ALREADY_EXISTS.
    let err = admin
        .add_member(pb::AddMemberRequest {
            email: c.patient.email.clone(),
            ..add(pb::Role::Patient, None)
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn updates_role_changes_removal_and_pagination() {
    let app = spawn_app().await;
    let c = app.clinic("Lifecycle").await;
    let mut admin = app.members(&c.admin.token);
    // Field mask: only the named field changes.
    let updated = app
        .members(&c.patient.token)
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: "me".into(),
            profile: patient(pb::PatientProfile {
                address: "2 High St".into(),
                blood_type: "AB-".into(),
                ..Default::default()
            }),
            update_mask: mask(&["patient.address"]),
            role: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    match updated.profile.and_then(|p| p.kind) {
        Some(Kind::Patient(p)) => {
            assert_eq!(p.address, "2 High St");
            assert_eq!(p.blood_type, "O+", "unmasked field unchanged");
            assert_eq!(p.date_of_birth, "1980-02-03");
        }
        other => panic!("{other:?}"),
    }
    // Role change by an admin: patient becomes doctor, one role only.
    let changed = admin
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: c.patient_member.id.clone(),
            profile: doctor(pb::DoctorProfile {
                specialization: "Dermatology".into(),
                ..Default::default()
            }),
            update_mask: mask(&["role"]),
            role: pb::Role::Doctor as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .member
        .unwrap();
    assert_eq!(changed.role, pb::Role::Doctor as i32);
    let tenant = app.tenant_client("main", &c.org.database_name).await;
    let profiles: i64 =
        tenant.query_one("SELECT count(*) FROM patient_profile", &[]).await.unwrap().get(0);
    assert_eq!(profiles, 0, "old profile removed");
    // The CHECK constraint is the last line of defence.
    let err = tenant
        .execute("UPDATE organization_user SET admin_profile_id = doctor_profile_id WHERE role = 'doctor'", &[])
        .await
        .unwrap_err();
    assert!(err.as_db_error().is_some());
    // Admins cannot change their own role nor remove themselves.
    let err = admin
        .update_member_profile(pb::UpdateMemberProfileRequest {
            organization_id: c.org.id.clone(),
            member_id: "me".into(),
            profile: None,
            update_mask: mask(&["role"]),
            role: pb::Role::Patient as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = admin
        .remove_member(pb::RemoveMemberRequest {
            organization_id: c.org.id.clone(),
            member_id: c.admin_member.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Pagination: 7 more patients, pages of 3, every member exactly once.
    for i in 0..7 {
        let u = app.user(&format!("p{i}")).await;
        app.add_member(&c.admin, &c.org.id, &u, pb::Role::Patient, None).await;
    }
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = admin
            .list_members(pb::ListMembersRequest {
                organization_id: c.org.id.clone(),
                role: 0,
                page_size: 3,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.members.len() <= 3);
        seen.extend(page.members.into_iter().map(|m| m.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (10, 10));
    let patients = admin
        .list_members(pb::ListMembersRequest {
            organization_id: c.org.id.clone(),
            role: pb::Role::Patient as i32,
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(patients.len(), 7);
    // Removal: the member is gone, appointments keep their rows.
    let d: uuid::Uuid = c.doctor_member.id.parse().unwrap();
    tenant
        .execute("INSERT INTO appointment (doctor_id, appointment_date_time) VALUES ($1, now() + interval '2 days')", &[&d])
        .await
        .unwrap();
    admin
        .remove_member(pb::RemoveMemberRequest {
            organization_id: c.org.id.clone(),
            member_id: c.doctor_member.id.clone(),
        })
        .await
        .unwrap();
    let left: i64 = tenant
        .query_one("SELECT count(*) FROM appointment WHERE doctor_id IS NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 1);
    let err = app
        .orgs(&c.doctor.token)
        .get_organization(pb::GetOrganizationRequest { organization_id: c.org.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a removed member is a non-member");
    let orgs = app
        .orgs(&c.doctor.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(orgs.organizations.is_empty(), "central membership removed");
}
