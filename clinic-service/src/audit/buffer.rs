//! The buffer of read and refusal events: requests push into it (memory only, no lock, no
//! round trip); one background task writes each tenant's events with one INSERT per flush.
//!
//! The bound: at most `AUDIT_BUFFER_EVENTS` events are pushed and not yet committed. A push
//! beyond it fails, and so does the request (RESOURCE_EXHAUSTED): nothing is answered that
//! is not recorded or about to be. Events are written at least every `AUDIT_FLUSH_MS`, so a
//! crash loses at most that many events, pushed within about that time (longer only while a
//! tenant database cannot be written, when they are retried and its requests soon fail).

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{sync::mpsc, task::JoinSet};
use uuid::Uuid;

use super::{AuditConfig, event::Event, store};
use crate::{error::Error, tenancy::TenantAccess};

/// The sending half, shared by every handler.
pub(super) struct Queue {
    events: mpsc::UnboundedSender<Event>,
    /// Pushed and not yet committed (or given up at shutdown).
    queued: AtomicUsize,
    capacity: usize,
}

impl Queue {
    pub(super) fn new(capacity: usize) -> (Arc<Self>, mpsc::UnboundedReceiver<Event>) {
        let (events, receiver) = mpsc::unbounded_channel();
        (Arc::new(Self { events, queued: AtomicUsize::new(0), capacity }), receiver)
    }

    /// Queues `event`, or RESOURCE_EXHAUSTED when the buffer is full (or no longer drained).
    pub(super) fn push(&self, event: Event) -> Result<(), Error> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("audit buffer full: call refused");
            return Err(Error::Exhausted("the audit trail is busy; retry".into()));
        }
        self.events.send(event).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            Error::Exhausted("the audit trail is shutting down".into())
        })
    }

    /// Events pushed and not yet committed.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Writes queued events until `stop`, then everything still queued (graceful shutdown loses
/// nothing unless a tenant database stays unwritable). `written` is told each tenant written to.
pub(super) async fn run(
    access: TenantAccess,
    queue: Arc<Queue>,
    mut events: mpsc::UnboundedReceiver<Event>,
    config: AuditConfig,
    written: mpsc::UnboundedSender<Uuid>,
    stop: impl Future<Output = ()>,
) {
    let mut pending: HashMap<Uuid, Vec<Event>> = HashMap::new();
    let mut waiting = 0;
    let mut ticks = tokio::time::interval(config.flush_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {
                waiting = flush(&access, &queue, &mut pending, &written).await;
            }
            Some(event) = events.recv() => {
                pending.entry(event.organization_id).or_default().push(event);
                waiting += 1;
                if waiting >= config.batch_events {
                    waiting = flush(&access, &queue, &mut pending, &written).await;
                }
            }
        }
    }
    // Requests have drained: what is queued now is all there will be.
    events.close();
    while let Some(event) = events.recv().await {
        pending.entry(event.organization_id).or_default().push(event);
    }
    for attempt in 0..3 {
        if flush(&access, &queue, &mut pending, &written).await == 0 {
            return;
        }
        tracing::warn!(attempt, "audit events not written yet at shutdown; retrying");
        tokio::time::sleep(config.flush_every).await;
    }
    let lost: usize = pending.values().map(Vec::len).sum();
    tracing::error!(lost, "audit events could not be written before shutdown");
    queue.written(lost);
}

/// Writes every tenant's pending events, tenants in parallel; keeps what failed for the next
/// flush and returns how many events still wait.
async fn flush(
    access: &TenantAccess,
    queue: &Queue,
    pending: &mut HashMap<Uuid, Vec<Event>>,
    written: &mpsc::UnboundedSender<Uuid>,
) -> usize {
    let mut writes = JoinSet::new();
    for (organization_id, events) in pending.drain() {
        let access = access.clone();
        writes.spawn(async move {
            let result = write(&access, organization_id, &events).await;
            (organization_id, events, result)
        });
    }
    while let Some(done) = writes.join_next().await {
        let Ok((organization_id, events, result)) = done else { continue };
        match result {
            Ok(()) => {
                queue.written(events.len());
                for _ in &events {
                    access.metrics().audit_event_written();
                }
                let _ = written.send(organization_id);
            }
            Err(e) => {
                tracing::warn!(%organization_id, error = %e, "audit events not written; retrying");
                pending.insert(organization_id, events);
            }
        }
    }
    access.metrics().set_audit_events_buffered(queue.queued());
    pending.values().map(Vec::len).sum()
}

async fn write(
    access: &TenantAccess,
    organization_id: Uuid,
    events: &[Event],
) -> Result<(), Error> {
    let org = access.organization(organization_id).await?;
    let conn = access.connect(&org.location).await?;
    store::insert_batch(&conn, events).await
}
