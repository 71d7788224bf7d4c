//! Free-slot search and the booking check (pure: the schedule, time off and booked ranges
//! come in, read in one statement; `now` is a parameter).

use chrono::{DateTime, Duration, Utc};

use super::{week::Schedule, zone::Zone};

/// A range of instants `[start, end)`.
pub type Range = (DateTime<Utc>, DateTime<Utc>);

/// The clinic's booking settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Its time zone.
    pub zone: Zone,
    /// Bookings start at least this many minutes after now.
    pub min_notice_minutes: i32,
    /// Bookings start at most this many days after now.
    pub horizon_days: i32,
}

impl Settings {
    /// The earliest start allowed at `now`.
    pub fn earliest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::minutes(self.min_notice_minutes.into())
    }

    /// The latest start allowed at `now` (inclusive).
    pub fn latest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now + Duration::days(self.horizon_days.into())
    }
}

/// Sorted, merged (non-overlapping, non-touching) ranges, for overlap tests in O(log n).
#[derive(Debug, Clone, Default)]
pub struct Blocked(Vec<Range>);

impl Blocked {
    /// Merges `ranges` (any order; empty ones dropped).
    pub fn new(mut ranges: Vec<Range>) -> Self {
        ranges.retain(|(s, e)| s < e);
        ranges.sort();
        let mut merged: Vec<Range> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        Self(merged)
    }

    /// Whether `[start, end)` overlaps any range.
    pub fn overlaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        let i = self.0.partition_point(|r| r.1 <= start);
        self.0.get(i).is_some_and(|r| r.0 < end)
    }
}

/// What a slot search needs besides the schedule.
#[derive(Debug, Clone)]
pub struct Search {
    /// Earliest start (inclusive).
    pub from: DateTime<Utc>,
    /// Latest start (exclusive).
    pub to: DateTime<Utc>,
    /// Visit length.
    pub duration_minutes: i32,
    /// The clock.
    pub now: DateTime<Utc>,
}

/// Every free start: on the step from its interval's start, the visit inside the interval and
/// outside `time_off`, visit plus the schedule's buffer clear of `booked` (each booked range
/// with its own buffer), within notice and horizon and `[from, to)`. In time order, each once.
pub fn find(
    settings: &Settings,
    schedule: &Schedule,
    time_off: &Blocked,
    booked: &Blocked,
    search: &Search,
) -> Vec<DateTime<Utc>> {
    let lo = search.from.max(settings.earliest(search.now));
    // The horizon is inclusive, the range's end is not.
    let hi_inclusive = settings.latest(search.now);
    if lo >= search.to || lo > hi_inclusive {
        return Vec::new();
    }
    let duration = Duration::minutes(search.duration_minutes.into());
    let held = duration + Duration::minutes(schedule.buffer_minutes.into());
    let step = Duration::minutes(schedule.step_minutes.max(1).into());
    let mut out = Vec::new();
    for (start, end) in settings.zone.intervals(&schedule.hours, search.from, search.to) {
        // First step at or after `lo` (`lo` is within a day of the window, so this is small).
        let mut t = start;
        if lo > start {
            let steps = (lo - start).num_minutes() / step.num_minutes();
            let Some(first) = i32::try_from(steps).ok().and_then(|n| step.checked_mul(n)) else {
                continue;
            };
            t = start + first;
            if t < lo {
                t += step;
            }
        }
        while t + duration <= end && t < search.to && t <= hi_inclusive {
            if !time_off.overlaps(t, t + duration) && !booked.overlaps(t, t + held) {
                out.push(t);
            }
            t += step;
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Why a booking does not fit a doctor's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Sooner than the clinic's minimum notice (minutes).
    TooSoon(i32),
    /// Later than the clinic's booking horizon (days).
    BeyondHorizon(i32),
    /// Not inside one working interval.
    OutsideWorkingHours,
    /// Overlaps the doctor's time off.
    TimeOff,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooSoon(m) => {
                write!(f, "start_time is within the clinic's minimum notice of {m} minutes")
            }
            Self::BeyondHorizon(d) => {
                write!(f, "start_time is beyond the clinic's booking horizon of {d} days")
            }
            Self::OutsideWorkingHours => write!(
                f,
                "outside the doctor's working hours: the visit must fit inside one working interval"
            ),
            Self::TimeOff => write!(f, "the doctor has time off then"),
        }
    }
}

/// Whether a visit `[start, start + duration)` fits: notice, horizon, one working interval,
/// no time off (`time_off` covers at least the visit's day on either side).
pub fn check_booking(
    settings: &Settings,
    schedule: &Schedule,
    time_off: &Blocked,
    start: DateTime<Utc>,
    duration_minutes: i32,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let end = start + Duration::minutes(duration_minutes.into());
    if start < settings.earliest(now) {
        return Err(Refusal::TooSoon(settings.min_notice_minutes));
    }
    if start > settings.latest(now) {
        return Err(Refusal::BeyondHorizon(settings.horizon_days));
    }
    let inside = settings
        .zone
        .intervals(&schedule.hours, start, end)
        .iter()
        .any(|&(s, e)| s <= start && end <= e);
    if !inside {
        return Err(Refusal::OutsideWorkingHours);
    }
    if time_off.overlaps(start, end) {
        return Err(Refusal::TimeOff);
    }
    Ok(())
}
