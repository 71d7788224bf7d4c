//! A bounded cache of verified tokens' claims, keyed by a SHA-256 of the token (the token itself
//! is never kept or logged), so a token's signature is checked once per `TOKEN_CACHE_TTL_SECS`.
//! It never decides whether a session is revoked: that is checked on every call. Time is a
//! parameter so tests control expiry.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use super::Claims;

/// The key of a token in the cache.
pub type TokenKey = [u8; 32];

/// Hashes a token for the cache.
pub fn token_key(token: &str) -> TokenKey {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified claims, each kept until the earlier of `ttl` and the token's own expiry.
pub struct TokenCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<TokenKey, (Claims, Instant, u64)>>,
}

impl TokenCache {
    /// A cache keeping answers for `ttl` (zero disables it), at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, entries: Mutex::new(HashMap::new()) }
    }

    /// The cached claims for `key`, unless expired at `now` or verified under another
    /// `generation` of the keys.
    pub fn get(&self, key: &TokenKey, now: Instant, generation: u64) -> Option<Claims> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(key) {
            Some((claims, until, g)) if *until > now && *g == generation => Some(claims.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remembers `claims` (verified under the keys' `generation`) from `now`; `token_left` is how
    /// long the token itself may be trusted.
    pub fn insert(
        &self,
        key: TokenKey,
        claims: Claims,
        now: Instant,
        token_left: Duration,
        generation: u64,
    ) {
        let keep = self.ttl.min(token_left);
        if keep.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, until, _)| *until > now);
            if entries.len() >= self.capacity {
                // Still full of live answers: forget them all rather than grow; they are cheap
                // to fetch again.
                entries.clear();
            }
        }
        entries.insert(key, (claims, now + keep, generation));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            user_id: uuid::Uuid::nil(),
            session_id: uuid::Uuid::nil(),
            expires_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn keeps_answers_for_the_shorter_of_ttl_and_token_life() {
        let cache = TokenCache::new(Duration::from_secs(5), 10);
        let t0 = Instant::now();
        cache.insert(token_key("a"), claims(), t0, Duration::from_secs(60), 1);
        cache.insert(token_key("b"), claims(), t0, Duration::from_secs(1), 1);
        assert!(cache.get(&token_key("a"), t0 + Duration::from_secs(4), 1).is_some());
        assert!(cache.get(&token_key("a"), t0 + Duration::from_secs(4), 2).is_none());
        assert!(cache.get(&token_key("a"), t0 + Duration::from_secs(5), 1).is_none());
        assert!(cache.get(&token_key("b"), t0 + Duration::from_secs(2), 1).is_none());
        assert!(cache.get(&token_key("c"), t0, 1).is_none());
    }

    #[test]
    fn stays_bounded_and_zero_ttl_disables() {
        let cache = TokenCache::new(Duration::from_secs(5), 3);
        let t0 = Instant::now();
        for i in 0..10 {
            cache.insert(token_key(&i.to_string()), claims(), t0, Duration::from_secs(60), 0);
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
        let off = TokenCache::new(Duration::ZERO, 3);
        off.insert(token_key("a"), claims(), t0, Duration::from_secs(60), 0);
        assert!(off.get(&token_key("a"), t0, 0).is_none());
    }
}
