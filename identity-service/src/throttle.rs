//! Abuse limits kept in the central database, so every identity-service replica counts against
//! one limit and a restart forgets nothing.
//!
//! An attempt is counted *before* the work it guards, in one atomic upsert that also returns the
//! new count: N parallel attempts on one key see the counts 1..N, so at most the limit of them
//! go on to be evaluated, whatever else is being counted. Counters live in fixed windows; a
//! counter is never evicted before its window ends. Keys are stored as SHA-256 digests, never
//! as emails or addresses in clear. Time is a parameter.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{config::ThrottleConfig, error::Error, peer::Peer};
use clinic_shared::{metrics::MetricsError, pg::RowExt};
use prometheus::{IntCounterVec, Opts, Registry};

/// What is being counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// Login (or password check) attempts for one normalised email; a success resets it.
    LoginAccount(String),
    /// Failed login attempts from one client address.
    LoginPeer(Peer),
    /// Verification attempts for one normalised email; a success resets it.
    Verify(String),
    /// Verification mails requested for one normalised email.
    ResendAccount(String),
    /// Verification mails requested from one client address.
    ResendPeer(Peer),
    /// Registrations from one client address.
    RegisterPeer(Peer),
    /// Organizations created (reserved) by one user.
    CreateOrganization(Uuid),
}

impl Key {
    /// Every [`Self::kind`].
    pub const KINDS: [&'static str; 7] = [
        "login_account",
        "login_peer",
        "verify_account",
        "resend_account",
        "resend_peer",
        "register_peer",
        "create_organization_user",
    ];

    /// The limit's name: the `limit` label of `identity_throttle_refusals_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::LoginAccount(_) => "login_account",
            Key::LoginPeer(_) => "login_peer",
            Key::Verify(_) => "verify_account",
            Key::ResendAccount(_) => "resend_account",
            Key::ResendPeer(_) => "resend_peer",
            Key::RegisterPeer(_) => "register_peer",
            Key::CreateOrganization(_) => "create_organization_user",
        }
    }

    /// The stored form: SHA-256 over a kind tag and the value.
    fn digest(&self) -> Vec<u8> {
        let text = match self {
            Key::LoginAccount(email) => format!("login-account\0{email}"),
            Key::LoginPeer(peer) => format!("login-peer\0{peer}"),
            Key::Verify(email) => format!("verify\0{email}"),
            Key::ResendAccount(email) => format!("resend-account\0{email}"),
            Key::ResendPeer(peer) => format!("resend-peer\0{peer}"),
            Key::RegisterPeer(peer) => format!("register-peer\0{peer}"),
            Key::CreateOrganization(user) => format!("create-organization\0{user}"),
        };
        Sha256::digest(text.as_bytes()).to_vec()
    }
}

/// The counters and their limits.
pub struct Throttle {
    config: ThrottleConfig,
    /// Attempts refused, by limit ([`Key::kind`]), once [`Self::with_metrics`] registered it.
    refusals: Option<IntCounterVec>,
}

impl Throttle {
    /// Counters with the given limits.
    pub fn new(config: ThrottleConfig) -> Self {
        Self { config, refusals: None }
    }

    /// Also counts refusals in `identity_throttle_refusals_total{limit}` of `registry`.
    pub fn with_metrics(mut self, registry: &Registry) -> Result<Self, MetricsError> {
        let refusals = IntCounterVec::new(
            Opts::new(
                "identity_throttle_refusals_total",
                "Attempts refused by an abuse limit (RESOURCE_EXHAUSTED), by limit.",
            ),
            &["limit"],
        )?;
        clinic_shared::metrics::register(registry, &refusals)?;
        // Every limit listed from the start, at 0.
        for kind in Key::KINDS {
            refusals.with_label_values(&[kind]);
        }
        self.refusals = Some(refusals);
        Ok(self)
    }

    fn limit(&self, key: &Key) -> u32 {
        let c = &self.config;
        match key {
            Key::LoginAccount(_) => c.account_failures,
            Key::LoginPeer(_) => c.peer_failures,
            Key::Verify(_) => c.verify_failures,
            Key::ResendAccount(_) => c.resend_per_account,
            Key::ResendPeer(_) => c.resend_per_peer,
            Key::RegisterPeer(_) => c.register_per_peer,
            Key::CreateOrganization(_) => c.create_organization_per_user,
        }
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.window).unwrap_or(chrono::Duration::MAX)
    }

    /// Counts one attempt on each of `keys` (one statement, so all or none are counted).
    /// `Err(Throttled)` when any of them is now past its limit; the attempt stays counted.
    pub async fn count(
        &self,
        db: &impl GenericClient,
        keys: &[Key],
        now: DateTime<Utc>,
        message: &'static str,
    ) -> Result<(), Error> {
        // Sorted digests: concurrent upserts lock rows in one order and cannot deadlock.
        let limits: BTreeMap<Vec<u8>, (u32, &'static str)> =
            keys.iter().map(|k| (k.digest(), (self.limit(k), k.kind()))).collect();
        let digests: Vec<&Vec<u8>> = limits.keys().collect();
        let rows = db
            .query(
                "INSERT INTO throttle_counter AS t (key, window_start, count) \
                 SELECT k, $2, 1 FROM unnest($1::bytea[]) AS k ORDER BY k \
                 ON CONFLICT (key) DO UPDATE SET \
                   window_start = CASE WHEN t.window_start <= $3 THEN $2 ELSE t.window_start END, \
                   count = CASE WHEN t.window_start <= $3 THEN 1 ELSE t.count + 1 END \
                 RETURNING t.key, t.count, t.window_start",
                &[&digests, &now, &(now - self.window())],
            )
            .await?;
        let mut wait = None::<Duration>;
        for row in rows {
            let (key, count, start): (Vec<u8>, i32, DateTime<Utc>) =
                (row.col(0)?, row.col(1)?, row.col(2)?);
            let (limit, kind) = limits.get(&key).copied().unwrap_or((0, "unknown"));
            if u32::try_from(count).unwrap_or(u32::MAX) > limit {
                if let Some(refusals) = &self.refusals {
                    refusals.with_label_values(&[kind]).inc();
                }
                let left = (start + self.window() - now).to_std().unwrap_or_default();
                wait = Some(wait.unwrap_or_default().max(left.max(Duration::from_secs(1))));
            }
        }
        match wait {
            Some(retry_after) => Err(Error::Throttled { message, retry_after }),
            None => Ok(()),
        }
    }

    /// Forgets `key` (a success clears an account's earlier failures).
    pub async fn reset(&self, db: &impl GenericClient, key: &Key) -> Result<(), Error> {
        db.execute("DELETE FROM throttle_counter WHERE key = $1", &[&key.digest()]).await?;
        Ok(())
    }

    /// Takes back one counted attempt of `key` (an attempt that turned out not to be a failure).
    pub async fn refund(&self, db: &impl GenericClient, key: &Key) -> Result<(), Error> {
        refund(db, key).await
    }

    /// Deletes counters whose window ended before `now`; returns how many.
    pub async fn sweep(&self, db: &impl GenericClient, now: DateTime<Utc>) -> Result<u64, Error> {
        Ok(db
            .execute(
                "DELETE FROM throttle_counter WHERE window_start <= $1",
                &[&(now - self.window())],
            )
            .await?)
    }
}

/// Takes back one counted attempt of `key`.
async fn refund(db: &impl GenericClient, key: &Key) -> Result<(), Error> {
    db.execute(
        "UPDATE throttle_counter SET count = count - 1 WHERE key = $1 AND count > 0",
        &[&key.digest()],
    )
    .await?;
    Ok(())
}

/// Attempts counted before the work they guard, whose verdict is not known yet. Dropped
/// without [`Unjudged::judged`] (the call failed on the way, or its caller went away and the
/// server dropped it), they are taken back in the background: only an attempt that reached its
/// verdict (a wrong password, say) stays counted, so abandoned calls cannot lock anyone out.
/// Nothing is learnt from an abandoned attempt, so taking it back helps no guesser.
pub struct Unjudged {
    pool: deadpool_postgres::Pool,
    keys: Vec<Key>,
}

impl Unjudged {
    /// Attempts on `keys`, just counted, to take back unless judged.
    pub fn new(pool: deadpool_postgres::Pool, keys: Vec<Key>) -> Self {
        Self { pool, keys }
    }

    /// The verdict is known: the attempts stay counted (or are settled by the caller).
    pub fn judged(mut self) {
        self.keys.clear();
    }
}

impl Drop for Unjudged {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let (pool, keys) = (self.pool.clone(), std::mem::take(&mut self.keys));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let Ok(conn) = pool.get().await else { return };
            for key in &keys {
                if let Err(e) = refund(&**conn, key).await {
                    tracing::warn!(error = %e, "could not take back an abandoned attempt");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed() {
        let peer = Peer::of(std::net::IpAddr::from([127, 0, 0, 1]));
        let keys = [
            Key::LoginAccount(String::new()),
            Key::LoginPeer(peer),
            Key::Verify(String::new()),
            Key::ResendAccount(String::new()),
            Key::ResendPeer(peer),
            Key::RegisterPeer(peer),
            Key::CreateOrganization(Uuid::nil()),
        ];
        let kinds: Vec<_> = keys.iter().map(Key::kind).collect();
        assert_eq!(kinds, Key::KINDS);
    }
}
