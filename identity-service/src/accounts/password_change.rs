//! ChangePassword: the current password is checked (counted like a login, before hashing), the
//! new one stored, and every other session of the caller revoked.

use chrono::{DateTime, Utc};

use super::{Password, normalize_email, store};
use crate::{
    error::Error,
    sessions::{login::TOO_MANY_ATTEMPTS, store as sessions},
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
    let slot = state.passwords.admit()?;
    let key = Key::LoginAccount(normalize_email(&caller.user.email));
    let mut conn = state.conn().await?;
    state.throttle.count(&**conn, std::slice::from_ref(&key), now, TOO_MANY_ATTEMPTS).await?;
    let stored = store::credentials_by_id(&**conn, caller.user.id)
        .await?
        .ok_or(Error::Unauthenticated("user no longer exists"))?;
    if !slot.verify(current.0, Some(stored.password_hash)).await? {
        return Err(Error::invalid("current_password", "does not match"));
    }
    state.throttle.reset(&**conn, &key).await?;
    let hash = slot.hash(new.0).await?;
    drop(slot);
    let tx = conn.transaction().await?;
    store::set_password_hash(&*tx, caller.user.id, &hash, now).await?;
    let revoked = sessions::revoke_others(
        &*tx,
        state,
        caller.user.id,
        caller.session_id,
        "password changed",
        now,
    )
    .await?;
    tx.commit().await?;
    state.revocations_committed();
    tracing::info!(user_id = %caller.user.id, revoked, "password changed");
    Ok(revoked)
}
