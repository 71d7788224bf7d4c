//! Appointments: booking between a clinic's patients and doctors, the status lifecycle with its
//! history, and role-scoped, keyset-paged lists.
//!
//! - `domain`: states, the transition table, who may do what (pure).
//! - `requests`: proto messages parsed into validated values (`TryFrom`).
//! - `repository`, `listing`: SQL on a tenant database; `request_ids`: idempotency keys of
//!   bookings; `service`: the operations in transactions.
//! - `grpc`: the `AppointmentService` handlers (thin edge).
//! - PostgreSQL holds the no-overlap rule (exclusion constraints, migration V10), so concurrent
//!   bookings cannot race past it.

pub mod domain;
pub mod error;
pub mod grpc;
pub mod listing;
pub mod page_token;
pub mod repository;
pub mod request_ids;
pub mod requests;
pub mod service;

#[cfg(test)]
pub(crate) mod tests;

pub use error::Error;
pub use grpc::AppointmentHandler;
