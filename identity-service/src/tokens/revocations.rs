//! The log of revoked sessions that followers (clinic-service, through `WatchRevocations`) read
//! in order: written in the transaction that revokes, numbered so that no reader can skip a
//! transaction that commits late (see `migrations/V7__session_revocations.sql`), kept at least
//! `REVOCATION_RETENTION_SECS` (never less than an access token's lifetime) and then pruned.
//! Time is a parameter.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::{error::Error, state::AppState};

/// One revoked session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Its place in the log (the resume token is made from it).
    pub position: i64,
    /// The session.
    pub session_id: Uuid,
    /// Its user.
    pub user_id: Uuid,
    /// When it was revoked.
    pub revoked_at: DateTime<Utc>,
    /// No access token of the session is valid after this.
    pub forget_after: DateTime<Utc>,
}

/// Records the sessions in `revoked` (rows of `id, user_id, expires_at` of just revoked
/// sessions) in the log, inside the caller's revoking transaction. Takes the log's head row lock
/// (released at commit): do it last in the transaction.
pub async fn record(
    db: &impl GenericClient,
    state: &AppState,
    revoked: &[Row],
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if revoked.is_empty() {
        return Ok(());
    }
    let ttl =
        chrono::Duration::from_std(state.config.access_token_ttl).unwrap_or(chrono::Duration::MAX);
    // A token issued up to now expires by now + ttl, and never after its session did.
    let latest_token = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let count = i64::try_from(revoked.len()).map_err(Error::internal)?;
    let last: i64 = db
        .query_one(
            "UPDATE revocation_log_head SET position = position + $1 RETURNING position",
            &[&count],
        )
        .await?
        .col(0)?;
    for (position, row) in (last - count + 1..).zip(revoked) {
        let expires: DateTime<Utc> = row.col("expires_at")?;
        db.execute(
            "INSERT INTO session_revocation \
             (position, session_id, user_id, revoked_at, forget_after, reason) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &position,
                &row.col::<Uuid>("id")?,
                &row.col::<Uuid>("user_id")?,
                &now,
                &latest_token.min(expires),
                &reason,
            ],
        )
        .await?;
    }
    Ok(())
}

/// Why the log cannot be read from a position.
#[derive(Debug)]
pub enum ReadError {
    /// Events after the position were pruned, or the position was never handed out.
    OutOfRange,
    /// The database failed.
    Failed(Error),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl From<tokio_postgres::Error> for ReadError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Failed(e.into())
    }
}

/// The oldest position a follower starting from nothing may resume from: everything after it is
/// kept.
pub async fn oldest(db: &impl GenericClient) -> Result<i64, Error> {
    Ok(db.query_one("SELECT pruned_through FROM revocation_log_head", &[]).await?.col(0)?)
}

/// Up to `limit` revocations after `after`, in order. The events are read first and the
/// horizon after: both only grow, so a horizon still at or below `after` proves nothing after
/// it had been pruned when the events were read.
pub async fn read_after(
    db: &impl GenericClient,
    after: i64,
    limit: i64,
) -> Result<Vec<Revocation>, ReadError> {
    let rows = db
        .query(
            "SELECT position, session_id, user_id, revoked_at, forget_after \
             FROM session_revocation WHERE position > $1 ORDER BY position LIMIT $2",
            &[&after, &limit],
        )
        .await?;
    let head =
        db.query_one("SELECT position, pruned_through FROM revocation_log_head", &[]).await?;
    let (newest, pruned): (i64, i64) =
        (head.col(0).map_err(Error::from)?, head.col(1).map_err(Error::from)?);
    if after < pruned || after > newest {
        return Err(ReadError::OutOfRange);
    }
    rows.iter()
        .map(|r| {
            Ok(Revocation {
                position: r.col(0)?,
                session_id: r.col(1)?,
                user_id: r.col(2)?,
                revoked_at: r.col(3)?,
                forget_after: r.col(4)?,
            })
        })
        .collect::<Result<_, Error>>()
        .map_err(ReadError::Failed)
}

/// Deletes revocations older than `retention` at `now` and moves the horizon past them; returns
/// how many went.
pub async fn prune(
    db: &impl GenericClient,
    retention: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let Some(cutoff) = now.checked_sub_signed(retention) else { return Ok(0) };
    let row = db
        .query_one(
            "WITH gone AS (DELETE FROM session_revocation WHERE revoked_at < $1 RETURNING position), \
                  moved AS (UPDATE revocation_log_head \
                            SET pruned_through = GREATEST(pruned_through, (SELECT max(position) FROM gone)) \
                            WHERE EXISTS (SELECT 1 FROM gone)) \
             SELECT count(*) FROM gone",
            &[&cutoff],
        )
        .await?;
    Ok(u64::try_from(row.col::<i64>(0)?).unwrap_or(0))
}

/// The resume token of `position`. Opaque to clients; versioned so its form can change.
pub fn resume_token(position: i64) -> String {
    format!("r1.{position}")
}

/// The position of a resume token (`None` for the empty token: start from the oldest kept).
pub fn parse_resume_token(token: &str) -> Result<Option<i64>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix("r1.")
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| Error::invalid("resume_token", "is not a resume token of this service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_round_trip_and_reject_garbage() {
        assert_eq!(parse_resume_token(&resume_token(42)).unwrap(), Some(42));
        assert_eq!(parse_resume_token("").unwrap(), None);
        for bad in ["42", "r1.", "r1.-1", "r2.5", "r1.5x"] {
            assert!(parse_resume_token(bad).is_err(), "{bad}");
        }
    }
}
