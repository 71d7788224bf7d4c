//! One hub per watched clinic: it reads the clinic's change log and broadcasts what it read to
//! that clinic's watchers, which filter it by their role scope. Reads take turns (the hub's
//! position is held across each), so batches go out in log order whoever reads:
//!
//! - a call of this process that committed a change there reads right after its commit, on its
//!   own connection, before giving it back to the pool (`Feed::committed`): the change reaches
//!   the watchers without the feed waiting for a connection of its own;
//! - the hub's poller reads over a pooled connection (taken for the read and given back, so the
//!   budget holds however many watch) when woken (a committed read failed) and whenever
//!   `WATCH_POLL_MS` went by with no read (changes made through other replicas). It ends once
//!   the last watcher of its clinic is gone, or on shutdown.
//!
//! A read also re-reads the watchers' memberships when a heartbeat went by since the last
//! time (`roster`), so access re-checks cost one statement per clinic, not one per stream.

use std::sync::Arc;

use tokio::{
    sync::{Mutex, Notify, broadcast},
    time::Instant,
};
use uuid::Uuid;

use super::{
    Feed,
    log::{self, Change, ReadError},
    roster::{Roster, Standing},
};
use crate::{
    error::Error,
    tenancy::{Db, Location},
};

/// Changes read per query.
pub const BATCH: i64 = 500;

/// Batches a slow watcher may fall behind by before it reads the log itself.
const CAPACITY: usize = 256;

/// Changes read together, in order.
pub type Batch = Arc<[Change]>;

/// A watched clinic.
pub struct Hub {
    /// Where its database lives.
    pub location: Location,
    wake: Notify,
    events: broadcast::Sender<Batch>,
    /// Where the last read ended (`None` before the first), held across a read.
    position: Mutex<Option<i64>>,
    /// When a read last succeeded.
    last_read: std::sync::Mutex<Instant>,
    /// The watchers' memberships, read along with the log once per `heartbeat`.
    roster: Roster,
    heartbeat: std::time::Duration,
}

/// A watcher's place in its hub's roster, given up when dropped (the stream ended).
pub struct Watching {
    hub: Arc<Hub>,
    member_id: Uuid,
}

impl Watching {
    /// What the hub's latest membership reading says of the watcher (as `user_id`); `Unknown`
    /// unless it was taken within two heartbeats and a poll.
    pub fn standing(&self, user_id: Uuid, poll: std::time::Duration) -> Standing {
        let max_age = self.hub.heartbeat * 2 + poll;
        self.hub.roster.standing(self.member_id, user_id, max_age)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.hub.roster.leave(self.member_id);
    }
}

impl Hub {
    /// A hub of the clinic at `location` with no watcher yet, reading its watchers'
    /// memberships every `heartbeat`.
    pub fn new(location: Location, heartbeat: std::time::Duration) -> Self {
        Self {
            roster: Roster::default(),
            heartbeat,
            location,
            wake: Notify::new(),
            events: broadcast::channel(CAPACITY).0,
            position: Mutex::new(None),
            last_read: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// A new watcher's receiver: every batch broadcast from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.events.subscribe()
    }

    /// Counts a stream of `member_id` into the roster until the returned guard is dropped.
    pub fn watching(self: &Arc<Self>, member_id: Uuid) -> Watching {
        self.roster.join(member_id);
        Watching { hub: self.clone(), member_id }
    }

    /// Gives a hub that has not read yet the position a new watcher reads the log after (call
    /// it after subscribing, before that read): the hub then reads from there rather than from
    /// the head at its first read, which may come after changes the watcher's own read missed
    /// (and no later batch would reveal the gap). A hub that has read keeps its position:
    /// what it read before the subscription precedes the watcher's read, what it reads after
    /// reaches the watcher.
    pub async fn seed(&self, after: i64) {
        self.position.lock().await.get_or_insert(after);
    }

    /// Whether anyone still watches.
    pub fn watched(&self) -> bool {
        self.events.receiver_count() > 0
    }

    /// Makes the poller read now (or as soon as it is done with the current read).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn organization_id(&self) -> Uuid {
        self.location.organization_id
    }

    fn last_read(&self) -> Instant {
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads through `db` (a connection to this clinic) and broadcasts everything after the
    /// last read (after the first watcher's position, see [`Hub::seed`]; after the head when
    /// none seeded it: watchers read what precedes it themselves).
    pub async fn read(&self, db: &impl Db) -> Result<(), Error> {
        let mut position = self.position.lock().await;
        let mut after = match *position {
            Some(p) => p,
            None => log::head(db).await?,
        };
        loop {
            let changes = match log::read_after(db, after, BATCH).await {
                Ok(changes) => changes,
                // The hub fell behind the kept history (it had not read since before a prune):
                // go on from the oldest change kept, so every change a watcher may still be
                // waiting for is broadcast. A watcher further behind sees the gap in that batch
                // and reads the log itself (and learns it is out of range). Jumping to the head
                // instead would broadcast nothing of what was logged since, and a watcher whose
                // position is in range would wait for it forever.
                Err(ReadError::OutOfRange { pruned, .. }) if after < pruned => {
                    after = pruned;
                    continue;
                }
                // A position never handed out (the log was replaced): start from its head.
                Err(ReadError::OutOfRange { newest, .. }) => {
                    after = newest;
                    break;
                }
                Err(ReadError::Failed(e)) => return Err(e),
            };
            let Some(last) = changes.last().map(|c| c.position) else { break };
            after = last;
            let full = changes.len() as i64 == BATCH;
            // No receiver is fine: the watchers may just have gone.
            let _ = self.events.send(changes.into());
            if !full {
                break;
            }
        }
        *position = Some(after);
        *self.last_read.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        drop(position);
        if self.roster.due(self.heartbeat).is_some_and(|due| due <= Instant::now()) {
            // The log was read: a failure here leaves the roster due for the next read.
            if let Err(e) = self.roster.refresh(db).await {
                tracing::debug!(organization_id = %self.organization_id(), error = %e, "reading the watchers' memberships failed");
            }
        }
        Ok(())
    }
}

/// The poller of `hub`: see the module.
pub async fn poll(feed: Feed, hub: Arc<Hub>) {
    let mut stopping = feed.stopping();
    let period = feed.config().poll;
    let mut read_now = true;
    let mut attempted = Instant::now();
    loop {
        if !feed.keep_hub(&hub) {
            return;
        }
        if read_now {
            attempted = Instant::now();
            if let Err(e) = read_pooled(&feed, &hub).await {
                tracing::debug!(organization_id = %hub.organization_id(), error = %e, "change log poll failed; retrying at the next tick");
            }
        }
        // Next: when woken, once a period went by with no read (by anyone; a failed attempt
        // counts, so an outage is retried once a period), or when the roster is due.
        let log_due = hub.last_read().max(attempted) + period;
        let roster_due = hub.roster.due(hub.heartbeat).map(|d| d.max(attempted + period));
        let due = roster_due.map_or(log_due, |r| r.min(log_due));
        tokio::select! {
            _ = super::stopped(&mut stopping) => return,
            _ = hub.wake.notified() => read_now = true,
            _ = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                read_now = hub.last_read() + period <= now
                    || hub.roster.due(hub.heartbeat).is_some_and(|d| d <= now);
            }
        }
    }
}

/// One read over a pooled connection of the hub's clinic.
async fn read_pooled(feed: &Feed, hub: &Hub) -> Result<(), Error> {
    let conn = feed.access().connect(&hub.location).await?;
    hub.read(&*conn).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::{BATCH, Hub};
    use crate::{
        appointments::tests::{Tenant, hours_ahead},
        feed::log,
        tenancy::Location,
    };

    /// A hub that reads whatever connection it is given (its location is never used).
    fn detached_hub() -> Hub {
        let location = Location {
            organization_id: Uuid::new_v4(),
            server: "main".into(),
            database: "unused".into(),
            login_role: "unused".into(),
            login_role_recorded: false,
        };
        Hub::new(location, Duration::from_secs(1))
    }

    /// A change that commits after a new watcher read the log but before the hub's first read
    /// reaches the watcher: the hub reads from the watcher's position, not from the head.
    #[tokio::test]
    async fn a_new_hub_broadcasts_what_committed_between_its_watchers_read_and_its_own() {
        let mut t = Tenant::new().await;
        let (admin, patient, doctor) = (t.admin().await, t.patient().await, t.doctor().await);
        let hub = detached_hub();
        let mut rx = hub.subscribe();
        let watcher_read = log::head(&t.client).await.unwrap();
        hub.seed(watcher_read).await;
        let booked = t.book(&admin, patient.member_id, doctor.member_id, hours_ahead(5), 30).await;
        let booked = booked.unwrap();
        hub.read(&t.client).await.unwrap();
        let batch = rx.try_recv().expect("the change was broadcast");
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].position, batch[0].appointment_id), (watcher_read + 1, booked.id));
    }

    /// A hub that had not read since before a prune (seeded, then slow under load) goes on from
    /// the oldest change kept: what was logged after the prune reaches a watcher that resumed
    /// from the pruned horizon. (It used to jump to the head and broadcast nothing: seen as a
    /// watch test hanging under CI load.)
    #[tokio::test]
    async fn a_hub_behind_a_prune_broadcasts_what_was_logged_after_it() {
        let mut t = Tenant::new().await;
        let (admin, patient, doctor) = (t.admin().await, t.patient().await, t.doctor().await);
        let hub = detached_hub();
        let mut rx = hub.subscribe();
        let seeded = log::head(&t.client).await.unwrap();
        hub.seed(seeded).await;
        t.book(&admin, patient.member_id, doctor.member_id, hours_ahead(5), 30).await.unwrap();
        let pruned = log::prune(&t.client, Duration::ZERO, chrono::Utc::now()).await.unwrap();
        assert_eq!(pruned, 1);
        assert!(matches!(
            log::read_after(&t.client, seeded, BATCH).await,
            Err(log::ReadError::OutOfRange { .. })
        ));
        let later = t.book(&admin, patient.member_id, doctor.member_id, hours_ahead(7), 30).await;
        let later = later.unwrap();
        hub.read(&t.client).await.unwrap();
        let batch = rx.try_recv().expect("the change after the prune was broadcast");
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].position, batch[0].appointment_id), (seeded + 2, later.id));
    }
}
