//! argon2id hashing (OWASP parameters: m = 19 MiB, t = 2, p = 1) off the async runtime.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::SaltString,
};
use secrecy::{ExposeSecret, SecretString};

use crate::error::Error;

fn argon2() -> Result<Argon2<'static>, Error> {
    let params = Params::new(19_456, 2, 1, None).map_err(Error::internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_blocking(password: &SecretString) -> Result<String, Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = argon2()?
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(Error::internal)?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &SecretString, hash: &str) -> Result<bool, Error> {
    let parsed = PasswordHash::new(hash).map_err(Error::internal)?;
    Ok(argon2()?.verify_password(password.expose_secret().as_bytes(), &parsed).is_ok())
}

/// Hashes and verifies passwords. Holds a dummy hash so a login for an unknown email costs
/// the same as one for a known email.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<str>,
}

impl Passwords {
    /// Computes the dummy hash (blocking; call at start-up).
    pub fn new() -> Result<Self, Error> {
        let dummy = hash_blocking(&SecretString::from("not a real password, only for timing"))?;
        Ok(Self { dummy: dummy.into() })
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(Error::internal)?
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) the dummy is checked
    /// and the answer is always false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .map_err(Error::internal)??;
        Ok(ok && known)
    }
}
