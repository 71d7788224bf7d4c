//! Keyset paging by UUID for the directory's lists: `clinic_shared::paging` (the one page-size
//! rule and token format of both services) with this service's error type.

use clinic_shared::{error::Violations, paging};
use uuid::Uuid;

use crate::error::Error;

/// A validated page request: `size` rows with ids greater than `after`.
pub type Page = paging::Page<Uuid>;

/// Token kind of `ListOrganizations`.
pub const ORGANIZATIONS: &str = "organizations";
/// Token kind of `ListUserMemberships`.
pub const MEMBERSHIPS: &str = "memberships";

/// Parses `page_size` (0 → 20, capped at `max`) and `page_token` of a list of `kind`.
pub fn parse(kind: &str, size: i32, token: &str, max: i64) -> Result<Page, Error> {
    let mut v = Violations::default();
    let page = Page::parse(kind, size, token, max, &mut v);
    v.finish(page).map_err(Error::InvalidArgument)
}

/// The token for the page after one ending at `last`, or empty when `more` is false.
pub fn next_token(kind: &str, more: bool, last: Option<Uuid>) -> String {
    paging::next_page_token(kind, last.filter(|_| more).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let id = Uuid::new_v4();
        let token = next_token(ORGANIZATIONS, true, Some(id));
        assert_eq!(parse(ORGANIZATIONS, 0, &token, 100).unwrap().after, Some(id));
        assert!(parse(MEMBERSHIPS, 0, &token, 100).is_err());
        assert_eq!(parse(ORGANIZATIONS, 0, "", 100).unwrap().size, 20);
        assert_eq!(parse(ORGANIZATIONS, 5000, "", 1000).unwrap().size, 1000);
        assert!(parse(ORGANIZATIONS, -1, "", 100).is_err());
        assert!(parse(ORGANIZATIONS, 1, "!!", 100).is_err());
        assert!(next_token(ORGANIZATIONS, false, Some(id)).is_empty());
    }
}
