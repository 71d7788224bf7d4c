//! Queries on `session` and `refresh_token`.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{error::Error, state::AppState, tokens::refresh};

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

fn refresh_ttl(state: &AppState) -> Result<chrono::Duration, Error> {
    chrono::Duration::from_std(state.config.refresh_token_ttl).map_err(Error::internal)
}

/// Stores a new refresh token for `session` and signs an access token.
pub async fn issue_pair(
    db: &impl GenericClient,
    state: &AppState,
    user: Uuid,
    session: Uuid,
    now: DateTime<Utc>,
) -> Result<(TokenPair, Vec<u8>), Error> {
    let refresh_expires_at = now + refresh_ttl(state)?;
    let (refresh_token, hash) = refresh::generate();
    db.execute(
        "INSERT INTO refresh_token (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&hash, &session, &now, &refresh_expires_at],
    )
    .await?;
    let (access_token, access_expires_at) = state.access_tokens.issue(user, session, now)?;
    let pair = TokenPair {
        access_token,
        access_expires_at,
        refresh_token,
        refresh_expires_at,
        session_id: session,
    };
    Ok((pair, hash))
}

/// Opens a session for `user` and returns its first token pair. Run inside a transaction.
pub async fn open(
    db: &impl GenericClient,
    state: &AppState,
    user: Uuid,
    now: DateTime<Utc>,
) -> Result<TokenPair, Error> {
    let session = Uuid::new_v4();
    db.execute(
        "INSERT INTO session (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        &[&session, &user, &now, &(now + refresh_ttl(state)?)],
    )
    .await?;
    Ok(issue_pair(db, state, user, session, now).await?.0)
}

/// Revokes one session (no-op when already revoked).
pub async fn revoke(
    db: &impl GenericClient,
    session: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    db.execute(
        "UPDATE session SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
        &[&session, &now, &reason],
    )
    .await?;
    Ok(())
}

/// Revokes every live session of `user` except `keep`; returns how many.
pub async fn revoke_others(
    db: &impl GenericClient,
    user: Uuid,
    keep: Uuid,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    Ok(db
        .execute(
            "UPDATE session SET revoked_at = $3, revoke_reason = $4 \
             WHERE user_id = $1 AND id <> $2 AND revoked_at IS NULL AND expires_at > $3",
            &[&user, &keep, &now, &reason],
        )
        .await?)
}
