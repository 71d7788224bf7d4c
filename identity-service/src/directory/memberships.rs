//! Memberships: which users belong to which organizations, with what role (and, listed with
//! them, the invitations of `invitations.rs`).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Membership, Organization, Role,
    domain::ORG_COLUMNS,
    paging::{self, Page},
    versions::{self, Freshness, Subject},
};
use clinic_shared::{
    error::Violations,
    paging::{self as shared_paging, Cursor},
};

use crate::{error::Error, state::AppState};

/// Records (or updates) `user`'s role in `organization`, unless a newer `version` of that
/// membership was applied (see `versions.rs`).
pub async fn record(
    state: &AppState,
    organization: Uuid,
    user: Uuid,
    role: Role,
    version: i64,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    if versions::claim(&tx, organization, Subject::Member(user), version).await? == Freshness::Stale
    {
        return Ok(());
    }
    tx.execute(
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
    tx.commit().await?;
    tracing::info!(organization_id = %organization, user_id = %user, role = role.as_str(), "membership recorded");
    Ok(())
}

/// Forgets a membership (idempotent), unless a newer `version` of it was applied; the version
/// stays recorded, so older changes stay ignored.
pub async fn remove(
    state: &AppState,
    organization: Uuid,
    user: Uuid,
    version: i64,
) -> Result<(), Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    if versions::claim(&tx, organization, Subject::Member(user), version).await? == Freshness::Stale
    {
        return Ok(());
    }
    tx.execute(
        "DELETE FROM organization_member WHERE organization_id = $1 AND user_id = $2",
        &[&organization, &user],
    )
    .await?;
    tx.commit().await?;
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
             FROM organization_invitation i JOIN app_user u ON i.email = u.email_normalized \
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

/// One membership or invitation recorded for an organization, with its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The member's user (memberships).
    pub user: Option<Uuid>,
    /// The invited, normalized email (invitations).
    pub email: Option<String>,
    /// The role (offered).
    pub role: Role,
    /// When the invitation expires (invitations).
    pub invited_until: Option<DateTime<Utc>>,
    /// The version applied last; 0 when recorded unversioned.
    pub version: i64,
}

/// Token kind of `ListOrganizationMembers`.
pub const MEMBERS: &str = "members";

/// Sort key of `ListOrganizationMembers`: memberships (kind 0, by user id) before invitations
/// (kind 1, by normalised email), keys compared bytewise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKey {
    kind: i32,
    key: String,
}

impl Cursor for EntryKey {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(if self.kind == 0 { b'0' } else { b'1' });
        out.extend_from_slice(self.key.as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<Self> {
        let (kind, key) = bytes.split_first()?;
        let kind = match kind {
            b'0' => 0,
            b'1' => 1,
            _ => return None,
        };
        Some(Self { kind, key: String::from_utf8(key.to_vec()).ok()? })
    }
}

/// A page request of `ListOrganizationMembers` (the shared page-size rule, at most 1000).
pub fn members_page(size: i32, token: &str) -> Result<shared_paging::Page<EntryKey>, Error> {
    let mut v = Violations::default();
    let page = shared_paging::Page::parse(MEMBERS, size, token, 1000, &mut v);
    v.finish(page).map_err(Error::InvalidArgument)
}

/// One page of `organization`'s memberships (by user id), then invitations (by email), and the
/// next page token (empty on the last page).
pub async fn list_for_organization(
    state: &AppState,
    organization: Uuid,
    page: shared_paging::Page<EntryKey>,
) -> Result<(Vec<Entry>, String), Error> {
    let wanted = page.len();
    let after = page.after.unwrap_or(EntryKey { kind: -1, key: String::new() });
    let rows = state
        .conn()
        .await?
        .query(
            "SELECT kind, key, role, invited_until, version FROM ( \
               SELECT 0 AS kind, m.user_id::text AS key, m.role, NULL::timestamptz AS invited_until, \
                      coalesce(v.version, 0) AS version \
               FROM organization_member m LEFT JOIN membership_version v \
                 ON v.organization_id = m.organization_id AND v.subject = 'member:' || m.user_id \
               WHERE m.organization_id = $1 \
               UNION ALL \
               SELECT 1, i.email, i.role, i.expires_at, coalesce(v.version, 0) \
               FROM organization_invitation i LEFT JOIN membership_version v \
                 ON v.organization_id = i.organization_id AND v.subject = 'invitation:' || i.email \
               WHERE i.organization_id = $1 \
             ) e WHERE (kind, key COLLATE \"C\") > ($2, $3 COLLATE \"C\") \
             ORDER BY kind, key COLLATE \"C\" LIMIT $4",
            &[&organization, &after.kind, &after.key, &(page.size + 1)],
        )
        .await?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows.iter().take(wanted) {
        let kind: i32 = row.try_get("kind")?;
        let key: String = row.try_get("key")?;
        let (user, email) = if kind == 0 {
            (
                Some(
                    Uuid::parse_str(&key)
                        .map_err(|_| Error::internal("a membership without a user id"))?,
                ),
                None,
            )
        } else {
            (None, Some(key.clone()))
        };
        entries.push(Entry {
            user,
            email,
            role: Role::parse(row.try_get("role")?)?,
            invited_until: row.try_get("invited_until")?,
            version: row.try_get("version")?,
        });
        last = Some(EntryKey { kind, key });
    }
    let more = rows.len() > wanted;
    Ok((entries, shared_paging::next_page_token(MEMBERS, last.filter(|_| more).as_ref())))
}
