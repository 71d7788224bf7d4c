//! Signing and checking access tokens: EdDSA JWTs carrying user id (`sub`) and session id
//! (`sid`). Expiry is checked against a `now` parameter, not the system clock.

use std::{path::Path, time::Duration};

use chrono::{DateTime, Utc};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey},
};
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

/// The signing key pair and token settings.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: chrono::Duration,
}

impl AccessTokens {
    /// Tokens signed with `key`, issued by `issuer`, valid for `ttl`.
    pub fn new(key: &SigningKey, issuer: String, ttl: Duration) -> Result<Self, Error> {
        let der = key.to_pkcs8_der().map_err(Error::internal)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        // Expiry is checked against the caller's `now` below.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.set_issuer(&[issuer.as_str()]);
        Ok(Self {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
            validation,
            issuer,
            ttl: chrono::Duration::from_std(ttl).map_err(Error::internal)?,
        })
    }

    /// A token for `user`'s `session` and its expiry.
    pub fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), Error> {
        // Whole seconds, as in the token, so every report of the expiry agrees.
        let expires = now + self.ttl;
        let expires = DateTime::from_timestamp(expires.timestamp(), 0).unwrap_or(expires);
        let claims = Claims {
            sub: user,
            sid: session,
            exp: expires.timestamp(),
            iat: now.timestamp(),
            iss: self.issuer.clone(),
            jti: Uuid::new_v4(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .map_err(Error::internal)?;
        Ok((token, expires))
    }

    /// The claims of a well-signed, unexpired token; UNAUTHENTICATED otherwise.
    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, Error> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| Error::Unauthenticated("invalid access token"))?;
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

    #[test]
    fn tokens_round_trip_and_expire() {
        let tokens =
            AccessTokens::new(&generate_key(), "iss".into(), Duration::from_secs(60)).unwrap();
        let now = Utc::now();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let (token, exp) = tokens.issue(user, session, now).unwrap();
        let claims = tokens.check(&token, now).unwrap();
        assert_eq!((claims.sub, claims.sid), (user, session));
        assert!(tokens.check(&token, exp).is_err());
        let other =
            AccessTokens::new(&generate_key(), "iss".into(), Duration::from_secs(60)).unwrap();
        assert!(other.check(&token, now).is_err());
        assert!(tokens.check("garbage", now).is_err());
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
