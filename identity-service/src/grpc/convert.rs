//! Conversions between proto messages and domain values shared by the handlers.

use clinic_api::identity::v1 as pb;
use clinic_shared::error::Violations;
use uuid::Uuid;

use crate::{
    accounts::{Email, User},
    directory::{
        Membership, OrgStatus, Organization, Role,
        invitations::Invitation,
        memberships::Entry,
        spares::{Spare, SpareState},
        versions,
    },
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

/// One INVALID_ARGUMENT carrying the violations of every failed check (or the first error
/// that is not a violation).
fn merged(errors: impl IntoIterator<Item = Option<Error>>) -> Error {
    let mut violations = Violations::default();
    for error in errors.into_iter().flatten() {
        match error {
            Error::InvalidArgument(found) => violations.extend(found),
            other => return other,
        }
    }
    Error::InvalidArgument(violations.into_vec())
}

/// Both values, or every violation of both.
pub fn both<A, B>(a: Result<A, Error>, b: Result<B, Error>) -> Result<(A, B), Error> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (a, b) => Err(merged([a.err(), b.err()])),
    }
}

/// All three values, or every violation of the three.
pub fn all3<A, B, C>(
    a: Result<A, Error>,
    b: Result<B, Error>,
    c: Result<C, Error>,
) -> Result<(A, B, C), Error> {
    match (a, b, c) {
        (Ok(a), Ok(b), Ok(c)) => Ok((a, b, c)),
        (a, b, c) => Err(merged([a.err(), b.err(), c.err()])),
    }
}

pub use clinic_shared::time::to_timestamp as timestamp;

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
            login_role: o.login_role.unwrap_or_default(),
        }
    }
}

impl From<Spare> for pb::SpareDatabase {
    fn from(s: Spare) -> Self {
        let state = match s.state {
            SpareState::Creating => pb::SpareDatabaseState::Creating,
            SpareState::Ready => pb::SpareDatabaseState::Ready,
            SpareState::Claimed => pb::SpareDatabaseState::Claimed,
        };
        pb::SpareDatabase {
            database_name: s.database_name,
            server: s.server,
            state: state.into(),
            organization_id: s.organization_id.map(|o| o.to_string()).unwrap_or_default(),
            create_time: Some(timestamp(s.created_at)),
            login_role: s.login_role.unwrap_or_default(),
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

impl From<Membership> for pb::Membership {
    fn from(m: Membership) -> Self {
        let status = match m.invited_until {
            Some(_) => pb::MembershipStatus::Invited,
            None => pb::MembershipStatus::Active,
        };
        pb::Membership {
            organization: Some(m.organization.into()),
            role: pb::MembershipRole::from(m.role).into(),
            status: status.into(),
            invite_expire_time: m.invited_until.map(timestamp),
        }
    }
}

impl From<Entry> for pb::OrganizationMember {
    fn from(e: Entry) -> Self {
        let status = match e.user {
            Some(_) => pb::MembershipStatus::Active,
            None => pb::MembershipStatus::Invited,
        };
        pb::OrganizationMember {
            status: status.into(),
            user_id: e.user.map(|u| u.to_string()).unwrap_or_default(),
            email: e.email.unwrap_or_default(),
            role: pb::MembershipRole::from(e.role).into(),
            invite_expire_time: e.invited_until.map(timestamp),
            version: e.version,
        }
    }
}

impl TryFrom<pb::SendInvitationRequest> for Invitation {
    type Error = Error;

    fn try_from(m: pb::SendInvitationRequest) -> Result<Self, Error> {
        let expires_at = m
            .expire_time
            .ok_or_else(|| Error::invalid("expire_time", "is required"))
            .and_then(|t| {
                clinic_shared::time::from_timestamp(&t)
                    .ok_or_else(|| Error::invalid("expire_time", "is not a valid time"))
            });
        let ((organization, email, role), (expires_at, version)) = both(
            all3(
                uuid("organization_id", &m.organization_id),
                Email::parse("email", &m.email),
                role("role", m.role),
            ),
            both(expires_at, versions::parse(m.version)),
        )?;
        Ok(Invitation { organization, email, role, expires_at, version })
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
