//! Email verification codes: six random digits, stored as an HMAC keyed with a secret that is
//! not in the database (a dump does not let anyone try the million codes offline), bound to
//! the user, expiring, single-use, and burnt after too many wrong guesses. At most one live
//! code per user: a new one retires the rest.

use chrono::{DateTime, Utc};
use rand::Rng;
use subtle::ConstantTimeEq;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{error::Error, keys::DerivedKey};
use clinic_shared::pg::RowExt;

/// The secret the stored form of codes is keyed with, derived from the token-signing key.
#[derive(Clone)]
pub struct CodeKey(DerivedKey);

impl CodeKey {
    /// Derives the key from secret material (the Ed25519 signing key's seed), so no extra
    /// secret needs configuring; a new signing key only voids codes still in flight.
    pub fn derive(secret: &[u8]) -> Self {
        Self(DerivedKey::derive(b"clinic identity: email verification codes v1\0", secret))
    }

    /// HMAC-SHA-256 over the user and the code.
    fn hash(&self, user: Uuid, code: &str) -> Result<Vec<u8>, Error> {
        self.0.mac(&[user.as_bytes(), code.trim().as_bytes()])
    }
}

/// A fresh code, never logged.
pub struct Code(pub String);

impl Code {
    /// Six random digits from the OS generator.
    pub fn generate() -> Self {
        Code(format!("{:06}", rand::rngs::OsRng.gen_range(0..1_000_000u32)))
    }
}

/// Stores a new code for `user`, expiring `ttl` after `now`, retiring the user's older codes.
pub async fn issue(
    db: &impl GenericClient,
    key: &CodeKey,
    user: Uuid,
    ttl: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Code, Error> {
    let code = Code::generate();
    let expires = now + chrono::Duration::from_std(ttl).map_err(Error::internal)?;
    db.execute(
        "UPDATE email_verification SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
        &[&user, &now],
    )
    .await?;
    db.execute(
        "INSERT INTO email_verification (id, user_id, code_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&Uuid::new_v4(), &user, &key.hash(user, &code.0)?, &now, &expires],
    )
    .await?;
    Ok(code)
}

/// The outcome of checking a code.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Right code; it is now spent.
    Accepted,
    /// Wrong, expired, spent or no code at all.
    Rejected,
}

/// Checks `code` against the user's live code (locking it), counting a wrong guess and burning
/// the code after `max_attempts` wrong guesses. Run inside a transaction.
pub async fn check(
    db: &impl GenericClient,
    key: &CodeKey,
    user: Uuid,
    code: &str,
    max_attempts: i32,
    now: DateTime<Utc>,
) -> Result<Check, Error> {
    let row = db
        .query_opt(
            "SELECT id, code_hash, attempts FROM email_verification \
             WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2 \
             ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
            &[&user, &now],
        )
        .await?;
    let Some(row) = row else { return Ok(Check::Rejected) };
    let id: Uuid = row.col("id")?;
    let stored: Vec<u8> = row.col("code_hash")?;
    let attempts: i32 = row.col("attempts")?;
    if bool::from(stored.ct_eq(&key.hash(user, code)?)) {
        db.execute("UPDATE email_verification SET used_at = $2 WHERE id = $1", &[&id, &now])
            .await?;
        return Ok(Check::Accepted);
    }
    let burnt = attempts + 1 >= max_attempts;
    db.execute(
        "UPDATE email_verification SET attempts = attempts + 1, \
         used_at = CASE WHEN $2 THEN $3 ELSE used_at END WHERE id = $1",
        &[&id, &burnt, &now],
    )
    .await?;
    Ok(Check::Rejected)
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn stored_codes_depend_on_the_key_and_the_user() {
        let key = CodeKey::derive(b"secret one");
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let stored = key.hash(alice, "123456").unwrap();
        assert_eq!(stored, key.hash(alice, " 123456 ").unwrap());
        assert_ne!(stored, key.hash(bob, "123456").unwrap());
        assert_ne!(stored, CodeKey::derive(b"secret two").hash(alice, "123456").unwrap());
        assert_ne!(stored, Sha256::digest(b"123456").to_vec());
    }

    #[test]
    fn codes_are_six_digits() {
        for _ in 0..100 {
            let c = Code::generate();
            assert_eq!(c.0.len(), 6);
            assert!(c.0.bytes().all(|b| b.is_ascii_digit()));
        }
    }
}
