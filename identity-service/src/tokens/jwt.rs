//! Signing and checking access tokens: EdDSA JWTs carrying only what every call needs: user id
//! (`sub`), session id (`sid`), expiry, issue time, issuer and token id. No email, name or other
//! personal data: services that need more ask identity-service. Each token's header names the
//! key that signed it (`kid`, see [`keyring`](super::keyring)); a token is checked with that key
//! alone, if it is still listed. Expiry is checked against a `now` parameter, not the system
//! clock, and never lies past the session's own expiry.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};

use super::keyring::{KeyRing, PublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// Claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Session id.
    pub sid: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
    /// Issuer.
    pub iss: String,
    /// Token id.
    pub jti: Uuid,
}

/// The key ring and token settings.
pub struct AccessTokens {
    ring: KeyRing,
    encoding: EncodingKey,
    validation: Validation,
    issuer: String,
    ttl: chrono::Duration,
}

impl AccessTokens {
    /// Tokens signed with `ring`'s signing key (and checked with any of its keys), issued by
    /// `issuer`, valid for `ttl`.
    pub fn new(ring: KeyRing, issuer: String, ttl: Duration) -> Result<Self, Error> {
        let der = ring.signing.to_pkcs8_der().map_err(Error::internal)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked against the caller's `now` below.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[issuer.as_str()]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            ring,
            validation,
            issuer,
            ttl: chrono::Duration::from_std(ttl).map_err(Error::internal)?,
        })
    }

    /// The keys that verify tokens at `now`, the signing key first.
    pub fn published_keys(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PublicKey> {
        self.ring.published(now)
    }

    /// A token for `user`'s `session` and its expiry: `ttl` from `now`, but never after
    /// `session_expires` (the session's own expiry, itself never past its absolute lifetime), so
    /// a session that ends needs no revocation event.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        session_expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), Error> {
        // Whole seconds, as in the token, so every report of the expiry agrees (rounded down,
        // so never past the session).
        let expires = (now + self.ttl).min(session_expires);
        let expires = DateTime::from_timestamp(expires.timestamp(), 0).unwrap_or(expires);
        let claims = Claims {
            sub: user,
            sid: session,
            exp: expires.timestamp(),
            iat: now.timestamp(),
            iss: self.issuer.clone(),
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.ring.signing_kid().to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)?;
        Ok((token, expires))
    }

    /// The claims of an unexpired token signed by a key listed at `now` (the one its `kid`
    /// names); UNAUTHENTICATED otherwise.
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, Error> {
        const INVALID: Error = Error::Unauthenticated("invalid access token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| INVALID)?;
        let key = header.kid.and_then(|kid| self.ring.verifier(&kid, now)).ok_or(INVALID)?;
        let decoding = DecodingKey::from_ed_der(key.key.as_bytes());
        let data = jsonwebtoken::decode::<Claims>(token, &decoding, &self.validation)
            .map_err(|_| INVALID)?;
        if data.claims.exp <= now.timestamp() {
            return Err(Error::Unauthenticated("access token expired"));
        }
        Ok(data.claims)
    }
}

/// A new random key (development mode only).
pub fn generate_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Loads a PKCS#8 PEM Ed25519 private key.
pub fn load_key(path: &Path) -> Result<SigningKey, Error> {
    let pem = std::fs::read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|_| Error::internal("JWT_PRIVATE_KEY_FILE is not a PKCS#8 PEM Ed25519 key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tokens::keyring::kid;

    fn tokens(key: SigningKey, others: Vec<PublicKey>) -> AccessTokens {
        AccessTokens::new(KeyRing::new(key, others), "iss".into(), Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn tokens_round_trip_and_expire() {
        let tokens = tokens(generate_key(), vec![]);
        let now = Utc::now();
        let far = now + chrono::Duration::days(1);
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, exp) = tokens.issue(user, session, far, now).unwrap();
        let claims = tokens.check(&token, now).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert!(tokens.check(&token, exp).is_err());
        let other = self::tokens(generate_key(), vec![]);
        assert!(other.check(&token, now).is_err());
        assert!(tokens.check("garbage", now).is_err());
    }

    #[test]
    fn tokens_name_their_key_carry_no_personal_data_and_end_with_their_session() {
        let key = generate_key();
        let tokens = tokens(key.clone(), vec![]);
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let session_end = now + chrono::Duration::seconds(10);
        let (token, exp) = tokens.issue(Uuid::new_v4(), Uuid::new_v4(), session_end, now).unwrap();
        assert_eq!(exp, session_end);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(kid(&key.verifying_key()).as_str()));
        let payload = token.split('.').nth(1).unwrap();
        let payload: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .unwrap(),
        )
        .unwrap();
        let mut names: Vec<_> = payload.as_object().unwrap().keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["exp", "iat", "iss", "jti", "sid", "sub"]);
        assert_eq!(payload["exp"], session_end.timestamp());
    }

    #[test]
    fn old_keys_verify_until_retired_and_unknown_keys_never() {
        let (old, new) = (generate_key(), generate_key());
        let now = Utc::now();
        let far = now + chrono::Duration::days(1);
        let retire = now + chrono::Duration::seconds(30);
        let before = tokens(old.clone(), vec![]);
        let (token, _) = before.issue(Uuid::new_v4(), Uuid::new_v4(), far, now).unwrap();
        let verify_old = PublicKey {
            kid: kid(&old.verifying_key()),
            key: old.verifying_key(),
            verify_until: Some(retire),
        };
        let after = tokens(new.clone(), vec![verify_old]);
        assert!(after.check(&token, now).is_ok());
        assert!(after.check(&token, retire).is_err());
        let (fresh, _) = after.issue(Uuid::new_v4(), Uuid::new_v4(), far, now).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid,
            Some(kid(&new.verifying_key()))
        );
        assert!(tokens(new, vec![]).check(&token, now).is_err());
    }

    #[test]
    fn keys_load_from_pem() {
        use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
        let key = generate_key();
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let path = std::env::temp_dir().join(format!("jwt-{}.pem", Uuid::new_v4()));
        std::fs::write(&path, pem.as_bytes()).unwrap();
        let loaded = load_key(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.to_bytes(), key.to_bytes());
    }
}
