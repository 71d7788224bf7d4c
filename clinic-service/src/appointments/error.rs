//! What can go wrong with an appointment request, in domain terms. The gRPC edge turns each
//! variant into one canonical code (see `grpc.rs`).

use clinic_shared::error::FieldViolation;

/// Which side of an appointment a clash or a lookup concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The doctor.
    Doctor,
    /// The patient.
    Patient,
}

impl Party {
    /// The request field naming this party.
    pub fn field(self) -> &'static str {
        match self {
            Self::Doctor => "doctor_id",
            Self::Patient => "patient_id",
        }
    }

    /// The word for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Doctor => "doctor",
            Self::Patient => "patient",
        }
    }
}

/// Errors of the appointments feature.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Caller mistakes, each naming its field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    /// The doctor or patient named does not exist in this clinic.
    #[error("{}: no such member in this clinic", .0.field())]
    MemberNotFound(Party),
    /// No appointment with that id that the caller may see.
    #[error("appointment not found")]
    NotFound,
    /// The caller may see the appointment (or is a member) but not do this.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// The transition table forbids this change from the current state.
    #[error("cannot {action} an appointment that is {from}")]
    InvalidTransition {
        /// The verb asked for.
        action: &'static str,
        /// The current state's label.
        from: &'static str,
    },
    /// The slot overlaps a PENDING or APPROVED appointment of the same doctor or patient.
    #[error("overlaps an existing appointment of the {}", .0.noun())]
    Overlap(Party),
    /// The doctor has a schedule and the booking does not fit it (the reason, for the caller).
    #[error("{0}")]
    OutsideSchedule(String),
    /// The schedule could not be read; answered as the service error says.
    #[error("schedule: {0}")]
    Schedule(#[source] crate::error::Error),
    /// The call's audit event could not be written (so neither is its write).
    #[error("audit: {0}")]
    Audit(#[source] crate::error::Error),
    /// The `request_id` was used (within its lifetime) for a booking with other parameters.
    #[error("request_id was used for a different booking; use a new request_id")]
    RequestIdReused,
    /// Something that cannot happen did (e.g. an unknown enum label in the database); logged,
    /// answered as INTERNAL.
    #[error("internal: {0}")]
    Internal(&'static str),
    /// A column could not be read (the query and its reader disagree); answered as INTERNAL.
    #[error("{0}")]
    Row(#[from] clinic_shared::pg::RowError),
    /// PostgreSQL failed; logged, answered by `crate::error::Error::tenant_db`.
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
}

impl Error {
    /// `INVALID_ARGUMENT` for one field.
    pub fn invalid(field: &str, description: &str) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

/// Into the service's one error type (and from there to one `tonic::Status`).
impl From<Error> for crate::error::Error {
    fn from(e: Error) -> Self {
        use crate::error::Error as E;
        match e {
            Error::InvalidArgument(v) => E::InvalidArgument(v),
            Error::MemberNotFound(p) => E::NotFound(format!("{}: no such member", p.field())),
            Error::NotFound => E::NotFound("appointment not found".into()),
            Error::PermissionDenied(m) => E::PermissionDenied(m.into()),
            e @ Error::InvalidTransition { .. } => E::FailedPrecondition(e.to_string()),
            e @ Error::Overlap(_) => E::AlreadyExists(e.to_string()),
            Error::OutsideSchedule(m) => E::FailedPrecondition(m),
            Error::Schedule(e) | Error::Audit(e) => e,
            e @ Error::RequestIdReused => E::FailedPrecondition(e.to_string()),
            Error::Internal(m) => E::Internal(m.into()),
            Error::Row(e) => e.into(),
            Error::Database(e) => E::tenant_db("appointments", &e),
        }
    }
}
