//! Lists, the same way in both services: `page_size` (0 means [`DEFAULT_PAGE_SIZE`], anything
//! above the list's maximum is capped, negative is INVALID_ARGUMENT) and opaque keyset page
//! tokens. A token carries the sort key of the last row returned (a [`Cursor`]) and the kind
//! of list that issued it, base64url-encoded; rows inserted while a client pages never shift
//! it, so walking all pages returns every row exactly once.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Violations;

/// Rows per page when the request says 0.
pub const DEFAULT_PAGE_SIZE: i64 = 20;
/// The most rows a public list returns per page.
pub const MAX_PAGE_SIZE: i64 = 100;

/// The sort key of a row, as a page token carries it.
pub trait Cursor: Sized {
    /// Appends the key's bytes.
    fn write(&self, out: &mut Vec<u8>);
    /// The key from exactly the bytes [`Cursor::write`] wrote; `None` for anything else.
    fn read(bytes: &[u8]) -> Option<Self>;
}

/// Lists ordered by id.
impl Cursor for Uuid {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn read(bytes: &[u8]) -> Option<Self> {
        Uuid::from_slice(bytes).ok()
    }
}

/// Lists ordered by (time, id), the time at microsecond precision as PostgreSQL keeps it.
impl Cursor for (DateTime<Utc>, Uuid) {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.timestamp_micros().to_be_bytes());
        self.1.write(out);
    }
    fn read(bytes: &[u8]) -> Option<Self> {
        let (micros, id) = bytes.split_at_checked(8)?;
        let time = DateTime::from_timestamp_micros(i64::from_be_bytes(micros.try_into().ok()?))?;
        Some((time, Uuid::read(id)?))
    }
}

/// `page_size`: 0 means [`DEFAULT_PAGE_SIZE`], above `max` is capped, negative is a violation
/// (recorded in `v`; the default is returned so parsing can go on).
pub fn page_size(value: i32, max: i64, v: &mut Violations) -> i64 {
    match i64::from(value) {
        0 => DEFAULT_PAGE_SIZE,
        n if n < 0 => {
            v.add("page_size", "must not be negative");
            DEFAULT_PAGE_SIZE
        }
        n => n.min(max),
    }
}

/// `page_token` of a list of `kind`: `None` when empty (the first page), the cursor it carries
/// otherwise; a token this kind of list did not issue is a violation (recorded in `v`).
pub fn page_token<C: Cursor>(kind: &str, token: &str, v: &mut Violations) -> Option<C> {
    if token.is_empty() {
        return None;
    }
    let cursor = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| C::read(bytes.strip_prefix(kind.as_bytes())?.strip_prefix(b":")?));
    if cursor.is_none() {
        v.add("page_token", "is not a token from a previous page of this list");
    }
    cursor
}

/// A validated page request of a list of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<C> {
    /// Rows wanted, 1 to the list's maximum.
    pub size: i64,
    /// Continue after this row; `None` for the first page.
    pub after: Option<C>,
}

impl<C: Cursor> Page<C> {
    /// Parses `page_size` (capped at `max`) and `page_token` (empty: the first page; one not
    /// issued by a list of `kind`: a violation), adding violations to `v`.
    pub fn parse(
        kind: &str,
        page_size: i32,
        page_token: &str,
        max: i64,
        v: &mut Violations,
    ) -> Self {
        Self {
            size: self::page_size(page_size, max, v),
            after: self::page_token(kind, page_token, v),
        }
    }

    /// The size as a row count.
    pub fn len(&self) -> usize {
        usize::try_from(self.size).unwrap_or(0)
    }

    /// Whether no rows are asked for (never, once parsed).
    pub fn is_empty(&self) -> bool {
        self.size <= 0
    }
}

/// The token of the page after one that ended at `last`; empty (the last page) for `None`.
pub fn next_page_token<C: Cursor>(kind: &str, last: Option<&C>) -> String {
    let Some(last) = last else { return String::new() };
    let mut bytes = Vec::with_capacity(kind.len() + 1 + 24);
    bytes.extend_from_slice(kind.as_bytes());
    bytes.push(b':');
    last.write(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<C: Cursor>(kind: &str, size: i32, token: &str) -> Result<Page<C>, Vec<String>> {
        let mut v = Violations::default();
        let page = Page::parse(kind, size, token, MAX_PAGE_SIZE, &mut v);
        v.finish(page).map_err(|v| v.into_iter().map(|v| v.field).collect())
    }

    #[test]
    fn page_sizes() {
        for (asked, got) in [(0, 20), (1, 1), (7, 7), (100, 100), (101, 100), (i32::MAX, 100)] {
            assert_eq!(parse::<Uuid>("x", asked, "").unwrap().size, got, "{asked}");
        }
        assert_eq!(parse::<Uuid>("x", -1, "").unwrap_err(), ["page_size"]);
    }

    #[test]
    fn tokens_round_trip_within_their_kind() {
        let id = Uuid::new_v4();
        let token = next_page_token("members", Some(&id));
        assert_eq!(parse::<Uuid>("members", 0, &token).unwrap().after, Some(id));
        assert_eq!(parse::<Uuid>("other", 0, &token).unwrap_err(), ["page_token"]);

        let at = DateTime::from_timestamp_micros(1_800_000_000_123_456).unwrap();
        let token = next_page_token("appointments", Some(&(at, id)));
        let page = parse::<(DateTime<Utc>, Uuid)>("appointments", 0, &token).unwrap();
        assert_eq!(page.after, Some((at, id)));
        assert!(next_page_token::<Uuid>("members", None).is_empty());
    }

    #[test]
    fn garbage_is_a_violation_not_a_panic() {
        let short = URL_SAFE_NO_PAD.encode(b"appointments:abc");
        for token in ["!!", "x", "AAAA", short.as_str()] {
            assert_eq!(
                parse::<(DateTime<Utc>, Uuid)>("appointments", 0, token).unwrap_err(),
                ["page_token"],
                "{token}"
            );
        }
        assert_eq!(parse::<Uuid>("x", -5, "!!").unwrap_err(), ["page_size", "page_token"]);
    }
}
