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
    /// A concurrent transaction won and retrying here did not help; the client may retry.
    #[error("aborted: {0}")]
    Aborted(String),
    /// No database connection could be had within the acquire timeout.
    #[error("resource exhausted: {0}")]
    Exhausted(String),
    /// identity-service refused with an answer meant for the caller as it is (RESOURCE_EXHAUSTED
    /// with its `RetryInfo` or `QuotaFailure` details).
    #[error("refused by identity-service: {}", .0.message())]
    Refused(Box<Status>),
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

    /// The one answer for a clinic that does not exist *or* that the caller is not an active
    /// member of: the two must be indistinguishable.
    pub fn organization_not_found() -> Self {
        Self::NotFound("organization not found".into())
    }

    /// An unexpected failure with context.
    pub fn internal(context: &str, cause: impl std::fmt::Display) -> Self {
        Self::Internal(format!("{context}: {cause}"))
    }

    /// A tenant database failure: a lost connection is UNAVAILABLE (see
    /// `clinic_shared::pg::is_connection_loss`), transactions lost to concurrent ones ABORTED,
    /// the rest (conversion errors included) INTERNAL.
    pub fn tenant_db(context: &str, e: &tokio_postgres::Error) -> Self {
        if clinic_shared::pg::is_transaction_conflict(e) {
            Self::Aborted(format!("{context}: a concurrent change won; retry"))
        } else if clinic_shared::pg::is_connection_loss(e) {
            Self::Unavailable { what: "tenant database", cause: format!("{context}: {e}") }
        } else {
            Self::Internal(format!("{context}: {}", describe_pg(e)))
        }
    }
}

/// A column that could not be read is a bug (the query and its reader disagree): INTERNAL.
impl From<clinic_shared::pg::RowError> for Error {
    fn from(e: clinic_shared::pg::RowError) -> Self {
        Self::Internal(e.to_string())
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
        // Inside the handler's span, so operators see which call failed how (ids only).
        tracing::debug!(error = error_kind(&e), "request answered with an error");
        match e {
            Error::InvalidArgument(v) => invalid_argument(&v),
            Error::Unauthenticated(m) => Status::unauthenticated(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::Aborted(m) => Status::aborted(m),
            Error::Exhausted(m) => {
                clinic_shared::error::throttled(&m, std::time::Duration::from_secs(1))
            }
            Error::Refused(status) => *status,
            Error::Unavailable { what, cause } => unavailable(what, &cause),
            Error::Internal(cause) => internal(&cause),
        }
    }
}

/// The variant's name, for logs: never its message (which may echo input).
fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::InvalidArgument(_) => "invalid argument",
        Error::Unauthenticated(_) => "unauthenticated",
        Error::PermissionDenied(_) => "permission denied",
        Error::NotFound(_) => "not found",
        Error::AlreadyExists(_) => "already exists",
        Error::FailedPrecondition(_) => "failed precondition",
        Error::Aborted(_) => "aborted",
        Error::Exhausted(_) => "resource exhausted",
        Error::Refused(_) => "refused by identity-service",
        Error::Unavailable { .. } => "unavailable",
        Error::Internal(_) => "internal",
    }
}

#[cfg(test)]
mod tests {
    use clinic_shared::pg::TestDatabase;
    use tonic::Code;

    use super::Error;

    #[tokio::test]
    async fn tenant_database_errors_map_to_codes() {
        for (sqlstate, code) in [
            ("40P01", Code::Aborted),     // deadlock detected
            ("40001", Code::Aborted),     // serialization failure
            ("57P01", Code::Unavailable), // backend terminated (restart, failover)
            ("08006", Code::Unavailable), // connection failure
            ("23P01", Code::Internal),    // an exclusion violation nobody mapped is a bug
            ("XX000", Code::Internal),
        ] {
            let status =
                tonic::Status::from(Error::tenant_db("test", &TestDatabase::raise(sqlstate).await));
            assert_eq!(status.code(), code, "{sqlstate}");
        }
    }
}
