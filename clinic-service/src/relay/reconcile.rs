//! `clinic-service reconcile`: repairs drift between the tenants (the truth) and the central
//! index of members. For each active tenant it reads the members under a SHARE lock (no member
//! change in flight, so every version issued so far is committed), re-publishes each active
//! membership and pending invitation with its current version, and removes what the central
//! index holds beyond that with a version newer than any the tenant has issued, so pending
//! outbox rows (older) cannot undo the repair and later changes (newer) still apply.

use clinic_shared::pg::RowExt;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{outbox::Change, publish};
use crate::{
    error::Error,
    tenancy::{Db, OrgRecord, OrgStatus, TenantAccess},
};
use clinic_api::identity::v1 as ipb;

/// The outcome for one tenant.
#[derive(Debug)]
pub struct TenantReport {
    /// The organization.
    pub organization_id: Uuid,
    /// Entries published and removed, or why it failed.
    pub result: Result<(usize, usize), String>,
}

/// Every active organization (paged from the central register).
pub async fn active_organizations(access: &TenantAccess) -> Result<Vec<OrgRecord>, Error> {
    let mut orgs = Vec::new();
    let mut token = String::new();
    loop {
        let page = access.identity().list_organizations(500, token).await?;
        for org in page.organizations {
            match OrgRecord::try_from(org) {
                Ok(org) if org.status == OrgStatus::Active => orgs.push(org),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an organization"),
            }
        }
        if page.next_page_token.is_empty() {
            return Ok(orgs);
        }
        token = page.next_page_token;
    }
}

/// Reconciles every active tenant, one at a time; one failing does not stop the others.
pub async fn reconcile_all(access: &TenantAccess) -> Result<Vec<TenantReport>, Error> {
    let mut reports = Vec::new();
    for org in active_organizations(access).await? {
        let result = reconcile(access, &org).await.map_err(|e| e.to_string());
        reports.push(TenantReport { organization_id: org.id, result });
    }
    Ok(reports)
}

/// The central key of a change (membership by user, invitation by lower-cased email).
fn key(change: &Change) -> String {
    match change {
        Change::Membership { user_id, .. } | Change::MembershipRemoved { user_id } => {
            format!("member:{user_id}")
        }
        Change::Invitation { email, .. } | Change::InvitationRemoved { email } => {
            format!("invitation:{}", clinic_shared::email::normalize(email))
        }
    }
}

/// Reconciles one tenant; returns how many entries were published and removed.
pub async fn reconcile(access: &TenantAccess, org: &OrgRecord) -> Result<(usize, usize), Error> {
    let (state, watermark) = tenant_state(access, org, Utc::now()).await?;
    let identity = access.identity();
    let mut wanted = HashSet::new();
    for (change, version) in &state {
        publish(identity, org.id, *version, change).await?;
        wanted.insert(key(change));
    }
    let mut removed = 0;
    let mut token = String::new();
    let mut stale = Vec::new();
    loop {
        let page = identity.list_organization_members(org.id, token).await?;
        for m in page.members {
            let change = match m.status() {
                ipb::MembershipStatus::Invited => Change::InvitationRemoved { email: m.email },
                _ => match m.user_id.parse() {
                    Ok(user_id) => Change::MembershipRemoved { user_id },
                    Err(_) => continue,
                },
            };
            if !wanted.contains(&key(&change)) {
                stale.push(change);
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for change in &stale {
        publish(identity, org.id, watermark, change).await?;
        removed += 1;
    }
    tracing::info!(organization_id = %org.id, published = state.len(), removed, "reconciled");
    Ok((state.len(), removed))
}

/// The tenant's central state (each active membership and unexpired invitation with its
/// version) and a version newer than every one issued so far.
async fn tenant_state(
    access: &TenantAccess,
    org: &OrgRecord,
    now: DateTime<Utc>,
) -> Result<(Vec<(Change, i64)>, i64), Error> {
    let db = |context: &'static str| move |e: tokio_postgres::Error| Error::tenant_db(context, &e);
    let mut conn = access.connect(&org.location).await?;
    let tx = conn.transaction().await.map_err(db("begin"))?;
    // Waits for member changes in flight and holds new ones off until the read is done.
    tx.batch_execute("LOCK TABLE organization_user IN SHARE MODE").await.map_err(db("lock"))?;
    let rows = tx
        .query(
            "SELECT user_id, email, status, role, invite_expires_at, version \
             FROM organization_user WHERE role IS NOT NULL",
            &[],
        )
        .await
        .map_err(db("read members"))?;
    let watermark: i64 = tx
        .query_one("SELECT nextval('member_version_seq')", &[])
        .await
        .map_err(db("version"))?
        .col(0)?;
    tx.commit().await.map_err(db("commit"))?;
    let mut state = Vec::with_capacity(rows.len());
    for row in &rows {
        let role = crate::roles::Role::from_db(row.col("role")?)
            .ok_or_else(|| Error::Internal("a member with an unknown role".into()))?;
        let version: i64 = row.col("version")?;
        let user: Option<Uuid> = row.col("user_id")?;
        let expires: Option<DateTime<Utc>> = row.col("invite_expires_at")?;
        let change = match (row.col::<&str>("status")?, user, expires) {
            ("active", Some(user_id), _) => Change::Membership { user_id, role },
            ("invited", None, Some(expires_at)) if expires_at > now => {
                Change::Invitation { email: row.col("email")?, role, expires_at }
            }
            _ => continue,
        };
        state.push((change, version));
    }
    Ok((state, watermark))
}
