//! The public keys that verify access tokens, fetched from identity-service
//! (`ListSigningKeys`) at start, every `SIGNING_KEYS_REFRESH_SECS` (so a withdrawn key stops
//! verifying here too), and when a token names a key not seen yet — at most once per
//! `SIGNING_KEYS_REFETCH_SECS`, so tokens with made-up key ids cannot make this service hammer
//! identity-service. Time is a parameter.

use std::{
    collections::HashMap,
    sync::{
        RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;
use tonic::Status;

use super::Claims;
use crate::identity::IdentityClient;

/// What a token says, as signed.
#[derive(Deserialize)]
struct Signed {
    sub: uuid::Uuid,
    sid: uuid::Uuid,
    exp: i64,
}

struct Key {
    decoding: DecodingKey,
    verify_until: Option<DateTime<Utc>>,
}

/// Why a token was not verified locally.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected {
    /// Malformed, badly signed, expired, or signed by no listed key: the caller's token is bad.
    Invalid,
    /// The keys could not be fetched (identity-service down or misconfigured): nobody knows.
    KeysUnavailable,
}

/// The verifying keys, by key id.
pub struct SigningKeys {
    identity: IdentityClient,
    validation: Validation,
    refetch_every: Duration,
    keys: RwLock<HashMap<String, Key>>,
    /// Counts the fetches that replaced the keys: what was verified under an older generation
    /// is verified again (a key may have been retired or withdrawn since).
    generation: AtomicU64,
    /// The last fetch attempt and whether it succeeded; held while fetching, so concurrent
    /// callers share one fetch.
    fetched: Mutex<Option<(Instant, bool)>>,
}

impl SigningKeys {
    /// Keys of tokens issued by `issuer`, fetched from `identity` (at most once per
    /// `refetch_every` after the first).
    pub fn new(identity: IdentityClient, issuer: &str, refetch_every: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked against the caller's `now`.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[issuer]);
        Self {
            identity,
            validation,
            refetch_every,
            keys: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            fetched: Mutex::new(None),
        }
    }

    /// The current generation of the keys (see [`Self::verify`]).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The claims of `token` if a listed key verifies it and it has not expired at `now`, and
    /// until when the claims may be trusted without verifying again (the earlier of the token's
    /// expiry and its key's retire time), valid while [`Self::generation`] stays as it was.
    pub async fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Claims, DateTime<Utc>), Rejected> {
        let kid =
            jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid).ok_or(Rejected::Invalid)?;
        if let Some(claims) = self.check(&kid, token, now)? {
            return Ok(claims);
        }
        // A key not seen yet: identity-service may have published it since the last fetch.
        self.refetch().await?;
        self.check(&kid, token, now)?.ok_or(Rejected::Invalid)
    }

    /// `None` when no listed key has this id.
    fn check(
        &self,
        kid: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(Claims, DateTime<Utc>)>, Rejected> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let Some(key) = keys.get(kid) else { return Ok(None) };
        if key.verify_until.is_some_and(|until| now >= until) {
            return Err(Rejected::Invalid);
        }
        let data = jsonwebtoken::decode::<Signed>(token, &key.decoding, &self.validation)
            .map_err(|_| Rejected::Invalid)?;
        let expires_at = DateTime::from_timestamp(data.claims.exp, 0).ok_or(Rejected::Invalid)?;
        if expires_at <= now {
            return Err(Rejected::Invalid);
        }
        let trusted_until = key.verify_until.map_or(expires_at, |until| until.min(expires_at));
        let claims = Claims { user_id: data.claims.sub, session_id: data.claims.sid, expires_at };
        Ok(Some((claims, trusted_until)))
    }

    /// Fetches the keys unless an attempt was made within `refetch_every` (then the keys stay as
    /// they are). KeysUnavailable when this attempt, or the recent one standing for it, failed:
    /// a token whose key cannot be looked up is nobody's fault yet, never INVALID.
    pub async fn refetch(&self) -> Result<(), Rejected> {
        let mut fetched = self.fetched.lock().await;
        if let Some((at, ok)) = *fetched
            && at.elapsed() < self.refetch_every
        {
            // Too soon to ask again: what the last attempt knew stands (nothing, if it failed).
            return if ok { Ok(()) } else { Err(Rejected::KeysUnavailable) };
        }
        let result = self.fetch().await;
        *fetched = Some((Instant::now(), result.is_ok()));
        result
    }

    async fn fetch(&self) -> Result<(), Rejected> {
        match self.identity.list_signing_keys().await {
            Ok(listed) => {
                let keys = parse(listed);
                let mut current = self.keys.write().unwrap_or_else(|p| p.into_inner());
                if !same(&current, &keys) {
                    tracing::info!(keys = keys.len(), "access-token keys fetched");
                    *current = keys;
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                Ok(())
            }
            Err(status) => {
                log_failure(&status);
                Err(Rejected::KeysUnavailable)
            }
        }
    }
}

fn log_failure(status: &Status) {
    if !crate::identity::is_misconfigured(status) {
        tracing::warn!(code = ?status.code(), "ListSigningKeys failed");
    }
}

/// Whether two key sets list the same ids with the same retire times.
fn same(a: &HashMap<String, Key>, b: &HashMap<String, Key>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(kid, k)| b.get(kid).is_some_and(|o| o.verify_until == k.verify_until))
}

/// The usable keys of a `ListSigningKeys` answer (EdDSA, 32-byte keys; others are skipped).
fn parse(listed: clinic_api::identity::v1::ListSigningKeysResponse) -> HashMap<String, Key> {
    listed
        .keys
        .into_iter()
        .filter(|k| k.algorithm == "EdDSA" && k.public_key.len() == 32 && !k.kid.is_empty())
        .map(|k| {
            let verify_until =
                k.verify_until.as_ref().and_then(clinic_shared::time::from_timestamp);
            (k.kid, Key { decoding: DecodingKey::from_ed_der(&k.public_key), verify_until })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// identity-service unreachable (nothing listens on port 1).
    fn unreachable() -> SigningKeys {
        let identity =
            IdentityClient::new("http://127.0.0.1:1", None, None, Duration::from_millis(300))
                .expect("client");
        SigningKeys::new(identity, "clinic-identity", Duration::from_secs(60))
    }

    const TOKEN_WITH_KID: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.e30.c2ln";

    #[tokio::test]
    async fn keys_that_cannot_be_fetched_make_tokens_unverifiable_never_invalid() {
        let keys = unreachable();
        let now = Utc::now();
        assert_eq!(keys.verify(TOKEN_WITH_KID, now).await.unwrap_err(), Rejected::KeysUnavailable);
        // Within the refetch interval the failed attempt stands: still unavailable, not invalid.
        assert_eq!(keys.verify(TOKEN_WITH_KID, now).await.unwrap_err(), Rejected::KeysUnavailable);
        // A token without a key id is invalid whatever the keys.
        assert_eq!(keys.verify("e30.e30.c2ln", now).await.unwrap_err(), Rejected::Invalid);
        assert_eq!(keys.verify("garbage", now).await.unwrap_err(), Rejected::Invalid);
    }
}
