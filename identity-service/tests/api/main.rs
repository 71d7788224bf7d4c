//! Integration tests: each starts identity-service on its own database.

// A test may panic on a row it did not expect: that is a failed test, not a dropped call.
#![allow(clippy::disallowed_methods)]

mod audit_checkpoints;
mod directory;
mod emails;
mod helpers;
mod invitations;
mod login;
mod metrics;
mod organizations;
mod outages;
mod passwords;
mod registration;
mod replicas;
mod revocations;
mod rows;
mod service_auth;
mod sessions;
mod spares;
mod startup;
mod throttling;
