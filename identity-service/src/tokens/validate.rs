//! Who holds an access token: signature and expiry, then the session must be live.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{accounts::User, error::Error, state::AppState};

/// A validated access token's holder.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: User,
    /// The session the token belongs to.
    pub session_id: Uuid,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
}

/// Checks `token` and its session (one indexed lookup joined with the user).
pub async fn authenticate(
    state: &AppState,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Principal, Error> {
    let claims = state.access_tokens.check(token, now)?;
    let conn = state.conn().await?;
    // The hottest query of the service (every uncached clinic-service call): prepared once per
    // pooled connection instead of once per call.
    let statement = conn
        .prepare_cached(
            "SELECT u.id, u.email, u.name, u.is_verified, u.created_at \
             FROM session s JOIN app_user u ON u.id = s.user_id \
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND s.expires_at > $3",
        )
        .await?;
    let row = conn
        .query_opt(&statement, &[&claims.sid, &claims.sub, &now])
        .await?
        .ok_or(Error::Unauthenticated("session revoked or expired"))?;
    let expires_at = DateTime::from_timestamp(claims.exp, 0)
        .ok_or(Error::Unauthenticated("invalid access token"))?;
    Ok(Principal { user: User::from_row(&row)?, session_id: claims.sid, expires_at })
}
