//! The register of organizations: reserve (placement on the least-loaded server), activate,
//! get and list.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    Organization,
    domain::ORG_COLUMNS,
    paging::{self, Page},
    spares,
};
use crate::{error::Error, state::AppState, throttle::Key};
use clinic_shared::pg::RowExt;

/// A statement parameter.
type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// Serialises reservations so server placement counts are never stale.
const RESERVE_LOCK: i64 = 0x1d_0c_0a_11;

/// A validated ReserveOrganization.
pub struct Reservation {
    /// Trimmed display name.
    pub name: String,
    /// Tenant database name from `clinic_shared::slug::database_name`.
    pub database_name: String,
    /// Creating user.
    pub creator: Uuid,
    /// Candidate server keys (non-empty, de-duplicated).
    pub servers: Vec<String>,
    /// Also claim a READY spare database on the chosen server (when the row is created).
    pub claim_spare: bool,
    /// Spares to claim first when one is READY on the chosen server (validated names).
    pub preferred_spares: Vec<String>,
}

/// The outcome of [`reserve`].
pub struct Reserved {
    /// The organization.
    pub organization: Organization,
    /// Whether this call created it.
    pub created: bool,
    /// The spare database claimed for it, if any.
    pub spare: Option<String>,
}

/// Registers the organization (claiming a spare when asked), or returns the creator's earlier
/// reservation and its claim.
pub async fn reserve(
    state: &AppState,
    r: Reservation,
    now: DateTime<Utc>,
) -> Result<Reserved, Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    // Statements prepared once per pooled connection (CreateOrganization waits for this call),
    // and the reads pipelined behind the lock: one connection runs them in order, so they all
    // read under it, in one round trip.
    let lock = tx.prepare_cached("SELECT pg_advisory_xact_lock($1)").await?;
    let verified = tx.prepare_cached("SELECT is_verified FROM app_user WHERE id = $1").await?;
    let sql = format!(
        "SELECT {ORG_COLUMNS} FROM organization o WHERE o.name = $1 OR o.database_name = $2 \
         ORDER BY (o.name = $1) DESC"
    );
    let existing = tx.prepare_cached(&sql).await?;
    let count =
        tx.prepare_cached("SELECT count(*) FROM organization WHERE creator_user_id = $1").await?;
    let least_loaded = tx
        .prepare_cached(
            "SELECT c.server FROM unnest($1::text[]) AS c(server) \
             LEFT JOIN organization o ON o.server = c.server \
             GROUP BY c.server ORDER BY count(o.id), c.server LIMIT 1",
        )
        .await?;
    let lock_key: [Param; 1] = [&RESERVE_LOCK];
    let creator: [Param; 1] = [&r.creator];
    let names: [Param; 2] = [&r.name, &r.database_name];
    let servers: [Param; 1] = [&r.servers];
    let (_, verified, existing, created, server) = tokio::try_join!(
        tx.execute(&lock, &lock_key),
        tx.query_opt(&verified, &creator),
        tx.query(&existing, &names),
        tx.query_one(&count, &creator),
        tx.query_one(&least_loaded, &servers),
    )?;
    let verified: Option<bool> = verified.map(|row| row.col(0)).transpose()?;
    match verified {
        None => return Err(Error::NotFound("creator user not found")),
        Some(false) => return Err(Error::FailedPrecondition("creator's email is not verified")),
        Some(true) => {}
    }
    let existing = existing.iter().map(Organization::from_row).collect::<Result<Vec<_>, _>>()?;
    if existing.iter().any(|o| o.creator_user_id != r.creator) {
        return Err(Error::AlreadyExists("an organization with this name already exists"));
    }
    if let Some(org) = existing.into_iter().next() {
        let spare = spares::claimed_by(&tx, org.id).await?;
        return Ok(Reserved { organization: org, created: false, spare });
    }
    check_quota(state, &tx, created.col(0)?, r.creator, now).await?;
    let server: String = server.col(0)?;
    let sql = format!(
        "INSERT INTO organization AS o (id, name, database_name, server, status, creator_user_id, created_at) \
         VALUES ($1, $2, $3, $4, 'provisioning', $5, $6) RETURNING {ORG_COLUMNS}"
    );
    let insert = tx.prepare_cached(&sql).await?;
    let id = Uuid::new_v4();
    let inserted = async {
        tx.query_one(&insert, &[&id, &r.name, &r.database_name, &server, &r.creator, &now])
            .await
            .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
                Some("organization_name_key" | "organization_database_name_key") => {
                    Error::AlreadyExists("an organization with this name already exists")
                }
                _ => Error::Database(e),
            })
    };
    // The claim pipelined right behind the insert (it runs after it, and fails with it).
    let claim = async {
        if r.claim_spare {
            spares::claim(&tx, &server, id, &r.preferred_spares).await
        } else {
            Ok(None)
        }
    };
    let (row, claimed) = tokio::join!(inserted, claim);
    let mut org = Organization::from_row(&row?)?;
    let claimed = claimed?;
    tx.commit().await?;
    // The claim recorded the spare's role on the row (after RETURNING read it).
    let spare = claimed.map(|c| {
        org.login_role = c.login_role;
        c.database_name
    });
    tracing::info!(
        organization_id = %org.id, server = %org.server, spare = spare.is_some(),
        "organization reserved"
    );
    Ok(Reserved { organization: org, created: true, spare })
}

/// Refuses a new organization when its creator has created `MAX_CLINICS_PER_USER` already
/// (`created`, counted under the reservation's lock), or too many within the throttle window.
/// Counted inside the reservation's transaction (under its lock, so concurrent reservations
/// cannot both take the last place), so an attempt that fails (a taken name) is not counted,
/// and neither is the retry of a reservation.
async fn check_quota(
    state: &AppState,
    tx: &deadpool_postgres::Transaction<'_>,
    created: i64,
    creator: Uuid,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let max = state.config.max_clinics_per_user;
    if created >= i64::from(max) {
        return Err(Error::QuotaExceeded {
            message: "this user has created as many clinics as allowed",
            subject: format!("user:{creator}"),
            description: format!("at most {max} clinics per user (MAX_CLINICS_PER_USER)"),
        });
    }
    let keys = [Key::CreateOrganization(creator)];
    state.throttle.count(&**tx, &keys, now, "too many clinics created recently").await
}

/// Marks an organization ACTIVE (idempotent) and forgets the spare it claimed: that database is
/// the organization's now.
pub async fn activate(state: &AppState, id: Uuid) -> Result<Organization, Error> {
    let sql = format!(
        "WITH spare AS (DELETE FROM spare_database WHERE organization_id = $1) \
         UPDATE organization AS o SET status = 'active' WHERE o.id = $1 RETURNING {ORG_COLUMNS}"
    );
    let conn = state.conn().await?;
    let row = conn.query_opt(&conn.prepare_cached(&sql).await?, &[&id]).await?;
    let org = Organization::from_row(&row.ok_or(Error::NotFound("organization not found"))?)?;
    tracing::info!(organization_id = %org.id, "organization active");
    Ok(org)
}

/// One organization.
pub async fn get(state: &AppState, id: Uuid) -> Result<Organization, Error> {
    let sql = format!("SELECT {ORG_COLUMNS} FROM organization o WHERE o.id = $1");
    let row = state.conn().await?.query_opt(&sql, &[&id]).await?;
    Organization::from_row(&row.ok_or(Error::NotFound("organization not found"))?)
}

/// One page of all organizations by id, and the next page token.
pub async fn list(state: &AppState, page: Page) -> Result<(Vec<Organization>, String), Error> {
    let sql = format!(
        "SELECT {ORG_COLUMNS} FROM organization o WHERE ($1::uuid IS NULL OR o.id > $1) \
         ORDER BY o.id LIMIT $2"
    );
    let rows = state.conn().await?.query(&sql, &[&page.after, &(page.size + 1)]).await?;
    let mut orgs = rows.iter().map(Organization::from_row).collect::<Result<Vec<_>, _>>()?;
    let more = orgs.len() as i64 > page.size;
    orgs.truncate(page.size as usize);
    let next = paging::next_token(paging::ORGANIZATIONS, more, orgs.last().map(|o| o.id));
    Ok((orgs, next))
}
