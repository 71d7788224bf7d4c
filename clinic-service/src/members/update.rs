//! Parsing `UpdateMemberProfile`: a field mask over one role's profile, or a role change.

use chrono::NaiveDate;
use clinic_api::clinic::v1 as pb;
use uuid::Uuid;

use super::{
    domain::{DoctorFields, MemberRef, PatientFields, Profile},
    validate::{Violations, parse_doctor, parse_patient, parse_profile},
};
use crate::{error::Error, grpc::parse_uuid, roles::Role};

/// Doctor fields a mask may name, in `DoctorFields` order.
pub const DOCTOR_PATHS: [&str; 3] = ["specialization", "license_number", "phone_number"];
/// Patient fields a mask may name, in `PatientFields` order.
pub const PATIENT_PATHS: [&str; 8] = [
    "date_of_birth",
    "phone_number",
    "address",
    "emergency_contact_name",
    "emergency_contact_phone",
    "blood_type",
    "allergies",
    "chronic_conditions",
];

/// What to change.
#[derive(Debug)]
pub enum Change {
    /// Named fields of a doctor profile.
    Doctor { mask: [bool; 3], values: DoctorFields },
    /// Named fields of a patient profile.
    Patient { mask: [bool; 8], values: PatientFields },
    /// The admin profile has no fields: a no-op that still checks the role.
    Admin,
    /// A new role with its profile (admins only).
    Role(Profile),
}

impl Change {
    /// The role the member must have for a field change.
    pub fn role(&self) -> Option<Role> {
        match self {
            Change::Doctor { .. } => Some(Role::Doctor),
            Change::Patient { .. } => Some(Role::Patient),
            Change::Admin => Some(Role::Admin),
            Change::Role(_) => None,
        }
    }
}

/// A validated `UpdateMemberProfile`.
#[derive(Debug)]
pub struct ProfileUpdate {
    /// The clinic.
    pub organization_id: Uuid,
    /// The member.
    pub member: MemberRef,
    /// The change.
    pub change: Change,
}

impl ProfileUpdate {
    /// Parses the request; `today` bounds dates of birth.
    pub fn parse(req: &pb::UpdateMemberProfileRequest, today: NaiveDate) -> Result<Self, Error> {
        let organization_id = parse_uuid("organization_id", &req.organization_id)?;
        let member = MemberRef::parse(&req.member_id)?;
        let paths: Vec<&str> = req
            .update_mask
            .as_ref()
            .map(|m| m.paths.iter().map(|p| p.trim()).collect())
            .unwrap_or_default();
        if paths.is_empty() {
            return Err(Error::field("update_mask", "name at least one path"));
        }
        let mut v = Violations::default();
        let change = if paths.contains(&"role") {
            match Role::from_proto(req.role) {
                Some(role) => {
                    Change::Role(parse_profile(req.profile.as_ref(), role, today, &mut v))
                }
                None => return Err(Error::field("role", "required when update_mask has `role`")),
            }
        } else {
            parse_fields(&paths, req.profile.as_ref(), today, &mut v)?
        };
        v.finish(Self { organization_id, member, change })
    }
}

fn parse_fields(
    paths: &[&str],
    profile: Option<&pb::MemberProfile>,
    today: NaiveDate,
    v: &mut Violations,
) -> Result<Change, Error> {
    use pb::member_profile::Kind;
    let kind = paths[0].split('.').next().unwrap_or_default();
    let fields: Vec<&str> = paths
        .iter()
        .map(|p| match p.split_once('.') {
            Some((k, f)) if k == kind => Ok(f),
            None if *p == kind => Ok("*"),
            _ => Err(Error::field("update_mask", "paths must all name one role's profile")),
        })
        .collect::<Result<_, _>>()?;
    let given = profile.and_then(|p| p.kind.as_ref());
    let mut inner = Violations::default();
    let change = match kind {
        "admin" => Change::Admin,
        "doctor" => {
            let mask = mask_of(&DOCTOR_PATHS, &fields, "doctor")?;
            let values = match given {
                Some(Kind::Doctor(d)) => parse_doctor(d, "profile.doctor", &mut inner),
                None => DoctorFields::default(),
                Some(_) => return Err(Error::field("profile", "must be a doctor profile")),
            };
            keep_masked(&mut inner, &DOCTOR_PATHS, &mask);
            Change::Doctor { mask, values }
        }
        "patient" => {
            let mask = mask_of(&PATIENT_PATHS, &fields, "patient")?;
            let values = match given {
                Some(Kind::Patient(p)) => parse_patient(p, "profile.patient", today, &mut inner),
                None => PatientFields::default(),
                Some(_) => return Err(Error::field("profile", "must be a patient profile")),
            };
            keep_masked(&mut inner, &PATIENT_PATHS, &mask);
            Change::Patient { mask, values }
        }
        _ => return Err(Error::field("update_mask", "unknown path")),
    };
    v.0.extend(inner.0);
    Ok(change)
}

fn mask_of<const N: usize>(
    known: &[&str; N],
    fields: &[&str],
    kind: &str,
) -> Result<[bool; N], Error> {
    let mut mask = [false; N];
    for field in fields {
        if *field == "*" {
            mask = [true; N];
            continue;
        }
        let i = known
            .iter()
            .position(|k| k == field)
            .ok_or_else(|| Error::field("update_mask", format!("unknown {kind} field")))?;
        mask[i] = true;
    }
    Ok(mask)
}

/// Only fields the mask names are read, so only they can be wrong.
fn keep_masked<const N: usize>(v: &mut Violations, known: &[&str; N], mask: &[bool; N]) {
    v.0.retain(|violation| {
        let name = violation.field.rsplit('.').next().unwrap_or_default();
        known.iter().zip(mask).any(|(k, on)| *on && *k == name)
    });
}
