//! The appointment operations on one tenant connection: the rules of `domain` applied inside
//! transactions, so checks and writes see the same rows.

use uuid::Uuid;

use crate::{
    audit::{self, Trail},
    schedules::booking,
    tenancy::{Db, TenantClient},
};

use super::{
    domain::{Actor, Appointment, AppointmentStatus, Role, StatusChange, may_book},
    error::{Error, Party},
    listing,
    page_token::PageToken,
    repository,
    request_ids::{self, Claim},
    requests::{CreateAppointment, ListAppointments, Transition},
};

/// How often a transaction that PostgreSQL aborted because of a concurrent one is run in all.
const ATTEMPTS: u32 = 4;

/// Whether to run a transaction again that ended with `result` on try number `attempt`: only
/// when PostgreSQL aborted it because of a concurrent transaction. Two bookings that overlap
/// each other both insert, then each waits for the other's verdict on the exclusion
/// constraint; PostgreSQL breaks that deadlock by aborting one, whose rerun then sees the
/// committed row and gets a clean overlap error.
fn run_again<T>(result: &Result<T, Error>, attempt: u32) -> bool {
    let Err(Error::Database(e)) = result else { return false };
    let again = attempt < ATTEMPTS && clinic_shared::pg::is_transaction_conflict(e);
    if again {
        tracing::debug!(attempt, sqlstate = ?e.code(), "transaction conflict; running it again");
    }
    again
}

/// Books a PENDING appointment and records the booking in its history. With a `request_id`,
/// a retry answers the appointment the first call booked (see `request_ids`).
pub async fn create(
    client: &mut TenantClient,
    actor: &Actor,
    req: &CreateAppointment,
    trail: &mut Trail,
) -> Result<Appointment, Error> {
    let mut attempt = 1;
    loop {
        let result = create_once(client, actor, req, trail).await;
        if !run_again(&result, attempt) {
            return result;
        }
        attempt += 1;
    }
}

async fn create_once(
    client: &mut TenantClient,
    actor: &Actor,
    req: &CreateAppointment,
    trail: &mut Trail,
) -> Result<Appointment, Error> {
    let patient_id = req.patient.resolve(actor.member_id);
    trail.patient(patient_id);
    if req.schedule_override && actor.role != Role::Admin {
        return Err(Error::PermissionDenied("only admins may set schedule_override"));
    }
    if !may_book(actor, patient_id) {
        return Err(Error::PermissionDenied(match actor.role {
            Role::Doctor => "doctors do not book appointments",
            _ => "a patient books for themself only",
        }));
    }
    let tx = client.transaction().await?;
    if let Some(key) = req.request_id {
        let fingerprint = req.fingerprint(patient_id);
        if let Claim::Booked(id) =
            request_ids::claim(&tx, actor.member_id, key, &fingerprint, req.received_at).await?
        {
            // The first call booked it: answer that, as it is now.
            let appointment = repository::fetch(&tx, id).await?;
            trail.resource(id);
            audit::store::record(&tx, trail).await.map_err(Error::Audit)?;
            tx.commit().await?;
            return appointment.ok_or(Error::Internal("a request id's appointment vanished"));
        }
    }
    repository::require_member(&tx, patient_id, Role::Patient, Party::Patient).await?;
    repository::require_member(&tx, req.doctor_id, Role::Doctor, Party::Doctor).await?;
    // Doctors with a schedule: working hours, time off, notice and horizon (see `schedules`).
    let verdict =
        booking::verdict(&tx, req.doctor_id, req.start_time, req.duration_minutes, req.received_at)
            .await
            .map_err(Error::Schedule)?;
    let overridden = match verdict.refusal {
        Some(_) if req.schedule_override => true,
        Some(refusal) => return Err(Error::OutsideSchedule(refusal.to_string())),
        None => false,
    };
    let appointment = repository::insert(
        &tx,
        patient_id,
        req.doctor_id,
        req.start_time,
        req.duration_minutes,
        verdict.buffer_minutes,
        &req.notes,
    )
    .await?;
    repository::insert_history(
        &tx,
        appointment.id,
        None,
        AppointmentStatus::Pending,
        actor.member_id,
        "",
        overridden,
    )
    .await?;
    if let Some(key) = req.request_id {
        request_ids::record(&tx, actor.member_id, key, appointment.id).await?;
    }
    trail.resource(appointment.id);
    audit::store::record(&tx, trail).await.map_err(Error::Audit)?;
    tx.commit().await?;
    Ok(appointment)
}

/// One appointment the caller may see, with its history, read in one statement (one
/// snapshot). Appointments the caller may not see are `NOT_FOUND`, so ids do not reveal what
/// exists.
pub async fn get(
    client: &impl Db,
    actor: &Actor,
    id: Uuid,
) -> Result<(Appointment, Vec<StatusChange>), Error> {
    visible(actor, repository::fetch_with_history(client, id).await?)
}

/// What `actor` is told of an appointment found (or not) with its history.
pub fn visible(
    actor: &Actor,
    found: Option<(Appointment, Vec<StatusChange>)>,
) -> Result<(Appointment, Vec<StatusChange>), Error> {
    match found {
        Some((a, history)) if a.parties.visible_to(actor) => Ok((a, history)),
        _ => Err(Error::NotFound),
    }
}

/// Applies a transition: locks the row, checks visibility, permission and the transition
/// table, updates the state and appends to the history, all in one transaction.
pub async fn transition(
    client: &mut TenantClient,
    actor: &Actor,
    req: &Transition,
    trail: &mut Trail,
) -> Result<Appointment, Error> {
    let mut attempt = 1;
    loop {
        let result = transition_once(client, actor, req, trail).await;
        if !run_again(&result, attempt) {
            return result;
        }
        attempt += 1;
    }
}

async fn transition_once(
    client: &mut TenantClient,
    actor: &Actor,
    req: &Transition,
    trail: &mut Trail,
) -> Result<Appointment, Error> {
    let id = req.target.appointment_id;
    trail.resource(id);
    let tx = client.transaction().await?;
    let (parties, status) = match repository::lock(&tx, id).await? {
        Some((p, s)) if p.visible_to(actor) => (p, s),
        _ => return Err(Error::NotFound),
    };
    if let Some(patient) = parties.patient_id {
        trail.patient(patient);
    }
    if !req.action.permitted(actor, &parties) {
        return Err(Error::PermissionDenied(match req.action {
            super::domain::Action::Cancel => "only its patient, its doctor or an admin may cancel",
            _ => "only its doctor or an admin may decide or complete an appointment",
        }));
    }
    let refused = || Error::InvalidTransition { action: req.action.verb(), from: status.as_sql() };
    if !req.action.allowed_from().contains(&status) {
        return Err(refused());
    }
    let updated =
        repository::update_status(&tx, id, req.action.allowed_from(), req.action.target())
            .await?
            .ok_or_else(refused)?;
    repository::insert_history(
        &tx,
        id,
        Some(status),
        updated.status,
        actor.member_id,
        &req.reason,
        false,
    )
    .await?;
    audit::store::record(&tx, trail).await.map_err(Error::Audit)?;
    tx.commit().await?;
    Ok(updated)
}

/// One page of the appointments the caller may see, matching the filters.
pub async fn list(
    client: &impl Db,
    actor: &Actor,
    req: &ListAppointments,
) -> Result<(Vec<Appointment>, Option<PageToken>), Error> {
    listing::list(client, actor, req).await
}
