//! Idempotency keys of `CreateAppointment` (table `appointment_request`, migration V13). A key
//! is claimed at the start of the booking's transaction: a concurrent retry with the same key
//! waits on the row until the first commits (then reads its booking) or rolls back (then
//! claims the key itself). Keys older than [`REQUEST_ID_TTL`] count as free and are pruned.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use uuid::Uuid;

use super::{error::Error, requests::REQUEST_ID_TTL};
use crate::tenancy::Db;

/// Expired rows removed per booking: bounded work, and every booking with a key helps.
const PRUNE_BATCH: i64 = 100;

/// What claiming a key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now: book, then [`record`] the appointment.
    Claimed,
    /// A live key booked this appointment for the same parameters.
    Booked(Uuid),
}

/// The moment before which keys created are expired, for a request received at `now`.
fn cutoff(now: DateTime<Utc>) -> Result<DateTime<Utc>, Error> {
    chrono::Duration::from_std(REQUEST_ID_TTL)
        .ok()
        .and_then(|ttl| now.checked_sub_signed(ttl))
        .ok_or(Error::Internal("request id lifetime out of range"))
}

/// Claims key `request_id` of `member_id` for a booking with `fingerprint`, in the caller's
/// transaction. [`Error::RequestIdReused`] when the live key was used for other parameters.
pub async fn claim(
    tx: &impl Db,
    member_id: Uuid,
    request_id: Uuid,
    fingerprint: &[u8],
    now: DateTime<Utc>,
) -> Result<Claim, Error> {
    let cutoff = cutoff(now)?;
    tx.execute(
        "DELETE FROM appointment_request WHERE (member_id, request_id) IN ( \
             SELECT member_id, request_id FROM appointment_request WHERE created_at <= $1 \
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
        &[&cutoff, &PRUNE_BATCH],
    )
    .await?;
    // An expired row left by the bounded prune is taken over in place.
    let claimed = tx
        .query_opt(
            "INSERT INTO appointment_request AS r (member_id, request_id, fingerprint, created_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (member_id, request_id) DO UPDATE \
                 SET fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at, \
                     appointment_id = NULL \
                 WHERE r.created_at <= $5 \
             RETURNING 1",
            &[&member_id, &request_id, &fingerprint, &now, &cutoff],
        )
        .await?;
    if claimed.is_some() {
        return Ok(Claim::Claimed);
    }
    let row = tx
        .query_one(
            "SELECT fingerprint, appointment_id FROM appointment_request \
             WHERE member_id = $1 AND request_id = $2",
            &[&member_id, &request_id],
        )
        .await?;
    if row.col::<&[u8]>(0)? != fingerprint {
        return Err(Error::RequestIdReused);
    }
    row.col::<Option<Uuid>>(1)?
        .map(Claim::Booked)
        .ok_or(Error::Internal("a committed request id without its appointment"))
}

/// Records the appointment booked under a key claimed in this transaction.
pub async fn record(
    tx: &impl Db,
    member_id: Uuid,
    request_id: Uuid,
    appointment_id: Uuid,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE appointment_request SET appointment_id = $3 \
         WHERE member_id = $1 AND request_id = $2",
        &[&member_id, &request_id, &appointment_id],
    )
    .await?;
    Ok(())
}
