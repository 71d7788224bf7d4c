//! argon2id hashing (OWASP parameters: m = 19 MiB, t = 2, p = 1) in a bounded pool.
//!
//! Each hash takes a core and 19 MiB for ~30 ms, so unbounded hashing under a flood exhausts
//! memory and starves every other call. At most `workers` hashes run at once (default: all cores
//! but one, so reads keep a core), and at most `queue` more callers wait for a worker; anyone
//! beyond that is refused at once with `RESOURCE_EXHAUSTED` and `RetryInfo`. Callers take their
//! place ([`Passwords::admit`]) *before* any other work on the request, so a refused caller has
//! cost nothing and counted nothing.

use std::{sync::Arc, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version,
    password_hash::SaltString,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// The answer to a caller who finds the pool and its queue full.
pub const BUSY: Error =
    Error::Throttled { message: "server busy, retry shortly", retry_after: Duration::from_secs(1) };

/// Hashes and verifies passwords in the bounded pool. Holds a dummy hash so a login for an
/// unknown email costs the same as one for a known email.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<str>,
    /// Places for running and waiting callers together.
    places: Arc<Semaphore>,
    /// Hashes running at once.
    workers: Arc<Semaphore>,
}

impl Passwords {
    /// A pool of `workers` (at least 1) and `queue` waiting places; computes the dummy hash
    /// (blocking; call at start-up).
    pub fn new(workers: usize, queue: usize) -> Result<Self, Error> {
        let workers = workers.max(1);
        let dummy = hash_blocking(&SecretString::from("not a real password, only for timing"))?;
        Ok(Self {
            dummy: dummy.into(),
            places: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
        })
    }

    /// A place in the pool for one request, or [`BUSY`] at once when none is free.
    pub fn admit(&self) -> Result<HashSlot, Error> {
        let place = self.places.clone().try_acquire_owned().map_err(|_| BUSY)?;
        Ok(HashSlot { passwords: self.clone(), _place: place })
    }
}

/// A request's place in the hashing pool; hashes run through it one at a time.
pub struct HashSlot {
    passwords: Passwords,
    _place: OwnedSemaphorePermit,
}

impl HashSlot {
    /// Runs `work` on a worker. The worker permit moves into the blocking task, so a request
    /// dropped mid-hash cannot let more than `workers` hashes run at once.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let worker =
            self.passwords.workers.clone().acquire_owned().await.map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            work()
        })
        .await
        .map_err(Error::internal)?
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        self.run(move || hash_blocking(&password)).await
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) the dummy is checked
    /// and the answer is always false.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, Error> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.passwords.dummy.to_string());
        let ok = self.run(move || verify_blocking(&password, &hash)).await?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn callers_beyond_the_workers_and_queue_are_refused_at_once() {
        let passwords = Passwords::new(1, 2).unwrap();
        let held: Vec<HashSlot> = (0..3).map(|_| passwords.admit().unwrap()).collect();
        assert!(matches!(passwords.admit(), Err(Error::Throttled { .. })));
        drop(held);
        let slot = passwords.admit().unwrap();
        let hash = slot.hash(SecretString::from("correct horse")).await.unwrap();
        assert!(slot.verify(SecretString::from("correct horse"), Some(hash)).await.unwrap());
        assert!(!slot.verify(SecretString::from("correct horse"), None).await.unwrap());
    }
}
