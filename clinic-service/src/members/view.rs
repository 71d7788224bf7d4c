//! What a caller sees of a member: everything, or a doctor's public fields (name and
//! specialization) for patients looking at doctors.

use clinic_api::clinic::v1 as pb;

use super::{
    domain::{DoctorFields, PatientFields, Profile},
    read::{MemberRow, Status},
};
use crate::{grpc::timestamp, roles::Role, tenancy::Caller};

/// The member as `caller` may see it (the row is already known to be visible).
pub fn member_for(caller: &Caller, row: MemberRow) -> pb::Member {
    let public_only = caller.role == Role::Patient
        && row.id != caller.member_id
        && row.role == Some(Role::Doctor);
    if public_only {
        let specialization = match row.profile {
            Some(Profile::Doctor(d)) => d.specialization,
            _ => String::new(),
        };
        return pb::Member {
            id: row.id.to_string(),
            name: row.name,
            role: pb::Role::Doctor as i32,
            profile: Some(profile(Profile::Doctor(DoctorFields {
                specialization,
                ..Default::default()
            }))),
            // Only active doctors are visible to patients.
            status: pb::MembershipStatus::Active as i32,
            ..Default::default()
        };
    }
    let status = match row.status {
        Status::Active => pb::MembershipStatus::Active,
        Status::Invited => pb::MembershipStatus::Invited,
    };
    pb::Member {
        id: row.id.to_string(),
        user_id: row.user_id.map(|id| id.to_string()).unwrap_or_default(),
        email: row.email,
        name: row.name,
        role: row.role.map_or(pb::Role::Unspecified, Role::to_proto) as i32,
        profile: row.profile.map(profile),
        create_time: Some(timestamp(row.created_at)),
        update_time: Some(timestamp(row.updated_at)),
        status: status as i32,
        invite_expire_time: row.invite_expires_at.map(timestamp),
    }
}

fn profile(p: Profile) -> pb::MemberProfile {
    use pb::member_profile::Kind;
    let kind = match p {
        Profile::Admin => Kind::Admin(pb::AdminProfile {}),
        Profile::Doctor(d) => Kind::Doctor(pb::DoctorProfile {
            specialization: d.specialization,
            license_number: d.license_number,
            phone_number: d.phone_number,
        }),
        Profile::Patient(p) => Kind::Patient(patient(p)),
    };
    pb::MemberProfile { kind: Some(kind) }
}

fn patient(p: PatientFields) -> pb::PatientProfile {
    pb::PatientProfile {
        date_of_birth: p
            .date_of_birth
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        phone_number: p.phone_number,
        address: p.address,
        emergency_contact_name: p.emergency_contact_name,
        emergency_contact_phone: p.emergency_contact_phone,
        blood_type: p.blood_type,
        allergies: p.allergies,
        chronic_conditions: p.chronic_conditions,
    }
}
