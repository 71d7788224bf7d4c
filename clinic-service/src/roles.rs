//! A member's one role in a clinic, and its spellings in the tenant schema, the public contract
//! and the central register.

use clinic_api::{clinic::v1 as pb, identity::v1 as ipb};

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Clinic administrator.
    Admin,
    /// Doctor.
    Doctor,
    /// Patient.
    Patient,
}

impl Role {
    /// The value of the tenant schema's generated `organization_user.role` column.
    pub fn as_db(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Patient => "patient",
        }
    }

    /// Parses the `organization_user.role` column (`None` for an incomplete registration).
    pub fn from_db(value: Option<&str>) -> Option<Self> {
        match value? {
            "admin" => Some(Role::Admin),
            "doctor" => Some(Role::Doctor),
            "patient" => Some(Role::Patient),
            _ => None,
        }
    }

    /// From the public enum; `None` for ROLE_UNSPECIFIED and unknown numbers.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::Role::try_from(value).ok()? {
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::Doctor => Some(Role::Doctor),
            pb::Role::Patient => Some(Role::Patient),
            pb::Role::Unspecified => None,
        }
    }

    /// The public enum.
    pub fn to_proto(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::Doctor => pb::Role::Doctor,
            Role::Patient => pb::Role::Patient,
        }
    }

    /// The central register's enum.
    pub fn to_membership(self) -> ipb::MembershipRole {
        match self {
            Role::Admin => ipb::MembershipRole::Admin,
            Role::Doctor => ipb::MembershipRole::Doctor,
            Role::Patient => ipb::MembershipRole::Patient,
        }
    }

    /// From the central register's enum.
    pub fn from_membership(value: i32) -> Option<Self> {
        match ipb::MembershipRole::try_from(value).ok()? {
            ipb::MembershipRole::Admin => Some(Role::Admin),
            ipb::MembershipRole::Doctor => Some(Role::Doctor),
            ipb::MembershipRole::Patient => Some(Role::Patient),
            ipb::MembershipRole::Unspecified => None,
        }
    }
}
