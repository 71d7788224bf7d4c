//! The tenant's outbox of central changes (`member_outbox`, migration V12): written in the
//! transaction of the member change it mirrors, read and deleted by the relay.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

use clinic_shared::pg::RowExt;

use crate::{
    error::Error,
    roles::Role,
    tenancy::{Db, TenantTransaction},
};

/// One change to the central index of members, as identity-service applies it.
#[derive(Clone, PartialEq, Eq)]
pub enum Change {
    /// The user is a member with this role.
    Membership {
        /// The member's user.
        user_id: Uuid,
        /// Their role.
        role: Role,
    },
    /// The user is no member any more.
    MembershipRemoved {
        /// The former member's user.
        user_id: Uuid,
    },
    /// The email is invited with this role until `expires_at` (identity-service mails it).
    Invitation {
        /// The invited address.
        email: String,
        /// The role offered.
        role: Role,
        /// Expiry.
        expires_at: DateTime<Utc>,
    },
    /// The email is not invited any more.
    InvitationRemoved {
        /// The address.
        email: String,
    },
}

impl std::fmt::Debug for Change {
    // Emails stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Membership { user_id, role } => write!(f, "Membership({user_id}, {role:?})"),
            Change::MembershipRemoved { user_id } => write!(f, "MembershipRemoved({user_id})"),
            Change::Invitation { role, .. } => write!(f, "Invitation(<email>, {role:?})"),
            Change::InvitationRemoved { .. } => f.write_str("InvitationRemoved(<email>)"),
        }
    }
}

/// A pending outbox row.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Row id (delivery deletes it).
    pub id: i64,
    /// The member's version the change carries.
    pub version: i64,
    /// The change.
    pub change: Change,
}

/// Takes the next version for member `id` (locking its row until `tx` ends) and returns it.
/// `None` when there is no such member.
pub async fn next_version(tx: &TenantTransaction<'_>, id: Uuid) -> Result<Option<i64>, Error> {
    let row = tx
        .query_opt(
            "UPDATE organization_user SET version = nextval('member_version_seq') \
             WHERE id = $1 RETURNING version",
            &[&id],
        )
        .await
        .map_err(|e| Error::tenant_db("next member version", &e))?;
    Ok(row.map(|r| r.col("version")).transpose()?)
}

/// Records `changes` of member `member_id` at `version`, inside the member change's `tx`.
pub async fn record(
    tx: &TenantTransaction<'_>,
    member_id: Uuid,
    version: i64,
    changes: &[Change],
) -> Result<(), Error> {
    for change in changes {
        let (kind, user_id, email, role, expires_at) = match change {
            Change::Membership { user_id, role } => {
                ("membership", Some(*user_id), None, Some(role.as_db()), None)
            }
            Change::MembershipRemoved { user_id } => {
                ("membership_removed", Some(*user_id), None, None, None)
            }
            Change::Invitation { email, role, expires_at } => {
                ("invitation", None, Some(email.as_str()), Some(role.as_db()), Some(*expires_at))
            }
            Change::InvitationRemoved { email } => {
                ("invitation_removed", None, Some(email.as_str()), None, None)
            }
        };
        tx.execute(
            "INSERT INTO member_outbox \
             (member_id, version, change, user_id, email, role, invite_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&member_id, &version, &kind, &user_id, &email, &role, &expires_at],
        )
        .await
        .map_err(|e| Error::tenant_db("record central change", &e))?;
    }
    Ok(())
}

/// The oldest `limit` pending rows.
pub async fn pending(client: &impl Db, limit: i64) -> Result<Vec<Entry>, Error> {
    let rows = client
        .query(
            "SELECT id, version, change, user_id, email, role, invite_expires_at \
             FROM member_outbox ORDER BY id LIMIT $1",
            &[&limit],
        )
        .await
        .map_err(|e| Error::tenant_db("read outbox", &e))?;
    rows.iter().map(entry).collect()
}

/// Whether anything is pending.
pub async fn any_pending(client: &impl Db) -> Result<bool, Error> {
    let row = client
        .query_one("SELECT EXISTS (SELECT 1 FROM member_outbox)", &[])
        .await
        .map_err(|e| Error::tenant_db("look at outbox", &e))?;
    Ok(row.col(0)?)
}

/// Deletes delivered rows.
pub async fn delete(client: &impl Db, ids: &[i64]) -> Result<(), Error> {
    if !ids.is_empty() {
        client
            .execute("DELETE FROM member_outbox WHERE id = ANY($1)", &[&ids])
            .await
            .map_err(|e| Error::tenant_db("clear outbox", &e))?;
    }
    Ok(())
}

fn entry(row: &Row) -> Result<Entry, Error> {
    let role = || {
        Role::from_db(row.col::<Option<&str>>("role")?)
            .ok_or_else(|| Error::Internal("an outbox row without a known role".into()))
    };
    let user = || {
        row.col::<Option<Uuid>>("user_id")?
            .ok_or_else(|| Error::Internal("an outbox row without a user".into()))
    };
    let email = || {
        row.col::<Option<String>>("email")?
            .ok_or_else(|| Error::Internal("an outbox row without an email".into()))
    };
    let change = match row.col::<&str>("change")? {
        "membership" => Change::Membership { user_id: user()?, role: role()? },
        "membership_removed" => Change::MembershipRemoved { user_id: user()? },
        "invitation" => Change::Invitation {
            email: email()?,
            role: role()?,
            expires_at: row
                .col::<Option<DateTime<Utc>>>("invite_expires_at")?
                .ok_or_else(|| Error::Internal("an outbox invitation without expiry".into()))?,
        },
        "invitation_removed" => Change::InvitationRemoved { email: email()? },
        _ => return Err(Error::Internal("an outbox row of an unknown kind".into())),
    };
    Ok(Entry { id: row.col("id")?, version: row.col("version")?, change })
}
