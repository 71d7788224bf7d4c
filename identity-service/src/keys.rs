//! Secrets derived from the token-signing key's seed, one per purpose, so no extra secret needs
//! configuring; each purpose has its own label, so no two share a key.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// An HMAC-SHA-256 key derived from secret material under a label.
#[derive(Clone)]
pub struct DerivedKey([u8; 32]);

impl DerivedKey {
    /// SHA-256 over `label` and `secret`.
    pub fn derive(label: &[u8], secret: &[u8]) -> Self {
        let mut digest = Sha256::new();
        digest.update(label);
        digest.update(secret);
        Self(digest.finalize().into())
    }

    /// HMAC-SHA-256 over `parts`, in order.
    pub fn mac(&self, parts: &[&[u8]]) -> Result<Vec<u8>, Error> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).map_err(Error::internal)?;
        for part in parts {
            mac.update(part);
        }
        Ok(mac.finalize().into_bytes().to_vec())
    }
}
