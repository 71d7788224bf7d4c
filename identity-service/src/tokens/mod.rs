//! Access tokens (EdDSA JWTs), refresh tokens (random, stored hashed) and token validation.

pub mod jwt;
pub mod refresh;
pub mod validate;
