//! The `AppointmentService` handlers: parse, acquire the tenant connection and the caller's
//! membership, run the operation, convert back. Spans carry the organization and appointment
//! ids only, never notes, reasons or patient data.

use chrono::Utc;
use clinic_api::clinic::v1::{self as pb, appointment_service_server::AppointmentService};
use tonic::{Request, Response, Status};
use tracing::{Span, field::display};
use uuid::Uuid;

use super::{
    domain::{Actor, Appointment, AppointmentStatus, StatusChange},
    error::Error,
    listing, repository,
    requests::{AppointmentRef, CreateAppointment, ListAppointments, Transition},
    service,
};
use crate::{
    audit::{Action, Audit, Kind, Trail},
    auth::Claims,
    error::Error as ServiceError,
    feed::{Feed, WatchStream},
    grpc::{parse_uuid, timestamp},
    tenancy::{TenantAccess, TenantConnection},
};

/// The audited actions of `clinic.v1.AppointmentService`.
const fn action(rpc: &'static str, kind: Kind) -> Action {
    Action::new(rpc, "appointment", kind)
}
const CREATE: Action = action("clinic.v1.AppointmentService/CreateAppointment", Kind::Write);
const GET: Action = action("clinic.v1.AppointmentService/GetAppointment", Kind::Read);
const LIST: Action = action("clinic.v1.AppointmentService/ListAppointments", Kind::Read);
const HISTORY: Action = action("clinic.v1.AppointmentService/ListAppointmentHistory", Kind::Read);
const APPROVE: Action = action("clinic.v1.AppointmentService/ApproveAppointment", Kind::Write);
const DECLINE: Action = action("clinic.v1.AppointmentService/DeclineAppointment", Kind::Write);
const COMPLETE: Action = action("clinic.v1.AppointmentService/CompleteAppointment", Kind::Write);
const CANCEL: Action = action("clinic.v1.AppointmentService/CancelAppointment", Kind::Write);
const WATCH: Action = action("clinic.v1.AppointmentService/WatchAppointments", Kind::Read);

/// Serves `clinic.v1.AppointmentService`.
pub struct AppointmentHandler {
    access: TenantAccess,
    /// Told of every change committed here; serves WatchAppointments.
    feed: Feed,
    audit: Audit,
}

impl AppointmentHandler {
    /// Handlers over `access`, telling `feed` of changes, auditing through `audit`.
    pub fn new(access: TenantAccess, feed: Feed, audit: Audit) -> Self {
        Self { access, feed, audit }
    }

    /// The tenant connection and the caller, for a request already validated; the caller
    /// enters `trail`.
    async fn enter(
        &self,
        claims: &Claims,
        organization_id: Uuid,
        trail: &mut Trail,
    ) -> Result<(TenantConnection, Actor), ServiceError> {
        Span::current().record("organization_id", display(organization_id));
        let (conn, caller) = self.access.acquire(claims, organization_id).await?;
        trail.enter(organization_id, &caller);
        Ok((conn, caller.into()))
    }

    /// An appointment the caller may see, with its history: the caller's membership and the
    /// rows in one statement (see `repository::GET_FOR_CALLER`).
    async fn read(
        &self,
        claims: &Claims,
        target: &AppointmentRef,
        trail: &mut Trail,
    ) -> Result<(Appointment, Vec<StatusChange>), ServiceError> {
        Span::current().record("organization_id", display(target.organization_id));
        trail.resource(target.appointment_id);
        let (caller, rows) = self
            .access
            .read_with(
                claims,
                target.organization_id,
                &repository::GET_FOR_CALLER,
                &[&target.appointment_id],
            )
            .await?;
        trail.enter(target.organization_id, &caller);
        let found = repository::appointment_with_history(&rows, repository::AFTER_CALLER)?;
        let (appointment, history) = service::visible(&caller.into(), found)?;
        if let Some(patient) = appointment.parties.patient_id {
            trail.patient(patient);
        }
        Ok((appointment, history))
    }

    /// GetAppointment and ListAppointmentHistory: one appointment, audited as `action`.
    async fn read_call<T>(
        &self,
        request: Request<T>,
        action: Action,
    ) -> Result<(Appointment, Vec<StatusChange>), Status>
    where
        T: Default,
        AppointmentRef: TryFrom<T, Error = Error>,
    {
        let (request, req) = parse(request, AppointmentRef::try_from)?;
        Span::current().record("appointment_id", display(req.appointment_id));
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, action);
        let result = self.read(&claims, &req, &mut trail).await;
        self.audit.close(trail, result)
    }

    async fn transition<T>(
        &self,
        request: Request<T>,
        action: Action,
    ) -> Result<pb::Appointment, Status>
    where
        T: Default,
        Transition: TryFrom<T, Error = Error>,
    {
        let (request, req) = parse(request, Transition::try_from)?;
        Span::current().record("appointment_id", display(req.target.appointment_id));
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, action);
        let result = async {
            let (mut conn, actor) =
                self.enter(&claims, req.target.organization_id, &mut trail).await?;
            Ok((service::transition(&mut conn, &actor, &req, &mut trail).await?, conn))
        }
        .await;
        let (appointment, conn) = self.audit.close(trail, result)?;
        self.feed.committed(req.target.organization_id, conn);
        Ok(to_proto(&appointment))
    }
}

/// The service error's one mapping to `Status`.
fn status(e: Error) -> Status {
    crate::error::Error::from(e).into()
}

/// Splits off the message and validates it, keeping the request (metadata, extensions).
fn parse<T: Default, V>(
    mut request: Request<T>,
    f: impl FnOnce(T) -> Result<V, Error>,
) -> Result<(Request<T>, V), Status> {
    let message = std::mem::take(request.get_mut());
    let value = f(message).map_err(status)?;
    Ok((request, value))
}

fn status_to_proto(s: AppointmentStatus) -> pb::AppointmentStatus {
    match s {
        AppointmentStatus::Pending => pb::AppointmentStatus::Pending,
        AppointmentStatus::Approved => pb::AppointmentStatus::Approved,
        AppointmentStatus::Declined => pb::AppointmentStatus::Declined,
        AppointmentStatus::Completed => pb::AppointmentStatus::Completed,
        AppointmentStatus::Cancelled => pb::AppointmentStatus::Cancelled,
    }
}

fn id_or_empty(id: Option<Uuid>) -> String {
    id.map(|id| id.to_string()).unwrap_or_default()
}

/// The contract's view of an appointment.
pub fn to_proto(a: &Appointment) -> pb::Appointment {
    pb::Appointment {
        id: a.id.to_string(),
        patient_id: id_or_empty(a.parties.patient_id),
        doctor_id: id_or_empty(a.parties.doctor_id),
        start_time: Some(timestamp(a.start_time)),
        duration_minutes: a.duration_minutes,
        end_time: Some(timestamp(a.end_time)),
        status: status_to_proto(a.status) as i32,
        notes: a.notes.clone(),
        create_time: Some(timestamp(a.created_at)),
        update_time: Some(timestamp(a.updated_at)),
    }
}

/// The contract's view of a history entry.
pub fn change_to_proto(c: &StatusChange) -> pb::AppointmentStatusChange {
    pb::AppointmentStatusChange {
        from_status: c.from_status.map_or(pb::AppointmentStatus::Unspecified, status_to_proto)
            as i32,
        to_status: status_to_proto(c.to_status) as i32,
        changed_by_member_id: id_or_empty(c.changed_by),
        change_time: Some(timestamp(c.changed_at)),
        reason: c.reason.clone(),
        schedule_override: c.schedule_override,
    }
}

#[tonic::async_trait]
impl AppointmentService for AppointmentHandler {
    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn create_appointment(
        &self,
        request: Request<pb::CreateAppointmentRequest>,
    ) -> Result<Response<pb::CreateAppointmentResponse>, Status> {
        let now = Utc::now();
        let (request, req) = parse(request, |m| CreateAppointment::parse(m, now))?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, CREATE);
        let result = async {
            let (mut conn, actor) = self.enter(&claims, req.organization_id, &mut trail).await?;
            Ok((service::create(&mut conn, &actor, &req, &mut trail).await?, conn))
        }
        .await;
        let (appointment, conn) = self.audit.close(trail, result)?;
        self.feed.committed(req.organization_id, conn);
        Span::current().record("appointment_id", display(appointment.id));
        Ok(Response::new(pb::CreateAppointmentResponse {
            appointment: Some(to_proto(&appointment)),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn get_appointment(
        &self,
        request: Request<pb::GetAppointmentRequest>,
    ) -> Result<Response<pb::GetAppointmentResponse>, Status> {
        let (appointment, history) = self.read_call(request, GET).await?;
        Ok(Response::new(pb::GetAppointmentResponse {
            appointment: Some(to_proto(&appointment)),
            history: history.iter().map(change_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn list_appointments(
        &self,
        request: Request<pb::ListAppointmentsRequest>,
    ) -> Result<Response<pb::ListAppointmentsResponse>, Status> {
        let (request, req) = parse(request, ListAppointments::try_from)?;
        let claims = Claims::from_request(&request)?;
        Span::current().record("organization_id", display(req.organization_id));
        // The caller's membership, the page and the change log's head in one statement, so one
        // snapshot (see `listing`): watching from the first page's token continues exactly after
        // what the list shows.
        let mut trail = Trail::start(&request, LIST);
        let result = async {
            let q = listing::list_for_caller_query(&req);
            let (caller, rows) = self
                .access
                .read_with(&claims, req.organization_id, &q.sql, &q.param_refs())
                .await?;
            trail.enter(req.organization_id, &caller);
            let (page, next) = listing::page_for_caller(&rows, &req)?;
            for patient in page.iter().filter_map(|a| a.parties.patient_id) {
                trail.patient(patient);
            }
            Ok::<_, ServiceError>((page, next, listing::watch_position_of(&rows)?))
        }
        .await;
        let (page, next, position) = self.audit.close(trail, result)?;
        let watch_token = match (req.after, position) {
            (None, Some(position)) => crate::feed::token::encode(req.organization_id, position),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAppointmentsResponse {
            appointments: page.iter().map(to_proto).collect(),
            next_page_token: next.map(|t| t.encode()).unwrap_or_default(),
            watch_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn list_appointment_history(
        &self,
        request: Request<pb::ListAppointmentHistoryRequest>,
    ) -> Result<Response<pb::ListAppointmentHistoryResponse>, Status> {
        let (_, history) = self.read_call(request, HISTORY).await?;
        Ok(Response::new(pb::ListAppointmentHistoryResponse {
            changes: history.iter().map(change_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn approve_appointment(
        &self,
        request: Request<pb::ApproveAppointmentRequest>,
    ) -> Result<Response<pb::ApproveAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request, APPROVE).await?);
        Ok(Response::new(pb::ApproveAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn decline_appointment(
        &self,
        request: Request<pb::DeclineAppointmentRequest>,
    ) -> Result<Response<pb::DeclineAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request, DECLINE).await?);
        Ok(Response::new(pb::DeclineAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn complete_appointment(
        &self,
        request: Request<pb::CompleteAppointmentRequest>,
    ) -> Result<Response<pb::CompleteAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request, COMPLETE).await?);
        Ok(Response::new(pb::CompleteAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn cancel_appointment(
        &self,
        request: Request<pb::CancelAppointmentRequest>,
    ) -> Result<Response<pb::CancelAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request, CANCEL).await?);
        Ok(Response::new(pb::CancelAppointmentResponse { appointment }))
    }

    type WatchAppointmentsStream = WatchStream;

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn watch_appointments(
        &self,
        request: Request<pb::WatchAppointmentsRequest>,
    ) -> Result<Response<Self::WatchAppointmentsStream>, Status> {
        self.audit_watch(&request).await?;
        self.feed.watch(request).await
    }
}

impl AppointmentHandler {
    /// Audits opening a watch stream (the stream itself is the feed's): the caller's
    /// membership is looked up once more here, which a stream opened once can afford. A
    /// malformed request is left for the feed to refuse.
    async fn audit_watch(
        &self,
        request: &Request<pb::WatchAppointmentsRequest>,
    ) -> Result<(), Status> {
        let Ok(organization_id) = parse_uuid("organization_id", &request.get_ref().organization_id)
        else {
            return Ok(());
        };
        let claims = Claims::from_request(request)?;
        let mut trail = Trail::start(request, WATCH);
        let result = async {
            let (_conn, actor) = self.enter(&claims, organization_id, &mut trail).await?;
            if actor.role == super::domain::Role::Patient {
                trail.patient(actor.member_id);
            } else {
                trail.reads_unnamed_patients();
            }
            Ok(())
        }
        .await;
        self.audit.close(trail, result)
    }
}
