//! Queries on `session` and `refresh_token`.

use chrono::{DateTime, SubsecRound, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{
    error::Error,
    state::AppState,
    tokens::{refresh, revocations},
};

/// The credentials of a session.
pub struct TokenPair {
    /// Signed access token.
    pub access_token: String,
    /// Its expiry.
    pub access_expires_at: DateTime<Utc>,
    /// Opaque refresh token.
    pub refresh_token: String,
    /// Its expiry (and the session's, unless refreshed).
    pub refresh_expires_at: DateTime<Utc>,
    /// The session.
    pub session_id: Uuid,
}

fn duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When the session that started at `created` ends, if refreshed at `now`: after the idle
/// lifetime (`REFRESH_TOKEN_TTL_SECS`), and never later than its absolute lifetime
/// (`SESSION_MAX_LIFETIME_SECS`) from `created`.
/// In microseconds, as stored, so every report of it agrees.
pub fn expiry(state: &AppState, created: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    let idle = now.checked_add_signed(duration(state.config.refresh_token_ttl));
    let absolute = lifetime_end(state, created);
    idle.map_or(absolute, |idle| idle.min(absolute)).trunc_subsecs(6)
}

/// The end of the absolute lifetime of the session that started at `created`.
pub fn lifetime_end(state: &AppState, created: DateTime<Utc>) -> DateTime<Utc> {
    created
        .checked_add_signed(duration(state.config.session_max_lifetime))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Stores `refresh` (the token and its hash) for `session`, expiring with it at
/// `refresh_expires_at`, and signs an access token.
pub async fn issue_pair(
    db: &impl GenericClient,
    state: &AppState,
    (user, session): (Uuid, Uuid),
    (refresh_token, hash): (String, Vec<u8>),
    refresh_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    db.execute(
        "INSERT INTO refresh_token (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&hash, &session, &now, &refresh_expires_at],
    )
    .await?;
    sign_pair(state, (user, session), refresh_token, refresh_expires_at, now)
}

/// A pair of a fresh access token for `user`'s `session` and a refresh token stored already.
pub fn sign_pair(
    state: &AppState,
    (user, session): (Uuid, Uuid),
    refresh_token: String,
    refresh_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    // The session ends with its refresh token's expiry: no access token outlives it.
    let (access_token, access_expires_at) =
        state.access_tokens.issue(user, session, refresh_expires_at, now)?;
    Ok(TokenPair {
        access_token,
        access_expires_at,
        refresh_token,
        refresh_expires_at,
        session_id: session,
    })
}

/// Opens a session for `user` and returns its first token pair. Run inside a transaction.
pub async fn open(
    db: &impl GenericClient,
    state: &AppState,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    let session = Uuid::new_v4();
    let expires = expiry(state, now, now);
    db.execute(
        "INSERT INTO session (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&session, &user, &now, &expires],
    )
    .await?;
    issue_pair(db, state, (user, session), refresh::generate(), expires, now).await
}

/// Revokes one session (no-op when already revoked), recording the revocation for followers in
/// the same transaction (run inside one). Call [`AppState::revocations_committed`] after the
/// commit.
pub async fn revoke(
    db: &impl GenericClient,
    state: &AppState,
    session: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let rows = db
        .query(
            "UPDATE session SET revoked_at = $2, revoke_reason = $3 \
             WHERE id = $1 AND revoked_at IS NULL RETURNING id, user_id, expires_at",
            &[&session, &now, &reason],
        )
        .await?;
    revocations::record(db, state, &rows, reason, now).await?;
    Ok(())
}

/// Revokes every live session of `user` except `keep`, recording each for followers (run inside
/// a transaction; see [`revoke`]); returns how many.
pub async fn revoke_others(
    db: &impl GenericClient,
    state: &AppState,
    user: Uuid,
    keep: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let rows = db
        .query(
            "UPDATE session SET revoked_at = $3, revoke_reason = $4 \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > $3 \
             RETURNING id, user_id, expires_at",
            &[&user, &keep, &now, &reason],
        )
        .await?;
    revocations::record(db, state, &rows, reason, now).await?;
    Ok(rows.len() as u64)
}
