//! Organization and membership values.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Error;
use clinic_shared::pg::RowExt;

/// Provisioning state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    /// Database being created or migrated.
    Provisioning,
    /// Ready.
    Active,
}

impl OrgStatus {
    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "provisioning" => Ok(Self::Provisioning),
            "active" => Ok(Self::Active),
            other => Err(Error::Internal(format!("unknown organization status {other:?}"))),
        }
    }
}

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Clinic administrator.
    Admin,
    /// Doctor.
    Doctor,
    /// Patient.
    Patient,
}

impl Role {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Patient => "patient",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "admin" => Ok(Role::Admin),
            "doctor" => Ok(Role::Doctor),
            "patient" => Ok(Role::Patient),
            other => Err(Error::Internal(format!("unknown role {other:?}"))),
        }
    }
}

/// The central record of one clinic.
#[derive(Debug, Clone)]
pub struct Organization {
    /// Identifier.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Tenant database name.
    pub database_name: String,
    /// Server key.
    pub server: String,
    /// State.
    pub status: OrgStatus,
    /// Creator.
    pub creator_user_id: Uuid,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// The login role recorded from the spare database it was made from, if any.
    pub login_role: Option<String>,
}

/// Columns of [`Organization`] for SELECT lists (table alias `o`).
pub const ORG_COLUMNS: &str = "o.id, o.name, o.database_name, o.server, o.status, \
    o.creator_user_id, o.created_at, o.login_role";

impl Organization {
    /// Reads [`ORG_COLUMNS`] from `row`.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, Error> {
        Ok(Self {
            id: row.col("id")?,
            name: row.col("name")?,
            database_name: row.col("database_name")?,
            server: row.col("server")?,
            status: OrgStatus::parse(row.col("status")?)?,
            creator_user_id: row.col("creator_user_id")?,
            created_at: row.col("created_at")?,
            login_role: row.col("login_role")?,
        })
    }
}

/// One organization a user belongs to, or is invited to.
#[derive(Debug, Clone)]
pub struct Membership {
    /// The organization.
    pub organization: Organization,
    /// The role in it (for an invitation, the role offered).
    pub role: Role,
    /// `Some(expiry)` for a pending invitation, `None` for a membership.
    pub invited_until: Option<DateTime<Utc>>,
}
