//! Login: throttled per account and per peer before any hashing; wrong email and wrong password
//! answer identically and cost the same.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::{TokenPair, store};
use crate::{
    accounts::{Email, Password, User, store as users},
    error::Error,
    state::AppState,
    throttle::Key,
};

/// A login attempt.
pub struct Credentials {
    /// Email as typed.
    pub email: Email,
    /// Password as typed (upper bound checked).
    pub password: Password,
}

/// The error every bad email/password combination gets.
pub const BAD_CREDENTIALS: Error = Error::Unauthenticated("invalid email or password");

/// Refuses when `keys` are throttled.
pub fn check_throttle(state: &AppState, keys: &[Key], now: DateTime<Utc>) -> Result<(), Error> {
    for key in keys {
        if let Err(retry_after) = state.throttle.check(key, now) {
            return Err(Error::Throttled { message: "too many failed attempts", retry_after });
        }
    }
    Ok(())
}

/// Opens a session for the owner of `credentials`.
pub async fn login(
    state: &AppState,
    credentials: Credentials,
    peer: Option<IpAddr>,
    now: DateTime<Utc>,
) -> Result<(TokenPair, User), Error> {
    let account = Key::LoginAccount(credentials.email.normalized());
    let mut keys = vec![account.clone()];
    keys.extend(peer.map(Key::LoginPeer));
    check_throttle(state, &keys, now)?;

    let found =
        users::credentials_by_email(&**state.conn().await?, &credentials.email.normalized())
            .await?;
    let (user, hash) = match found {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let ok = state.passwords.verify(credentials.password.0, hash).await?;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            for key in keys {
                state.throttle.record(key, now);
            }
            return Err(BAD_CREDENTIALS);
        }
    };
    state.throttle.reset(&account);
    if !user.is_verified {
        return Err(Error::FailedPrecondition("email address not verified yet"));
    }
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let pair = store::open(&*tx, state, user.id, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, session_id = %pair.session_id, "logged in");
    Ok((pair, user))
}
