//! Periodic clean-up: counters whose window has ended, accounts never verified within
//! `UNVERIFIED_ACCOUNT_TTL_SECS` (their email and name become free again), expired
//! invitations, sessions that ended (expired or revoked) with their refresh tokens, and
//! verification codes used or expired. A live session's refresh tokens are never deleted, spent
//! ones included: presenting a spent token is how reuse is detected. Revoked sessions leave the
//! revocation log after `REVOCATION_RETENTION_SECS`. Every statement is
//! idempotent, so each replica may run it. Time is a parameter.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::{error::Error, state::AppState, throttle::Throttle};

/// What one sweep deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Expired abuse-limit counters.
    pub counters: u64,
    /// Expired unverified accounts.
    pub accounts: u64,
    /// Expired invitations (the tenant keeps its invited member; AddMember renews both).
    pub invitations: u64,
    /// Sessions expired or revoked, each with its refresh tokens.
    pub sessions: u64,
    /// Verification codes used (or burnt) or expired.
    pub verification_codes: u64,
}

/// Deletes what has expired at `now`: `throttle`'s ended windows, accounts unverified for
/// `unverified_ttl` (unless they created an organization, which an unverified user cannot),
/// invitations past their expiry, ended sessions (with their refresh tokens, by cascade) and
/// verification codes no longer usable.
pub async fn sweep(
    db: &impl GenericClient,
    throttle: &Throttle,
    unverified_ttl: Duration,
    now: DateTime<Utc>,
) -> Result<Swept, Error> {
    let counters = throttle.sweep(db, now).await?;
    let ttl = chrono::Duration::from_std(unverified_ttl).unwrap_or(chrono::Duration::MAX);
    let accounts = db
        .execute(
            "DELETE FROM app_user u WHERE NOT u.is_verified AND u.created_at <= $1 \
             AND NOT EXISTS (SELECT 1 FROM organization o WHERE o.creator_user_id = u.id)",
            &[&(now - ttl)],
        )
        .await?;
    let invitations =
        db.execute("DELETE FROM organization_invitation WHERE expires_at <= $1", &[&now]).await?;
    // Only whole sessions go: a refresh token is deleted with its session, never alone.
    let sessions = db
        .execute("DELETE FROM session WHERE revoked_at IS NOT NULL OR expires_at <= $1", &[&now])
        .await?;
    let verification_codes = db
        .execute(
            "DELETE FROM email_verification WHERE used_at IS NOT NULL OR expires_at <= $1",
            &[&now],
        )
        .await?;
    Ok(Swept { counters, accounts, invitations, sessions, verification_codes })
}

/// Sweeps every `JANITOR_INTERVAL_SECS` until `stop` resolves.
pub async fn run(state: Arc<AppState>, stop: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(state.config.janitor_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let swept = match state.conn().await {
            Ok(conn) => {
                let ttl = state.config.unverified_account_ttl;
                sweep(&**conn, &state.throttle, ttl, Utc::now()).await
            }
            Err(e) => Err(e),
        };
        let pruned = match state.conn().await {
            Ok(conn) => {
                let retention = state.config.revocation_retention;
                crate::tokens::revocations::prune(&**conn, retention, Utc::now()).await
            }
            Err(e) => Err(e),
        };
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(revocations = n, "revocations past their retention pruned"),
            Err(e) => {
                tracing::warn!(error = %e, "pruning revocations failed; retrying next interval")
            }
        }
        match swept {
            Ok(s) if s != Swept::default() => {
                tracing::info!(
                    counters = s.counters,
                    accounts = s.accounts,
                    invitations = s.invitations,
                    sessions = s.sessions,
                    verification_codes = s.verification_codes,
                    "expired rows deleted"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "janitor sweep failed; retrying next interval"),
        }
    }
}
