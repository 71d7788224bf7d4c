//! Writing events: one in the caller's transaction ([`record`]), or a batch in one COPY
//! ([`insert_batch`]).

use chrono::Utc;
use tokio_postgres::types::{ToSql, Type};
use tonic::Code;

use super::event::{Event, Trail};
use crate::{error::Error, tenancy::Db};

const INSERT: &str = "INSERT INTO audit_event (occurred_at, user_id, member_id, role, action, \
    resource_type, resource_id, patients, outcome, request_id, peer) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

/// Many events in one binary COPY: typed values, nothing for the server to parse, and rows
/// inserted several per page and WAL record (on a 2-core VM, about 11 us of PostgreSQL CPU per
/// event where an INSERT of the batch unnested from arrays took about 18).
const COPY: &str = "COPY audit_event (occurred_at, user_id, member_id, role, action, \
    resource_type, resource_id, patients, outcome, request_id, peer) FROM STDIN (FORMAT binary)";

/// The types of [`COPY`]'s columns, in order.
const COPY_TYPES: [Type; 11] = [
    Type::TIMESTAMPTZ,
    Type::UUID,
    Type::UUID,
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::UUID,
    Type::UUID_ARRAY,
    Type::INT2,
    Type::TEXT,
    Type::TEXT,
];

/// An event's stored columns, in the order of [`INSERT`] and [`COPY`].
struct Columns<'a> {
    event: &'a Event,
    role: &'static str,
    outcome: i16,
    peer: Option<String>,
}

impl<'a> Columns<'a> {
    fn of(event: &'a Event) -> Self {
        Self {
            event,
            role: event.role.as_db(),
            outcome: code(event.outcome),
            peer: event.peer.map(|p| p.to_string()),
        }
    }

    fn values(&self) -> [&(dyn ToSql + Sync); 11] {
        let e = self.event;
        [
            &e.occurred_at,
            &e.user_id,
            &e.member_id,
            &self.role,
            &e.action,
            &e.resource_type,
            &e.resource_id,
            &e.patients,
            &self.outcome,
            &e.request_id,
            &self.peer,
        ]
    }
}

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
    tx.execute(INSERT, &Columns::of(&e).values())
        .await
        .map_err(|e| Error::tenant_db("audit event", &e))?;
    trail.mark_recorded();
    Ok(())
}

/// Writes `events` (of one tenant) in one COPY.
pub async fn insert_batch(client: &impl Db, events: &[Event]) -> Result<(), Error> {
    let db = |e: tokio_postgres::Error| Error::tenant_db("audit events", &e);
    let writer = client.copy_in(COPY, &COPY_TYPES).await.map_err(db)?;
    let mut writer = std::pin::pin!(writer);
    for e in events {
        let columns = Columns::of(e);
        writer.as_mut().write(&columns.values()).await.map_err(db)?;
    }
    writer.finish().await.map_err(db)?;
    Ok(())
}
