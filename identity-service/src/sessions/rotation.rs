//! RefreshToken and Logout. A refresh token works once: presenting a spent one again means it
//! leaked, so the whole session is revoked, with one exception. Within
//! `REFRESH_REUSE_GRACE_SECS` of its rotation, a spent token gets the same successor again
//! (with a fresh access token), as RFC 9700 allows for clients that refresh twice (two tabs, a
//! retry after a lost answer) — but only while that successor is still unspent, i.e. the
//! newest token of the session. A token whose successor was rotated in turn resurrects
//! nothing: presenting it revokes the session, grace window or not.
//!
//! Successors are derived from the presented token ([`SuccessorKey`]), so the same one can be
//! handed out again while only its hash is stored. Every step locks the session's row
//! (`FOR UPDATE`), so concurrent refreshes of one session take turns: two with one token both
//! get the same successor. Refreshing never carries a session past its absolute lifetime
//! (`SESSION_MAX_LIFETIME_SECS` from login); a refresh after it revokes it.
//!
//! [`SuccessorKey`]: crate::tokens::refresh::SuccessorKey

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{TokenPair, store};
use crate::{error::Error, state::AppState, tokens::refresh};
use clinic_shared::pg::RowExt;

const INVALID: Error = Error::Unauthenticated("invalid, expired or revoked refresh token");

struct Presented {
    session: Uuid,
    user: Uuid,
    token_expires: DateTime<Utc>,
    used_at: Option<DateTime<Utc>>,
    replaced_by: Option<Vec<u8>>,
    session_live: bool,
    session_created: DateTime<Utc>,
}

async fn lock(
    tx: &tokio_postgres::Transaction<'_>,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<Presented>, Error> {
    let row = tx
        .query_opt(
            "SELECT rt.session_id, rt.expires_at, rt.used_at, rt.replaced_by, s.user_id, \
                    (s.revoked_at IS NULL AND s.expires_at > $2) AS live, \
                    s.created_at AS session_created \
             FROM refresh_token rt JOIN session s ON s.id = rt.session_id \
             WHERE rt.token_hash = $1 FOR UPDATE OF rt, s",
            &[&refresh::hash(token), &now],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Presented {
        session: row.col("session_id")?,
        user: row.col("user_id")?,
        token_expires: row.col("expires_at")?,
        used_at: row.col("used_at")?,
        replaced_by: row.col("replaced_by")?,
        session_live: row.col("live")?,
        session_created: row.col("session_created")?,
    }))
}

/// Exchanges a live refresh token for a new pair (or, within the grace window, a spent one for
/// the pair it was exchanged for, with a fresh access token).
pub async fn refresh(
    state: &AppState,
    token: &str,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let Some(p) = lock(&tx, token, now).await? else { return Err(INVALID) };
    let (ids, successor) = ((p.user, p.session), state.successor_key.successor(token)?);
    if store::lifetime_end(state, p.session_created) <= now {
        store::revoke(&*tx, state, p.session, "session lifetime ended", now).await?;
        tx.commit().await?;
        state.revocations_committed();
        tracing::info!(user_id = %p.user, session_id = %p.session, "session lifetime ended: session revoked");
        return Err(INVALID);
    }
    if let Some(used_at) = p.used_at {
        if let Some(expires) = regrantable(&tx, state, &p, used_at, &successor.1, now).await? {
            let pair = store::sign_pair(state, ids, successor.0, expires, now)?;
            tx.commit().await?;
            tracing::info!(user_id = %p.user, session_id = %p.session, "refresh repeated within the grace window: same successor");
            return Ok(pair);
        }
        store::revoke(&*tx, state, p.session, "refresh token reused", now).await?;
        tx.commit().await?;
        state.revocations_committed();
        tracing::warn!(user_id = %p.user, session_id = %p.session, "refresh token reuse: session revoked");
        return Err(INVALID);
    }
    if !p.session_live || p.token_expires <= now {
        return Err(INVALID);
    }
    let expires = store::expiry(state, p.session_created, now);
    let new_hash = successor.1.clone();
    let pair = store::issue_pair(&*tx, state, ids, successor, expires, now).await?;
    tx.execute(
        "UPDATE refresh_token SET used_at = $2, replaced_by = $3 WHERE token_hash = $1",
        &[&refresh::hash(token), &now, &new_hash],
    )
    .await?;
    tx.execute("UPDATE session SET expires_at = $2 WHERE id = $1", &[&p.session, &expires]).await?;
    tx.commit().await?;
    tracing::info!(user_id = %p.user, session_id = %p.session, "refresh token rotated");
    Ok(pair)
}

/// The expiry of the successor a spent token may be given again: only within the grace window
/// after it was spent, in a live session, when it was replaced by the successor derived from
/// it (not a random one from before successors were derived) and that successor is still
/// unspent — the newest token of the session. The session row is locked, so this holds until
/// the transaction ends.
async fn regrantable(
    tx: &tokio_postgres::Transaction<'_>,
    state: &AppState,
    p: &Presented,
    used_at: DateTime<Utc>,
    successor_hash: &Vec<u8>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, Error> {
    let grace = chrono::Duration::from_std(state.config.refresh_reuse_grace)
        .unwrap_or(chrono::Duration::MAX);
    let within = now.signed_duration_since(used_at) < grace;
    if !(within && p.session_live && p.replaced_by.as_ref() == Some(successor_hash)) {
        return Ok(None);
    }
    let row = tx
        .query_opt(
            "SELECT expires_at FROM refresh_token \
             WHERE token_hash = $1 AND session_id = $2 AND used_at IS NULL AND expires_at > $3",
            &[successor_hash, &p.session, &now],
        )
        .await?;
    Ok(row.map(|r| r.col("expires_at")).transpose()?)
}

/// Revokes the session of `token` (any token of its chain). Logging out of an already revoked
/// session succeeds; a token that never existed is UNAUTHENTICATED.
pub async fn logout(state: &AppState, token: &str, now: DateTime<Utc>) -> Result<(), Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let Some(p) = lock(&tx, token, now).await? else { return Err(INVALID) };
    store::revoke(&*tx, state, p.session, "logout", now).await?;
    tx.commit().await?;
    state.revocations_committed();
    tracing::info!(user_id = %p.user, session_id = %p.session, "logged out");
    Ok(())
}
