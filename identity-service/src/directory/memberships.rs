//! Memberships: which users belong to which organizations, with what role.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Membership, Organization, Role, domain::ORG_COLUMNS, paging::Page};
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

/// One page of `user`'s memberships by organization id, and the next page token.
pub async fn list_for_user(
    state: &AppState,
    user: Uuid,
    page: Page,
) -> Result<(Vec<Membership>, String), Error> {
    let sql = format!(
        "SELECT {ORG_COLUMNS}, m.role FROM organization_member m \
         JOIN organization o ON o.id = m.organization_id \
         WHERE m.user_id = $1 AND ($2::uuid IS NULL OR m.organization_id > $2) \
         ORDER BY m.organization_id LIMIT $3"
    );
    let rows = state.conn().await?.query(&sql, &[&user, &page.after, &(page.size + 1)]).await?;
    let mut items = rows
        .iter()
        .map(|row| {
            Ok(Membership {
                organization: Organization::from_row(row)?,
                role: Role::parse(row.try_get("role")?)?,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let more = items.len() as i64 > page.size;
    items.truncate(page.size as usize);
    let next = Page::next_token(more, items.last().map(|m| m.organization.id));
    Ok((items, next))
}
