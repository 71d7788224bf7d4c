//! Validated requests: each proto message becomes one of these once, at the edge, with every
//! offending field named. Past this point ids are UUIDs, durations are in range and texts are
//! within their limits.

use chrono::{DateTime, Utc};
use clinic_api::clinic::v1 as pb;
use clinic_shared::{
    error::Violations,
    paging::{MAX_PAGE_SIZE, Page},
};
use uuid::Uuid;

use super::{
    domain::{Action, AppointmentStatus},
    error::Error,
    page_token::PageToken,
};

/// Default visit length when the request says 0.
pub const DEFAULT_DURATION_MINUTES: i32 = 30;
/// Shortest and longest visit.
pub const DURATION_RANGE: std::ops::RangeInclusive<i32> = 5..=480;
/// Longest notes, in characters.
pub const MAX_NOTES_CHARS: usize = 2000;
/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// How long a `request_id` of `CreateAppointment` is remembered (then pruned; the key books
/// anew).
pub const REQUEST_ID_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
/// Token kind of `ListAppointments`.
pub(crate) const LIST_KIND: &str = "appointments";

pub use crate::grpc::MemberRef;

/// A member field: `me` (the caller), a UUID, or (when not `required`) empty.
fn member(v: &mut Violations, field: &str, text: &str, required: bool) -> Option<MemberRef> {
    if text.is_empty() && !required {
        return None;
    }
    match MemberRef::parse_field(field, text) {
        Ok(member) => Some(member),
        Err(violation) => {
            v.extend([violation]);
            Some(MemberRef::Id(Uuid::nil()))
        }
    }
}

/// `value`, or INVALID_ARGUMENT naming every field `v` collected.
fn finish<T>(v: Violations, value: T) -> Result<T, Error> {
    v.finish(value).map_err(Error::InvalidArgument)
}

/// `CreateAppointment`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateAppointment {
    /// The clinic.
    pub organization_id: Uuid,
    /// The patient (a patient caller may say `me`).
    pub patient: MemberRef,
    /// The doctor member.
    pub doctor_id: Uuid,
    /// Start, in the future.
    pub start_time: DateTime<Utc>,
    /// Length in minutes, within [`DURATION_RANGE`].
    pub duration_minutes: i32,
    /// Notes, at most [`MAX_NOTES_CHARS`].
    pub notes: String,
    /// The idempotency key: retries with it answer the first booking.
    pub request_id: Option<Uuid>,
    /// When the request was received (keys expire [`REQUEST_ID_TTL`] after it).
    pub received_at: DateTime<Utc>,
    /// An admin books outside the doctor's schedule on purpose (recorded in the history).
    pub schedule_override: bool,
}

impl CreateAppointment {
    /// A digest of what this booking asks for (with the patient resolved), so a key reused for
    /// another booking is recognised. Fixed-width fields first, the notes last: unambiguous.
    pub fn fingerprint(&self, patient_id: Uuid) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        digest.update(patient_id.as_bytes());
        digest.update(self.doctor_id.as_bytes());
        digest.update(self.start_time.timestamp_micros().to_be_bytes());
        digest.update(self.duration_minutes.to_be_bytes());
        digest.update(self.notes.as_bytes());
        if self.schedule_override {
            // Appended only when set, so keys recorded before the flag existed still match.
            digest.update(b"\0schedule_override");
        }
        digest.finalize().to_vec()
    }

    /// Validates `req` against the clock reading `now`.
    pub fn parse(req: pb::CreateAppointmentRequest, now: DateTime<Utc>) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = v.uuid("organization_id", &req.organization_id);
        let patient = member(&mut v, "patient_id", &req.patient_id, true).unwrap_or(MemberRef::Me);
        let doctor_id = v.uuid("doctor_id", &req.doctor_id);
        let start_time = match v.time("start_time", req.start_time.as_ref()) {
            Some(t) if t <= now => {
                v.add("start_time", "must be in the future");
                t
            }
            Some(t) => t,
            None => {
                if req.start_time.is_none() {
                    v.add("start_time", "required");
                }
                now
            }
        };
        let duration_minutes = match req.duration_minutes {
            0 => DEFAULT_DURATION_MINUTES,
            d if DURATION_RANGE.contains(&d) => d,
            d => {
                v.add("duration_minutes", "must be 5 to 480 minutes (0 for the default of 30)");
                d
            }
        };
        if req.notes.chars().count() > MAX_NOTES_CHARS {
            v.add("notes", "at most 2000 characters");
        }
        let request_id = match req.request_id.as_str() {
            "" => None,
            text => Some(v.uuid("request_id", text)),
        };
        finish(
            v,
            Self {
                organization_id,
                patient,
                doctor_id,
                start_time,
                duration_minutes,
                notes: req.notes,
                request_id,
                received_at: now,
                schedule_override: req.schedule_override,
            },
        )
    }
}

/// One appointment of one clinic (Get, ListAppointmentHistory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppointmentRef {
    /// The clinic.
    pub organization_id: Uuid,
    /// The appointment.
    pub appointment_id: Uuid,
}

impl AppointmentRef {
    fn parse(organization_id: &str, appointment_id: &str, v: &mut Violations) -> Self {
        Self {
            organization_id: v.uuid("organization_id", organization_id),
            appointment_id: v.uuid("appointment_id", appointment_id),
        }
    }
}

impl TryFrom<pb::GetAppointmentRequest> for AppointmentRef {
    type Error = Error;
    fn try_from(req: pb::GetAppointmentRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let r = Self::parse(&req.organization_id, &req.appointment_id, &mut v);
        finish(v, r)
    }
}

impl TryFrom<pb::ListAppointmentHistoryRequest> for AppointmentRef {
    type Error = Error;
    fn try_from(req: pb::ListAppointmentHistoryRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let r = Self::parse(&req.organization_id, &req.appointment_id, &mut v);
        finish(v, r)
    }
}

/// A state change, validated (a reason where the action needs one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Which appointment.
    pub target: AppointmentRef,
    /// What to do.
    pub action: Action,
    /// Why; non-empty for decline and cancel, empty otherwise.
    pub reason: String,
}

impl Transition {
    /// Validates the fields every transition request shares.
    pub fn parse(
        organization_id: &str,
        appointment_id: &str,
        action: Action,
        reason: String,
    ) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = AppointmentRef::parse(organization_id, appointment_id, &mut v);
        if action.requires_reason() && reason.trim().is_empty() {
            v.add("reason", "required");
        } else if reason.chars().count() > MAX_REASON_CHARS {
            v.add("reason", "at most 500 characters");
        }
        finish(v, Self { target, action, reason })
    }
}

macro_rules! transition_from {
    ($msg:ty, $action:expr, |$req:ident| $reason:expr) => {
        impl TryFrom<$msg> for Transition {
            type Error = Error;
            fn try_from($req: $msg) -> Result<Self, Error> {
                let reason = $reason;
                Self::parse(&$req.organization_id, &$req.appointment_id, $action, reason)
            }
        }
    };
}

transition_from!(pb::ApproveAppointmentRequest, Action::Approve, |req| String::new());
transition_from!(pb::DeclineAppointmentRequest, Action::Decline, |req| req.reason.clone());
transition_from!(pb::CompleteAppointmentRequest, Action::Complete, |req| String::new());
transition_from!(pb::CancelAppointmentRequest, Action::Cancel, |req| req.reason.clone());

/// `ListAppointments`, validated. The caller's scope is added by the repository, not here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListAppointments {
    /// The clinic.
    pub organization_id: Uuid,
    /// Only this doctor's.
    pub doctor: Option<MemberRef>,
    /// Only this patient's.
    pub patient: Option<MemberRef>,
    /// Only these states (empty: all).
    pub statuses: Vec<AppointmentStatus>,
    /// Starting at or after.
    pub start_from: Option<DateTime<Utc>>,
    /// Starting before.
    pub start_to: Option<DateTime<Utc>>,
    /// Rows per page, 1 to `MAX_PAGE_SIZE`.
    pub page_size: i64,
    /// Continue after this row.
    pub after: Option<PageToken>,
}

impl TryFrom<pb::ListAppointmentsRequest> for ListAppointments {
    type Error = Error;
    fn try_from(req: pb::ListAppointmentsRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = v.uuid("organization_id", &req.organization_id);
        let doctor = member(&mut v, "doctor_id", &req.doctor_id, false);
        let patient = member(&mut v, "patient_id", &req.patient_id, false);
        let mut statuses = Vec::new();
        for raw in &req.statuses {
            match pb::AppointmentStatus::try_from(*raw).ok().and_then(status_from_pb) {
                Some(s) if !statuses.contains(&s) => statuses.push(s),
                Some(_) => {}
                None => v.add("statuses", "each must be a known, specified status"),
            }
        }
        let start_from = v.time("start_time_from", req.start_time_from.as_ref());
        let start_to = v.time("start_time_to", req.start_time_to.as_ref());
        let page = Page::parse(LIST_KIND, req.page_size, &req.page_token, MAX_PAGE_SIZE, &mut v);
        finish(
            v,
            Self {
                organization_id,
                doctor,
                patient,
                statuses,
                start_from,
                start_to,
                page_size: page.size,
                after: page.after,
            },
        )
    }
}

/// The domain status of a proto status; `None` for UNSPECIFIED.
pub fn status_from_pb(status: pb::AppointmentStatus) -> Option<AppointmentStatus> {
    use AppointmentStatus::*;
    match status {
        pb::AppointmentStatus::Unspecified => None,
        pb::AppointmentStatus::Pending => Some(Pending),
        pb::AppointmentStatus::Approved => Some(Approved),
        pb::AppointmentStatus::Declined => Some(Declined),
        pb::AppointmentStatus::Completed => Some(Completed),
        pb::AppointmentStatus::Cancelled => Some(Cancelled),
    }
}
