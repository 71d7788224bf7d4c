//! Validated account values: what a request must satisfy before anything touches the database.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;

use crate::error::Error;
use clinic_shared::pg::RowExt;

/// Longest accepted email address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Shortest password, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password, in bytes: nobody gets the server to hash a megabyte.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// A syntactically plausible email address, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Validates `raw` for request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if raw.len() > MAX_EMAIL_BYTES {
            return Err(Error::invalid(field, "must be at most 254 bytes"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(field, "must not contain spaces or control characters"));
        }
        match raw.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') =>
            {
                Ok(Self(raw.to_owned()))
            }
            _ => Err(Error::invalid(
                field,
                "must contain exactly one @ between a local part and a domain",
            )),
        }
    }

    /// The address as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form every lookup, uniqueness check, throttle counter and invitation is keyed by:
    /// see [`normalize_email`].
    pub fn normalized(&self) -> String {
        normalize_email(&self.0)
    }
}

/// The one normalisation of email addresses (NFC, then lowercase), stored in
/// `app_user.email_normalized`.
pub use clinic_shared::email::normalize as normalize_email;

/// A display name: 1 to 100 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Validates `raw` for request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<Self, Error> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::invalid(field, "must be at most 100 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(field, "must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password within the length bounds (8 to 256 bytes). Never printed.
pub struct Password(pub SecretString);

impl Password {
    /// Validates `raw` for request field `field`.
    pub fn parse(field: &str, raw: String) -> Result<Self, Error> {
        if raw.len() < MIN_PASSWORD_BYTES {
            return Err(Error::invalid(field, "must be at least 8 bytes"));
        }
        Self::bounded(field, raw)
    }

    /// Only the upper bound, for checking an existing password (login): old passwords are
    /// compared, not judged.
    pub fn bounded(field: &str, raw: String) -> Result<Self, Error> {
        if raw.is_empty() {
            return Err(Error::invalid(field, "must not be empty"));
        }
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(Error::invalid(field, "must be at most 256 bytes"));
        }
        Ok(Self(SecretString::from(raw)))
    }
}

/// An account as stored, without its password hash.
#[derive(Debug, Clone)]
pub struct User {
    /// Identifier.
    pub id: Uuid,
    /// Email as given at registration.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Whether the email is verified.
    pub is_verified: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl User {
    /// Reads the columns `id, email, name, is_verified, created_at` of `row`.
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Self, Error> {
        Ok(Self {
            id: row.col("id")?,
            email: row.col("email")?,
            name: row.col("name")?,
            is_verified: row.col("is_verified")?,
            created_at: row.col("created_at")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(Email::parse("email", "a@b.c").is_ok());
        for bad in ["", "ab", "a@@b", "@b", "a@", "a b@c", "a@b@c"] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
        assert!(Email::parse("email", &format!("{}@b.c", "a".repeat(251))).is_err());
        assert_eq!(Email::parse("e", "A@B.c").unwrap().normalized(), "a@b.c");
        // Composed and decomposed spellings, in any case, are one address.
        let composed = "\u{dc}n\u{ef}code@Example.com";
        let decomposed = "U\u{308}ni\u{308}code@Example.com";
        for spelling in [composed, decomposed, &composed.to_uppercase(), &decomposed.to_uppercase()]
        {
            assert_eq!(normalize_email(spelling), "\u{fc}n\u{ef}code@example.com", "{spelling:?}");
        }
    }

    #[test]
    fn names_and_passwords() {
        assert!(UserName::parse("name", " Ann ").is_ok());
        assert!(UserName::parse("name", "a\u{7}b").is_err());
        assert!(UserName::parse("name", &"é".repeat(100)).is_ok());
        assert!(UserName::parse("name", &"é".repeat(101)).is_err());
        assert!(Password::parse("p", "1234567".into()).is_err());
        assert!(Password::parse("p", "12345678".into()).is_ok());
        assert!(Password::parse("p", "x".repeat(257)).is_err());
        assert!(Password::bounded("p", "x".into()).is_ok());
    }
}
