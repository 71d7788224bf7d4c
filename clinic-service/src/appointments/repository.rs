//! SQL on one tenant database: fixed statements with numbered parameters. Callers own the
//! transactions. The list query lives in `listing`.

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::{Row, error::SqlState};
use uuid::Uuid;

use crate::tenancy::Db;

use super::{
    domain::{Appointment, AppointmentStatus, Parties, Role, StatusChange},
    error::{Error, Party},
};

/// The columns [`appointment_from_row`] reads, in order.
pub(super) const COLUMNS: &str = "id, patient_id, doctor_id, appointment_date_time, duration_minutes, \
                       upper(slot), status::text, notes, created_at, updated_at";

pub(super) fn appointment_from_row(row: &Row) -> Result<Appointment, Error> {
    let status: String = row.col(6)?;
    Ok(Appointment {
        id: row.col(0)?,
        parties: Parties { patient_id: row.col(1)?, doctor_id: row.col(2)? },
        start_time: row.col(3)?,
        duration_minutes: row.col(4)?,
        end_time: row.col(5)?,
        status: parse_status(&status)?,
        notes: row.col(7)?,
        created_at: row.col(8)?,
        updated_at: row.col(9)?,
    })
}

fn parse_status(label: &str) -> Result<AppointmentStatus, Error> {
    // The SQL enum and the Rust enum are defined together; a mismatch is a bug, not input.
    AppointmentStatus::from_sql(label)
        .ok_or(Error::Internal("unknown appointment status in the database"))
}

/// Maps constraint violations of an INSERT/UPDATE on `appointment` to what the caller did wrong.
pub fn map_write_error(e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else { return Error::Database(e) };
    let party = match db.constraint() {
        Some("appointment_doctor_no_overlap" | "appointment_doctor_id_fkey") => Party::Doctor,
        Some("appointment_patient_no_overlap" | "appointment_patient_id_fkey") => Party::Patient,
        _ => return Error::Database(e),
    };
    match *db.code() {
        SqlState::EXCLUSION_VIOLATION => Error::Overlap(party),
        // The member was removed between our check and the insert.
        SqlState::FOREIGN_KEY_VIOLATION => Error::MemberNotFound(party),
        _ => Error::Database(e),
    }
}

/// Checks that `member_id` is an active member with `role`, and keeps it so (FOR SHARE) until
/// the transaction ends, so a concurrent role change or removal cannot slip in between. An
/// invited member who has not accepted yet is not found, like an unknown id.
pub async fn require_member(
    client: &impl Db,
    member_id: Uuid,
    role: Role,
    party: Party,
) -> Result<(), Error> {
    let row = client
        .query_opt(
            "SELECT role FROM organization_user WHERE id = $1 AND status = 'active' FOR SHARE",
            &[&member_id],
        )
        .await?;
    let Some(row) = row else { return Err(Error::MemberNotFound(party)) };
    let actual: Option<String> = row.col(0)?;
    if Role::from_db(actual.as_deref()) == Some(role) {
        Ok(())
    } else {
        Err(Error::invalid(party.field(), &format!("member is not a {}", party.noun())))
    }
}

/// Inserts a PENDING appointment.
pub async fn insert(
    client: &impl Db,
    patient_id: Uuid,
    doctor_id: Uuid,
    start_time: DateTime<Utc>,
    duration_minutes: i32,
    notes: &str,
) -> Result<Appointment, Error> {
    let sql = format!(
        "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, duration_minutes, \
         notes) VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(&sql, &[&patient_id, &doctor_id, &start_time, &duration_minutes, &notes])
        .await
        .map_err(map_write_error)?;
    appointment_from_row(&row)
}

/// Appends one history entry.
pub async fn insert_history(
    client: &impl Db,
    appointment_id: Uuid,
    from: Option<AppointmentStatus>,
    to: AppointmentStatus,
    changed_by: Uuid,
    reason: &str,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO appointment_status_history \
             (appointment_id, from_status, to_status, changed_by, reason) \
             VALUES ($1, $2::text::appointment_status, $3::text::appointment_status, $4, $5)",
            &[
                &appointment_id,
                &from.map(AppointmentStatus::as_sql),
                &to.as_sql(),
                &changed_by,
                &reason,
            ],
        )
        .await?;
    Ok(())
}

/// The parties and state of an appointment, locked (FOR UPDATE) until the transaction ends.
pub async fn lock(
    client: &impl Db,
    id: Uuid,
) -> Result<Option<(Parties, AppointmentStatus)>, Error> {
    let row = client
        .query_opt(
            "SELECT patient_id, doctor_id, status::text FROM appointment WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let parties = Parties { patient_id: row.col(0)?, doctor_id: row.col(1)? };
    let status: String = row.col(2)?;
    Ok(Some((parties, parse_status(&status)?)))
}

/// Moves the appointment to `to` if it is in one of `from`; `None` when it is not.
pub async fn update_status(
    client: &impl Db,
    id: Uuid,
    from: &[AppointmentStatus],
    to: AppointmentStatus,
) -> Result<Option<Appointment>, Error> {
    let from: Vec<&str> = from.iter().map(|s| s.as_sql()).collect();
    let sql = format!(
        "UPDATE appointment SET status = $2::text::appointment_status, updated_at = now() \
         WHERE id = $1 AND status = ANY($3::text[]::appointment_status[]) RETURNING {COLUMNS}"
    );
    let row = client.query_opt(&sql, &[&id, &to.as_sql(), &from]).await.map_err(map_write_error)?;
    row.as_ref().map(appointment_from_row).transpose()
}

/// One appointment, whoever may see it.
pub async fn fetch(client: &impl Db, id: Uuid) -> Result<Option<Appointment>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM appointment WHERE id = $1");
    let row = client.query_opt(&sql, &[&id]).await?;
    row.as_ref().map(appointment_from_row).transpose()
}

/// The status history of an appointment, oldest first.
pub async fn history(client: &impl Db, id: Uuid) -> Result<Vec<StatusChange>, Error> {
    let rows = client
        .query(
            "SELECT from_status::text, to_status::text, changed_by, changed_at, reason \
             FROM appointment_status_history WHERE appointment_id = $1 ORDER BY id",
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let from: Option<String> = row.col(0)?;
            let to: String = row.col(1)?;
            Ok(StatusChange {
                from_status: from.as_deref().map(parse_status).transpose()?,
                to_status: parse_status(&to)?,
                changed_by: row.col(2)?,
                changed_at: row.col(3)?,
                reason: row.col(4)?,
            })
        })
        .collect()
}
