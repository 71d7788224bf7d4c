//! Parsing `UpdateMemberProfile`: a field mask over one role's profile, or a role change.

use chrono::NaiveDate;
use clinic_api::clinic::v1 as pb;
use uuid::Uuid;

use super::{
    domain::{DoctorFields, PatientFields, Profile},
    fields::{self, Field},
    validate::{Violations, parse_doctor, parse_patient, parse_profile},
};
use crate::{
    error::Error,
    grpc::{MemberRef, parse_uuid},
    roles::Role,
};

/// What to change.
#[derive(Debug)]
pub enum Change {
    /// Named fields of a doctor profile.
    Doctor(Fields<DoctorFields>),
    /// Named fields of a patient profile.
    Patient(Fields<PatientFields>),
    /// The admin profile has no fields: a no-op that still checks the role.
    Admin,
    /// A new role with its profile (admins only).
    Role(Profile),
}

/// Some fields of a profile and their new values.
pub struct Fields<T: 'static> {
    /// The fields the mask names.
    pub fields: Vec<&'static Field<T>>,
    /// The parsed profile (only the named fields are written).
    pub values: T,
}

impl<T: std::fmt::Debug> std::fmt::Debug for Fields<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let paths: Vec<_> = self.fields.iter().map(|field| field.path).collect();
        f.debug_struct("Fields").field("paths", &paths).field("values", &self.values).finish()
    }
}

impl Change {
    /// The role the member must have for a field change.
    pub fn role(&self) -> Option<Role> {
        match self {
            Change::Doctor(_) => Some(Role::Doctor),
            Change::Patient(_) => Some(Role::Patient),
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
        let member = MemberRef::parse("member_id", &req.member_id)?;
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
        v.finish(Self { organization_id, member, change }).map_err(Error::InvalidArgument)
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
    let names: Vec<&str> = paths
        .iter()
        .map(|p| match p.split_once('.') {
            Some((k, f)) if k == kind => Ok(f),
            None if *p == kind => Ok("*"),
            _ => Err(Error::field("update_mask", "paths must all name one role's profile")),
        })
        .collect::<Result<_, _>>()?;
    let given = profile.and_then(|p| p.kind.as_ref());
    let mut inner = Violations::default();
    let unknown = || Error::field("update_mask", format!("unknown {kind} field"));
    let change = match kind {
        "admin" => Change::Admin,
        "doctor" => {
            let fields = fields::select(fields::DOCTOR, &names).ok_or_else(unknown)?;
            let values = match given {
                Some(Kind::Doctor(d)) => parse_doctor(d, "profile.doctor", &mut inner),
                None => DoctorFields::default(),
                Some(_) => return Err(Error::field("profile", "must be a doctor profile")),
            };
            keep_named(&mut inner, fields.iter().map(|f| f.path));
            Change::Doctor(Fields { fields, values })
        }
        "patient" => {
            let fields = fields::select(fields::PATIENT, &names).ok_or_else(unknown)?;
            let values = match given {
                Some(Kind::Patient(p)) => parse_patient(p, "profile.patient", today, &mut inner),
                None => PatientFields::default(),
                Some(_) => return Err(Error::field("profile", "must be a patient profile")),
            };
            keep_named(&mut inner, fields.iter().map(|f| f.path));
            Change::Patient(Fields { fields, values })
        }
        _ => return Err(Error::field("update_mask", "unknown path")),
    };
    v.extend(inner.into_vec());
    Ok(change)
}

/// Only fields the mask names are written, so only they can be wrong.
fn keep_named<'a>(v: &mut Violations, named: impl Iterator<Item = &'a str>) {
    let named: Vec<&str> = named.collect();
    v.retain(|violation| {
        let name = violation.field.rsplit('.').next().unwrap_or_default();
        named.contains(&name)
    });
}
