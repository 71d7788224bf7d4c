//! Keyset paging by UUID: the page token is the base64url of the last id returned.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use uuid::Uuid;

use crate::error::Error;

/// A validated page request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Rows wanted.
    pub size: i64,
    /// Return ids strictly greater than this.
    pub after: Option<Uuid>,
}

impl Page {
    /// Parses `page_size` (0 → 20, capped at `max`) and `page_token`.
    pub fn parse(size: i32, token: &str, max: i64) -> Result<Self, Error> {
        if size < 0 {
            return Err(Error::invalid("page_size", "must not be negative"));
        }
        let size = if size == 0 { 20 } else { i64::from(size).min(max) };
        let after =
            if token.is_empty() {
                None
            } else {
                let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| {
                    Error::invalid("page_token", "is not a token from a previous page")
                })?;
                Some(Uuid::from_slice(&bytes).map_err(|_| {
                    Error::invalid("page_token", "is not a token from a previous page")
                })?)
            };
        Ok(Self { size, after })
    }

    /// The token for the page after one ending at `last`, or empty when `more` is false.
    pub fn next_token(more: bool, last: Option<Uuid>) -> String {
        match (more, last) {
            (true, Some(id)) => URL_SAFE_NO_PAD.encode(id.as_bytes()),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let id = Uuid::new_v4();
        let token = Page::next_token(true, Some(id));
        assert_eq!(Page::parse(0, &token, 100).unwrap().after, Some(id));
        assert_eq!(Page::parse(0, "", 100).unwrap().size, 20);
        assert_eq!(Page::parse(5000, "", 100).unwrap().size, 100);
        assert!(Page::parse(-1, "", 100).is_err());
        assert!(Page::parse(1, "!!", 100).is_err());
        assert!(Page::next_token(false, Some(id)).is_empty());
    }
}
