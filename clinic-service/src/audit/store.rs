//! Writing events: one in the caller's transaction ([`record`]), or a batch in one statement
//! ([`insert_batch`]).

use chrono::{SecondsFormat, Utc};
use tonic::Code;

use super::event::{Event, Trail};
use crate::{error::Error, tenancy::Db};

const INSERT: &str = "INSERT INTO audit_event (occurred_at, user_id, member_id, role, action, \
    resource_type, resource_id, patients, outcome, request_id, peer) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Many events in one statement: a JSON array of rows (one text parameter, so the statement is
/// prepared once whatever the batch size); a function scan yields the rows in array order.
const INSERT_BATCH: &str = "INSERT INTO audit_event (occurred_at, user_id, member_id, role, \
    action, resource_type, resource_id, patients, outcome, request_id, peer) \
    SELECT occurred_at, user_id, member_id, role, action, resource_type, resource_id, \
           COALESCE(patients, '{}'), outcome, request_id, peer \
    FROM jsonb_to_recordset(($1::text)::jsonb) AS e(occurred_at timestamptz, user_id uuid, \
         member_id uuid, role text, action text, resource_type text, resource_id uuid, \
         patients uuid[], outcome smallint, request_id text, peer text)";

/// The code as stored.
pub fn code(outcome: Code) -> i16 {
    outcome as i16
}

/// Writes the successful call's event in `tx`, the transaction of its write: if this fails, so
/// does the write. A trail whose caller is unknown cannot reach here (every write acquires the
/// caller first); it is an error rather than an unrecorded write.
pub async fn record(tx: &impl Db, trail: &mut Trail) -> Result<(), Error> {
    let e = trail
        .event(Code::Ok, Utc::now())
        .ok_or_else(|| Error::Internal("audit: a write without a known caller".into()))?;
    let peer = e.peer.map(|p| p.to_string());
    tx.execute(
        INSERT,
        &[
            &e.occurred_at,
            &e.user_id,
            &e.member_id,
            &e.role.as_db(),
            &e.action,
            &e.resource_type,
            &e.resource_id,
            &e.patients,
            &code(e.outcome),
            &e.request_id,
            &peer,
        ],
    )
    .await
    .map_err(|e| Error::tenant_db("audit event", &e))?;
    trail.mark_recorded();
    Ok(())
}

/// Writes `events` (of one tenant) in one statement.
pub async fn insert_batch(client: &impl Db, events: &[Event]) -> Result<(), Error> {
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "occurred_at": e.occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                "user_id": e.user_id,
                "member_id": e.member_id,
                "role": e.role.as_db(),
                "action": e.action,
                "resource_type": e.resource_type,
                "resource_id": e.resource_id,
                "patients": e.patients,
                "outcome": code(e.outcome),
                "request_id": e.request_id,
                "peer": e.peer.map(|p| p.to_string()),
            })
        })
        .collect();
    let json = serde_json::Value::Array(rows).to_string();
    client
        .execute(INSERT_BATCH, &[&json])
        .await
        .map_err(|e| Error::tenant_db("audit events", &e))?;
    Ok(())
}
