//! Access tokens (EdDSA JWTs, several keys), refresh tokens (random, stored hashed), token
//! validation and the log of revoked sessions.

pub mod jwt;
pub mod keyring;
pub mod refresh;
pub mod revocations;
pub mod validate;
