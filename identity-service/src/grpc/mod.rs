//! The gRPC edge: proto messages become validated domain values (`TryFrom`), domain results
//! become proto messages, and [`Error`](crate::error::Error) becomes `Status`.

pub mod auth;
pub mod convert;
pub mod directory;
pub mod token;
pub mod watch;
