//! The one error type of identity-service and its one mapping to `tonic::Status`.

use std::time::Duration;

use clinic_shared::{
    error::{self, FieldViolation},
    pg,
};
use tonic::Status;

/// Everything that can go wrong in identity-service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent malformed input; each violation names a request field.
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    /// Missing, malformed, expired or revoked credentials. The message is safe to send.
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// A known caller without the right.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// A uniqueness conflict.
    #[error("already exists: {0}")]
    AlreadyExists(&'static str),
    /// A forbidden state change.
    #[error("failed precondition: {0}")]
    FailedPrecondition(&'static str),
    /// Too many attempts; retry after the given time.
    #[error("throttled: {message}")]
    Throttled {
        /// What was throttled.
        message: &'static str,
        /// How long to wait.
        retry_after: Duration,
    },
    /// A quota that waiting does not refill is used up.
    #[error("quota exceeded: {message}")]
    QuotaExceeded {
        /// What ran out, for the caller.
        message: &'static str,
        /// Whose quota (`QuotaFailure` subject), e.g. `user:<id>`.
        subject: String,
        /// The limit, e.g. `at most 10 clinics per user`.
        description: String,
    },
    /// A PostgreSQL error.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// A row lacks a column, or holds it in another type, than the code expects: our bug or a
    /// schema out of step (see [`clinic_shared::pg::RowExt`]).
    #[error("row: {0}")]
    Row(#[from] clinic_shared::pg::RowError),
    /// No database connection could be had in time.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Shared PostgreSQL helpers failed (start-up).
    #[error("postgres: {0}")]
    Pg(#[from] clinic_shared::pg::PgError),
    /// Migrations failed (start-up). Shown with its causes: PostgreSQL's own message says
    /// which migration stopped and why.
    #[error("migrations: {}", with_causes(.0))]
    Migration(#[from] refinery::Error),
    /// Start-up or I/O failure.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Anything else that is our fault (key loading, hashing, mail...). Never sent to callers.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// `InvalidArgument` for one field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Error::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// `Internal` from any displayable cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Error::Internal(cause.to_string())
    }
}

/// `e` and each of its sources, `: `-separated.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::InvalidArgument(v) => error::invalid_argument(&v),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Throttled { message, retry_after } => error::throttled(message, retry_after),
            Error::QuotaExceeded { message, subject, description } => {
                error::quota_exceeded(message, &subject, &description)
            }
            // The database is down, restarting or saturated: the caller may retry. One
            // classification for both services (`clinic_shared::pg`).
            Error::Pool(e) if pg::is_pool_unavailable(&e) => error::unavailable("database", &e),
            Error::Database(e) if pg::is_connection_loss(&e) => error::unavailable("database", &e),
            Error::Pg(pg::PgError::Postgres(e)) if pg::is_connection_loss(&e) => {
                error::unavailable("database", &e)
            }
            other => error::internal(&other),
        }
    }
}
