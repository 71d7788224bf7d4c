//! In-process cache of ACTIVE organizations (placement never changes, so entries never go
//! stale; PROVISIONING ones are not cached because their status will change).

use std::{collections::HashMap, sync::Mutex};

use uuid::Uuid;

use super::OrgRecord;

/// Most organizations remembered; beyond that the cache starts over (entries are cheap to
/// fetch again).
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub(super) struct Registry {
    entries: Mutex<HashMap<Uuid, OrgRecord>>,
}

impl Registry {
    pub(super) fn get(&self, id: Uuid) -> Option<OrgRecord> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    pub(super) fn insert(&self, org: OrgRecord) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(org.id, org);
    }
}
