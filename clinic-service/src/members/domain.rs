//! Validated member values: the profile of each role and a parsed `AddMember`. Parsing happens
//! once, at the edge (see `validate.rs`).

use chrono::NaiveDate;
use clinic_api::clinic::v1 as pb;
use uuid::Uuid;

use super::validate::{MemberChecks, Violations, parse_profile, violations};
use crate::{error::Error, grpc::parse_uuid, roles::Role};

/// A doctor's profile fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoctorFields {
    /// Specialization (public).
    pub specialization: String,
    /// Licence number.
    pub license_number: String,
    /// Phone number.
    pub phone_number: String,
}

/// A patient's profile fields. Never logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PatientFields {
    /// Date of birth.
    pub date_of_birth: Option<NaiveDate>,
    /// Phone number.
    pub phone_number: String,
    /// Postal address.
    pub address: String,
    /// Emergency contact's name.
    pub emergency_contact_name: String,
    /// Emergency contact's phone.
    pub emergency_contact_phone: String,
    /// Blood type or empty.
    pub blood_type: String,
    /// Allergies.
    pub allergies: String,
    /// Chronic conditions.
    pub chronic_conditions: String,
}

impl std::fmt::Debug for PatientFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientFields(<redacted>)")
    }
}

/// A profile of exactly one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Admin (no fields).
    Admin,
    /// Doctor.
    Doctor(DoctorFields),
    /// Patient.
    Patient(PatientFields),
}

impl Profile {
    /// The role this profile belongs to.
    pub fn role(&self) -> Role {
        match self {
            Profile::Admin => Role::Admin,
            Profile::Doctor(_) => Role::Doctor,
            Profile::Patient(_) => Role::Patient,
        }
    }

    /// An empty profile of `role`.
    pub fn empty(role: Role) -> Self {
        match role {
            Role::Admin => Profile::Admin,
            Role::Doctor => Profile::Doctor(DoctorFields::default()),
            Role::Patient => Profile::Patient(PatientFields::default()),
        }
    }
}
/// A validated `AddMember`.
#[derive(Debug)]
pub struct NewMember {
    /// The clinic.
    pub organization_id: Uuid,
    /// The email address to invite (trimmed, as given).
    pub email: String,
    /// The profile (and so the role).
    pub profile: Profile,
}

impl NewMember {
    /// Parses the request; `today` bounds dates of birth.
    pub fn parse(req: &pb::AddMemberRequest, today: NaiveDate) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = parse_uuid("organization_id", &req.organization_id)
            .map_err(|e| v.extend(violations(e)))
            .unwrap_or_default();
        let email = v.email("email", &req.email);
        let profile = match Role::from_proto(req.role) {
            Some(role) => parse_profile(req.profile.as_ref(), role, today, &mut v),
            None => {
                v.add("role", "required");
                Profile::Admin
            }
        };
        v.finish(Self { organization_id, email, profile }).map_err(Error::InvalidArgument)
    }
}
