//! A doctor's weekly working hours in wall-clock terms (pure): validated once, so past the edge
//! intervals are ordered, within a day and never overlapping on one weekday.

/// Minutes in a day; an interval may end at `24:00`.
pub const DAY_MINUTES: u16 = 1440;
/// Most intervals a week may have.
pub const MAX_INTERVALS: usize = 100;
/// Slot step bounds, in minutes.
pub const STEP_RANGE: std::ops::RangeInclusive<i32> = 5..=480;
/// Buffer bounds, in minutes.
pub const BUFFER_RANGE: std::ops::RangeInclusive<i32> = 0..=240;

/// One working interval: `[start_minute, end_minute)` of ISO weekday `weekday` (1 = Monday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkingInterval {
    /// 1 (Monday) to 7 (Sunday).
    pub weekday: u8,
    /// Minute of the day it starts, 0 to 1439.
    pub start_minute: u16,
    /// Minute of the day it ends, after the start, at most 1440.
    pub end_minute: u16,
}

/// Why a list of intervals is not a valid week: the index of the offending interval and what
/// is wrong (the edge names the field from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoursError {
    /// Weekday outside 1..=7.
    Weekday(usize),
    /// End not after start, or outside the day.
    EndNotAfterStart(usize),
    /// Overlaps the interval with the other index (same weekday).
    Overlap(usize, usize),
    /// More than [`MAX_INTERVALS`].
    TooMany,
}

/// A week of working intervals, sorted by (weekday, start), none overlapping another of its
/// weekday (touching is fine).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours(Vec<WorkingInterval>);

impl WeeklyHours {
    /// Validates `intervals` (in request order; errors carry request indexes).
    pub fn new(intervals: Vec<WorkingInterval>) -> Result<Self, Vec<HoursError>> {
        let mut errors = Vec::new();
        if intervals.len() > MAX_INTERVALS {
            return Err(vec![HoursError::TooMany]);
        }
        for (i, w) in intervals.iter().enumerate() {
            if !(1..=7).contains(&w.weekday) {
                errors.push(HoursError::Weekday(i));
            }
            if w.start_minute >= w.end_minute || w.end_minute > DAY_MINUTES {
                errors.push(HoursError::EndNotAfterStart(i));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut order: Vec<usize> = (0..intervals.len()).collect();
        order.sort_by_key(|&i| intervals[i]);
        for pair in order.windows(2) {
            let (a, b) = (intervals[pair[0]], intervals[pair[1]]);
            if a.weekday == b.weekday && b.start_minute < a.end_minute {
                errors.push(HoursError::Overlap(pair[1], pair[0]));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self(order.into_iter().map(|i| intervals[i]).collect()))
    }

    /// The intervals, sorted by (weekday, start).
    pub fn intervals(&self) -> &[WorkingInterval] {
        &self.0
    }

    /// The intervals of ISO weekday `weekday`, by start.
    pub fn on(&self, weekday: u8) -> impl Iterator<Item = &WorkingInterval> {
        self.0.iter().filter(move |w| w.weekday == weekday)
    }
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes of the day.
pub fn parse_hhmm(text: &str) -> Option<u16> {
    let (h, m) = text.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    let minutes = h.checked_mul(60)?.checked_add(m)?;
    (h <= 24 && m < 60 && minutes <= DAY_MINUTES).then_some(minutes)
}

/// Formats minutes of the day as `HH:MM`.
pub fn format_hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// A doctor's schedule: weekly hours, slot step and buffer (validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Working hours.
    pub hours: WeeklyHours,
    /// Minutes between slot starts, within [`STEP_RANGE`].
    pub step_minutes: i32,
    /// Minutes kept free after each appointment, within [`BUFFER_RANGE`].
    pub buffer_minutes: i32,
}
