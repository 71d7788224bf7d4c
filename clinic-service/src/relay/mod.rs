//! The relay: carries each tenant's outbox of central changes (`outbox.rs`) to identity-service.
//!
//! The tenant database is the truth about members. A member change writes its central
//! counterpart into the tenant's `member_outbox` in the same transaction, with the member's
//! version; the caller is answered once the tenant committed. Then, in this order:
//!
//! 1. the handler delivers the tenant's outbox itself, right after the commit, over the
//!    connection it holds (no transaction open, so no row lock is held during the remote
//!    calls); when identity-service answers, the central index is current when the call
//!    returns;
//! 2. what is left (identity-service unreachable) is marked pending in this process and retried
//!    by the background task with exponential backoff (0.2 s doubling to 30 s) per tenant;
//! 3. a sweep at start-up and every `OUTBOX_SWEEP_SECS` visits every active tenant and marks the
//!    ones with pending rows: work left by a process that stopped, or by another replica.
//!
//! Delivery is idempotent and order-free: each change carries the member's version and
//! identity-service ignores changes older than the one it applied (removals included), so two
//! replicas or a retry delivering the same rows, in any order, converge to the newest state.
//! A change identity-service refuses for good (NOT_FOUND, INVALID_ARGUMENT...) is logged and
//! dropped; `clinic-service reconcile` (`reconcile.rs`) repairs any drift from the tenants.

pub mod outbox;
pub mod reconcile;

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::Notify, time::Instant};
use uuid::Uuid;

use crate::{
    error::Error,
    identity::IdentityClient,
    tenancy::{Db, TenantAccess},
};
use outbox::Change;

/// Rows delivered per round trip to the tenant.
const BATCH: i64 = 100;
/// First retry delay of a tenant whose delivery failed; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// Longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Delivers tenants' outboxes. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    access: TenantAccess,
    /// Tenants with undelivered rows: when to try next, and the delay after that.
    pending: std::sync::Mutex<HashMap<Uuid, (Instant, Duration)>>,
    wake: Notify,
    sweep_every: Duration,
}

impl Relay {
    /// A relay over `access` (its identity-service client and tenant connections), sweeping
    /// every `sweep_every`.
    pub fn new(access: TenantAccess, sweep_every: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                access,
                pending: Default::default(),
                wake: Notify::new(),
                sweep_every,
            }),
        }
    }

    /// After a commit in `organization_id`'s database: delivers its outbox over `client` now;
    /// what cannot be delivered is left to the background task. Never fails: the change is
    /// committed, and that is the answer.
    pub async fn committed(&self, client: &impl Db, organization_id: Uuid) {
        match deliver(self.inner.access.identity(), client, organization_id).await {
            Ok(true) => {}
            Ok(false) => self.defer(organization_id),
            Err(e) => {
                tracing::warn!(%organization_id, error = %e, "outbox not delivered; will retry");
                self.defer(organization_id);
            }
        }
    }

    /// Marks a tenant pending (due now) and wakes the background task.
    fn defer(&self, organization_id: Uuid) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.entry(organization_id).or_insert((Instant::now(), MIN_BACKOFF));
        drop(pending);
        self.inner.wake.notify_one();
    }

    /// The background task: retries pending tenants and sweeps, until `stop` completes.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        let sweeper = tokio::spawn(self.clone().sweep_forever());
        tokio::pin!(stop);
        loop {
            let next = self.next_due();
            tokio::select! {
                () = &mut stop => break,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep_until(next) => {}
            }
            self.retry_due().await;
        }
        sweeper.abort();
        let _ = sweeper.await;
    }

    fn next_due(&self) -> Instant {
        let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
        let far = Instant::now() + Duration::from_secs(3600);
        pending.values().map(|(due, _)| *due).min().unwrap_or(far)
    }

    async fn retry_due(&self) {
        let now = Instant::now();
        let due: Vec<Uuid> = {
            let pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.iter().filter(|(_, (at, _))| *at <= now).map(|(id, _)| *id).collect()
        };
        for organization_id in due {
            let delivered = self.deliver_tenant(organization_id).await;
            let mut pending = self.inner.pending.lock().unwrap_or_else(|p| p.into_inner());
            match delivered {
                Ok(true) => {
                    pending.remove(&organization_id);
                }
                Ok(false) | Err(_) => {
                    if let Some((at, delay)) = pending.get_mut(&organization_id) {
                        *at = Instant::now() + *delay;
                        *delay = (*delay * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if let Err(e) = delivered {
                tracing::debug!(%organization_id, error = %e, "outbox delivery failed");
            }
        }
    }

    /// Delivers one tenant's outbox over a pooled connection; `Ok(true)` when it is empty.
    async fn deliver_tenant(&self, organization_id: Uuid) -> Result<bool, Error> {
        let access = &self.inner.access;
        let org = match access.organization(organization_id).await {
            Ok(org) => org,
            // The organization is gone: nothing to relay for it any more.
            Err(Error::NotFound(_)) => return Ok(true),
            Err(e) => return Err(e),
        };
        let conn = access.connect(&org.location).await?;
        deliver(access.identity(), &conn, organization_id).await
    }

    async fn sweep_forever(self) {
        let mut ticks = tokio::time::interval(self.inner.sweep_every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = self.sweep().await {
                tracing::warn!(error = %e, "outbox sweep failed");
            }
        }
    }

    /// Marks every active tenant that has undelivered rows pending.
    async fn sweep(&self) -> Result<(), Error> {
        let access = &self.inner.access;
        for org in reconcile::active_organizations(access).await? {
            let has_pending = async {
                let conn = access.connect(&org.location).await?;
                outbox::any_pending(&*conn).await
            };
            match has_pending.await {
                Ok(true) => self.defer(org.id),
                Ok(false) => {}
                Err(e) => tracing::debug!(organization_id = %org.id, error = %e, "sweep skipped"),
            }
        }
        Ok(())
    }
}

/// Delivers the outbox of the tenant `client` is connected to, oldest first, deleting what
/// identity-service applied (or refused for good). `Ok(true)` when it is empty afterwards,
/// `Ok(false)` when identity-service could not be reached (the rest stays for a retry).
pub async fn deliver(
    identity: &IdentityClient,
    client: &impl Db,
    organization_id: Uuid,
) -> Result<bool, Error> {
    loop {
        let entries = outbox::pending(client, BATCH).await?;
        let mut done = Vec::with_capacity(entries.len());
        let mut blocked = false;
        for entry in &entries {
            match publish(identity, organization_id, entry.version, &entry.change).await {
                Ok(()) => done.push(entry.id),
                Err(e) if retryable(&e) => {
                    blocked = true;
                    break;
                }
                Err(e) => {
                    tracing::error!(
                        %organization_id, outbox_id = entry.id, change = ?entry.change, error = %e,
                        "identity-service refused a central change; dropped (run reconcile)"
                    );
                    done.push(entry.id);
                }
            }
        }
        outbox::delete(client, &done).await?;
        if blocked {
            return Ok(false);
        }
        if (entries.len() as i64) < BATCH {
            return Ok(true);
        }
    }
}

/// Applies one change centrally, with `version`.
pub async fn publish(
    identity: &IdentityClient,
    organization_id: Uuid,
    version: i64,
    change: &Change,
) -> Result<(), Error> {
    match change {
        Change::Membership { user_id, role } => {
            let role = role.to_membership();
            identity.record_membership(organization_id, *user_id, role, version).await
        }
        Change::MembershipRemoved { user_id } => {
            identity.remove_membership(organization_id, *user_id, version).await
        }
        Change::Invitation { email, role, expires_at } => {
            let role = role.to_membership();
            identity.send_invitation(organization_id, email, role, *expires_at, version).await
        }
        Change::InvitationRemoved { email } => {
            identity.remove_invitation(organization_id, email, version).await
        }
    }
}

/// Whether a failed delivery may succeed later (identity-service down, overloaded, failing)
/// rather than being refused for good.
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable { .. } | Error::Refused(_) | Error::Internal(_) | Error::Aborted(_)
    )
}
