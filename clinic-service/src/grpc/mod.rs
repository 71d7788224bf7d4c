//! The thin gRPC edge: parsing proto fields into domain values. Page sizes, page tokens,
//! timestamps and the collection of field violations have their one home in `clinic_shared`;
//! the helpers here adapt them to this service's error type for the handlers that parse field by
//! field (members, organizations).

use clinic_shared::{error::Violations, paging};
use uuid::Uuid;

use crate::error::Error;

mod member_ref;
pub use member_ref::MemberRef;

pub use clinic_shared::{
    paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    time::to_timestamp as timestamp,
};

/// A UUID field; INVALID_ARGUMENT naming `field` otherwise.
pub fn parse_uuid(field: &str, value: &str) -> Result<Uuid, Error> {
    let mut v = Violations::default();
    let id = v.uuid(field, value);
    v.finish(id).map_err(Error::InvalidArgument)
}

/// `page_size`: 0 means the default, above the maximum is capped, negative is an error.
pub fn page_size(value: i32) -> Result<i64, Error> {
    let mut v = Violations::default();
    let size = paging::page_size(value, MAX_PAGE_SIZE, &mut v);
    v.finish(size).map_err(Error::InvalidArgument)
}

/// Encodes a keyset cursor (the last id of a page) as an opaque token of `kind`.
pub fn encode_page_token(kind: &str, last: Uuid) -> String {
    paging::next_page_token(kind, Some(&last))
}

/// Decodes a token made by [`encode_page_token`] for `kind`; empty means the first page.
pub fn decode_page_token(kind: &str, token: &str) -> Result<Option<Uuid>, Error> {
    let mut v = Violations::default();
    let after = paging::page_token(kind, token, &mut v);
    v.finish(after).map_err(Error::InvalidArgument)
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
