//! The memberships of a watched clinic's watchers, re-read for all of them at once: one
//! statement per clinic and heartbeat, on whichever connection the hub reads the log with (the
//! committing call's, or the poller's), instead of one connection and statement per stream and
//! heartbeat. Each stream, at its heartbeat, looks its caller up in the latest reading.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use clinic_shared::pg::RowExt;
use tokio::time::Instant;
use uuid::Uuid;

use crate::{error::Error, roles::Role, tenancy::Db};

/// The watchers' member ids and the latest reading of their memberships.
#[derive(Default)]
pub struct Roster {
    /// Member id → streams of it open now.
    watching: Mutex<HashMap<Uuid, usize>>,
    read: Mutex<Option<Arc<Reading>>>,
}

/// The memberships as one statement read them.
struct Reading {
    at: Instant,
    /// The member ids asked about (the watchers of the time).
    asked: HashSet<Uuid>,
    /// Those still active: their user and role.
    active: HashMap<Uuid, (Uuid, Option<Role>)>,
}

/// What the latest reading says of one watcher's caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// An active member (of this user) with this role.
    Active(Option<Role>),
    /// Not an active member of this user any more.
    Gone,
    /// No recent reading covers them yet: ask again at the next heartbeat.
    Unknown,
}

const READ: &str = "SELECT id, user_id, role FROM organization_user \
    WHERE id = ANY($1) AND status = 'active'";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Roster {
    /// Counts a stream of `member_id` in (see [`Self::leave`]).
    pub fn join(&self, member_id: Uuid) {
        *lock(&self.watching).entry(member_id).or_default() += 1;
    }

    /// Counts a stream of `member_id` out.
    pub fn leave(&self, member_id: Uuid) {
        let mut watching = lock(&self.watching);
        if let Some(n) = watching.get_mut(&member_id) {
            *n -= 1;
            if *n == 0 {
                watching.remove(&member_id);
            }
        }
    }

    /// When the memberships are next due to be read: `every` after the last reading (now when
    /// there was none); `None` while nobody watches.
    pub fn due(&self, every: Duration) -> Option<Instant> {
        if lock(&self.watching).is_empty() {
            return None;
        }
        Some(lock(&self.read).as_ref().map_or_else(Instant::now, |r| r.at + every))
    }

    /// Reads the watchers' memberships through `db`.
    pub async fn refresh(&self, db: &impl Db) -> Result<(), Error> {
        let asked: Vec<Uuid> = lock(&self.watching).keys().copied().collect();
        let at = Instant::now();
        let rows = db
            .query(READ, &[&asked])
            .await
            .map_err(|e| Error::tenant_db("read the watchers' memberships", &e))?;
        let mut active = HashMap::with_capacity(rows.len());
        for row in &rows {
            let role: Option<String> = row.col(2)?;
            active.insert(row.col(0)?, (row.col(1)?, Role::from_db(role.as_deref())));
        }
        let reading = Reading { at, asked: asked.into_iter().collect(), active };
        *lock(&self.read) = Some(Arc::new(reading));
        Ok(())
    }

    /// What the latest reading, if taken within `max_age`, says of `member_id` (as `user_id`).
    pub fn standing(&self, member_id: Uuid, user_id: Uuid, max_age: Duration) -> Standing {
        let Some(reading) = lock(&self.read).clone() else { return Standing::Unknown };
        if reading.at + max_age < Instant::now() || !reading.asked.contains(&member_id) {
            return Standing::Unknown;
        }
        match reading.active.get(&member_id) {
            Some((user, role)) if *user == user_id => Standing::Active(*role),
            _ => Standing::Gone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(asked: &[Uuid], active: &[(Uuid, Uuid, Option<Role>)], at: Instant) -> Roster {
        let roster = Roster::default();
        *lock(&roster.read) = Some(Arc::new(Reading {
            at,
            asked: asked.iter().copied().collect(),
            active: active.iter().map(|(m, u, r)| (*m, (*u, *r))).collect(),
        }));
        roster
    }

    #[test]
    fn standing_follows_the_latest_reading() {
        let (member, user, other) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let age = Duration::from_secs(10);
        let now = Instant::now();
        let cases = [
            (
                reading(&[member], &[(member, user, Some(Role::Doctor))], now),
                Standing::Active(Some(Role::Doctor)),
            ),
            (reading(&[member], &[], now), Standing::Gone),
            // Another user behind the same member id: not the caller's membership.
            (reading(&[member], &[(member, other, Some(Role::Doctor))], now), Standing::Gone),
            // Joined after the reading: not asked about yet.
            (reading(&[other], &[], now), Standing::Unknown),
            (Roster::default(), Standing::Unknown),
        ];
        for (i, (roster, expected)) in cases.into_iter().enumerate() {
            assert_eq!(roster.standing(member, user, age), expected, "case {i}");
        }
    }

    #[test]
    fn an_old_reading_says_nothing_and_is_due_again() {
        let (member, user) = (Uuid::new_v4(), Uuid::new_v4());
        let every = Duration::from_secs(10);
        let Some(long_ago) = Instant::now().checked_sub(every * 2) else { return };
        let roster = reading(&[member], &[], long_ago);
        assert_eq!(roster.due(every), None, "nobody watches: nothing is due");
        roster.join(member);
        assert_eq!(roster.due(every), Some(long_ago + every));
        assert_eq!(roster.standing(member, user, every), Standing::Unknown);
        assert_eq!(roster.standing(member, user, every * 3), Standing::Gone);
        roster.join(member);
        roster.leave(member);
        assert!(roster.due(every).is_some(), "one stream of the member is still open");
        roster.leave(member);
        assert_eq!(roster.due(every), None);
    }
}
