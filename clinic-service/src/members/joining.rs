//! Joining by invitation: the invited person accepts (the member becomes active with their user)
//! or declines (the invited member goes), matched by their verified email. Like inviting, each
//! records its central counterpart in the tenant's outbox in the same transaction (see
//! `relay`). Time is a parameter.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use super::{read::db, write};
use crate::{
    audit::{self, Trail},
    auth::{Claims, Person},
    error::Error,
    relay::outbox::{self, Change},
    roles::Role,
    tenancy::{Caller, Db, TenantAccess, TenantClient, TenantConnection, TenantTransaction},
};

/// Opens the clinic an invited caller names (see [`TenantAccess::open`]), once their email is
/// verified: invitations are matched by email, and only a verified one proves the caller owns
/// it (FAILED_PRECONDITION otherwise, before anything about the clinic is looked at).
pub async fn open(
    access: &TenantAccess,
    claims: &Claims,
    person: &Person,
    organization_id: Uuid,
) -> Result<TenantConnection, Error> {
    if !person.email_verified {
        return Err(Error::FailedPrecondition("verify your email address first".into()));
    }
    access.open(claims, organization_id).await
}

/// Accepts the caller's invitation to `organization_id`: the member becomes active with the
/// caller's user id, email and name; centrally, the membership replaces the invitation.
/// Returns the member id and role. See [`pending`] for the errors.
pub async fn accept(
    client: &mut TenantClient,
    claims: &Person,
    now: DateTime<Utc>,
    trail: &mut Trail,
) -> Result<(Uuid, Role), Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    let (id, role, invited) = pending(&tx, claims, now).await?;
    enter(trail, claims, id, role);
    tx.execute(
        "UPDATE organization_user SET status = 'active', user_id = $2, email = $3, email_key = $6, \
         name = $4, invite_expires_at = NULL, updated_at = $5 WHERE id = $1",
        &[
            &id,
            &claims.user_id,
            &claims.email,
            &claims.name,
            &now,
            &clinic_shared::email::normalize(&claims.email),
        ],
    )
    .await
    .map_err(|e| {
        if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
            already_member()
        } else {
            Error::tenant_db("accept invitation", &e)
        }
    })?;
    let version = outbox::next_version(&tx, id)
        .await?
        .ok_or_else(|| Error::Internal("the accepted member vanished".into()))?;
    let changes = [
        Change::Membership { user_id: claims.user_id, role },
        Change::InvitationRemoved { email: invited },
    ];
    outbox::record(&tx, id, version, &changes).await?;
    audit::store::record(&tx, trail).await?;
    tx.commit().await.map_err(db("commit"))?;
    Ok((id, role))
}

/// Declines the caller's invitation to `organization_id`: the invited member and its profile
/// are deleted, and so is the central invitation. Returns the member id that was. See
/// [`pending`] for the errors.
pub async fn decline(
    client: &mut TenantClient,
    claims: &Person,
    now: DateTime<Utc>,
    trail: &mut Trail,
) -> Result<Uuid, Error> {
    let tx = client.transaction().await.map_err(db("begin"))?;
    let (id, role, _) = pending(&tx, claims, now).await?;
    enter(trail, claims, id, role);
    if let Some(gone) = write::delete(&tx, id).await? {
        let change = Change::InvitationRemoved { email: gone.email };
        outbox::record(&tx, id, gone.version, &[change]).await?;
    }
    audit::store::record(&tx, trail).await?;
    tx.commit().await.map_err(db("commit"))?;
    Ok(id)
}

/// The caller's pending, unexpired invitation (matched by the normalised form of their email,
/// the form invitations are stored in) and its role and invited address, locked until `tx`
/// ends. ALREADY_EXISTS when the caller is a member already (as after accepting); otherwise NOT_FOUND, the very answer for a clinic that does not exist.
async fn pending(
    tx: &TenantTransaction<'_>,
    claims: &Person,
    now: DateTime<Utc>,
) -> Result<(Uuid, Role, String), Error> {
    let row = tx
        .query_opt(
            "SELECT id, role, email FROM organization_user WHERE status = 'invited' \
             AND email_key = $1 AND invite_expires_at > $2 FOR UPDATE",
            &[&clinic_shared::email::normalize(&claims.email), &now],
        )
        .await
        .map_err(db("find invitation"))?;
    if let Some(row) = row {
        let role = Role::from_db(row.col(1)?)
            .ok_or_else(|| Error::Internal("an invitation without a role".into()))?;
        return Ok((row.col(0)?, role, row.col(2)?));
    }
    let member = tx
        .query_opt("SELECT 1 FROM organization_user WHERE user_id = $1", &[&claims.user_id])
        .await
        .map_err(db("find member"))?;
    Err(if member.is_some() { already_member() } else { Error::organization_not_found() })
}

/// The invited caller enters the trail as the member they are invited as (an invited patient
/// acts on their own record).
fn enter(trail: &mut Trail, claims: &Person, member_id: Uuid, role: Role) {
    trail.caller(&Caller { member_id, user_id: claims.user_id, role });
    trail.resource(member_id);
    if role == Role::Patient {
        trail.patient(member_id);
    }
}

fn already_member() -> Error {
    Error::AlreadyExists("you are a member of this organization already".into())
}
