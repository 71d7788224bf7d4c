//! The audit trail: who touched which patient's data, kept in each tenant's database
//! (migration V17), tamper-evident, never deleted by the service.
//!
//! **What is recorded.** Every write RPC, in the write's own transaction ([`store::record`]: if
//! the insert fails, the write fails); every read of patient data (GetMember of a patient, lists
//! naming the patients of the page, appointment reads, opening a watch stream) and every refusal
//! of a caller known as a member (PERMISSION_DENIED, NOT_FOUND), through the [`buffer`]. Events
//! name the caller (user, member, role), the RPC, the resource, the patients concerned (member
//! ids, bounded), the gRPC code, the request id and the peer; never a field value. Calls
//! without a valid token, or by a non-member (their NOT_FOUND), have no place in a tenant: they
//! go to the service log, rate-limited ([`rejected`]).
//!
//! **One mechanism.** Each handler opens a [`Trail`] for its [`Action`] from the request,
//! tells it the tenant and caller once they are known ([`Trail::enter`]) and what was touched,
//! and ends with [`Audit::close`], which buffers the read or refusal event (failing the call
//! when the buffer is full) and wakes the sealer after writes. Writes pass the trail to the
//! one statement their transaction adds.
//!
//! **Why seals are a second table.** The runtime role may only INSERT and SELECT the trail, so
//! a hash cannot be filled in later by UPDATE. Computing it at insertion would serialize every
//! audited transaction on the chain's head. Instead, one sealer per tenant ([`sealer`]) appends
//! `audit_seal(seq, event_id, hash)` rows after the events commit: the chain order is the seal
//! order, so an event whose transaction commits late is sealed later, never skipped. The
//! latest `(seq, hash)` is checkpointed with identity-service every `AUDIT_CHECKPOINT_SECS` and
//! at shutdown, so a chain rewritten (every later hash recomputed) or truncated up to the
//! checkpoint is detected by [`verify`]. What is not yet sealed and checkpointed (at most
//! `AUDIT_SEAL_MS` + `AUDIT_CHECKPOINT_SECS` old, plus a sealer pass) could be removed unseen by
//! someone controlling the tenant database as its owner.

pub mod buffer;
pub mod chain;
mod config;
pub mod event;
pub mod export;
pub mod grpc;
pub mod list;
pub mod rejected;
pub mod sealer;
pub mod store;
pub mod verify;

use std::{future::Future, sync::Arc};

use chrono::Utc;
use tokio::sync::mpsc;
use tonic::{Code, Status};
use uuid::Uuid;

pub use config::AuditConfig;
pub use event::{Action, Event, Kind, Trail};

use crate::{error::Error, metrics::ServiceMetrics, tenancy::TenantAccess};

/// The handle handlers audit through. Cheap to clone.
#[derive(Clone)]
pub struct Audit {
    queue: Arc<buffer::Queue>,
    written: mpsc::UnboundedSender<Uuid>,
    record_reads: bool,
    metrics: ServiceMetrics,
}

/// The background half of [`Audit`]: the buffer's writer and the sealer, started by
/// [`AuditTasks::run`].
pub struct AuditTasks {
    queue: Arc<buffer::Queue>,
    written_tx: mpsc::UnboundedSender<Uuid>,
    written: mpsc::UnboundedReceiver<Uuid>,
    config: AuditConfig,
}

impl Audit {
    /// A handle and its background tasks, counting in `metrics`.
    pub fn new(config: &AuditConfig, metrics: ServiceMetrics) -> (Self, AuditTasks) {
        let queue = buffer::Queue::new(config.buffer_events, config.batch_events);
        let (written_tx, written) = mpsc::unbounded_channel();
        let audit = Self {
            queue: queue.clone(),
            written: written_tx.clone(),
            record_reads: config.record_reads,
            metrics,
        };
        (audit, AuditTasks { queue, written_tx, written, config: config.clone() })
    }

    /// Ends a call: records what `result` means for `trail` (see the module header) and
    /// answers it; RESOURCE_EXHAUSTED instead when its event cannot be buffered.
    pub fn close<T>(&self, trail: Trail, result: Result<T, Error>) -> Result<T, Status> {
        let outcome = match &result {
            Ok(_) => Code::Ok,
            Err(Error::PermissionDenied(_)) => Code::PermissionDenied,
            Err(Error::NotFound(_)) => Code::NotFound,
            Err(_) => return result.map_err(Status::from),
        };
        let Some(organization_id) = trail.organization_id() else {
            if outcome != Code::Ok {
                rejected::not_member(trail.action().rpc, outcome);
            }
            return result.map_err(Status::from);
        };
        if trail.recorded() {
            self.metrics.audit_event_written();
            let _ = self.written.send(organization_id);
        } else if !self.record_reads {
            // The benchmark's baseline only (see `AuditConfig::record_reads`).
        } else if outcome != Code::Ok
            || (trail.action().kind == Kind::Read && trail.reads_patients())
        {
            if let Some(event) = trail.event(outcome, Utc::now()) {
                self.queue.push(event)?;
            }
        } else if outcome == Code::Ok && trail.action().kind == Kind::Write {
            tracing::error!(
                action = trail.action().rpc,
                "a write committed without its audit event"
            );
        }
        result.map_err(Status::from)
    }

    /// Buffers the event of a write that committed where it could not carry it (creating a
    /// clinic: provisioning makes the very database the trail lives in); RESOURCE_EXHAUSTED
    /// when the buffer is full (the write stands; retrying it is safe).
    pub fn committed(&self, trail: &Trail) -> Result<(), Error> {
        let Some(organization_id) = trail.organization_id() else { return Ok(()) };
        if let Some(event) = trail.event(Code::Ok, Utc::now()) {
            self.queue.push(event)?;
            let _ = self.written.send(organization_id);
        }
        Ok(())
    }

    /// Events buffered and not yet committed.
    pub fn buffered(&self) -> usize {
        self.queue.queued()
    }
}

impl AuditTasks {
    /// Runs the buffer's writer and the sealer until `stop`; then writes what is buffered,
    /// seals it and checkpoints (graceful shutdown loses nothing).
    pub async fn run(self, access: TenantAccess, stop: impl Future<Output = ()> + Send + 'static) {
        let (stop_sealer, sealer_stopped) = tokio::sync::oneshot::channel::<()>();
        let sealer = tokio::spawn(sealer::run(
            access.clone(),
            self.written,
            self.config.clone(),
            async move {
                let _ = sealer_stopped.await;
            },
        ));
        buffer::run(access, self.queue, self.config, self.written_tx, stop).await;
        // Only once every buffered event is written does the sealer's last pass start.
        let _ = stop_sealer.send(());
        let _ = sealer.await;
    }
}
