//! Writing events: one in the caller's transaction ([`record`]), or a batch in one statement
//! ([`insert_batch`]).

use chrono::Utc;
use tonic::Code;
use uuid::Uuid;

use super::event::{Event, Trail};
use crate::{error::Error, tenancy::Db};

const INSERT: &str = "INSERT INTO audit_event (occurred_at, user_id, member_id, role, action, \
    resource_type, resource_id, patients, outcome, request_id, peer) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Many events in one statement: a JSON array of rows (one text parameter, so the statement is
/// prepared once whatever the batch size); a function scan yields the rows in array order.
/// One INSERT for a whole batch: a typed array per column, unnested in step (binary parameters,
/// nothing for the server to parse but each row's patients, an array literal, since arrays of
/// arrays of different lengths do not exist).
const INSERT_BATCH: &str = "INSERT INTO audit_event (occurred_at, user_id, member_id, role, \
    action, resource_type, resource_id, patients, outcome, request_id, peer) \
    SELECT occurred_at, user_id, member_id, role, action, resource_type, resource_id, \
           patients::uuid[], outcome, request_id, peer \
    FROM unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[], \
                $7::uuid[], $8::text[], $9::int2[], $10::text[], $11::text[]) \
         AS e(occurred_at, user_id, member_id, role, action, resource_type, resource_id, \
              patients, outcome, request_id, peer)";

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
    let column = |f: &dyn Fn(&Event) -> Option<String>| events.iter().map(f).collect::<Vec<_>>();
    let occurred_at: Vec<_> = events.iter().map(|e| e.occurred_at).collect();
    let user_id: Vec<_> = events.iter().map(|e| e.user_id).collect();
    let member_id: Vec<_> = events.iter().map(|e| e.member_id).collect();
    let role = column(&|e| Some(e.role.as_db().to_owned()));
    let action = column(&|e| Some(e.action.to_owned()));
    let resource_type = column(&|e| Some(e.resource_type.to_owned()));
    let resource_id: Vec<_> = events.iter().map(|e| e.resource_id).collect();
    // Uuids print as plain hex and dashes: a safe array literal.
    let patients = column(&|e| {
        let ids: Vec<String> = e.patients.iter().map(Uuid::to_string).collect();
        Some(format!("{{{}}}", ids.join(",")))
    });
    let outcome: Vec<i16> = events.iter().map(|e| code(e.outcome)).collect();
    let request_id = column(&|e| e.request_id.clone());
    let peer = column(&|e| e.peer.map(|p| p.to_string()));
    client
        .execute(
            INSERT_BATCH,
            &[
                &occurred_at,
                &user_id,
                &member_id,
                &role,
                &action,
                &resource_type,
                &resource_id,
                &patients,
                &outcome,
                &request_id,
                &peer,
            ],
        )
        .await
        .map_err(|e| Error::tenant_db("audit events", &e))?;
    Ok(())
}
