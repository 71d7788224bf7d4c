//! Opaque keyset cursors over (start time, id): the last row of a page, base64url-encoded.
//! Rows inserted while a client pages never shift the cursor, so walking all pages returns each
//! row that existed at the start exactly once.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

const VERSION: u8 = 1;
const LEN: usize = 1 + 8 + 16;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    /// Start time of the last row returned (microsecond precision, as PostgreSQL stores it).
    pub start_time: DateTime<Utc>,
    /// Id of the last row returned.
    pub id: Uuid,
}

impl PageToken {
    /// The token's text.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(LEN);
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.start_time.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Parses a token made by [`PageToken::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != LEN || bytes[0] != VERSION {
            return None;
        }
        let micros = i64::from_be_bytes(bytes[1..9].try_into().ok()?);
        let start_time = DateTime::from_timestamp_micros(micros)?;
        let id = Uuid::from_slice(&bytes[9..]).ok()?;
        Some(Self { start_time, id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let token = PageToken {
            start_time: DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(PageToken::decode(&token.encode()), Some(token));
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "x", "not base64!", &URL_SAFE_NO_PAD.encode([2u8; LEN]), "AAAA"] {
            assert_eq!(PageToken::decode(text), None, "{text:?}");
        }
    }
}
