//! Conversions between proto messages and domain values shared by the handlers.

use chrono::{DateTime, Utc};
use clinic_api::identity::v1 as pb;
use uuid::Uuid;

use crate::{
    accounts::User,
    directory::{OrgStatus, Organization, Role},
    error::Error,
    sessions::TokenPair,
};

/// A UUID from request field `field`.
pub fn uuid(field: &str, raw: &str) -> Result<Uuid, Error> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| Error::invalid(field, "must be a UUID"))
}

/// Merges the violations of several validation results into one INVALID_ARGUMENT.
pub fn merge(results: &mut [Option<Error>]) -> Result<(), Error> {
    let mut violations = Vec::new();
    for slot in results.iter_mut() {
        match slot.take() {
            Some(Error::InvalidArgument(v)) => violations.extend(v),
            Some(other) => return Err(other),
            None => {}
        }
    }
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}

/// A protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

impl From<User> for pb::User {
    fn from(u: User) -> Self {
        pb::User {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            email_verified: u.is_verified,
            create_time: Some(timestamp(u.created_at)),
        }
    }
}

impl From<User> for pb::DirectoryUser {
    fn from(u: User) -> Self {
        pb::DirectoryUser {
            id: u.id.to_string(),
            email: u.email,
            name: u.name,
            email_verified: u.is_verified,
        }
    }
}

impl From<TokenPair> for pb::TokenPair {
    fn from(p: TokenPair) -> Self {
        pb::TokenPair {
            access_token: p.access_token,
            access_token_expire_time: Some(timestamp(p.access_expires_at)),
            refresh_token: p.refresh_token,
            refresh_token_expire_time: Some(timestamp(p.refresh_expires_at)),
            session_id: p.session_id.to_string(),
        }
    }
}

impl From<Organization> for pb::Organization {
    fn from(o: Organization) -> Self {
        let status = match o.status {
            OrgStatus::Provisioning => pb::OrganizationStatus::Provisioning,
            OrgStatus::Active => pb::OrganizationStatus::Active,
        };
        pb::Organization {
            id: o.id.to_string(),
            name: o.name,
            database_name: o.database_name,
            server: o.server,
            status: status.into(),
            creator_user_id: o.creator_user_id.to_string(),
            create_time: Some(timestamp(o.created_at)),
        }
    }
}

impl From<Role> for pb::MembershipRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => pb::MembershipRole::Admin,
            Role::Doctor => pb::MembershipRole::Doctor,
            Role::Patient => pb::MembershipRole::Patient,
        }
    }
}

/// A required role from request field `field`.
pub fn role(field: &str, raw: i32) -> Result<Role, Error> {
    match pb::MembershipRole::try_from(raw) {
        Ok(pb::MembershipRole::Admin) => Ok(Role::Admin),
        Ok(pb::MembershipRole::Doctor) => Ok(Role::Doctor),
        Ok(pb::MembershipRole::Patient) => Ok(Role::Patient),
        Ok(pb::MembershipRole::Unspecified) => Err(Error::invalid(field, "is required")),
        Err(_) => Err(Error::invalid(field, "is not a known role")),
    }
}
