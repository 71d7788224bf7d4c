//! The `ScheduleService` handlers: parse, acquire the tenant connection and the caller's
//! membership, check the role, run, convert back. Spans carry the organization id only.

use chrono::{DateTime, Duration, Utc};
use clinic_api::clinic::v1::{self as pb, schedule_service_server::ScheduleService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{
    repository::{self, Calendar, TimeOff},
    requests::{
        CreateTimeOff, DeleteTimeOff, DoctorRef, FindSlots, ListTimeOff, TIME_OFF_KIND,
        UpdateSchedule,
    },
    slots::{self, Blocked, Search},
    week::{Schedule, format_hhmm},
};
use crate::{
    audit::{self, Action, Audit, Kind, Trail},
    auth::Claims,
    error::Error,
    grpc::timestamp,
    roles::Role,
    tenancy::{Caller, Db, TenantAccess, TenantConnection},
};

/// Longest visit plus longest buffer: booked ranges that far after a search's end still matter.
const LOOK_AHEAD: Duration = Duration::hours(12);

const SCHEDULE: &str = "schedule";
const TIME_OFF: &str = "time_off";
const GET: Action = Action::new("clinic.v1.ScheduleService/GetSchedule", SCHEDULE, Kind::Other);
const UPDATE: Action =
    Action::new("clinic.v1.ScheduleService/UpdateSchedule", SCHEDULE, Kind::Write);
const DELETE: Action =
    Action::new("clinic.v1.ScheduleService/DeleteSchedule", SCHEDULE, Kind::Write);
const CREATE_OFF: Action =
    Action::new("clinic.v1.ScheduleService/CreateTimeOff", TIME_OFF, Kind::Write);
const LIST_OFF: Action =
    Action::new("clinic.v1.ScheduleService/ListTimeOff", TIME_OFF, Kind::Other);
const DELETE_OFF: Action =
    Action::new("clinic.v1.ScheduleService/DeleteTimeOff", TIME_OFF, Kind::Write);
const SLOTS: Action =
    Action::new("clinic.v1.ScheduleService/FindAvailableSlots", SCHEDULE, Kind::Other);

/// Serves `clinic.v1.ScheduleService`.
pub struct ScheduleHandler {
    access: TenantAccess,
    audit: Audit,
}

impl ScheduleHandler {
    /// Handlers over `access`, auditing through `audit`.
    pub fn new(access: TenantAccess, audit: Audit) -> Self {
        Self { access, audit }
    }

    /// The tenant connection, the caller and the doctor's member id (`me` resolved); the
    /// caller enters `trail`, which is about the doctor's schedule.
    async fn enter(
        &self,
        claims: &Claims,
        target: &DoctorRef,
        trail: &mut Trail,
    ) -> Result<(TenantConnection, Caller, Uuid), Error> {
        let (conn, caller) = self.access.acquire(claims, target.organization_id).await?;
        trail.enter(target.organization_id, &caller);
        let doctor_id = target.doctor.resolve(caller.member_id);
        trail.resource(doctor_id);
        Ok((conn, caller, doctor_id))
    }
}

fn no_doctor() -> Error {
    Error::NotFound("doctor_id: no such doctor in this clinic".into())
}

/// The doctor themself or an admin may change a doctor's schedule and time off.
fn may_manage(caller: &Caller, doctor_id: Uuid) -> Result<(), Error> {
    match caller.role {
        Role::Admin => Ok(()),
        Role::Doctor if caller.member_id == doctor_id => Ok(()),
        _ => Err(Error::PermissionDenied(
            "only the doctor themself or an admin may change a schedule or time off".into(),
        )),
    }
}

/// Checks that `doctor_id` is an active doctor and keeps it so (FOR SHARE) until the
/// transaction ends.
async fn require_doctor(client: &impl Db, doctor_id: Uuid) -> Result<(), Error> {
    doctor_check(client, doctor_id, DOCTOR_LOCKED).await
}

const DOCTOR: &str = "SELECT 1 FROM organization_user WHERE id = $1 AND status = 'active' \
                      AND role = 'doctor'";
const DOCTOR_LOCKED: &str = "SELECT 1 FROM organization_user WHERE id = $1 \
                             AND status = 'active' AND role = 'doctor' FOR SHARE";

async fn doctor_check(client: &impl Db, doctor_id: Uuid, sql: &str) -> Result<(), Error> {
    let row = client
        .query_opt(sql, &[&doctor_id])
        .await
        .map_err(|e| Error::tenant_db("check doctor", &e))?;
    row.map(|_| ()).ok_or_else(no_doctor)
}

fn schedule_to_proto(
    doctor_id: Uuid,
    schedule: &Schedule,
    zone: &str,
    updated: DateTime<Utc>,
) -> pb::Schedule {
    pb::Schedule {
        doctor_id: doctor_id.to_string(),
        weekly_hours: schedule
            .hours
            .intervals()
            .iter()
            .map(|w| pb::WorkingInterval {
                weekday: i32::from(w.weekday),
                start_time: format_hhmm(w.start_minute),
                end_time: format_hhmm(w.end_minute),
            })
            .collect(),
        slot_step_minutes: schedule.step_minutes,
        buffer_minutes: schedule.buffer_minutes,
        time_zone: zone.to_owned(),
        update_time: Some(timestamp(updated)),
    }
}

fn calendar_schedule(doctor_id: Uuid, calendar: &Calendar) -> Option<pb::Schedule> {
    let (schedule, updated) = calendar.schedule.as_ref()?;
    Some(schedule_to_proto(doctor_id, schedule, calendar.settings.zone.name(), *updated))
}

fn time_off_to_proto(t: &TimeOff) -> pb::TimeOff {
    pb::TimeOff {
        id: t.id.to_string(),
        doctor_id: t.doctor_id.to_string(),
        start_time: Some(timestamp(t.start)),
        end_time: Some(timestamp(t.end)),
        reason: t.reason.clone(),
        created_by_member_id: t.created_by.map(|id| id.to_string()).unwrap_or_default(),
        create_time: Some(timestamp(t.created_at)),
    }
}

fn parse<T, V>(request: &mut Request<T>) -> Result<V, Status>
where
    T: Default,
    V: TryFrom<T, Error = Error>,
{
    Ok(V::try_from(std::mem::take(request.get_mut()))?)
}

#[tonic::async_trait]
impl ScheduleService for ScheduleHandler {
    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn get_schedule(
        &self,
        mut request: Request<pb::GetScheduleRequest>,
    ) -> Result<Response<pb::GetScheduleResponse>, Status> {
        let target: DoctorRef = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, GET);
        let result = async {
            let (conn, _, doctor_id) = self.enter(&claims, &target, &mut trail).await?;
            let now = Utc::now();
            let calendar = repository::load(&conn, doctor_id, now, now).await?;
            if !calendar.is_doctor {
                return Err(no_doctor());
            }
            Ok(calendar_schedule(doctor_id, &calendar))
        }
        .await;
        let schedule = self.audit.close(trail, result)?;
        Ok(Response::new(pb::GetScheduleResponse { schedule }))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn update_schedule(
        &self,
        mut request: Request<pb::UpdateScheduleRequest>,
    ) -> Result<Response<pb::UpdateScheduleResponse>, Status> {
        let req: UpdateSchedule = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, UPDATE);
        let result = async {
            let (mut conn, caller, doctor_id) =
                self.enter(&claims, &req.target, &mut trail).await?;
            may_manage(&caller, doctor_id)?;
            let tx = conn.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
            require_doctor(&tx, doctor_id).await?;
            let updated = repository::replace_schedule(&tx, doctor_id, &req.schedule).await?;
            let settings = repository::settings(&tx).await?;
            audit::store::record(&tx, &mut trail).await?;
            tx.commit().await.map_err(|e| Error::tenant_db("commit schedule", &e))?;
            Ok((doctor_id, settings, updated))
        }
        .await;
        let (doctor_id, settings, updated) = self.audit.close(trail, result)?;
        let schedule = schedule_to_proto(doctor_id, &req.schedule, settings.zone.name(), updated);
        Ok(Response::new(pb::UpdateScheduleResponse { schedule: Some(schedule) }))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn delete_schedule(
        &self,
        mut request: Request<pb::DeleteScheduleRequest>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let target: DoctorRef = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, DELETE);
        let result = async {
            let (mut conn, caller, doctor_id) = self.enter(&claims, &target, &mut trail).await?;
            may_manage(&caller, doctor_id)?;
            let tx = conn.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
            require_doctor(&tx, doctor_id).await?;
            let deleted = repository::delete_schedule(&tx, doctor_id).await?;
            audit::store::record(&tx, &mut trail).await?;
            tx.commit().await.map_err(|e| Error::tenant_db("commit schedule", &e))?;
            Ok(deleted)
        }
        .await;
        let deleted = self.audit.close(trail, result)?;
        Ok(Response::new(pb::DeleteScheduleResponse { deleted }))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn create_time_off(
        &self,
        mut request: Request<pb::CreateTimeOffRequest>,
    ) -> Result<Response<pb::CreateTimeOffResponse>, Status> {
        let req: CreateTimeOff = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, CREATE_OFF);
        let result = async {
            let (mut conn, caller, doctor_id) =
                self.enter(&claims, &req.target, &mut trail).await?;
            may_manage(&caller, doctor_id)?;
            let tx = conn.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
            require_doctor(&tx, doctor_id).await?;
            let range = (req.start, req.end);
            let time_off =
                repository::insert_time_off(&tx, doctor_id, range, &req.reason, caller.member_id)
                    .await?;
            trail.resource(time_off.id);
            audit::store::record(&tx, &mut trail).await?;
            tx.commit().await.map_err(|e| Error::tenant_db("commit time off", &e))?;
            Ok(time_off)
        }
        .await;
        let time_off = self.audit.close(trail, result)?;
        Ok(Response::new(pb::CreateTimeOffResponse {
            time_off: Some(time_off_to_proto(&time_off)),
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn list_time_off(
        &self,
        mut request: Request<pb::ListTimeOffRequest>,
    ) -> Result<Response<pb::ListTimeOffResponse>, Status> {
        let req: ListTimeOff = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, LIST_OFF);
        let result = async {
            let (conn, _, doctor_id) = self.enter(&claims, &req.target, &mut trail).await?;
            doctor_check(&conn, doctor_id, DOCTOR).await?;
            repository::list_time_off(&conn, doctor_id, req.after, req.page_size + 1).await
        }
        .await;
        let mut rows = self.audit.close(trail, result)?;
        let more = rows.len() as i64 > req.page_size;
        rows.truncate(usize::try_from(req.page_size).unwrap_or(0));
        let next_page_token = match rows.last() {
            Some(last) if more => {
                clinic_shared::paging::next_page_token(TIME_OFF_KIND, Some(&(last.start, last.id)))
            }
            _ => String::new(),
        };
        Ok(Response::new(pb::ListTimeOffResponse {
            time_off: rows.iter().map(time_off_to_proto).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn delete_time_off(
        &self,
        mut request: Request<pb::DeleteTimeOffRequest>,
    ) -> Result<Response<pb::DeleteTimeOffResponse>, Status> {
        let req: DeleteTimeOff = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, DELETE_OFF);
        let result = async {
            let (mut conn, caller, doctor_id) =
                self.enter(&claims, &req.target, &mut trail).await?;
            trail.resource(req.time_off_id);
            may_manage(&caller, doctor_id)?;
            let tx = conn.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
            if !repository::delete_time_off(&tx, doctor_id, req.time_off_id).await? {
                return Err(Error::NotFound("time_off_id: no such time off of this doctor".into()));
            }
            audit::store::record(&tx, &mut trail).await?;
            tx.commit().await.map_err(|e| Error::tenant_db("commit time off", &e))
        }
        .await;
        self.audit.close(trail, result)?;
        Ok(Response::new(pb::DeleteTimeOffResponse {}))
    }

    #[tracing::instrument(skip_all, fields(organization_id))]
    async fn find_available_slots(
        &self,
        mut request: Request<pb::FindAvailableSlotsRequest>,
    ) -> Result<Response<pb::FindAvailableSlotsResponse>, Status> {
        let now = Utc::now();
        let req: FindSlots = parse(&mut request)?;
        let claims = Claims::from_request(&request)?;
        let mut trail = Trail::start(&request, SLOTS);
        let result = async {
            let (conn, _, doctor_id) = self.enter(&claims, &req.target, &mut trail).await?;
            let calendar =
                repository::load(&conn, doctor_id, req.from, req.to + LOOK_AHEAD).await?;
            if !calendar.is_doctor {
                return Err(no_doctor());
            }
            Ok(calendar)
        }
        .await;
        let calendar = self.audit.close(trail, result)?;
        let Some((schedule, _)) = &calendar.schedule else {
            return Err(Error::FailedPrecondition(
                "the doctor has no schedule: any future time is bookable".into(),
            )
            .into());
        };
        let search =
            Search { from: req.from, to: req.to, duration_minutes: req.duration_minutes, now };
        let starts = slots::find(
            &calendar.settings,
            schedule,
            &Blocked::new(calendar.time_off),
            &Blocked::new(calendar.booked),
            &search,
        );
        let length = Duration::minutes(req.duration_minutes.into());
        Ok(Response::new(pb::FindAvailableSlotsResponse {
            slots: starts
                .into_iter()
                .map(|t| pb::AvailableSlot {
                    start_time: Some(timestamp(t)),
                    end_time: Some(timestamp(t + length)),
                })
                .collect(),
            time_zone: calendar.settings.zone.name().to_owned(),
        }))
    }
}
