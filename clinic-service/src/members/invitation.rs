//! Membership by invitation. An invited member is an `organization_user` row with status
//! `invited`: the invited email, an expiry and a profile, and no user until the person accepts
//! (`joining.rs`). Each step records its central counterpart (the invitation identity-service
//! keeps and mails) in the tenant's outbox, in the same transaction; the relay delivers it
//! after the commit. Time is a parameter.

use clinic_shared::pg::RowExt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{
    domain::NewMember,
    read::db,
    write::{self, column, insert_profile},
};
use crate::{
    audit::{self, Trail},
    error::Error,
    relay::outbox::{self, Change},
    roles::Role,
    tenancy::{Db, TenantClient, TenantTransaction},
};

/// Invites `new.email` to organization `new.organization_id` until `expires_at`, or renews the
/// pending (or expired) invitation of that email: the same row, with a new expiry and the given
/// role and profile, and records the central invitation (identity-service mails the person).
/// Returns the member id. ALREADY_EXISTS when the email belongs to an active member.
pub async fn invite(
    client: &mut TenantClient,
    new: &NewMember,
    expires_at: DateTime<Utc>,
    trail: &mut Trail,
) -> Result<Uuid, Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    let active = tx
        .query_opt(
            "SELECT 1 FROM organization_user WHERE status = 'active' AND email_key = $1",
            &[&new.email],
        )
        .await
        .map_err(db("find member by email"))?;
    if active.is_some() {
        return Err(Error::AlreadyExists("this email belongs to a member already".into()));
    }
    let id = match renew(&tx, new, expires_at).await? {
        Some(id) => id,
        None => insert(&tx, new, expires_at).await?,
    };
    let version = outbox::next_version(&tx, id)
        .await?
        .ok_or_else(|| Error::Internal("the invited member vanished".into()))?;
    let change =
        Change::Invitation { email: new.email.clone(), role: new.profile.role(), expires_at };
    outbox::record(&tx, id, version, &[change]).await?;
    trail.resource(id);
    if new.profile.role() == Role::Patient {
        trail.patient(id);
    }
    audit::store::record(&tx, trail).await?;
    tx.commit().await.map_err(db("commit"))?;
    Ok(id)
}

/// Renews the invitation of `new.email`, if there is one.
async fn renew(
    tx: &TenantTransaction<'_>,
    new: &NewMember,
    expires_at: DateTime<Utc>,
) -> Result<Option<Uuid>, Error> {
    let row = tx
        .query_opt(
            "SELECT id FROM organization_user \
             WHERE status = 'invited' AND email_key = $1 FOR UPDATE",
            &[&new.email],
        )
        .await
        .map_err(db("find invitation"))?;
    let Some(row) = row else { return Ok(None) };
    let id: Uuid = row.col(0)?;
    write::change_role(tx, id, &new.profile).await?;
    tx.execute(
        "UPDATE organization_user SET email = $2, email_key = $2, invite_expires_at = $3 WHERE id = $1",
        &[&id, &new.email, &expires_at],
    )
    .await
    .map_err(db("renew invitation"))?;
    Ok(Some(id))
}

/// Inserts a new invited member with its profile.
async fn insert(
    tx: &TenantTransaction<'_>,
    new: &NewMember,
    expires_at: DateTime<Utc>,
) -> Result<Uuid, Error> {
    let profile_id = insert_profile(tx, &new.profile).await?;
    // The column name comes from a fixed list, never from input.
    let sql = format!(
        "INSERT INTO organization_user (email, email_key, name, status, invite_expires_at, {}) \
         VALUES ($1, $1, '', 'invited', $2, $3) RETURNING id",
        column(new.profile.role())
    );
    let row = tx.query_one(&sql, &[&new.email, &expires_at, &profile_id]).await.map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            Error::Aborted("a concurrent invitation of this email won; retry".into())
        } else {
            Error::tenant_db("insert invitation", &e)
        }
    })?;
    Ok(row.col(0)?)
}

/// When an invitation sent at `now` with lifetime `ttl` expires.
pub fn expiry(now: DateTime<Utc>, ttl: Duration) -> Result<DateTime<Utc>, Error> {
    chrono::Duration::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .ok_or_else(|| Error::Internal("INVITATION_TTL_SECS is out of range".into()))
}
