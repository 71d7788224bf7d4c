//! RefreshToken and Logout. A refresh token works once; presenting a spent one again means it
//! leaked, so the whole session is revoked. Rows are locked (`FOR UPDATE`) so two concurrent
//! refreshes with one token cannot both succeed. Refreshing never carries a session past its
//! absolute lifetime (`SESSION_MAX_LIFETIME_SECS` from login); a refresh after it revokes it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{TokenPair, store};
use crate::{error::Error, state::AppState, tokens::refresh};

const INVALID: Error = Error::Unauthenticated("invalid, expired or revoked refresh token");

struct Presented {
    session: Uuid,
    user: Uuid,
    token_expires: DateTime<Utc>,
    used: bool,
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
            "SELECT rt.session_id, rt.expires_at, rt.used_at IS NOT NULL AS used, s.user_id, \
                    (s.revoked_at IS NULL AND s.expires_at > $2) AS live, \
                    s.created_at AS session_created \
             FROM refresh_token rt JOIN session s ON s.id = rt.session_id \
             WHERE rt.token_hash = $1 FOR UPDATE OF rt, s",
            &[&refresh::hash(token), &now],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Presented {
        session: row.try_get("session_id")?,
        user: row.try_get("user_id")?,
        token_expires: row.try_get("expires_at")?,
        used: row.try_get("used")?,
        session_live: row.try_get("live")?,
        session_created: row.try_get("session_created")?,
    }))
}

/// Exchanges a live refresh token for a new pair.
pub async fn refresh(
    state: &AppState,
    token: &str,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let Some(p) = lock(&tx, token, now).await? else { return Err(INVALID) };
    if store::lifetime_end(state, p.session_created) <= now {
        store::revoke(&*tx, p.session, "session lifetime ended", now).await?;
        tx.commit().await?;
        tracing::info!(user_id = %p.user, session_id = %p.session, "session lifetime ended: session revoked");
        return Err(INVALID);
    }
    if p.used {
        store::revoke(&*tx, p.session, "refresh token reused", now).await?;
        tx.commit().await?;
        tracing::warn!(user_id = %p.user, session_id = %p.session, "refresh token reuse: session revoked");
        return Err(INVALID);
    }
    if !p.session_live || p.token_expires <= now {
        return Err(INVALID);
    }
    let expires = store::expiry(state, p.session_created, now);
    let (pair, new_hash) =
        store::issue_pair(&*tx, state, (p.user, p.session), expires, now).await?;
    tx.execute(
        "UPDATE refresh_token SET used_at = $2, replaced_by = $3 WHERE token_hash = $1",
        &[&refresh::hash(token), &now, &new_hash],
    )
    .await?;
    tx.execute(
        "UPDATE session SET expires_at = $2 WHERE id = $1",
        &[&p.session, &pair.refresh_expires_at],
    )
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %p.user, session_id = %p.session, "refresh token rotated");
    Ok(pair)
}

/// Revokes the session of `token` (any token of its chain). Logging out of an already revoked
/// session succeeds; a token that never existed is UNAUTHENTICATED.
pub async fn logout(state: &AppState, token: &str, now: DateTime<Utc>) -> Result<(), Error> {
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let Some(p) = lock(&tx, token, now).await? else { return Err(INVALID) };
    store::revoke(&*tx, p.session, "logout", now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %p.user, session_id = %p.session, "logged out");
    Ok(())
}
