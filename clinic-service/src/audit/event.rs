//! One audit event, and the [`Trail`] a call builds it on as it learns who the caller is and
//! what they touched.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use crate::{roles::Role, tenancy::Caller};

/// The most patients one event names (a page of any list is far smaller).
pub const MAX_PATIENTS: usize = 1000;

/// What a call does with data, which decides how it is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Changes the tenant: recorded in the write's own transaction when it succeeds.
    Write,
    /// Reads patient data: recorded (buffered) when it names patients.
    Read,
    /// Neither (schedules, time off, slots): only its refusals are recorded.
    Other,
}

/// An audited RPC: its full name, the kind of resource it is about, and its [`Kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// `clinic.v1.MemberService/GetMember`.
    pub rpc: &'static str,
    /// `member`, `appointment`, `schedule`, `time_off`, `organization`, `audit_event`.
    pub resource_type: &'static str,
    /// How it is audited.
    pub kind: Kind,
}

impl Action {
    /// An action of `service` (`MemberService`) and `method`.
    pub const fn new(rpc: &'static str, resource_type: &'static str, kind: Kind) -> Self {
        Self { rpc, resource_type, kind }
    }
}

/// One row of `audit_event` before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The tenant it belongs to (not stored: the database is the tenant's).
    pub organization_id: Uuid,
    /// When the call was answered.
    pub occurred_at: DateTime<Utc>,
    /// The caller's central user id.
    pub user_id: Uuid,
    /// The caller's member id in the clinic.
    pub member_id: Uuid,
    /// The caller's role.
    pub role: Role,
    /// The RPC.
    pub action: &'static str,
    /// The kind of resource.
    pub resource_type: &'static str,
    /// The resource, when one is named.
    pub resource_id: Option<Uuid>,
    /// The patients concerned (member ids), at most [`MAX_PATIENTS`].
    pub patients: Vec<Uuid>,
    /// The gRPC status code answered.
    pub outcome: Code,
    /// The caller's `x-request-id`, when it sent a valid one.
    pub request_id: Option<String>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
}

/// What one call has learned so far for its audit event.
#[derive(Debug, Clone)]
pub struct Trail {
    action: Action,
    organization_id: Option<Uuid>,
    caller: Option<Caller>,
    resource_id: Option<Uuid>,
    patients: Vec<Uuid>,
    request_id: Option<String>,
    peer: Option<SocketAddr>,
    recorded: bool,
    unnamed: bool,
}

impl Trail {
    /// The trail of `request`, a call of `action`: its request id and peer.
    pub fn start<T>(request: &tonic::Request<T>, action: Action) -> Self {
        let request_id = request
            .metadata()
            .get(clinic_shared::server::REQUEST_ID_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            .map(str::to_owned);
        Self {
            action,
            organization_id: None,
            caller: None,
            resource_id: None,
            patients: Vec::new(),
            request_id,
            peer: request.remote_addr(),
            recorded: false,
            unnamed: false,
        }
    }

    /// The action.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The caller is `caller` in `organization_id`: from here on, the call is written into
    /// that tenant's trail.
    pub fn enter(&mut self, organization_id: Uuid, caller: &Caller) {
        self.organization_id = Some(organization_id);
        self.caller = Some(*caller);
    }

    /// The call names clinic `organization_id` (the caller is not known there yet).
    pub fn tenant(&mut self, organization_id: Uuid) {
        self.organization_id = Some(organization_id);
    }

    /// The caller is `caller` in the clinic named by [`Self::tenant`].
    pub fn caller(&mut self, caller: &Caller) {
        self.caller = Some(*caller);
    }

    /// The tenant the call is in, once the caller was found a member there.
    pub fn organization_id(&self) -> Option<Uuid> {
        self.caller.and(self.organization_id)
    }

    /// The call is about resource `id`.
    pub fn resource(&mut self, id: Uuid) {
        self.resource_id = Some(id);
    }

    /// The call concerns patient `id` (ignored beyond [`MAX_PATIENTS`] or when named already).
    pub fn patient(&mut self, id: Uuid) {
        if self.patients.len() < MAX_PATIENTS && !self.patients.contains(&id) {
            self.patients.push(id);
        }
    }

    /// The call reads patient data it cannot name patient by patient (a watch stream opened
    /// by an admin or a doctor: whoever changes next).
    pub fn reads_unnamed_patients(&mut self) {
        self.unnamed = true;
    }

    /// Whether the call read patient data (named, or not).
    pub fn reads_patients(&self) -> bool {
        self.unnamed || !self.patients.is_empty()
    }

    /// The event answered with `outcome` at `now`; `None` while the caller is not known as a
    /// member of a tenant.
    pub fn event(&self, outcome: Code, now: DateTime<Utc>) -> Option<Event> {
        let (organization_id, caller) = (self.organization_id?, self.caller?);
        Some(Event {
            organization_id,
            occurred_at: now,
            user_id: caller.user_id,
            member_id: caller.member_id,
            role: caller.role,
            action: self.action.rpc,
            resource_type: self.action.resource_type,
            resource_id: self.resource_id,
            patients: self.patients.clone(),
            outcome,
            request_id: self.request_id.clone(),
            peer: self.peer,
        })
    }

    /// Marks the event written in the call's transaction.
    pub(super) fn mark_recorded(&mut self) {
        self.recorded = true;
    }

    /// Whether the event was written in the call's transaction.
    pub fn recorded(&self) -> bool {
        self.recorded
    }
}
