//! What both services need, so each is written once: configuration from the environment,
//! telemetry, gRPC server plumbing (reflection, health, request ids, graceful shutdown), error
//! details for `tonic::Status` and the collection of field violations, paging and timestamps
//! at the gRPC edge, auth metadata helpers, PostgreSQL helpers (identifier quoting,
//! the organization-name-to-database mapping, per-test databases), and TLS for listeners, gRPC
//! clients and PostgreSQL connections, Prometheus metrics (registry, gRPC series, `/metrics`).

// Service code answers errors, it does not panic: no unwrap/expect/panic outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]
// Tests may panic on a row they did not expect (`Row::get`); the service never does (clippy.toml).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod auth;
pub mod config;
pub mod email;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod paging;
pub mod pg;
pub mod server;
pub mod slug;
pub mod telemetry;
pub mod time;
pub mod tls;
