//! The keys of access tokens: one Ed25519 key signs, and every listed key verifies, each until
//! its retire time. A key's id (`kid`, in every token's header) is its RFC 7638 JWK thumbprint,
//! so every replica given the same key computes the same id without configuring one.
//!
//! Rotation without logging anyone out: publish the next key to every replica as verify-only
//! first, then make it the signing key (the old one becomes verify-only until its last token
//! has expired), then drop the old one. See the README ("Tokens").

use std::{path::Path, str::FromStr};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey, VerifyingKey,
    pkcs8::{DecodePrivateKey, DecodePublicKey},
};
use sha2::{Digest, Sha256};

use crate::error::Error;

/// The key id of an Ed25519 public key: the RFC 7638 thumbprint (SHA-256 over the canonical
/// JWK `{"crv":"Ed25519","kty":"OKP","x":...}`, members in lexicographic order), base64url.
pub fn kid(public: &VerifyingKey) -> String {
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(public.as_bytes())
    );
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// One entry of `JWT_VERIFY_KEYS`: a PEM file (an Ed25519 public key, or a private key of which
/// only the public half is used) and, optionally, the time after which it verifies nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyKeyFile {
    /// The PEM file.
    pub path: std::path::PathBuf,
    /// Retire time (RFC 3339); none for a key about to sign (published ahead of the switch).
    pub until: Option<DateTime<Utc>>,
}

impl FromStr for VerifyKeyFile {
    type Err = String;

    /// `path` or `path@2026-12-01T00:00:00Z`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (path, until) = match s.rsplit_once('@') {
            Some((path, time)) => {
                let until = DateTime::parse_from_rfc3339(time.trim())
                    .map_err(|_| format!("{time:?} is not an RFC 3339 time"))?;
                (path, Some(until.with_timezone(&Utc)))
            }
            None => (s, None),
        };
        let path = path.trim();
        if path.is_empty() {
            return Err("an entry has no file".into());
        }
        Ok(Self { path: path.into(), until })
    }
}

/// A public key that verifies access tokens.
#[derive(Debug, Clone)]
pub struct PublicKey {
    /// Its key id.
    pub kid: String,
    /// The key.
    pub key: VerifyingKey,
    /// Tokens it signed are refused after this; none while it signs (or is about to).
    pub verify_until: Option<DateTime<Utc>>,
}

impl PublicKey {
    /// Whether it verifies tokens at `now`.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.verify_until.is_none_or(|until| now < until)
    }
}

/// The signing key and every key that verifies.
pub struct KeyRing {
    /// Signs new tokens.
    pub signing: SigningKey,
    /// Every verifying key, the signing key's public half first; no two with one kid.
    pub keys: Vec<PublicKey>,
}

impl KeyRing {
    /// A ring signing with `signing` and also verifying with `others`. A verify-only key equal to
    /// the signing key is dropped (the signing key verifies without a retire time).
    pub fn new(signing: SigningKey, others: Vec<PublicKey>) -> Self {
        let public = signing.verifying_key();
        let mut keys = vec![PublicKey { kid: kid(&public), key: public, verify_until: None }];
        for key in others {
            if !keys.iter().any(|k| k.kid == key.kid) {
                keys.push(key);
            }
        }
        Self { signing, keys }
    }

    /// The signing key's id.
    pub fn signing_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// The key with id `kid`, if it verifies at `now`.
    pub fn verifier(&self, kid: &str, now: DateTime<Utc>) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.kid == kid && k.live(now))
    }

    /// The keys that verify at `now` (what ListSigningKeys publishes), the signing key first.
    pub fn published(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().filter(move |k| k.live(now))
    }
}

/// Loads the public key of a verify-only entry: a SPKI public key PEM
/// (`openssl pkey -pubout`), or a PKCS#8 private key PEM.
pub fn load_public(file: &VerifyKeyFile) -> Result<PublicKey, Error> {
    let key = read_public(&file.path)?;
    Ok(PublicKey { kid: kid(&key), key, verify_until: file.until })
}

fn read_public(path: &Path) -> Result<VerifyingKey, Error> {
    let pem = std::fs::read_to_string(path)?;
    if let Ok(key) = VerifyingKey::from_public_key_pem(&pem) {
        return Ok(key);
    }
    SigningKey::from_pkcs8_pem(&pem).map(|k| k.verifying_key()).map_err(|_| {
        Error::internal(format!(
            "JWT_VERIFY_KEYS: {} is not an Ed25519 public or private key PEM",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc_8037_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of the key of A.2.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(kid(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn entries_parse_with_and_without_a_retire_time() {
        let e: VerifyKeyFile = "/k/old.pem@2026-12-01T00:00:00Z".parse().unwrap();
        assert_eq!(e.path, std::path::PathBuf::from("/k/old.pem"));
        assert_eq!(e.until.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let e: VerifyKeyFile = " /k/next.pem ".parse().unwrap();
        assert_eq!((e.path.to_str().unwrap(), e.until), ("/k/next.pem", None));
        assert!("/k/old.pem@yesterday".parse::<VerifyKeyFile>().is_err());
        assert!("@2026-12-01T00:00:00Z".parse::<VerifyKeyFile>().is_err());
    }

    #[test]
    fn retired_keys_verify_nothing_and_are_not_published() {
        let now = Utc::now();
        let old = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let gone = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let ring = KeyRing::new(
            SigningKey::generate(&mut rand::rngs::OsRng),
            vec![
                PublicKey {
                    kid: kid(&old),
                    key: old,
                    verify_until: Some(now + chrono::Duration::minutes(1)),
                },
                PublicKey { kid: kid(&gone), key: gone, verify_until: Some(now) },
            ],
        );
        assert!(ring.verifier(&kid(&old), now).is_some());
        assert!(ring.verifier(&kid(&gone), now).is_none());
        let published: Vec<_> = ring.published(now).map(|k| k.kid.clone()).collect();
        assert_eq!(published, vec![ring.signing_kid().to_owned(), kid(&old)]);
    }
}
