//! Audit checkpoints (migration V10): the latest sealed position of each organization's audit
//! hash chain, kept centrally so that a tenant database rewritten or truncated up to it is
//! detected. A checkpoint only moves forward.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use uuid::Uuid;

use crate::{error::Error, state::AppState};

/// A recorded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The chain position.
    pub seq: i64,
    /// The chain hash there (32 bytes).
    pub hash: Vec<u8>,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// The bytes of a SHA-256 hash from request field `field`.
pub fn parse_hash(field: &str, raw: &[u8]) -> Result<Vec<u8>, Error> {
    if raw.len() != 32 {
        return Err(Error::invalid(field, "must be a 32-byte SHA-256 hash"));
    }
    Ok(raw.to_vec())
}

/// A chain position from request field `field`.
pub fn parse_seq(field: &str, raw: i64) -> Result<i64, Error> {
    if raw < 1 {
        return Err(Error::invalid(field, "must be at least 1"));
    }
    Ok(raw)
}

/// Records `(seq, hash)` for `organization_id` unless it would move the checkpoint back or
/// contradict it (see the RPC's contract).
pub async fn record(
    state: &AppState,
    organization_id: Uuid,
    seq: i64,
    hash: &[u8],
) -> Result<(), Error> {
    let conn = state.conn().await?;
    let exists =
        conn.query_opt("SELECT 1 FROM organization WHERE id = $1", &[&organization_id]).await?;
    if exists.is_none() {
        return Err(Error::NotFound("no such organization"));
    }
    // Moves forward only; the same position with the same hash is a repeat.
    let written = conn
        .execute(
            "INSERT INTO audit_checkpoint (organization_id, seq, hash) VALUES ($1, $2, $3) \
             ON CONFLICT (organization_id) DO UPDATE \
             SET seq = excluded.seq, hash = excluded.hash, recorded_at = now() \
             WHERE audit_checkpoint.seq < excluded.seq \
                OR (audit_checkpoint.seq = excluded.seq AND audit_checkpoint.hash = excluded.hash)",
            &[&organization_id, &seq, &hash],
        )
        .await?;
    if written == 0 {
        return Err(Error::FailedPrecondition(
            "the audit checkpoint is further along or has another hash at this position",
        ));
    }
    Ok(())
}

/// The checkpoint of `organization_id`, if one was recorded.
pub async fn get(state: &AppState, organization_id: Uuid) -> Result<Option<Checkpoint>, Error> {
    let conn = state.conn().await?;
    let row = conn
        .query_opt(
            "SELECT seq, hash, recorded_at FROM audit_checkpoint WHERE organization_id = $1",
            &[&organization_id],
        )
        .await?;
    row.map(|r| {
        Ok(Checkpoint {
            seq: r.col("seq")?,
            hash: r.col("hash")?,
            recorded_at: r.col("recorded_at")?,
        })
    })
    .transpose()
}
