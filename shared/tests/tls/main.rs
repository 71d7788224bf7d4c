//! TLS over real sockets: gRPC listeners (trust, client certificates, hot reload, stalled
//! clients). Certificates are made here with rcgen, in a temporary directory per test.

mod grpc;
mod helpers;
mod reload;
