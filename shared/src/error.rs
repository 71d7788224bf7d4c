//! Building `tonic::Status` values with `google.rpc` details, so every service answers caller
//! mistakes the same way: `INVALID_ARGUMENT` with `BadRequest` field violations, throttling with
//! `RetryInfo`. Each service keeps its own error enum and converts it with these.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// One offending request field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The field's path in the request message, e.g. `email` or `profile.patient.blood_type`.
    pub field: String,
    /// What is wrong, for a developer; never the field's value.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// Collects the violations of one request, so a single INVALID_ARGUMENT names every bad field
/// (the one way both services validate a message field by field).
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records violations found elsewhere.
    pub fn extend(&mut self, violations: impl IntoIterator<Item = FieldViolation>) {
        self.0.extend(violations);
    }

    /// A required UUID field; a violation (and the nil UUID) when empty or malformed.
    pub fn uuid(&mut self, field: &str, text: &str) -> uuid::Uuid {
        let text = text.trim();
        uuid::Uuid::parse_str(text).unwrap_or_else(|_| {
            self.add(field, if text.is_empty() { "required" } else { "must be a UUID" });
            uuid::Uuid::nil()
        })
    }

    /// An optional timestamp field (see [`crate::time::from_timestamp`]); a violation when it is
    /// present but malformed.
    pub fn time(
        &mut self,
        field: &str,
        ts: Option<&prost_types::Timestamp>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let parsed = crate::time::from_timestamp(ts?);
        if parsed.is_none() {
            self.add(field, "not a valid timestamp");
        }
        parsed
    }

    /// Keeps only the violations `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&FieldViolation) -> bool) {
        self.0.retain(keep);
    }

    /// What was recorded so far.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `value` when nothing was recorded, every violation otherwise.
    pub fn finish<T>(self, value: T) -> Result<T, Vec<FieldViolation>> {
        if self.0.is_empty() { Ok(value) } else { Err(self.0) }
    }

    /// Everything recorded.
    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }
}

/// `INVALID_ARGUMENT` naming every offending field in the message and in `BadRequest` details.
pub fn invalid_argument(violations: &[FieldViolation]) -> Status {
    let mut details = ErrorDetails::new();
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    let message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// `INVALID_ARGUMENT` for one field.
pub fn invalid_field(field: &str, description: &str) -> Status {
    invalid_argument(&[FieldViolation::new(field, description)])
}

/// `RESOURCE_EXHAUSTED` telling the caller how long to wait (`RetryInfo`).
pub fn throttled(message: &str, retry_after: Duration) -> Status {
    let details = ErrorDetails::with_retry_info(Some(retry_after));
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// `RESOURCE_EXHAUSTED` for a quota that waiting will not refill, with a `QuotaFailure` naming
/// what ran out (`subject`, e.g. `user:<id>`) and the limit (`description`).
pub fn quota_exceeded(message: &str, subject: &str, description: &str) -> Status {
    let details = ErrorDetails::with_quota_failure_violation(subject, description);
    Status::with_error_details(Code::ResourceExhausted, message, details)
}

/// `INTERNAL` with a generic message; the cause is logged here, never sent to the caller.
pub fn internal(cause: &dyn std::fmt::Display) -> Status {
    tracing::error!(error = %cause, "internal error");
    Status::internal("internal error")
}

/// `UNAVAILABLE` for a dependency that is down; the cause is logged, not sent.
pub fn unavailable(what: &str, cause: &dyn std::fmt::Display) -> Status {
    tracing::warn!(error = %cause, dependency = what, "dependency unavailable");
    Status::unavailable(format!("{what} is unavailable, retry later"))
}
