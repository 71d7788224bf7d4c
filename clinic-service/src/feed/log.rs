//! The change log of one tenant database (`appointment_change`, migration V16): read in
//! position order, which is commit order, and pruned by age. Time is a parameter.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{
    appointments::domain::{AppointmentStatus, Parties},
    error::Error,
    tenancy::Db,
};

/// One recorded appointment change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Its place in the log (resume tokens carry it).
    pub position: i64,
    /// The appointment.
    pub appointment_id: Uuid,
    /// Its patient and doctor when the change was made (who may see the change).
    pub parties: Parties,
    /// The state before; `None` for the booking.
    pub from_status: Option<AppointmentStatus>,
    /// The state after.
    pub to_status: AppointmentStatus,
    /// Who made it (`None` once removed).
    pub changed_by: Option<Uuid>,
    /// The change's transaction time.
    pub changed_at: DateTime<Utc>,
    /// When the visit starts.
    pub start_time: DateTime<Utc>,
    /// When it ends.
    pub end_time: DateTime<Utc>,
    /// When the entry was written (at commit).
    pub logged_at: DateTime<Utc>,
}

/// Why the log cannot be read from a position.
#[derive(Debug)]
pub enum ReadError {
    /// Changes after the position were pruned (it is below `pruned`), or the position was never
    /// handed out (it is above `newest`).
    OutOfRange {
        /// The newest change that was pruned: reading after it is in range.
        pruned: i64,
        /// The newest change logged.
        newest: i64,
    },
    /// The database failed.
    Failed(Error),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

fn db_error(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

/// The last position handed out (every change up to it is committed and readable).
pub async fn head(db: &impl Db) -> Result<i64, Error> {
    let row = db
        .query_one("SELECT position FROM appointment_change_head", &[])
        .await
        .map_err(db_error("read the change log head"))?;
    Ok(row.col(0)?)
}

/// The head and up to `$2` changes after `$1`, in one statement: one snapshot, so the horizon
/// read describes exactly the changes read beside it. The head comes on every row (and alone,
/// with the change columns NULL, when nothing follows `$1`).
const READ: &str = "SELECT h.position, h.pruned_through, c.position, c.appointment_id, \
    c.patient_id, c.doctor_id, c.from_status::text, c.to_status::text, c.changed_by, \
    c.changed_at, c.start_time, c.end_time, c.logged_at \
    FROM appointment_change_head h LEFT JOIN LATERAL ( \
        SELECT * FROM appointment_change WHERE position > $1 ORDER BY position LIMIT $2) c \
    ON true ORDER BY c.position";

/// Up to `limit` changes after `after`, in order, in one round trip; OUT_OF_RANGE when changes
/// after `after` were pruned (or `after` was never handed out).
pub async fn read_after(db: &impl Db, after: i64, limit: i64) -> Result<Vec<Change>, ReadError> {
    let rows = db.query(READ, &[&after, &limit]).await.map_err(db_error("read the change log"))?;
    let head = rows.first().ok_or(Error::Internal("the change log has no head".into()))?;
    let (newest, pruned): (i64, i64) =
        (head.col(0).map_err(Error::from)?, head.col(1).map_err(Error::from)?);
    if after < pruned || after > newest {
        return Err(ReadError::OutOfRange { pruned, newest });
    }
    let mut changes = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.col::<Option<i64>>(2).map_err(Error::from)?.is_some() {
            changes.push(change(row)?);
        }
    }
    Ok(changes)
}

fn status(label: &str) -> Result<AppointmentStatus, Error> {
    AppointmentStatus::from_sql(label)
        .ok_or(Error::Internal("unknown appointment status in the change log".into()))
}

fn change(row: &Row) -> Result<Change, Error> {
    let from: Option<String> = row.col(6)?;
    let to: String = row.col(7)?;
    Ok(Change {
        position: row.col(2)?,
        appointment_id: row.col(3)?,
        parties: Parties { patient_id: row.col(4)?, doctor_id: row.col(5)? },
        from_status: from.as_deref().map(status).transpose()?,
        to_status: status(&to)?,
        changed_by: row.col(8)?,
        changed_at: row.col(9)?,
        start_time: row.col(10)?,
        end_time: row.col(11)?,
        logged_at: row.col(12)?,
    })
}

/// Deletes changes logged before `now - retention` and moves the horizon past them; returns how
/// many went.
pub async fn prune(
    db: &impl Db,
    retention: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = now.checked_sub_signed(retention) else { return Ok(0) };
    let row = db
        .query_one(
            "WITH gone AS (DELETE FROM appointment_change WHERE logged_at < $1 RETURNING position), \
                  moved AS (UPDATE appointment_change_head \
                            SET pruned_through = GREATEST(pruned_through, (SELECT max(position) FROM gone)) \
                            WHERE EXISTS (SELECT 1 FROM gone) RETURNING 1) \
             SELECT count(*) FROM gone",
            &[&cutoff],
        )
        .await
        .map_err(db_error("prune the change log"))?;
    let count: i64 = row.col(0)?;
    Ok(u64::try_from(count).unwrap_or_default())
}
