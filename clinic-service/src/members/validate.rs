//! Field validation of incoming profiles. Every violation names its field
//! (`profile.patient.blood_type`) and never echoes the value (patient data).

use chrono::NaiveDate;
use clinic_api::clinic::v1 as pb;
use clinic_shared::error::FieldViolation;

use super::domain::{DoctorFields, PatientFields, Profile};
use crate::{error::Error, roles::Role};

/// Blood types the schema's CHECK accepts (besides empty).
const BLOOD_TYPES: &[&str] = &["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"];

pub use clinic_shared::error::Violations;

/// The checks of member fields, recorded in the one collector of violations both services use.
pub trait MemberChecks {
    /// A text field of at most `max` characters.
    fn text(&mut self, field: &str, value: &str, max: usize) -> String;
    /// An email address (see the implementation).
    fn email(&mut self, field: &str, value: &str) -> String;
    /// A phone number (see the implementation).
    fn phone(&mut self, field: &str, value: &str) -> String;
    /// A date of birth (see the implementation).
    fn birth_date(&mut self, field: &str, value: &str, today: NaiveDate) -> Option<NaiveDate>;
    /// A blood type or empty.
    fn blood_type(&mut self, field: &str, value: &str) -> String;
}

impl MemberChecks for Violations {
    /// A text field of at most `max` characters.
    fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.chars().count() > max {
            self.add(field, format!("must be at most {max} characters"));
        } else if value.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
            self.add(field, "must not contain control characters");
        }
        value.to_owned()
    }

    /// An email address, checked as identity-service checks it (at most 254 bytes, no spaces
    /// or control characters, one `@` between a local part and a domain), so an address this
    /// service accepts is never refused when the invitation is sent. Answers the normalised
    /// form ([`clinic_shared::email::normalize`]), which invitations are keyed by here and in
    /// identity-service.
    fn email(&mut self, field: &str, value: &str) -> String {
        let value = value.trim();
        let well_formed = value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        });
        let clean = !value.chars().any(|c| c.is_whitespace() || c.is_control());
        if value.is_empty() || value.len() > 254 || !well_formed || !clean {
            self.add(field, "must be an email address");
        }
        clinic_shared::email::normalize(value)
    }

    /// A phone number: digits, spaces and `+-()`, at most 32 characters, empty allowed.
    fn phone(&mut self, field: &str, value: &str) -> String {
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
    fn birth_date(&mut self, field: &str, value: &str, today: NaiveDate) -> Option<NaiveDate> {
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
    fn blood_type(&mut self, field: &str, value: &str) -> String {
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
        let fields: Vec<_> = v.as_slice().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "profile.patient.date_of_birth",
                "profile.patient.phone_number",
                "profile.patient.address",
                "profile.patient.blood_type"
            ]
        );
        assert!(v.as_slice().iter().all(|f| !f.description.contains("Z+")));
    }

    #[test]
    fn emails_are_checked_like_identity_service_does() {
        for bad in ["", "no-at", "@example.com", "a@", "a@b@c", "a b@example.com", "a\n@x.y"] {
            let mut v = Violations::default();
            v.email("email", bad);
            assert_eq!(v.as_slice().len(), 1, "{bad:?}");
        }
        let mut v = Violations::default();
        assert_eq!(v.email("email", " Ann@Example.com "), "ann@example.com");
        assert_eq!(v.email("email", "U\u{308}@x.org"), "\u{fc}@x.org");
        assert!(v.is_empty());
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
        assert!(v.is_empty());
        assert_eq!(p.blood_type, "AB-");
        assert_eq!(format!("{p:?}"), "PatientFields(<redacted>)");
    }
}
