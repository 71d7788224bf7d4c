//! The hash chain: a canonical, unambiguous encoding of one stored event and the link
//! `hash(seq) = SHA-256(tag ‖ hash(seq - 1) ‖ seq ‖ encoding(event))`, with 32 zero bytes before
//! the first. Every field is tagged or length-prefixed, so no two rows encode alike; `seq` is in
//! the link, so seals cannot be reordered.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use sha2::{Digest, Sha256};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::error::Error;

/// The hash before the first seal.
pub const GENESIS: [u8; 32] = [0; 32];

const TAG: &[u8] = b"clinic-audit-v1\0";

/// The columns of a stored event, as [`StoredEvent::from_row`] reads them (prefixed `e.`).
pub const COLUMNS: &str = "e.id, e.occurred_at, e.user_id, e.member_id, e.role, e.action, \
    e.resource_type, e.resource_id, e.patients, e.outcome, e.request_id, e.peer";

/// One `audit_event` row as stored (the hashed columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Row id.
    pub id: i64,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Central user.
    pub user_id: Uuid,
    /// Member.
    pub member_id: Option<Uuid>,
    /// Role.
    pub role: Option<String>,
    /// RPC.
    pub action: String,
    /// Resource kind.
    pub resource_type: String,
    /// Resource.
    pub resource_id: Option<Uuid>,
    /// Patients.
    pub patients: Vec<Uuid>,
    /// gRPC code.
    pub outcome: i16,
    /// Request id.
    pub request_id: Option<String>,
    /// Peer address.
    pub peer: Option<String>,
}

impl StoredEvent {
    /// Reads [`COLUMNS`] from `row`.
    pub fn from_row(row: &Row) -> Result<Self, Error> {
        Ok(Self {
            id: row.col("id")?,
            occurred_at: row.col("occurred_at")?,
            user_id: row.col("user_id")?,
            member_id: row.col("member_id")?,
            role: row.col("role")?,
            action: row.col("action")?,
            resource_type: row.col("resource_type")?,
            resource_id: row.col("resource_id")?,
            patients: row.col("patients")?,
            outcome: row.col("outcome")?,
            request_id: row.col("request_id")?,
            peer: row.col("peer")?,
        })
    }
}

fn text(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(&(s.len() as u64).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

fn id(out: &mut Vec<u8>, value: Option<Uuid>) {
    match value {
        None => out.push(0),
        Some(u) => {
            out.push(1);
            out.extend_from_slice(u.as_bytes());
        }
    }
}

/// The canonical encoding of `e`.
pub fn encode(e: &StoredEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + 16 * e.patients.len());
    out.extend_from_slice(&e.id.to_be_bytes());
    out.extend_from_slice(&e.occurred_at.timestamp_micros().to_be_bytes());
    id(&mut out, Some(e.user_id));
    id(&mut out, e.member_id);
    text(&mut out, e.role.as_deref());
    text(&mut out, Some(&e.action));
    text(&mut out, Some(&e.resource_type));
    id(&mut out, e.resource_id);
    out.extend_from_slice(&(e.patients.len() as u64).to_be_bytes());
    for p in &e.patients {
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(&e.outcome.to_be_bytes());
    text(&mut out, e.request_id.as_deref());
    text(&mut out, e.peer.as_deref());
    out
}

/// The chain hash at `seq` sealing `e`, after `previous`.
pub fn link(previous: &[u8], seq: i64, e: &StoredEvent) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update(TAG);
    digest.update(previous);
    digest.update(seq.to_be_bytes());
    digest.update(encode(e));
    digest.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            id: 7,
            occurred_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            user_id: Uuid::from_u128(1),
            member_id: Some(Uuid::from_u128(2)),
            role: Some("admin".into()),
            action: "clinic.v1.MemberService/GetMember".into(),
            resource_type: "member".into(),
            resource_id: Some(Uuid::from_u128(3)),
            patients: vec![Uuid::from_u128(3)],
            outcome: 0,
            request_id: None,
            peer: Some("127.0.0.1:5000".into()),
        }
    }

    #[test]
    fn every_field_and_the_position_change_the_link() {
        let base = link(&GENESIS, 1, &event());
        assert_eq!(base, link(&GENESIS, 1, &event()), "deterministic");
        assert_ne!(base, link(&GENESIS, 2, &event()), "position");
        assert_ne!(base, link(&[1; 32], 1, &event()), "previous hash");
        let changes: [fn(&mut StoredEvent); 12] = [
            |e| e.id = 8,
            |e| e.occurred_at += chrono::Duration::microseconds(1),
            |e| e.user_id = Uuid::from_u128(9),
            |e| e.member_id = None,
            |e| e.role = Some("doctor".into()),
            |e| e.action.push('x'),
            |e| e.resource_type = "appointment".into(),
            |e| e.resource_id = None,
            |e| e.patients.clear(),
            |e| e.outcome = 7,
            |e| e.request_id = Some(String::new()),
            |e| e.peer = None,
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut e = event();
            change(&mut e);
            assert_ne!(base, link(&GENESIS, 1, &e), "change {i}");
        }
    }

    #[test]
    fn adjacent_text_fields_cannot_trade_bytes() {
        let mut a = event();
        a.request_id = Some("ab".into());
        a.peer = Some("c".into());
        let mut b = event();
        b.request_id = Some("a".into());
        b.peer = Some("bc".into());
        assert_ne!(encode(&a), encode(&b));
    }
}
