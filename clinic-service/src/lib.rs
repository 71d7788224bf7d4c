//! clinic-service: clinics (organizations), each in its own PostgreSQL database; their members
//! and profiles; appointments.
//!
//! - [`auth`]: bearer tokens validated by identity-service in a tower layer → [`auth::Claims`].
//! - [`identity`]: the client of identity-service's internal RPCs.
//! - [`tenancy`]: where each clinic's database lives, pooled connections within a budget,
//!   provisioning and migrations. [`tenancy::TenantAccess::acquire`] starts every clinic RPC.
//! - [`organizations`], [`members`], [`appointments`], [`schedules`]: the gRPC services of
//!   `clinic.v1`.
//! - [`relay`]: the tenants' outboxes of central membership changes, delivered to
//!   identity-service; `reconcile`.
//! - [`feed`]: the live appointment feed (`WatchAppointments`) over each clinic's change log.
//! - [`audit`]: the audit trail in each clinic's database (written by every handler through
//!   one `Audit` handle), its hash chain, central checkpoints, `audit verify` and `export`.
//! - [`grpc`]: parsing helpers of the gRPC edge; [`error`]: the one error type.
//! - [`metrics`]: the service's Prometheus series (the gRPC ones are `clinic_shared`'s).

// Service code answers errors, it does not panic: no unwrap/expect/panic outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Tests may panic on a row they did not expect (`Row::get`); the service never does (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod appointments;
pub mod audit;
pub mod auth;
pub mod config;
pub mod error;
pub mod feed;
pub mod grpc;
pub mod identity;
pub mod members;
pub mod metrics;
pub mod organizations;
pub mod relay;
pub mod roles;
pub mod schedules;
pub mod startup;
pub mod tenancy;

pub use config::Config;
pub use error::Error;
pub use startup::Application;
