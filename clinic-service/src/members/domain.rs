//! Validated member values. Each incoming profile is parsed once here; every violation names its
//! field (`profile.patient.blood_type`) and never echoes the value (patient data).

use chrono::NaiveDate;
use clinic_api::clinic::v1 as pb;
use clinic_shared::error::FieldViolation;
use uuid::Uuid;

use crate::{error::Error, grpc::parse_uuid, roles::Role};

/// Blood types the schema's CHECK accepts (besides empty).
const BLOOD_TYPES: &[&str] = &["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"];

/// A `member_id` field: a UUID or `me`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRef {
    /// The caller.
    Me,
    /// A member by id.
    Id(Uuid),
}

impl MemberRef {
    /// Parses `member_id`.
    pub fn parse(value: &str) -> Result<Self, Error> {
        if value.trim() == "me" {
            Ok(Self::Me)
        } else {
            parse_uuid("member_id", value).map(Self::Id)
        }
    }

    /// The member id, with `me` resolved to `caller`.
    pub fn resolve(self, caller: Uuid) -> Uuid {
        match self {
            Self::Me => caller,
            Self::Id(id) => id,
        }
    }
}

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

/// Collects violations while parsing a message.
#[derive(Default)]
pub struct Violations(pub Vec<FieldViolation>);

impl Violations {
    /// Records one.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// `Ok(value)` when nothing was recorded.
    pub fn finish<T>(self, value: T) -> Result<T, Error> {
        if self.0.is_empty() { Ok(value) } else { Err(Error::InvalidArgument(self.0)) }
    }

    /// A text field of at most `max` characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.add(field, "must not contain control characters");
        }
        value.to_owned()
    }

    /// A phone number: digits, spaces and `+-()`, at most 32 characters, empty allowed.
    pub fn phone(&mut self, field: &str, value: &str) -> String {
        let value = value.trim();
        let allowed = value.chars().all(|c| c.is_ascii_digit() || " +-()".contains(c));
        if value.chars().count() > 32 {
            self.add(field, "must be at most 32 characters");
        } else if !allowed || (!value.is_empty() && !value.chars().any(|c| c.is_ascii_digit())) {
            self.add(field, "must be digits, spaces and +-()");
        }
        value.to_owned()
    }

    /// A date of birth `YYYY-MM-DD`, not after `today`, empty allowed.
    pub fn birth_date(&mut self, field: &str, value: &str, today: NaiveDate) -> Option<NaiveDate> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
            Ok(date) if date > today => {
                self.add(field, "must not be in the future");
                None
            }
            Ok(date) if date < NaiveDate::from_ymd_opt(1850, 1, 1).unwrap_or(date) => {
                self.add(field, "must be after 1850");
                None
            }
            Ok(date) => Some(date),
            Err(_) => {
                self.add(field, "must be a date YYYY-MM-DD");
                None
            }
        }
    }

    /// A blood type or empty.
    pub fn blood_type(&mut self, field: &str, value: &str) -> String {
        let value = value.trim().to_ascii_uppercase();
        if !value.is_empty() && !BLOOD_TYPES.contains(&value.as_str()) {
            self.add(field, "must be one of A+, A-, B+, B-, AB+, AB-, O+, O-");
        }
        value
    }
}

/// Parses a doctor profile under `prefix` (e.g. `profile.doctor`).
pub fn parse_doctor(p: &pb::DoctorProfile, prefix: &str, v: &mut Violations) -> DoctorFields {
    DoctorFields {
        specialization: v.text(&format!("{prefix}.specialization"), &p.specialization, 100),
        license_number: v.text(&format!("{prefix}.license_number"), &p.license_number, 50),
        phone_number: v.phone(&format!("{prefix}.phone_number"), &p.phone_number),
    }
}

/// Parses a patient profile under `prefix`; `today` bounds the date of birth.
pub fn parse_patient(
    p: &pb::PatientProfile,
    prefix: &str,
    today: NaiveDate,
    v: &mut Violations,
) -> PatientFields {
    PatientFields {
        date_of_birth: v.birth_date(&format!("{prefix}.date_of_birth"), &p.date_of_birth, today),
        phone_number: v.phone(&format!("{prefix}.phone_number"), &p.phone_number),
        address: v.text(&format!("{prefix}.address"), &p.address, 500),
        emergency_contact_name: v.text(
            &format!("{prefix}.emergency_contact_name"),
            &p.emergency_contact_name,
            100,
        ),
        emergency_contact_phone: v
            .phone(&format!("{prefix}.emergency_contact_phone"), &p.emergency_contact_phone),
        blood_type: v.blood_type(&format!("{prefix}.blood_type"), &p.blood_type),
        allergies: v.text(&format!("{prefix}.allergies"), &p.allergies, 2000),
        chronic_conditions: v.text(
            &format!("{prefix}.chronic_conditions"),
            &p.chronic_conditions,
            2000,
        ),
    }
}

/// Parses an optional `profile` that must be of `role` (an absent one is empty).
pub fn parse_profile(
    profile: Option<&pb::MemberProfile>,
    role: Role,
    today: NaiveDate,
    v: &mut Violations,
) -> Profile {
    use pb::member_profile::Kind;
    match (profile.and_then(|p| p.kind.as_ref()), role) {
        (None, role) => Profile::empty(role),
        (Some(Kind::Admin(_)), Role::Admin) => Profile::Admin,
        (Some(Kind::Doctor(d)), Role::Doctor) => {
            Profile::Doctor(parse_doctor(d, "profile.doctor", v))
        }
        (Some(Kind::Patient(p)), Role::Patient) => {
            Profile::Patient(parse_patient(p, "profile.patient", today, v))
        }
        (Some(_), _) => {
            v.add("profile", "must be the profile of the member's role");
            Profile::empty(role)
        }
    }
}

/// A validated `AddMember`.
#[derive(Debug)]
pub struct NewMember {
    /// The clinic.
    pub organization_id: Uuid,
    /// The user's email.
    pub email: String,
    /// The profile (and so the role).
    pub profile: Profile,
}

impl NewMember {
    /// Parses the request; `today` bounds dates of birth.
    pub fn parse(req: &pb::AddMemberRequest, today: NaiveDate) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = parse_uuid("organization_id", &req.organization_id)
            .map_err(|e| v.0.extend(violations(e)))
            .unwrap_or_default();
        let email = req.email.trim().to_owned();
        if email.is_empty() || email.len() > 254 || !email.contains('@') {
            v.add("email", "must be an email address");
        }
        let profile = match Role::from_proto(req.role) {
            Some(role) => parse_profile(req.profile.as_ref(), role, today, &mut v),
            None => {
                v.add("role", "required");
                Profile::Admin
            }
        };
        v.finish(Self { organization_id, email, profile })
    }
}

/// The violations of an INVALID_ARGUMENT error (others become one generic violation).
pub fn violations(e: Error) -> Vec<FieldViolation> {
    match e {
        Error::InvalidArgument(v) => v,
        other => vec![FieldViolation::new("request", other.to_string())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
    }

    #[test]
    fn patient_fields_are_validated_by_name() {
        let bad = pb::PatientProfile {
            date_of_birth: "2030-01-01".into(),
            phone_number: "call me".into(),
            blood_type: "Z+".into(),
            address: "x".repeat(501),
            ..Default::default()
        };
        let mut v = Violations::default();
        parse_patient(&bad, "profile.patient", today(), &mut v);
        let fields: Vec<_> = v.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "profile.patient.date_of_birth",
                "profile.patient.phone_number",
                "profile.patient.address",
                "profile.patient.blood_type"
            ]
        );
        assert!(v.0.iter().all(|f| !f.description.contains("Z+")));
    }

    #[test]
    fn good_patient_parses() {
        let ok = pb::PatientProfile {
            date_of_birth: "1990-05-17".into(),
            phone_number: "+1 (555) 010-0000".into(),
            blood_type: "ab-".into(),
            ..Default::default()
        };
        let mut v = Violations::default();
        let p = parse_patient(&ok, "p", today(), &mut v);
        assert!(v.0.is_empty());
        assert_eq!(p.blood_type, "AB-");
        assert_eq!(format!("{p:?}"), "PatientFields(<redacted>)");
    }

    #[test]
    fn member_ref_accepts_me_and_uuids() {
        assert_eq!(MemberRef::parse("me").unwrap(), MemberRef::Me);
        assert!(MemberRef::parse("not-a-uuid").is_err());
        let id = Uuid::new_v4();
        assert_eq!(MemberRef::parse(&id.to_string()).unwrap(), MemberRef::Id(id));
    }
}
