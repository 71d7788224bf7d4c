//! Memberships: which users belong to which organizations, with what role (and, listed with
//! them, the invitations of `invitations.rs`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Membership, Organization, Role,
    domain::ORG_COLUMNS,
    paging::{self, Page},
};
use crate::{error::Error, state::AppState};

/// Records (or updates) `user`'s role in `organization`.
pub async fn record(
    state: &AppState,
    organization: Uuid,
    user: Uuid,
    role: Role,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    state
        .conn()
        .await?
        .execute(
            "INSERT INTO organization_member (organization_id, user_id, role, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (organization_id, user_id) DO UPDATE SET role = EXCLUDED.role, updated_at = $4",
            &[&organization, &user, &role.as_str(), &now],
        )
        .await
        .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
            Some("organization_member_organization_id_fkey") => Error::NotFound("organization not found"),
            Some("organization_member_user_id_fkey") => Error::NotFound("user not found"),
            _ => Error::Database(e),
        })?;
    tracing::info!(organization_id = %organization, user_id = %user, role = role.as_str(), "membership recorded");
    Ok(())
}

/// Forgets a membership (idempotent).
pub async fn remove(state: &AppState, organization: Uuid, user: Uuid) -> Result<(), Error> {
    state
        .conn()
        .await?
        .execute(
            "DELETE FROM organization_member WHERE organization_id = $1 AND user_id = $2",
            &[&organization, &user],
        )
        .await?;
    tracing::info!(organization_id = %organization, user_id = %user, "membership removed");
    Ok(())
}

/// One page of `user`'s memberships by organization id, and the next page token. With
/// `invitations`, the pending invitations of the user's email too, once it is verified (an
/// unverified address proves nothing, and the list would tell whoever registered it which
/// clinics invited it); where the user is a member already, the membership wins.
pub async fn list_for_user(
    state: &AppState,
    user: Uuid,
    page: Page,
    invitations: bool,
    now: DateTime<Utc>,
) -> Result<(Vec<Membership>, String), Error> {
    let sql = format!(
        "SELECT {ORG_COLUMNS}, x.role, x.invited_until FROM ( \
           SELECT DISTINCT ON (e.organization_id) e.organization_id, e.role, e.invited_until \
           FROM ( \
             SELECT m.organization_id, m.role, NULL::timestamptz AS invited_until \
             FROM organization_member m WHERE m.user_id = $1 \
             UNION ALL \
             SELECT i.organization_id, i.role, i.expires_at \
             FROM organization_invitation i JOIN app_user u ON i.email = lower(u.email) \
             WHERE $4 AND u.id = $1 AND u.is_verified AND i.expires_at > $5 \
           ) e WHERE ($2::uuid IS NULL OR e.organization_id > $2) \
           ORDER BY e.organization_id, e.invited_until NULLS FIRST \
         ) x JOIN organization o ON o.id = x.organization_id \
         ORDER BY x.organization_id LIMIT $3"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&user, &page.after, &(page.size + 1), &invitations, &now];
    let rows = state.conn().await?.query(&sql, &params).await?;
    let mut items = rows
        .iter()
        .map(|row| {
            Ok(Membership {
                organization: Organization::from_row(row)?,
                role: Role::parse(row.try_get("role")?)?,
                invited_until: row.try_get("invited_until")?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let more = items.len() as i64 > page.size;
    items.truncate(page.size as usize);
    let next =
        paging::next_token(paging::MEMBERSHIPS, more, items.last().map(|m| m.organization.id));
    Ok((items, next))
}
