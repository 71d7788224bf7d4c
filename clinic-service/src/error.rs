//! The service's one error type and its one mapping to `tonic::Status`.

use clinic_shared::error::{FieldViolation, internal, invalid_argument, unavailable};
use tonic::Status;

/// Everything a clinic-service operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input is malformed; nothing was changed.
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    /// No or an unusable bearer token.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A known caller without the right.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The request is forbidden in the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// No database connection could be had within the acquire timeout.
    #[error("resource exhausted: {0}")]
    Exhausted(String),
    /// A dependency (identity-service, a tenant server) is down.
    #[error("{what} unavailable: {cause}")]
    Unavailable {
        /// Which dependency.
        what: &'static str,
        /// Why (logged, never sent).
        cause: String,
    },
    /// A bug or an unexpected failure; logged, answered as a generic INTERNAL.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// INVALID_ARGUMENT for one field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// An unexpected failure with context.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {cause}"))
    }

    /// A tenant database failure: connection-level problems are UNAVAILABLE, the rest INTERNAL.
    pub fn tenant_db(context: &str, e: &tokio_postgres::Error) -> Self {
        if e.as_db_error().is_none() {
            Self::Unavailable { what: "tenant database", cause: format!("{context}: {e}") }
        } else {
            Self::Internal(format!("{context}: {}", describe_pg(e)))
        }
    }
}

/// A PostgreSQL error for logs: SQLSTATE and message only. The DETAIL of a constraint violation
/// repeats the row's values (patient data), so it is never included.
pub fn describe_pg(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => invalid_argument(&v),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Exhausted(m) => {
                clinic_shared::error::throttled(&m, std::time::Duration::from_secs(1))
            }
            Error::Unavailable { what, cause } => unavailable(what, &cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}
