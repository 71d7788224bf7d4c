//! `ListAuditEvents`: the request parsed once, and the page read with the caller's membership in
//! one statement (newest first, keyset-paged by `(occurred_at, id)`).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use clinic_api::clinic::v1 as pb;
use clinic_shared::{
    error::Violations,
    paging::{Cursor, MAX_PAGE_SIZE, Page},
    pg::RowExt,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::{error::Error, grpc::timestamp, roles::Role, tenancy::CALLER};

/// Page-token kind of ListAuditEvents.
pub const PAGE_KIND: &str = "audit";

/// The position after which the next page starts (the last event of a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct After {
    /// Its time.
    pub occurred_at: DateTime<Utc>,
    /// Its id.
    pub id: i64,
}

impl Cursor for After {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.occurred_at.timestamp_micros().to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        let (micros, id) = bytes.split_at_checked(8)?;
        let micros = i64::from_be_bytes(micros.try_into().ok()?);
        Some(Self {
            occurred_at: DateTime::from_timestamp_micros(micros)?,
            id: i64::from_be_bytes(id.try_into().ok()?),
        })
    }
}

/// A validated `ListAuditEventsRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAuditEvents {
    /// The clinic.
    pub organization_id: Uuid,
    /// Only this caller (member id).
    pub actor: Option<Uuid>,
    /// Only events naming this patient.
    pub patient: Option<Uuid>,
    /// Only this RPC.
    pub action: Option<String>,
    /// Only this gRPC code.
    pub outcome: Option<i16>,
    /// At or after.
    pub from: Option<DateTime<Utc>>,
    /// Before.
    pub to: Option<DateTime<Utc>>,
    /// Rows per page.
    pub page_size: i64,
    /// Continue after.
    pub after: Option<After>,
}

fn optional_uuid(v: &mut Violations, field: &str, text: &str) -> Option<Uuid> {
    (!text.is_empty()).then(|| v.uuid(field, text))
}

impl TryFrom<pb::ListAuditEventsRequest> for ListAuditEvents {
    type Error = Error;

    fn try_from(req: pb::ListAuditEventsRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = v.uuid("organization_id", &req.organization_id);
        let actor = optional_uuid(&mut v, "actor_member_id", &req.actor_member_id);
        let patient = optional_uuid(&mut v, "patient_id", &req.patient_id);
        let action = match req.action.as_str() {
            "" => None,
            a if a.len() <= 120 && a.bytes().all(|b| b.is_ascii_graphic()) => Some(a.to_owned()),
            _ => {
                v.add("action", "must be an RPC name such as clinic.v1.MemberService/GetMember");
                None
            }
        };
        let outcome = match req.outcome {
            None => None,
            Some(code @ 0..=16) => Some(code as i16),
            Some(_) => {
                v.add("outcome", "must be a gRPC status code, 0 to 16");
                None
            }
        };
        let from = v.time("start_time", req.start_time.as_ref());
        let to = v.time("end_time", req.end_time.as_ref());
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            v.add("end_time", "must be after start_time");
        }
        let page = Page::parse(PAGE_KIND, req.page_size, &req.page_token, MAX_PAGE_SIZE, &mut v);
        v.finish(Self {
            organization_id,
            actor,
            patient,
            action,
            outcome,
            from,
            to,
            page_size: page.size,
            after: page.after,
        })
        .map_err(Error::InvalidArgument)
    }
}

/// The caller's membership (`$1` their user id) and, for an admin only, one page of events
/// (`$2` actor, `$3` patient, `$4` action, `$5` outcome, `$6`/`$7` the time range, `$8`/`$9`
/// the cursor, `$10` the page size plus one). Each row: `caller_id`, `caller_role`, then an
/// event's columns (NULL when the page is empty).
pub static LIST_FOR_CALLER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH caller AS ({CALLER}) SELECT caller.*, ev.* FROM caller LEFT JOIN LATERAL \
         (SELECT e.id, e.occurred_at, e.user_id, e.member_id, e.role, e.action, \
                 e.resource_type, e.resource_id, e.patients, e.outcome, e.request_id, e.peer, \
                 s.seq \
          FROM audit_event e LEFT JOIN audit_seal s ON s.event_id = e.id \
          WHERE caller.caller_role = 'admin' \
            AND ($2::uuid IS NULL OR e.member_id = $2) \
            AND ($3::uuid IS NULL OR e.patients @> ARRAY[$3::uuid]) \
            AND ($4::text IS NULL OR e.action = $4) \
            AND ($5::smallint IS NULL OR e.outcome = $5) \
            AND ($6::timestamptz IS NULL OR e.occurred_at >= $6) \
            AND ($7::timestamptz IS NULL OR e.occurred_at < $7) \
            AND ($8::timestamptz IS NULL OR (e.occurred_at, e.id) < ($8, $9::bigint)) \
          ORDER BY e.occurred_at DESC, e.id DESC LIMIT $10) ev ON true"
    )
});

/// One event row of [`LIST_FOR_CALLER`] (`None`: the empty page's placeholder).
pub fn event_at(row: &Row) -> Result<Option<(After, pb::AuditEvent)>, Error> {
    let Some(id) = row.col::<Option<i64>>("id")? else { return Ok(None) };
    let occurred_at: DateTime<Utc> = row.col("occurred_at")?;
    let text = |name: &str| -> Result<String, Error> {
        Ok(row.col::<Option<String>>(name)?.unwrap_or_default())
    };
    let uuid_text = |name: &str| -> Result<String, Error> {
        Ok(row.col::<Option<Uuid>>(name)?.map(|u| u.to_string()).unwrap_or_default())
    };
    let role = Role::from_db(row.col::<Option<&str>>("role")?)
        .map_or(pb::Role::Unspecified, Role::to_proto);
    let patients: Vec<Uuid> = row.col("patients")?;
    let event = pb::AuditEvent {
        id,
        event_time: Some(timestamp(occurred_at)),
        actor_user_id: uuid_text("user_id")?,
        actor_member_id: uuid_text("member_id")?,
        actor_role: role as i32,
        action: text("action")?,
        resource_type: text("resource_type")?,
        resource_id: uuid_text("resource_id")?,
        patient_ids: patients.iter().map(Uuid::to_string).collect(),
        outcome: i32::from(row.col::<i16>("outcome")?),
        request_id: text("request_id")?,
        peer: text("peer")?,
        sequence: row.col::<Option<i64>>("seq")?.unwrap_or(0),
    };
    Ok(Some((After { occurred_at, id }, event)))
}
