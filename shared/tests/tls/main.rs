//! TLS over real sockets: gRPC listeners (trust, client certificates, hot reload, stalled
//! clients) and PostgreSQL (verified TLS against a private cluster started with `ssl=on`).
//! Certificates are made here with rcgen, in a temporary directory per test.

// A test may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

mod grpc;
mod postgres;
mod reload;
