//! Appointment states, the transition table and who may trigger each transition. Pure: no I/O,
//! so the whole matrix is tested without a database.

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use crate::roles::Role;

/// The state of an appointment; the names are the `appointment_status` SQL enum's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppointmentStatus {
    /// Requested, waiting for the doctor or an admin.
    Pending,
    /// Confirmed.
    Approved,
    /// Refused (final).
    Declined,
    /// The visit took place (final).
    Completed,
    /// Called off (final).
    Cancelled,
}

impl AppointmentStatus {
    /// Every state, in declaration order.
    pub const ALL: [Self; 5] =
        [Self::Pending, Self::Approved, Self::Declined, Self::Completed, Self::Cancelled];

    /// The SQL enum label.
    pub fn as_sql(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Approved => "APPROVED",
            Self::Declined => "DECLINED",
            Self::Completed => "COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// Parses an SQL enum label.
    pub fn from_sql(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_sql() == label)
    }

    /// Whether the appointment holds its slot (the exclusion constraints' predicate).
    pub fn holds_slot(self) -> bool {
        matches!(self, Self::Pending | Self::Approved)
    }
}

/// A state change a member asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// PENDING -> APPROVED.
    Approve,
    /// PENDING -> DECLINED, with a reason.
    Decline,
    /// APPROVED -> COMPLETED.
    Complete,
    /// PENDING | APPROVED -> CANCELLED, with a reason.
    Cancel,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 4] = [Self::Approve, Self::Decline, Self::Complete, Self::Cancel];

    /// The state the action leads to.
    pub fn target(self) -> AppointmentStatus {
        match self {
            Self::Approve => AppointmentStatus::Approved,
            Self::Decline => AppointmentStatus::Declined,
            Self::Complete => AppointmentStatus::Completed,
            Self::Cancel => AppointmentStatus::Cancelled,
        }
    }

    /// The states the action may start from.
    pub fn allowed_from(self) -> &'static [AppointmentStatus] {
        use AppointmentStatus::*;
        match self {
            Self::Approve | Self::Decline => &[Pending],
            Self::Complete => &[Approved],
            Self::Cancel => &[Pending, Approved],
        }
    }

    /// Whether the caller must say why.
    pub fn requires_reason(self) -> bool {
        matches!(self, Self::Decline | Self::Cancel)
    }

    /// Lower-case verb for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
        }
    }

    /// Whether `actor` may take this action on an appointment between `parties`.
    pub fn permitted(self, actor: &Actor, parties: &Parties) -> bool {
        match actor.role {
            Role::Admin => true,
            Role::Doctor => parties.doctor_id == Some(actor.member_id),
            Role::Patient => self == Self::Cancel && parties.patient_id == Some(actor.member_id),
        }
    }
}

/// The action that moves `from` to `to`, if the transition table allows it.
pub fn transition(from: AppointmentStatus, to: AppointmentStatus) -> Option<Action> {
    Action::ALL.into_iter().find(|a| a.target() == to && a.allowed_from().contains(&from))
}

/// The member making a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// Their `organization_user.id`.
    pub member_id: Uuid,
    /// Their role.
    pub role: Role,
}

impl From<crate::tenancy::Caller> for Actor {
    fn from(caller: crate::tenancy::Caller) -> Self {
        Self { member_id: caller.member_id, role: caller.role }
    }
}

/// The two members an appointment is between (NULL once removed from the clinic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parties {
    /// The patient member.
    pub patient_id: Option<Uuid>,
    /// The doctor member.
    pub doctor_id: Option<Uuid>,
}

impl Parties {
    /// Whether `actor` may see the appointment at all (the same scope lists apply in SQL).
    pub fn visible_to(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Admin => true,
            Role::Doctor => self.doctor_id == Some(actor.member_id),
            Role::Patient => self.patient_id == Some(actor.member_id),
        }
    }
}

/// Whether `actor` may book an appointment for `patient_id`: a patient for themself, an admin
/// for anyone, a doctor never.
pub fn may_book(actor: &Actor, patient_id: Uuid) -> bool {
    match actor.role {
        Role::Admin => true,
        Role::Patient => actor.member_id == patient_id,
        Role::Doctor => false,
    }
}

/// One appointment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appointment {
    /// Identifier.
    pub id: Uuid,
    /// Who it is between.
    pub parties: Parties,
    /// Start of the visit.
    pub start_time: DateTime<Utc>,
    /// Length in minutes.
    pub duration_minutes: i32,
    /// End of the visit (exclusive).
    pub end_time: DateTime<Utc>,
    /// Current state.
    pub status: AppointmentStatus,
    /// Free-text notes (patient data: never logged).
    pub notes: String,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One entry of an appointment's status history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The state before; `None` for the booking.
    pub from_status: Option<AppointmentStatus>,
    /// The state after.
    pub to_status: AppointmentStatus,
    /// Who made the change; `None` once they have been removed.
    pub changed_by: Option<Uuid>,
    /// When.
    pub changed_at: DateTime<Utc>,
    /// Why (decline and cancel); empty otherwise.
    pub reason: String,
    /// An admin booked outside the doctor's schedule on purpose (the booking's entry only).
    pub schedule_override: bool,
}
