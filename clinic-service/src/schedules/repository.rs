//! SQL of schedules on one tenant database: fixed statements with numbered parameters.
//! Everything a slot search or a booking check needs is read by [`load`] in one statement
//! (one snapshot, one round trip).

use chrono::{DateTime, Utc};
use clinic_shared::pg::RowExt;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{
    requests::SettingsChange,
    slots::{Range, Settings},
    week::{Schedule, WeeklyHours, WorkingInterval},
    zone::Zone,
};
use crate::{
    error::Error,
    tenancy::{CALLER, Db},
};

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

const SETTINGS: &str = "time_zone, min_notice_minutes, horizon_days";

/// The clinic's settings with the caller's membership, for `TenantAccess::read_with` (one
/// round trip): `caller_id`, `caller_role`, then the settings from column 2 (see
/// [`settings_at`]).
pub static SETTINGS_FOR_CALLER: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH caller AS ({CALLER}) SELECT caller.caller_id, caller.caller_role, {SETTINGS} \
         FROM caller CROSS JOIN clinic_settings"
    )
});

/// The settings in the columns from `first` of `row`.
pub fn settings_at(row: &Row, first: usize) -> Result<Settings, Error> {
    let name: String = row.col(first)?;
    let zone = Zone::parse(&name)
        .ok_or_else(|| Error::Internal("clinic_settings holds an unknown time zone".into()))?;
    Ok(Settings {
        zone,
        min_notice_minutes: row.col(first + 1)?,
        horizon_days: row.col(first + 2)?,
    })
}

/// The clinic's settings.
pub async fn settings(client: &impl Db) -> Result<Settings, Error> {
    let sql = format!("SELECT {SETTINGS} FROM clinic_settings");
    let row = client.query_one(&sql, &[]).await.map_err(db("read clinic settings"))?;
    settings_at(&row, 0)
}

/// Applies `change` to the clinic's settings; answers them as stored.
pub async fn update_settings(client: &impl Db, change: &SettingsChange) -> Result<Settings, Error> {
    let sql = format!(
        "UPDATE clinic_settings SET time_zone = COALESCE($1, time_zone), \
         min_notice_minutes = COALESCE($2, min_notice_minutes), \
         horizon_days = COALESCE($3, horizon_days), updated_at = now() RETURNING {SETTINGS}"
    );
    let zone = change.zone.as_ref().map(Zone::name);
    let row = client
        .query_one(&sql, &[&zone, &change.min_notice_minutes, &change.horizon_days])
        .await
        .map_err(db("update clinic settings"))?;
    settings_at(&row, 0)
}

/// A doctor's calendar as of one snapshot: the clinic's settings, whether the member is an
/// active doctor, their schedule, and the time off and held ranges meeting a window.
#[derive(Debug, Clone)]
pub struct Calendar {
    /// The clinic's settings.
    pub settings: Settings,
    /// Whether the member is an active doctor.
    pub is_doctor: bool,
    /// Their schedule and when it last changed; `None` without one.
    pub schedule: Option<(Schedule, DateTime<Utc>)>,
    /// Time off meeting the window.
    pub time_off: Vec<Range>,
    /// Ranges (visit plus buffer) of PENDING and APPROVED appointments meeting the window.
    pub booked: Vec<Range>,
}

/// The statement of [`load`]: `$1` doctor, `$2`/`$3` the window. Aggregates in laterals: one
/// row whatever is found.
pub const LOAD: &str = "SELECT st.time_zone, st.min_notice_minutes, st.horizon_days, \
        d.id IS NOT NULL, s.slot_step_minutes, s.buffer_minutes, s.updated_at, \
        h.weekdays, h.starts, h.ends, o.starts, o.ends, b.starts, b.ends \
    FROM clinic_settings st \
    LEFT JOIN organization_user d ON d.id = $1 AND d.status = 'active' AND d.role = 'doctor' \
    LEFT JOIN doctor_schedule s ON s.doctor_id = d.id \
    CROSS JOIN LATERAL ( \
        SELECT array_agg(weekday ORDER BY weekday, start_minute) AS weekdays, \
               array_agg(start_minute ORDER BY weekday, start_minute) AS starts, \
               array_agg(end_minute ORDER BY weekday, start_minute) AS ends \
        FROM doctor_working_hours WHERE doctor_id = s.doctor_id) h \
    CROSS JOIN LATERAL ( \
        SELECT array_agg(start_time ORDER BY start_time, id) AS starts, \
               array_agg(end_time ORDER BY start_time, id) AS ends \
        FROM doctor_time_off WHERE doctor_id = d.id AND start_time < $3 AND end_time > $2) o \
    CROSS JOIN LATERAL ( \
        SELECT array_agg(lower(blocked) ORDER BY blocked) AS starts, \
               array_agg(upper(blocked) ORDER BY blocked) AS ends \
        FROM appointment WHERE doctor_id = d.id AND status IN ('PENDING', 'APPROVED') \
            AND blocked && tstzrange($2, $3)) b";

fn pairs(row: &Row, starts: usize) -> Result<Vec<Range>, Error> {
    let s: Option<Vec<DateTime<Utc>>> = row.col(starts)?;
    let e: Option<Vec<DateTime<Utc>>> = row.col(starts + 1)?;
    Ok(s.unwrap_or_default().into_iter().zip(e.unwrap_or_default()).collect())
}

/// The calendar of member `doctor_id` for the window `[from, to)`.
pub async fn load(
    client: &impl Db,
    doctor_id: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Calendar, Error> {
    let row =
        client.query_one(LOAD, &[&doctor_id, &from, &to]).await.map_err(db("load calendar"))?;
    let settings = settings_at(&row, 0)?;
    let is_doctor: bool = row.col(3)?;
    let step: Option<i32> = row.col(4)?;
    let schedule = match step {
        None => None,
        Some(step_minutes) => {
            let days: Vec<i16> = row.col::<Option<Vec<i16>>>(7)?.unwrap_or_default();
            let starts: Vec<i32> = row.col::<Option<Vec<i32>>>(8)?.unwrap_or_default();
            let ends: Vec<i32> = row.col::<Option<Vec<i32>>>(9)?.unwrap_or_default();
            let intervals = days
                .iter()
                .zip(starts.iter().zip(&ends))
                .map(|(&d, (&s, &e))| {
                    Some(WorkingInterval {
                        weekday: u8::try_from(d).ok()?,
                        start_minute: u16::try_from(s).ok()?,
                        end_minute: u16::try_from(e).ok()?,
                    })
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::Internal("working hours out of range".into()))?;
            let hours = WeeklyHours::new(intervals)
                .map_err(|_| Error::Internal("stored working hours are not a valid week".into()))?;
            let schedule = Schedule { hours, step_minutes, buffer_minutes: row.col(5)? };
            Some((schedule, row.col(6)?))
        }
    };
    Ok(Calendar {
        settings,
        is_doctor,
        schedule,
        time_off: pairs(&row, 10)?,
        booked: pairs(&row, 12)?,
    })
}

/// Replaces `doctor_id`'s schedule (creating it); answers when it changed.
pub async fn replace_schedule(
    client: &impl Db,
    doctor_id: Uuid,
    schedule: &Schedule,
) -> Result<DateTime<Utc>, Error> {
    let row = client
        .query_one(
            "INSERT INTO doctor_schedule (doctor_id, slot_step_minutes, buffer_minutes) \
             VALUES ($1, $2, $3) ON CONFLICT (doctor_id) DO UPDATE SET \
             slot_step_minutes = excluded.slot_step_minutes, \
             buffer_minutes = excluded.buffer_minutes, updated_at = now() RETURNING updated_at",
            &[&doctor_id, &schedule.step_minutes, &schedule.buffer_minutes],
        )
        .await
        .map_err(db("write schedule"))?;
    client
        .execute("DELETE FROM doctor_working_hours WHERE doctor_id = $1", &[&doctor_id])
        .await
        .map_err(db("clear working hours"))?;
    let list = schedule.hours.intervals();
    let days: Vec<i16> = list.iter().map(|w| i16::from(w.weekday)).collect();
    let starts: Vec<i32> = list.iter().map(|w| i32::from(w.start_minute)).collect();
    let ends: Vec<i32> = list.iter().map(|w| i32::from(w.end_minute)).collect();
    client
        .execute(
            "INSERT INTO doctor_working_hours (doctor_id, weekday, start_minute, end_minute) \
             SELECT $1, * FROM unnest($2::smallint[], $3::integer[], $4::integer[])",
            &[&doctor_id, &days, &starts, &ends],
        )
        .await
        .map_err(db("write working hours"))?;
    Ok(row.col(0)?)
}

/// Deletes `doctor_id`'s schedule; whether there was one.
pub async fn delete_schedule(client: &impl Db, doctor_id: Uuid) -> Result<bool, Error> {
    let n = client
        .execute("DELETE FROM doctor_schedule WHERE doctor_id = $1", &[&doctor_id])
        .await
        .map_err(db("delete schedule"))?;
    Ok(n > 0)
}

/// One range of time off as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeOff {
    /// Identifier.
    pub id: Uuid,
    /// The doctor.
    pub doctor_id: Uuid,
    /// Start.
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
    /// Why.
    pub reason: String,
    /// Who recorded it.
    pub created_by: Option<Uuid>,
    /// When.
    pub created_at: DateTime<Utc>,
}

const TIME_OFF: &str = "id, doctor_id, start_time, end_time, reason, created_by, created_at";

fn time_off(row: &Row) -> Result<TimeOff, Error> {
    Ok(TimeOff {
        id: row.col(0)?,
        doctor_id: row.col(1)?,
        start: row.col(2)?,
        end: row.col(3)?,
        reason: row.col(4)?,
        created_by: row.col(5)?,
        created_at: row.col(6)?,
    })
}

/// Records time off.
pub async fn insert_time_off(
    client: &impl Db,
    doctor_id: Uuid,
    range: Range,
    reason: &str,
    created_by: Uuid,
) -> Result<TimeOff, Error> {
    let sql = format!(
        "INSERT INTO doctor_time_off (doctor_id, start_time, end_time, reason, created_by) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {TIME_OFF}"
    );
    let row = client
        .query_one(&sql, &[&doctor_id, &range.0, &range.1, &reason, &created_by])
        .await
        .map_err(db("insert time off"))?;
    time_off(&row)
}

/// Up to `limit` ranges of `doctor_id`'s time off after `after`, by (start, id).
pub async fn list_time_off(
    client: &impl Db,
    doctor_id: Uuid,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<TimeOff>, Error> {
    let sql = format!(
        "SELECT {TIME_OFF} FROM doctor_time_off WHERE doctor_id = $1 \
         AND ($2::timestamptz IS NULL OR (start_time, id) > ($2, $3)) \
         ORDER BY start_time, id LIMIT $4"
    );
    let (start, id) = (after.map(|a| a.0), after.map(|a| a.1));
    let rows = client
        .query(&sql, &[&doctor_id, &start, &id, &limit])
        .await
        .map_err(db("list time off"))?;
    rows.iter().map(time_off).collect()
}

/// Deletes one range of `doctor_id`'s time off; whether it existed.
pub async fn delete_time_off(client: &impl Db, doctor_id: Uuid, id: Uuid) -> Result<bool, Error> {
    let n = client
        .execute("DELETE FROM doctor_time_off WHERE id = $1 AND doctor_id = $2", &[&id, &doctor_id])
        .await
        .map_err(db("delete time off"))?;
    Ok(n > 0)
}
