//! identity-service: accounts, sessions, access and refresh tokens, and the directory of
//! organizations, served over gRPC (`identity.v1`).
//!
//! [`Application::build`] connects to the central database, migrates it and binds;
//! [`Application::run_until_stopped`] serves until a signal or the shutdown handle.

// Service code answers errors, it does not panic: no unwrap/expect/panic outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Tests may panic on a row they did not expect (`Row::get`); the service never does (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod accounts;
pub mod config;
pub mod db;
pub mod directory;
pub mod error;
pub mod grpc;
pub mod janitor;
pub mod keys;
pub mod mail;
pub mod peer;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod throttle;
pub mod tokens;

pub use config::Config;
pub use error::Error;
pub use startup::Application;
