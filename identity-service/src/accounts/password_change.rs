//! ChangePassword: the current password is checked (throttled like a login), the new one
//! stored, and every other session of the caller revoked.

use chrono::{DateTime, Utc};

use super::{Password, store};
use crate::{
    error::Error,
    sessions::{login::check_throttle, store as sessions},
    state::AppState,
    throttle::Key,
    tokens::validate::Principal,
};

/// Sets a new password; returns how many other sessions were revoked.
pub async fn change_password(
    state: &AppState,
    caller: &Principal,
    current: Password,
    new: Password,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let key = Key::LoginAccount(caller.user.email.to_lowercase());
    check_throttle(state, std::slice::from_ref(&key), now)?;
    let stored = store::credentials_by_id(&**state.conn().await?, caller.user.id)
        .await?
        .ok_or(Error::Unauthenticated("user no longer exists"))?;
    if !state.passwords.verify(current.0, Some(stored.password_hash)).await? {
        state.throttle.record(key, now);
        return Err(Error::invalid("current_password", "does not match"));
    }
    let hash = state.passwords.hash(new.0).await?;
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    store::set_password_hash(&*tx, caller.user.id, &hash, now).await?;
    let revoked =
        sessions::revoke_others(&*tx, caller.user.id, caller.session_id, "password changed", now)
            .await?;
    tx.commit().await?;
    tracing::info!(user_id = %caller.user.id, revoked, "password changed");
    Ok(revoked)
}
