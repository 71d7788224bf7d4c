//! The keyset cursor of `ListAppointments`: (start time, id) of the last row of a page, carried
//! in the opaque page tokens of `clinic_shared::paging`. Rows inserted while a client pages
//! never shift the cursor, so walking all pages returns each row that existed at the start
//! exactly once.

use chrono::{DateTime, Utc};
use clinic_shared::paging::Cursor;
use uuid::Uuid;

/// The position after which the next page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    /// Start time of the last row returned (microsecond precision, as PostgreSQL stores it).
    pub start_time: DateTime<Utc>,
    /// Id of the last row returned.
    pub id: Uuid,
}

impl Cursor for PageToken {
    fn write(&self, out: &mut Vec<u8>) {
        (self.start_time, self.id).write(out);
    }

    fn read(bytes: &[u8]) -> Option<Self> {
        let (start_time, id) = Cursor::read(bytes)?;
        Some(Self { start_time, id })
    }
}

impl PageToken {
    /// The token's text.
    pub fn encode(&self) -> String {
        clinic_shared::paging::next_page_token(super::requests::LIST_KIND, Some(self))
    }
}
