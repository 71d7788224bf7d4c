//! The thin gRPC edge: parsing proto fields into domain values (UUIDs, page sizes, page tokens,
//! timestamps) and the tonic server types of every service.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Error;

mod member_ref;
pub use member_ref::MemberRef;

/// Default and maximum page sizes of every list.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A UUID field; INVALID_ARGUMENT naming `field` otherwise.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Error> {
    if value.trim().is_empty() {
        return Err(Error::field(field, "required"));
    }
    Uuid::parse_str(value.trim()).map_err(|_| Error::field(field, "must be a UUID"))
}

/// `page_size`: 0 means the default, above the maximum is capped, negative is an error.
pub fn page_size(value: i32) -> Result<i64, Error> {
    match i64::from(value) {
        n if n < 0 => Err(Error::field("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok(n.min(MAX_PAGE_SIZE)),
    }
}

/// Encodes a keyset cursor (the last id of a page) as an opaque token of `kind`.
pub fn encode_page_token(kind: &str, last: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{last}"))
}

/// Decodes a token made by [`encode_page_token`] for `kind`; empty means the first page.
pub fn decode_page_token(kind: &str, token: &str) -> Result<Option<Uuid>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad = || Error::field("page_token", "malformed page token");
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (k, id) = raw.split_once(':').ok_or_else(bad)?;
    if k != kind {
        return Err(bad());
    }
    Uuid::parse_str(id).map(Some).map_err(|_| bad())
}

/// A protobuf timestamp.
pub fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_garbage() {
        let id = Uuid::new_v4();
        let token = encode_page_token("members", id);
        assert_eq!(decode_page_token("members", &token).unwrap(), Some(id));
        assert!(decode_page_token("other", &token).is_err());
        assert!(decode_page_token("members", "!!").is_err());
        assert_eq!(decode_page_token("members", "").unwrap(), None);
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), 20);
        assert_eq!(page_size(500).unwrap(), 100);
        assert_eq!(page_size(7).unwrap(), 7);
        assert!(page_size(-1).is_err());
    }
}
