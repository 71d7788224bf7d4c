//! One hub per watched clinic: a single poller task reads the clinic's change log over a pooled
//! connection (taken for each read and given back, so the connection budget holds however many
//! watch) and broadcasts what it read to that clinic's watchers, which filter it by their role
//! scope. The poller reads when this process committed a change there (`Feed::changed`) and
//! every `WATCH_POLL_MS` anyway (changes made through other replicas). It ends once the last
//! watcher of its clinic is gone, or on shutdown.

use std::sync::Arc;

use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use super::{
    Feed,
    log::{self, Change, ReadError},
};
use crate::tenancy::Location;

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
}

impl Hub {
    /// A hub of the clinic at `location` with no watcher yet.
    pub fn new(location: Location) -> Self {
        Self { location, wake: Notify::new(), events: broadcast::channel(CAPACITY).0 }
    }

    /// A new watcher's receiver: every batch broadcast from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.events.subscribe()
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
}

/// The poller of `hub`: see the module.
pub async fn poll(feed: Feed, hub: Arc<Hub>) {
    let mut stopping = feed.stopping();
    let mut position = None;
    let mut ticks = tokio::time::interval(feed.config().poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !feed.keep_hub(&hub) {
            return;
        }
        match read(&feed, &hub, &mut position).await {
            Ok(()) => {}
            Err(e) => {
                tracing::debug!(organization_id = %hub.organization_id(), error = %e, "change log poll failed; retrying at the next tick");
            }
        }
        tokio::select! {
            _ = super::stopped(&mut stopping) => return,
            _ = hub.wake.notified() => {}
            _ = ticks.tick() => {}
        }
    }
}

/// Reads and broadcasts everything after `*position` (after the head, the first time).
async fn read(
    feed: &Feed,
    hub: &Hub,
    position: &mut Option<i64>,
) -> Result<(), crate::error::Error> {
    let conn = feed.access().connect(&hub.location).await?;
    let mut after = match *position {
        Some(p) => p,
        None => log::head(&*conn).await?,
    };
    loop {
        let changes = match log::read_after(&*conn, after, BATCH).await {
            Ok(changes) => changes,
            // Only if this poller fell behind the whole kept history: watchers catch up on their
            // own (they see the gap), so start again from the head.
            Err(ReadError::OutOfRange) => {
                *position = Some(log::head(&*conn).await?);
                return Ok(());
            }
            Err(ReadError::Failed(e)) => return Err(e),
        };
        let Some(last) = changes.last().map(|c| c.position) else { break };
        after = last;
        let full = changes.len() as i64 == BATCH;
        // No receiver is fine: the watchers may just have gone.
        let _ = hub.events.send(changes.into());
        if !full {
            break;
        }
    }
    *position = Some(after);
    Ok(())
}
