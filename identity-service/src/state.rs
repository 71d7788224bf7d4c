//! What every handler shares: the pool, the keys, the mailer, the throttle and the settings.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use deadpool_postgres::{Object, Pool};
use tokio::task::JoinSet;

use crate::{
    accounts::{password::Passwords, verification::CodeKey},
    config::Config,
    error::Error,
    mail::Mailer,
    throttle::Throttle,
    tokens::{jwt::AccessTokens, refresh::SuccessorKey},
};

/// Shared state of a running identity-service.
pub struct AppState {
    /// Central database pool.
    pub db: Pool,
    /// Settings.
    pub config: Config,
    /// Password hashing.
    pub passwords: Passwords,
    /// Access-token signing and checking.
    pub access_tokens: AccessTokens,
    /// Key of the stored form of verification codes.
    pub code_key: CodeKey,
    /// Key refresh-token successors are derived with.
    pub successor_key: SuccessorKey,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Brute-force counters.
    pub throttle: Throttle,
    /// Work that outlives its request (mail delivery), joined on shutdown.
    pub background: Mutex<JoinSet<()>>,
    /// Ticks after each local commit that revoked sessions, so `WatchRevocations` streams wake
    /// at once (revocations of other replicas are found by polling).
    pub revoked: tokio::sync::watch::Sender<()>,
    /// Fires on shutdown: long-lived streams end then.
    pub shutdown: clinic_shared::server::ShutdownHandle,
}

impl AppState {
    /// A pooled connection (UNAVAILABLE when none frees up in time).
    pub async fn conn(&self) -> Result<Object, Error> {
        Ok(self.db.get().await?)
    }

    /// Wakes the revocation streams: call after committing a revocation.
    pub fn revocations_committed(&self) {
        self.revoked.send_replace(());
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, JoinSet<()>> {
        self.background.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `task` in the background; shutdown waits for it.
    pub fn spawn_background(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    /// Waits up to `limit` for background work to finish.
    pub async fn join_background(&self, limit: Duration) {
        let mut tasks = std::mem::take(&mut *self.tasks());
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(limit, all).await.is_err() {
            tracing::warn!("background work still running at shutdown; abandoned");
        }
    }
}
