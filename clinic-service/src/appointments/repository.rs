//! SQL on one tenant database: fixed statements with numbered parameters. Callers own the
//! transactions. The list query lives in `listing`.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::{Row, error::SqlState};
use uuid::Uuid;

use crate::tenancy::{CALLER, Db};

use super::{
    domain::{Appointment, AppointmentStatus, Parties, Role, StatusChange},
    error::{Error, Party},
};

/// The columns [`appointment_from_row`] reads, in order.
pub(super) const COLUMNS: &str = "id, patient_id, doctor_id, appointment_date_time, duration_minutes, \
                       upper(slot), status::text, notes, created_at, updated_at";

pub(super) fn appointment_from_row(row: &Row) -> Result<Appointment, Error> {
    appointment_at(row, 0)
}

/// The appointment in [`COLUMNS`] starting at column `first` of `row`.
pub(super) fn appointment_at(row: &Row, first: usize) -> Result<Appointment, Error> {
    let status: String = row.col(first + 6)?;
    Ok(Appointment {
        id: row.col(first)?,
        parties: Parties { patient_id: row.col(first + 1)?, doctor_id: row.col(first + 2)? },
        start_time: row.col(first + 3)?,
        duration_minutes: row.col(first + 4)?,
        end_time: row.col(first + 5)?,
        status: parse_status(&status)?,
        notes: row.col(first + 7)?,
        created_at: row.col(first + 8)?,
        updated_at: row.col(first + 9)?,
    })
}

/// An appointment (`$N`, see [`with_history`]) with its history: [`COLUMNS`], then one entry's
/// [`HISTORY_COLUMNS`] (NULL when it has none) and the entry's order (`entry`).
fn with_history(param: &str) -> String {
    format!(
        "SELECT {COLUMNS}, {HISTORY_COLUMNS}, h.entry FROM appointment \
         LEFT JOIN (SELECT id AS entry, appointment_id AS entry_of, from_status, to_status, \
                    changed_by, changed_at, reason, schedule_override \
                    FROM appointment_status_history) h \
             ON h.entry_of = appointment.id \
         WHERE appointment.id = {param}"
    )
}

/// An appointment with its history in one statement (one snapshot): `$1` its id. Rows as
/// [`appointment_with_history`] reads them from column 0; none when there is no such
/// appointment.
static GET: LazyLock<String> = LazyLock::new(|| format!("{} ORDER BY h.entry", with_history("$1")));

/// GetAppointment in one statement, so one snapshot and one round trip, with the caller's
/// membership (see `TenantAccess::read_with`): `$1` the caller's user id, `$2` the
/// appointment's id. Each row: `caller_id`, `caller_role`, then the appointment and one history
/// entry as in [`GET`] (all NULL when there is no such appointment). No row: the caller is not
/// an active member.
pub static GET_FOR_CALLER: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH caller AS ({CALLER}) SELECT caller.caller_id, caller.caller_role, x.* \
         FROM caller LEFT JOIN LATERAL ({}) x ON true ORDER BY x.entry",
        with_history("$2")
    )
});

/// Where [`GET_FOR_CALLER`]'s appointment columns start.
pub const AFTER_CALLER: usize = 2;

/// The columns of a history entry, as [`change_at`] reads them.
const HISTORY_COLUMNS: &str =
    "from_status::text, to_status::text, changed_by, changed_at, reason, schedule_override";

/// How many columns [`COLUMNS`] has.
const APPOINTMENT_WIDTH: usize = 10;

/// The appointment and its history from rows of [`GET`] (`first` = 0) or [`GET_FOR_CALLER`]
/// (`first` = [`AFTER_CALLER`]); `None` when there is no such appointment.
pub fn appointment_with_history(
    rows: &[Row],
    first: usize,
) -> Result<Option<(Appointment, Vec<StatusChange>)>, Error> {
    let Some(row) = rows.first() else { return Ok(None) };
    if row.col::<Option<Uuid>>(first)?.is_none() {
        return Ok(None);
    }
    let appointment = appointment_at(row, first)?;
    let entry = first + APPOINTMENT_WIDTH;
    let mut history = Vec::with_capacity(rows.len());
    for row in rows {
        // `to_status` is never NULL in a stored entry: NULL means the appointment has none.
        if row.col::<Option<&str>>(entry + 1)?.is_some() {
            history.push(change_at(row, entry)?);
        }
    }
    Ok(Some((appointment, history)))
}

/// An appointment and its history, whoever may see them; `None` when there is none.
pub async fn fetch_with_history(
    client: &impl Db,
    id: Uuid,
) -> Result<Option<(Appointment, Vec<StatusChange>)>, Error> {
    let rows = client.query(&GET, &[&id]).await?;
    appointment_with_history(&rows, 0)
}

/// The history entry in [`HISTORY_COLUMNS`] starting at column `first` of `row`.
fn change_at(row: &Row, first: usize) -> Result<StatusChange, Error> {
    let from: Option<String> = row.col(first)?;
    let to: String = row.col(first + 1)?;
    Ok(StatusChange {
        from_status: from.as_deref().map(parse_status).transpose()?,
        to_status: parse_status(&to)?,
        changed_by: row.col(first + 2)?,
        changed_at: row.col(first + 3)?,
        reason: row.col(first + 4)?,
        schedule_override: row.col(first + 5)?,
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

/// Inserts a PENDING appointment keeping `buffer_minutes` free after it (the doctor's
/// exclusion constraint covers the visit and its buffer).
pub async fn insert(
    client: &impl Db,
    patient_id: Uuid,
    doctor_id: Uuid,
    start_time: DateTime<Utc>,
    duration_minutes: i32,
    buffer_minutes: i32,
    notes: &str,
) -> Result<Appointment, Error> {
    let sql = format!(
        "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, duration_minutes, \
         notes, buffer_minutes) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    );
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&patient_id, &doctor_id, &start_time, &duration_minutes, &notes, &buffer_minutes];
    let row = client.query_one(&sql, &params).await.map_err(map_write_error)?;
    appointment_from_row(&row)
}

/// Appends one history entry (`schedule_override`: a booking an admin made outside the
/// doctor's schedule).
pub async fn insert_history(
    client: &impl Db,
    appointment_id: Uuid,
    from: Option<AppointmentStatus>,
    to: AppointmentStatus,
    changed_by: Uuid,
    reason: &str,
    schedule_override: bool,
) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO appointment_status_history \
             (appointment_id, from_status, to_status, changed_by, reason, schedule_override) \
             VALUES ($1, $2::text::appointment_status, $3::text::appointment_status, $4, $5, $6)",
            &[
                &appointment_id,
                &from.map(AppointmentStatus::as_sql),
                &to.as_sql(),
                &changed_by,
                &reason,
                &schedule_override,
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
