//! Refresh tokens: 32 bytes, base64url to the client, SHA-256 in the database. A login's first
//! token is random; each successor is derived from the token it replaces with a keyed HMAC, so
//! a refresh retried with the same token (two tabs, a lost answer) can be given the same
//! successor again without the database ever holding it in clear.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{error::Error, keys::DerivedKey};

/// A new token (sent once to the client) and its hash (stored).
pub fn generate() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

/// The stored form of `token`.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The secret successors are derived with, itself derived from the token-signing key.
#[derive(Clone)]
pub struct SuccessorKey(DerivedKey);

impl SuccessorKey {
    /// Derives the key from secret material (the Ed25519 signing key's seed), as the
    /// verification-code key is, under its own label.
    pub fn derive(secret: &[u8]) -> Self {
        Self(DerivedKey::derive(b"clinic identity: refresh token successors v1\0", secret))
    }

    /// The successor of `token` and its hash: HMAC-SHA-256 of the token, the same every time.
    /// Unguessable without the key, so knowing a token's hash reveals nothing.
    pub fn successor(&self, token: &str) -> Result<(String, Vec<u8>), Error> {
        let successor = URL_SAFE_NO_PAD.encode(self.0.mac(&[token.as_bytes()])?);
        let hash = hash(&successor);
        Ok((successor, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert_eq!(hash(&a), ha);
        assert_eq!(ha.len(), 32);
    }

    #[test]
    fn successors_are_fixed_per_token_and_key_and_look_like_tokens() {
        let key = SuccessorKey::derive(b"secret one");
        let (token, _) = generate();
        let (successor, stored) = key.successor(&token).unwrap();
        assert_eq!(key.successor(&token).unwrap(), (successor.clone(), stored.clone()));
        assert_eq!(hash(&successor), stored);
        assert_eq!(successor.len(), token.len());
        assert_ne!(key.successor(&successor).unwrap().0, successor);
        assert_ne!(key.successor(&generate().0).unwrap().0, successor);
        assert_ne!(SuccessorKey::derive(b"secret two").successor(&token).unwrap().0, successor);
    }
}
