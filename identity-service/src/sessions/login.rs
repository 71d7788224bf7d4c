//! Login: a place in the hashing pool first, then the attempt is counted per account and per
//! client (before any hashing, so parallel guesses evaluate at most the limit); wrong email and
//! wrong password answer identically and cost the same. An attempt that ends before its verdict
//! (an error, or the caller gone) is taken back.

use chrono::{DateTime, Utc};

use super::{TokenPair, store};
use crate::{
    accounts::{Email, Password, User, store as users},
    error::Error,
    peer::Peer,
    state::AppState,
    throttle::{Key, Unjudged},
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

/// What a throttled login is told.
pub const TOO_MANY_ATTEMPTS: &str = "too many failed attempts";

/// Opens a session for the owner of `credentials`.
pub async fn login(
    state: &AppState,
    credentials: Credentials,
    peer: Option<Peer>,
    now: DateTime<Utc>,
) -> Result<(TokenPair, User), Error> {
    let slot = state.passwords.admit()?;
    let account = Key::LoginAccount(credentials.email.normalized());
    let peer = peer.map(Key::LoginPeer);
    let conn = state.conn().await?;
    let keys: Vec<Key> = std::iter::once(account.clone()).chain(peer.clone()).collect();
    state.throttle.count(&**conn, &keys, now, TOO_MANY_ATTEMPTS).await?;
    // Taken back if the login ends before the password is checked.
    let unjudged = Unjudged::new(state.db.clone(), keys);

    let found = users::credentials_by_email(&**conn, &credentials.email).await?;
    drop(conn);
    let (user, hash) = match found {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let ok = slot.verify(credentials.password.0, hash).await?;
    drop(slot);
    unjudged.judged();
    let (true, Some(user)) = (ok, user) else {
        return Err(BAD_CREDENTIALS);
    };
    let mut conn = state.conn().await?;
    // A success clears the account's failures; the client's count keeps its failures only.
    state.throttle.reset(&**conn, &account).await?;
    if let Some(peer) = &peer {
        state.throttle.refund(&**conn, peer).await?;
    }
    if !user.is_verified {
        return Err(Error::FailedPrecondition("email address not verified yet"));
    }
    let tx = conn.transaction().await?;
    let pair = store::open(&*tx, state, user.id, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, session_id = %pair.session_id, "logged in");
    Ok((pair, user))
}
