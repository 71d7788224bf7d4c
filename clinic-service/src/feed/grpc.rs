//! The gRPC edge of the feed: `WatchAppointmentsRequest` parsed, the stream started (the
//! caller's membership loaded and the resume point checked before anything is streamed, so
//! those errors are the call's status), changes and heartbeats converted to the contract, and
//! ListAppointments' `watch_token`.

use chrono::{DateTime, Utc};
use clinic_api::clinic::v1 as pb;
use clinic_shared::error::Violations;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    Feed,
    hub::BATCH,
    log::{self, Change, ReadError},
    token,
    watcher::Watcher,
};
use crate::{
    appointments::{
        domain::{Actor, StatusChange},
        grpc::change_to_proto,
    },
    auth::Claims,
    error::Error,
    grpc::timestamp,
};

/// The stream a WatchAppointments call returns.
pub type WatchStream = ReceiverStream<Result<pb::WatchAppointmentsResponse, Status>>;

/// Messages a stream may have queued for a slow client before its task waits.
const QUEUE: usize = 64;

/// A validated WatchAppointments request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchRequest {
    /// The clinic.
    pub organization_id: Uuid,
    /// Continue after this position; `None`: from now.
    pub after: Option<i64>,
}

impl TryFrom<pb::WatchAppointmentsRequest> for WatchRequest {
    type Error = Error;

    fn try_from(req: pb::WatchAppointmentsRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let organization_id = v.uuid("organization_id", &req.organization_id);
        let mut after = None;
        // A token is checked against a valid clinic only.
        if v.is_empty() && !req.resume_token.is_empty() {
            match token::decode(&req.resume_token, organization_id) {
                Ok(position) => after = Some(position),
                Err(refused) => v.add("resume_token", refused.description()),
            }
        }
        v.finish(Self { organization_id, after }).map_err(Error::InvalidArgument)
    }
}

/// The answer for a resume point older than the history kept.
pub fn out_of_range() -> Status {
    Status::out_of_range(
        "resume_token is older than the appointment changes kept: list the appointments again \
         and watch from the watch_token the list returns",
    )
}

impl Feed {
    /// Starts a WatchAppointments stream (see the contract).
    pub async fn watch(
        &self,
        request: Request<pb::WatchAppointmentsRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        if self.is_stopping() {
            return Err(Status::unavailable("server shutting down"));
        }
        let claims = Claims::from_request(&request)?;
        let headers = request.metadata().clone().into_headers();
        let req = WatchRequest::try_from(request.into_inner())?;
        let (conn, caller) = self.access().acquire(&claims, req.organization_id).await?;
        let location = self.access().organization(req.organization_id).await?.location;
        // Subscribed before the log is read: nothing committed after that read can be missed.
        let (hub, rx) = self.subscribe(&location);
        let position = match req.after {
            Some(position) => position,
            None => log::head(&*conn).await?,
        };
        hub.seed(position).await;
        // The first stretch of the catch-up on the same connection (and the range checked).
        let first = match log::read_after(&*conn, position, BATCH).await {
            Ok(changes) => changes,
            Err(ReadError::OutOfRange { .. }) => return Err(out_of_range()),
            Err(ReadError::Failed(e)) => return Err(e.into()),
        };
        drop(conn);
        let watcher = Watcher {
            feed: self.clone(),
            location,
            rx,
            membership: hub.watching(caller.member_id),
            actor: Actor::from(caller),
            claims,
            headers,
            position,
        };
        let (tx, stream) = tokio::sync::mpsc::channel(QUEUE);
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(watcher.run(tx, first), span));
        Ok(Response::new(ReceiverStream::new(stream)))
    }
}

/// A change as the contract shows it.
pub fn change_message(organization_id: Uuid, c: &Change) -> pb::WatchAppointmentsResponse {
    let history = change_to_proto(&StatusChange {
        from_status: c.from_status,
        to_status: c.to_status,
        changed_by: c.changed_by,
        changed_at: c.changed_at,
        reason: String::new(),
        // Not in the change log: ListAppointmentHistory shows it.
        schedule_override: false,
    });
    let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    pb::WatchAppointmentsResponse {
        change: Some(pb::AppointmentChange {
            appointment_id: c.appointment_id.to_string(),
            patient_id: id(c.parties.patient_id),
            doctor_id: id(c.parties.doctor_id),
            from_status: history.from_status,
            to_status: history.to_status,
            changed_by_member_id: history.changed_by_member_id,
            change_time: history.change_time,
            commit_time: Some(timestamp(c.logged_at)),
            start_time: Some(timestamp(c.start_time)),
            end_time: Some(timestamp(c.end_time)),
        }),
        resume_token: token::encode(organization_id, c.position),
        heartbeat: false,
        send_time: Some(timestamp(Utc::now())),
    }
}

/// A heartbeat at `now`, carrying the stream's resume point.
pub fn heartbeat(
    organization_id: Uuid,
    position: i64,
    now: DateTime<Utc>,
) -> pb::WatchAppointmentsResponse {
    pb::WatchAppointmentsResponse {
        change: None,
        resume_token: token::encode(organization_id, position),
        heartbeat: true,
        send_time: Some(timestamp(now)),
    }
}
