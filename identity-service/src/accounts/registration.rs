//! Register, VerifyEmail and ResendVerificationCode.

use chrono::{DateTime, Utc};
use clinic_shared::config::Mode;

use super::{
    Email, Password, User, UserName, store,
    verification::{self, Check},
};
use crate::{error::Error, peer::Peer, state::AppState, throttle::Key};

/// A validated registration.
pub struct NewAccount {
    /// Email.
    pub email: Email,
    /// Display name.
    pub name: UserName,
    /// Password.
    pub password: Password,
}

/// The new user and, in development mode only, the verification code.
pub struct Registered {
    /// The unverified user.
    pub user: User,
    /// The code when the server runs in development mode.
    pub dev_code: Option<String>,
}

const SUBJECT: &str = "Your verification code";

fn body(code: &str) -> String {
    format!("Your clinic verification code is {code}. It expires soon and works once.")
}

/// Creates an unverified user and mails a code. Registrations are counted per client.
pub async fn register(
    state: &AppState,
    new: NewAccount,
    peer: Option<Peer>,
    now: DateTime<Utc>,
) -> Result<Registered, Error> {
    let slot = state.passwords.admit()?;
    if let Some(peer) = peer {
        let conn = state.conn().await?;
        let keys = [Key::RegisterPeer(peer)];
        state.throttle.count(&**conn, &keys, now, "too many registrations").await?;
    }
    let hash = slot.hash(new.password.0).await?;
    drop(slot);
    let mut conn = state.conn().await?;
    let tx = conn.transaction().await?;
    let user = store::insert(&*tx, &new.email, new.name.as_str(), &hash, now).await?;
    let code = issue_code(&*tx, state, user.id, now).await?;
    tx.commit().await?;
    tracing::info!(user_id = %user.id, "user registered");
    // The account exists either way; a lost mail is fixed by ResendVerificationCode.
    if let Err(e) = state.mailer.send(&user.email, SUBJECT, &body(&code.0)).await {
        tracing::error!(user_id = %user.id, error = %e, "verification mail not sent");
    }
    let dev_code = (state.config.mode == Mode::Development).then_some(code.0);
    Ok(Registered { user, dev_code })
}

/// Checks a code and marks the user verified. Attempts are counted per email before the check.
pub async fn verify_email(
    state: &AppState,
    email: Email,
    code: &str,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    let key = Key::Verify(email.normalized());
    let mut conn = state.conn().await?;
    let keys = std::slice::from_ref(&key);
    state.throttle.count(&**conn, keys, now, "too many wrong verification codes").await?;
    let tx = conn.transaction().await?;
    let user = store::by_email(&*tx, &email).await?;
    let outcome = match &user {
        Some(user) => {
            verification::check(
                &*tx,
                &state.code_key,
                user.id,
                code,
                state.config.verification_max_attempts,
                now,
            )
            .await?
        }
        None => Check::Rejected,
    };
    match (outcome, user) {
        (Check::Accepted, Some(user)) => {
            let user = store::mark_verified(&*tx, user.id, now).await?;
            tx.commit().await?;
            state.throttle.reset(&**conn, &key).await?;
            tracing::info!(user_id = %user.id, "email verified");
            Ok(user)
        }
        _ => {
            // Keep the attempt count even though the call fails.
            tx.commit().await?;
            Err(Error::FailedPrecondition("invalid, expired or used verification code"))
        }
    }
}

/// Mails a fresh code when the email belongs to an unverified user; answers the same otherwise.
/// Counted per client (refused when over) and per email (then silently not sent).
pub async fn resend(
    state: &AppState,
    email: Email,
    peer: Option<Peer>,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let mut conn = state.conn().await?;
    if let Some(peer) = peer {
        let keys = [Key::ResendPeer(peer)];
        state.throttle.count(&**conn, &keys, now, "too many requests").await?;
    }
    let keys = [Key::ResendAccount(email.normalized())];
    match state.throttle.count(&**conn, &keys, now, "").await {
        // Same answer as success: the limit per email must not reveal anything either.
        Err(Error::Throttled { .. }) => return Ok(()),
        other => other?,
    }
    let tx = conn.transaction().await?;
    let Some(user) = store::by_email(&*tx, &email).await? else {
        return Ok(());
    };
    if user.is_verified {
        return Ok(());
    }
    let code = issue_code(&*tx, state, user.id, now).await?;
    tx.commit().await?;
    // Mail in the background so the answer's timing does not depend on delivery.
    let mailer = state.mailer.clone();
    state.spawn_background(async move {
        if let Err(e) = mailer.send(&user.email, SUBJECT, &body(&code.0)).await {
            tracing::error!(user_id = %user.id, error = %e, "verification mail not sent");
        }
    });
    Ok(())
}

/// A new verification code for `user`, with the configured lifetime and key.
async fn issue_code(
    db: &impl tokio_postgres::GenericClient,
    state: &AppState,
    user: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<verification::Code, Error> {
    verification::issue(db, &state.code_key, user, state.config.verification_code_ttl, now).await
}
