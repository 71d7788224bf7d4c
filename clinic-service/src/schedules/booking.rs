//! The schedule's say on a booking (for `appointments`): the buffer the booking takes and,
//! when the doctor has a schedule the visit does not fit, why.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{
    repository,
    slots::{Blocked, Refusal, check_booking},
};
use crate::{error::Error, tenancy::Db};

/// What the doctor's schedule says about a booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Minutes to keep free after the visit (the schedule's buffer; 0 without a schedule).
    pub buffer_minutes: i32,
    /// Why the visit does not fit; `None` when it does or the doctor has no schedule.
    pub refusal: Option<Refusal>,
}

/// The verdict on a visit of `doctor_id` at `[start, start + duration_minutes)`, at `now`, read
/// in one statement. A schedule changed concurrently may be seen as it was just before: the
/// booking then counts as made before the change, which never cancels bookings either.
pub async fn verdict(
    client: &impl Db,
    doctor_id: Uuid,
    start: DateTime<Utc>,
    duration_minutes: i32,
    now: DateTime<Utc>,
) -> Result<Verdict, Error> {
    let end = start
        .checked_add_signed(Duration::minutes(duration_minutes.into()))
        .ok_or_else(|| Error::field("start_time", "out of range"))?;
    let calendar = repository::load(client, doctor_id, start, end).await?;
    let Some((schedule, _)) = calendar.schedule else {
        return Ok(Verdict { buffer_minutes: 0, refusal: None });
    };
    let time_off = Blocked::new(calendar.time_off);
    let refusal =
        check_booking(&calendar.settings, &schedule, &time_off, start, duration_minutes, now).err();
    Ok(Verdict { buffer_minutes: schedule.buffer_minutes, refusal })
}
