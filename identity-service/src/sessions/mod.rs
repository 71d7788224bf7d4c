//! Sessions: login, refresh-token rotation with reuse detection, logout and revocation.

pub mod login;
pub mod rotation;
pub mod store;

pub use store::TokenPair;
