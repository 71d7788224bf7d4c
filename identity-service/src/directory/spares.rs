//! The register of spare tenant databases (see migration V8): registered before clinic-service
//! creates them, READY once migrated, claimed by a new organization inside its reservation, and
//! forgotten when that organization is activated.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::{error::Error, state::AppState};

/// Where a spare stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpareState {
    /// Being created or migrated.
    Creating,
    /// May be claimed.
    Ready,
    /// Claimed by an organization being provisioned.
    Claimed,
}

impl SpareState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Claimed => "claimed",
        }
    }

    fn parse(s: &str) -> Result<Self, Error> {
        match s {
            "creating" => Ok(Self::Creating),
            "ready" => Ok(Self::Ready),
            "claimed" => Ok(Self::Claimed),
            other => Err(Error::Internal(format!("unknown spare state {other:?}"))),
        }
    }
}

/// One registered spare database.
#[derive(Debug, Clone)]
pub struct Spare {
    /// Its database name.
    pub database_name: String,
    /// Its server key.
    pub server: String,
    /// Its state.
    pub state: SpareState,
    /// The organization that claimed it.
    pub organization_id: Option<Uuid>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// The tenant login role made with it, if any.
    pub login_role: Option<String>,
}

const COLUMNS: &str = "database_name, server, state, organization_id, created_at, login_role";

impl Spare {
    fn from_row(row: &tokio_postgres::Row) -> Result<Self, Error> {
        Ok(Self {
            database_name: row.col("database_name")?,
            server: row.col("server")?,
            state: SpareState::parse(row.col("state")?)?,
            organization_id: row.col("organization_id")?,
            created_at: row.col("created_at")?,
            login_role: row.col("login_role")?,
        })
    }
}

/// Checks a spare's database name: a plain identifier outside the clinics' `clinic_` namespace.
pub fn parse_name(field: &str, name: &str) -> Result<String, Error> {
    let plain = !name.is_empty()
        && name.len() <= clinic_shared::slug::MAX_IDENTIFIER_BYTES
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return Err(Error::invalid(
            field,
            "must be lowercase letters, digits and underscores, at most 63 bytes",
        ));
    }
    if name.starts_with(clinic_shared::slug::DATABASE_PREFIX) {
        return Err(Error::invalid(field, "names starting with clinic_ belong to clinics"));
    }
    Ok(name.to_owned())
}

/// Checks a tenant login role's name: the one pattern `deploy/bootstrap.sql`'s
/// `create_tenant_role` accepts (`clinic_tenant_` and 32 hex digits); empty means none.
pub fn parse_login_role(field: &str, role: &str) -> Result<Option<String>, Error> {
    if role.is_empty() {
        return Ok(None);
    }
    let hex = role.strip_prefix("clinic_tenant_").unwrap_or_default();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(Error::invalid(field, "must be clinic_tenant_ followed by 32 hex digits"));
    }
    Ok(Some(role.to_owned()))
}

/// Registers `name` on `server` as CREATING, with the login role made with it; idempotent for
/// the same server and role.
pub async fn register(
    state: &AppState,
    server: &str,
    name: &str,
    login_role: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Spare, Error> {
    let conn = state.conn().await?;
    conn.execute(
        "INSERT INTO spare_database (database_name, server, state, created_at, login_role) \
         VALUES ($1, $2, 'creating', $3, $4) ON CONFLICT (database_name) DO NOTHING",
        &[&name, &server, &now, &login_role],
    )
    .await?;
    let sql = format!("SELECT {COLUMNS} FROM spare_database WHERE database_name = $1");
    let row = conn.query_opt(&sql, &[&name]).await?;
    let spare = Spare::from_row(&row.ok_or(Error::NotFound("spare database not found"))?)?;
    if spare.server != server || spare.login_role.as_deref() != login_role {
        return Err(Error::AlreadyExists(
            "this spare database is registered on another server or with another role",
        ));
    }
    Ok(spare)
}

/// Moves an unclaimed spare from `from` to `to` (compare and set); OK when it is in `to`.
pub async fn update(
    state: &AppState,
    name: &str,
    from: SpareState,
    to: SpareState,
) -> Result<Spare, Error> {
    let conn = state.conn().await?;
    let sql = format!(
        "UPDATE spare_database SET state = $3 WHERE database_name = $1 AND state = $2 \
         RETURNING {COLUMNS}"
    );
    if let Some(row) = conn.query_opt(&sql, &[&name, &from.as_str(), &to.as_str()]).await? {
        return Spare::from_row(&row);
    }
    let sql = format!("SELECT {COLUMNS} FROM spare_database WHERE database_name = $1");
    let row = conn.query_opt(&sql, &[&name]).await?;
    let spare = Spare::from_row(&row.ok_or(Error::NotFound("spare database not found"))?)?;
    if spare.state == to {
        return Ok(spare);
    }
    Err(Error::FailedPrecondition("the spare database is not in the expected state"))
}

/// Every spare (of `server`), oldest first.
pub async fn list(state: &AppState, server: Option<&str>) -> Result<Vec<Spare>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM spare_database WHERE ($1::text IS NULL OR server = $1) \
         ORDER BY created_at, database_name"
    );
    let rows = state.conn().await?.query(&sql, &[&server]).await?;
    rows.iter().map(Spare::from_row).collect()
}

/// Forgets an unclaimed spare (idempotent).
pub async fn remove(state: &AppState, name: &str) -> Result<(), Error> {
    let conn = state.conn().await?;
    let deleted = conn
        .execute(
            "DELETE FROM spare_database WHERE database_name = $1 AND state <> 'claimed'",
            &[&name],
        )
        .await?;
    if deleted == 0 {
        let claimed = conn
            .query_opt("SELECT 1 FROM spare_database WHERE database_name = $1", &[&name])
            .await?;
        if claimed.is_some() {
            return Err(Error::FailedPrecondition("the spare database is claimed"));
        }
    }
    Ok(())
}

/// A spare claimed by an organization: its name and the login role it carries.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The spare's database name.
    pub database_name: String,
    /// The login role made with it, if any.
    pub login_role: Option<String>,
}

/// Claims a READY spare on `server` for `organization` (inside the reservation's transaction):
/// one of `preferred` if any is READY there, else the oldest; and records the spare's login
/// role as the organization's, in one statement. Concurrent claims skip each other's rows: no
/// spare goes to two organizations (the UNIQUE organization_id also holds one organization to
/// one spare).
pub async fn claim(
    tx: &deadpool_postgres::Transaction<'_>,
    server: &str,
    organization: Uuid,
    preferred: &[String],
) -> Result<Option<Claimed>, Error> {
    let claim = tx
        .prepare_cached(
            "WITH claimed AS ( \
                 UPDATE spare_database SET state = 'claimed', organization_id = $2 \
                 WHERE database_name = (SELECT database_name FROM spare_database \
                     WHERE server = $1 AND state = 'ready' \
                     ORDER BY database_name = ANY($3) DESC, created_at, database_name \
                     LIMIT 1 FOR UPDATE SKIP LOCKED) \
                 AND state = 'ready' RETURNING database_name, login_role), \
             recorded AS ( \
                 UPDATE organization SET login_role = claimed.login_role FROM claimed \
                 WHERE id = $2 AND claimed.login_role IS NOT NULL) \
             SELECT database_name, login_role FROM claimed",
        )
        .await?;
    let row = tx.query_opt(&claim, &[&server, &organization, &preferred]).await?;
    row.map(|r| {
        Ok::<_, Error>(Claimed {
            database_name: r.col("database_name")?,
            login_role: r.col("login_role")?,
        })
    })
    .transpose()
}

/// The spare claimed by `organization`, if any.
pub async fn claimed_by(
    client: &Transaction<'_>,
    organization: Uuid,
) -> Result<Option<String>, Error> {
    let row = client
        .query_opt(
            "SELECT database_name FROM spare_database WHERE organization_id = $1",
            &[&organization],
        )
        .await?;
    row.map(|r| r.col(0)).transpose().map_err(Into::into)
}
