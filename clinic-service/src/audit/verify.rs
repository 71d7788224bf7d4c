//! `clinic-service audit verify`: walks a tenant's chain from the first seal, recomputing every
//! hash, then compares it with the central checkpoint. Names the first broken position; events
//! not sealed yet are counted apart (they are not in the chain, so nothing proves them yet).

use clinic_shared::pg::RowExt;

use super::chain::{self, COLUMNS, GENESIS, StoredEvent};
use crate::{
    error::Error,
    tenancy::{Db, OrgRecord, TenantAccess},
};

/// Seals read per query.
const CHUNK: i64 = 5000;

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first chain position found wrong.
    pub seq: i64,
    /// The event sealed there, if known.
    pub event_id: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

/// The outcome of verifying one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Positions verified (the whole chain when intact; up to the first break otherwise).
    pub sealed: i64,
    /// Events without a seal yet.
    pub unsealed: i64,
    /// The central checkpoint's position, if one was recorded.
    pub checkpoint: Option<i64>,
    /// The first break, `None` when the chain is intact.
    pub broken: Option<Break>,
}

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

/// Verifies the chain of `org` against its central checkpoint.
pub async fn verify(access: &TenantAccess, org: &OrgRecord) -> Result<Report, Error> {
    let checkpoint = access.identity().audit_checkpoint(org.id).await?;
    let conn = access.connect(&org.location).await?;
    let sql = format!(
        "SELECT s.seq, s.event_id AS sealed_event, s.hash, {COLUMNS} FROM audit_seal s \
         LEFT JOIN audit_event e ON e.id = s.event_id WHERE s.seq > $1 ORDER BY s.seq LIMIT $2"
    );
    let (mut last, mut hash) = (0_i64, GENESIS.to_vec());
    let mut at_checkpoint: Option<Vec<u8>> = None;
    let mut broken = None;
    'walk: loop {
        let rows = conn.query(&sql, &[&last, &CHUNK]).await.map_err(db("read seals"))?;
        for row in &rows {
            let seq: i64 = row.col("seq")?;
            let event_id: i64 = row.col("sealed_event")?;
            let stored: Vec<u8> = row.col("hash")?;
            let found = Some(event_id);
            if seq != last + 1 {
                let reason =
                    format!("seals {} to {} are missing (rows deleted)", last + 1, seq - 1);
                broken = Some(Break { seq: last + 1, event_id: None, reason });
                break 'walk;
            }
            if row.col::<Option<i64>>("id")?.is_none() {
                let reason = "the sealed event is gone (row deleted)".to_owned();
                broken = Some(Break { seq, event_id: found, reason });
                break 'walk;
            }
            let computed = chain::link(&hash, seq, &StoredEvent::from_row(row)?);
            if computed.as_slice() != stored.as_slice() {
                let reason = "hash mismatch: the event or its seal was altered".to_owned();
                broken = Some(Break { seq, event_id: found, reason });
                break 'walk;
            }
            (last, hash) = (seq, stored);
            if checkpoint.as_ref().is_some_and(|(cp, _)| *cp == seq) {
                at_checkpoint = Some(hash.clone());
            }
        }
        if (rows.len() as i64) < CHUNK {
            break;
        }
    }
    if broken.is_none()
        && let Some((cp_seq, cp_hash)) = &checkpoint
    {
        broken = match at_checkpoint {
            None => Some(Break {
                seq: last + 1,
                event_id: None,
                reason: format!(
                    "the chain ends at {last} but {cp_seq} were checkpointed (tail truncated)"
                ),
            }),
            Some(h) if &h != cp_hash => Some(Break {
                seq: *cp_seq,
                event_id: None,
                reason: format!(
                    "the chain up to {cp_seq} differs from the checkpoint (rewritten and \
                     re-hashed at or before it)"
                ),
            }),
            Some(_) => None,
        };
    }
    let unsealed: i64 = conn
        .query_one(
            "SELECT count(*) FROM audit_event e \
             WHERE NOT EXISTS (SELECT 1 FROM audit_seal s WHERE s.event_id = e.id)",
            &[],
        )
        .await
        .map_err(db("unsealed events"))?
        .col(0)?;
    Ok(Report { sealed: last, unsealed, checkpoint: checkpoint.map(|(seq, _)| seq), broken })
}
