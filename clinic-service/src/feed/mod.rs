//! The live appointment feed, `WatchAppointments`.
//!
//! Every appointment change is recorded in its clinic's change log in the transaction of the
//! change (a deferred trigger, migration V16), numbered in commit order through a one-row head
//! that no transaction can skip past. A stream first reads the log from its resume point, then
//! follows the clinic's hub (`hub`: read after each commit made here, on the committing call's
//! connection, and polled for other replicas' changes), filtering by the caller's role scope; a watcher that
//! falls behind or sees a gap reads the log itself, so nothing is skipped or sent twice.
//!
//! - `log`: SQL on the change log; `token`: resume tokens; `config`: settings.
//! - `hub`: the per-clinic reader and poller; `roster`: its watchers' memberships;
//!   `watcher`: one stream (heartbeats, access re-checks, end).
//! - `grpc`: the request parsed, the stream started, changes converted to the contract.
//! - `janitor`: prunes every clinic's log past the kept history.

pub mod config;
pub mod grpc;
mod hub;
pub mod janitor;
pub mod log;
mod roster;
pub mod token;
mod watcher;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

pub use config::FeedConfig;
pub use grpc::WatchStream;
use hub::Hub;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::{
    auth::TokenValidator,
    tenancy::{Location, TenantAccess, TenantConnection},
};

/// Resolves once `stopping` turns true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}

/// The feed's shared state: the watched clinics' hubs and the shutdown switch. Cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    access: TenantAccess,
    validator: Arc<TokenValidator>,
    config: FeedConfig,
    hubs: Mutex<HashMap<Uuid, Arc<Hub>>>,
    stopping: watch::Sender<bool>,
}

impl Feed {
    /// A feed over `access`, re-checking callers' tokens with `validator`.
    pub fn new(access: TenantAccess, validator: Arc<TokenValidator>, config: FeedConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                access,
                validator,
                config,
                hubs: Mutex::new(HashMap::new()),
                stopping: watch::channel(false).0,
            }),
        }
    }

    fn hubs(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Hub>>> {
        self.inner.hubs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the feed that this process committed an appointment change in `organization_id`
    /// through `conn`: when the clinic is watched, its log is read on that same connection
    /// (in a task of its own, so the call answers at once) and the connection goes back to the
    /// pool afterwards; the feed takes no connection of the budget while changes are made
    /// here. Should that read fail, the clinic's poller reads with a connection of its own.
    pub fn committed(&self, organization_id: Uuid, conn: TenantConnection) {
        let Some(hub) = self.hubs().get(&organization_id).cloned() else { return };
        tokio::spawn(async move {
            if let Err(e) = hub.read(&*conn).await {
                tracing::debug!(%organization_id, error = %e, "change log read after commit failed; the poller reads");
                drop(conn);
                hub.wake();
            }
        });
    }

    /// Ends every stream with UNAVAILABLE (the server is shutting down) and refuses new ones.
    pub fn shut_down(&self) {
        self.inner.stopping.send_replace(true);
    }

    /// How many clinics are watched now.
    pub fn watched_clinics(&self) -> usize {
        self.hubs().len()
    }

    fn stopping(&self) -> watch::Receiver<bool> {
        self.inner.stopping.subscribe()
    }

    fn is_stopping(&self) -> bool {
        *self.inner.stopping.borrow()
    }

    fn access(&self) -> &TenantAccess {
        &self.inner.access
    }

    fn validator(&self) -> &TokenValidator {
        &self.inner.validator
    }

    fn config(&self) -> &FeedConfig {
        &self.inner.config
    }

    /// The hub of the clinic at `location` and a receiver of what it reads from now on; starts
    /// its poller when the clinic was not watched yet.
    fn subscribe(&self, location: &Location) -> (Arc<Hub>, broadcast::Receiver<hub::Batch>) {
        let mut hubs = self.hubs();
        if let Some(hub) = hubs.get(&location.organization_id) {
            return (hub.clone(), hub.subscribe());
        }
        let hub = Arc::new(Hub::new(location.clone(), self.config().heartbeat));
        let rx = hub.subscribe();
        hubs.insert(location.organization_id, hub.clone());
        tokio::spawn(hub::poll(self.clone(), hub.clone()));
        (hub, rx)
    }

    /// Whether `hub`'s poller goes on: not once nobody watches (then the hub is dropped, under
    /// the same lock new watchers subscribe under, so none is left with a dead hub).
    fn keep_hub(&self, hub: &Arc<Hub>) -> bool {
        if self.is_stopping() {
            return false;
        }
        let mut hubs = self.hubs();
        if hub.watched() {
            return true;
        }
        if hubs.get(&hub.location.organization_id).is_some_and(|h| Arc::ptr_eq(h, hub)) {
            hubs.remove(&hub.location.organization_id);
        }
        false
    }
}
