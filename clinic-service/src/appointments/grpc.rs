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
    auth::Claims,
    feed::{Feed, WatchStream},
    grpc::timestamp,
    tenancy::{TenantAccess, TenantConnection},
};

/// Serves `clinic.v1.AppointmentService`.
pub struct AppointmentHandler {
    access: TenantAccess,
    /// Told of every change committed here; serves WatchAppointments.
    feed: Feed,
}

impl AppointmentHandler {
    /// Handlers over `access`, telling `feed` of changes.
    pub fn new(access: TenantAccess, feed: Feed) -> Self {
        Self { access, feed }
    }

    /// The tenant connection and the caller, for a request already validated.
    async fn enter<T>(
        &self,
        request: &Request<T>,
        organization_id: Uuid,
    ) -> Result<(TenantConnection, Actor), Status> {
        let claims = Claims::from_request(request)?;
        Span::current().record("organization_id", display(organization_id));
        let (conn, caller) = self.access.acquire(&claims, organization_id).await?;
        Ok((conn, caller.into()))
    }

    /// An appointment the caller may see, with its history: the caller's membership and the
    /// rows in one statement (see `repository::GET_FOR_CALLER`).
    async fn read<T>(
        &self,
        request: &Request<T>,
        target: &AppointmentRef,
    ) -> Result<(Appointment, Vec<StatusChange>), Status> {
        let claims = Claims::from_request(request)?;
        Span::current().record("organization_id", display(target.organization_id));
        let (_conn, caller, rows) = self
            .access
            .acquire_with(
                &claims,
                target.organization_id,
                &repository::GET_FOR_CALLER,
                &[&target.appointment_id],
            )
            .await?;
        let found = repository::appointment_with_history(&rows, repository::AFTER_CALLER)
            .map_err(status)?;
        service::visible(&caller.into(), found).map_err(status)
    }

    async fn transition<T>(&self, request: Request<T>) -> Result<pb::Appointment, Status>
    where
        T: Default,
        Transition: TryFrom<T, Error = Error>,
    {
        let (request, req) = parse(request, Transition::try_from)?;
        Span::current().record("appointment_id", display(req.target.appointment_id));
        let (mut conn, actor) = self.enter(&request, req.target.organization_id).await?;
        let appointment = service::transition(&mut conn, &actor, &req).await.map_err(status)?;
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
        let (mut conn, actor) = self.enter(&request, req.organization_id).await?;
        let appointment = service::create(&mut conn, &actor, &req).await.map_err(status)?;
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
        let (request, req) = parse(request, AppointmentRef::try_from)?;
        Span::current().record("appointment_id", display(req.appointment_id));
        let (appointment, history) = self.read(&request, &req).await?;
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
        let q = listing::list_for_caller_query(&req);
        let (_conn, _, rows) =
            self.access.acquire_with(&claims, req.organization_id, &q.sql, &q.param_refs()).await?;
        let (page, next) = listing::page_for_caller(&rows, &req).map_err(status)?;
        let watch_token = match (req.after, listing::watch_position_of(&rows).map_err(status)?) {
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
        let (request, req) = parse(request, AppointmentRef::try_from)?;
        Span::current().record("appointment_id", display(req.appointment_id));
        let (_, history) = self.read(&request, &req).await?;
        Ok(Response::new(pb::ListAppointmentHistoryResponse {
            changes: history.iter().map(change_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn approve_appointment(
        &self,
        request: Request<pb::ApproveAppointmentRequest>,
    ) -> Result<Response<pb::ApproveAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request).await?);
        Ok(Response::new(pb::ApproveAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn decline_appointment(
        &self,
        request: Request<pb::DeclineAppointmentRequest>,
    ) -> Result<Response<pb::DeclineAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request).await?);
        Ok(Response::new(pb::DeclineAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn complete_appointment(
        &self,
        request: Request<pb::CompleteAppointmentRequest>,
    ) -> Result<Response<pb::CompleteAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request).await?);
        Ok(Response::new(pb::CompleteAppointmentResponse { appointment }))
    }

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn cancel_appointment(
        &self,
        request: Request<pb::CancelAppointmentRequest>,
    ) -> Result<Response<pb::CancelAppointmentResponse>, Status> {
        let appointment = Some(self.transition(request).await?);
        Ok(Response::new(pb::CancelAppointmentResponse { appointment }))
    }

    type WatchAppointmentsStream = WatchStream;

    #[tracing::instrument(skip_all, fields(organization_id, appointment_id))]
    async fn watch_appointments(
        &self,
        request: Request<pb::WatchAppointmentsRequest>,
    ) -> Result<Response<Self::WatchAppointmentsStream>, Status> {
        self.feed.watch(request).await
    }
}
