//! What every handler shares: the pool, the keys, the mailer, the throttle and the settings.

use std::sync::Arc;

use deadpool_postgres::{Object, Pool};

use crate::{
    accounts::password::Passwords, config::Config, error::Error, mail::Mailer, throttle::Throttle,
    tokens::jwt::AccessTokens,
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
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Brute-force counters.
    pub throttle: Throttle,
}

impl AppState {
    /// A pooled connection (UNAVAILABLE when none frees up in time).
    pub async fn conn(&self) -> Result<Object, Error> {
        Ok(self.db.get().await?)
    }
}
