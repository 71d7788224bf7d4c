//! Accounts: registration, email verification, password hashing and password changes.

pub mod domain;
pub mod password;
pub mod password_change;
pub mod registration;
pub mod store;
pub mod verification;

pub use domain::{Email, Password, User, UserName, normalize_email};
