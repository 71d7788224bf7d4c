//! The buffer of read and refusal events: requests push into it (memory only, no round trip,
//! and no task woken but once per batch); one background task writes each tenant's events with
//! one COPY per flush.
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
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::{
    sync::{Notify, mpsc},
    task::JoinSet,
};
use uuid::Uuid;

use super::{AuditConfig, event::Event, store};
use crate::{error::Error, tenancy::TenantAccess};

/// The buffer, shared by every handler and the writer.
pub(super) struct Queue {
    /// Pushed and not yet taken by the writer; `None` once the writer has taken the last.
    events: Mutex<Option<Vec<Event>>>,
    /// Told when a batch is waiting (the writer also looks every flush interval): one wake-up
    /// per batch, not per event.
    batch_ready: Notify,
    batch_events: usize,
    /// Pushed and not yet committed (or given up at shutdown).
    queued: AtomicUsize,
    capacity: usize,
}

impl Queue {
    pub(super) fn new(capacity: usize, batch_events: usize) -> Arc<Self> {
        Arc::new(Self {
            events: Mutex::new(Some(Vec::new())),
            batch_ready: Notify::new(),
            batch_events,
            queued: AtomicUsize::new(0),
            capacity,
        })
    }

    /// Queues `event`, or RESOURCE_EXHAUSTED when the buffer is full (or no longer drained).
    pub(super) fn push(&self, event: Event) -> Result<(), Error> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("audit buffer full: call refused");
            return Err(Error::Exhausted("the audit trail is busy; retry".into()));
        }
        let mut events = self.lock();
        let Some(events) = events.as_mut() else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Exhausted("the audit trail is shutting down".into()));
        };
        events.push(event);
        if events.len() == self.batch_events {
            self.batch_ready.notify_one();
        }
        Ok(())
    }

    /// Events pushed and not yet committed.
    pub(super) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }

    /// The events pushed since the last take (with `last`, every push from now on fails).
    fn take(&self, last: bool) -> Vec<Event> {
        let mut events = self.lock();
        if last {
            events.take().unwrap_or_default()
        } else {
            events.as_mut().map(std::mem::take).unwrap_or_default()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Event>>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes queued events until `stop`, then everything still queued (graceful shutdown loses
/// nothing unless a tenant database stays unwritable). `written` is told each tenant written to.
pub(super) async fn run(
    access: TenantAccess,
    queue: Arc<Queue>,
    config: AuditConfig,
    written: mpsc::UnboundedSender<Uuid>,
    stop: impl Future<Output = ()>,
) {
    let mut pending: HashMap<Uuid, Vec<Event>> = HashMap::new();
    let mut ticks = tokio::time::interval(config.flush_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticks.tick() => {}
            () = queue.batch_ready.notified() => {}
        }
        gather(&mut pending, queue.take(false));
        if !pending.is_empty() {
            flush(&access, &queue, &mut pending, &written).await;
        }
    }
    // Requests have drained: what is queued now is all there will be.
    gather(&mut pending, queue.take(true));
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

/// Adds `events` to their tenants' pending events.
fn gather(pending: &mut HashMap<Uuid, Vec<Event>>, events: Vec<Event>) {
    for event in events {
        pending.entry(event.organization_id).or_default().push(event);
    }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::Code;

    use super::*;
    use crate::roles::Role;

    fn event() -> Event {
        Event {
            organization_id: Uuid::new_v4(),
            occurred_at: chrono::Utc::now(),
            user_id: Uuid::new_v4(),
            member_id: Uuid::new_v4(),
            role: Role::Patient,
            action: "clinic.v1.MemberService/GetMember",
            resource_type: "member",
            resource_id: None,
            patients: Vec::new(),
            outcome: Code::Ok,
            request_id: None,
            peer: None,
        }
    }

    async fn told(queue: &Queue) -> bool {
        tokio::time::timeout(Duration::from_millis(50), queue.batch_ready.notified()).await.is_ok()
    }

    #[tokio::test]
    async fn only_a_full_batch_wakes_the_writer_and_no_push_is_taken_after_the_last_take() {
        let queue = Queue::new(10, 3);
        queue.push(event()).unwrap();
        queue.push(event()).unwrap();
        assert!(!told(&queue).await, "two events of a batch of three wake nobody");
        queue.push(event()).unwrap();
        assert!(told(&queue).await, "the third does");
        assert_eq!(queue.take(false).len(), 3);
        // Taken is not committed: still counted against the bound until written.
        assert_eq!(queue.queued(), 3);
        queue.push(event()).unwrap();
        assert!(!told(&queue).await);
        assert_eq!(queue.take(true).len(), 1);
        assert!(matches!(queue.push(event()), Err(Error::Exhausted(_))));
        assert_eq!(queue.queued(), 4);
        queue.written(4);
        assert_eq!(queue.queued(), 0);
    }

    #[test]
    fn a_push_beyond_the_bound_is_refused_and_not_counted() {
        let queue = Queue::new(2, 100);
        queue.push(event()).unwrap();
        queue.push(event()).unwrap();
        assert!(matches!(queue.push(event()), Err(Error::Exhausted(_))));
        assert_eq!(queue.queued(), 2);
        assert_eq!(queue.take(false).len(), 2);
    }
}
