//! Wall-clock working hours to instants, in an IANA time zone (jiff, with the zone database
//! bundled into the binary; PostgreSQL's zone data is never used). Times map the RFC 5545 way:
//! a wall-clock time a daylight-saving change skips moves forward by the gap, and one it
//! repeats means the earlier instant (jiff's `compatible` disambiguation).

use chrono::{DateTime, Utc};
use jiff::{
    Timestamp,
    civil::{Date, DateTime as CivilDateTime},
    tz::TimeZone,
};

use super::week::{DAY_MINUTES, WeeklyHours};

/// A clinic's time zone: the IANA name and its rules.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    /// The zone called `name` (an IANA name, e.g. `Europe/Berlin`); `None` when unknown. The
    /// name is kept as the database spells it.
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 {
            return None;
        }
        let tz = TimeZone::get(name).ok()?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Some(Self { name, tz })
    }

    /// UTC.
    pub fn utc() -> Self {
        Self { name: "UTC".into(), tz: TimeZone::UTC }
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instant of wall-clock `minute` (0 to 1440) of `date` here: skipped times move
    /// forward, repeated times take the earlier instant. `None` only outside the supported
    /// range of dates.
    pub fn instant(&self, date: Date, minute: u16) -> Option<DateTime<Utc>> {
        let (date, minute) =
            if minute >= DAY_MINUTES { (date.tomorrow().ok()?, 0) } else { (date, minute) };
        let hour = i8::try_from(minute / 60).ok()?;
        let min = i8::try_from(minute % 60).ok()?;
        let civil = CivilDateTime::from_parts(date, jiff::civil::Time::new(hour, min, 0, 0).ok()?);
        let ts = self.tz.to_ambiguous_timestamp(civil).compatible().ok()?;
        from_jiff(ts)
    }

    /// The local date of `at` here.
    pub fn date_of(&self, at: DateTime<Utc>) -> Option<Date> {
        Some(self.tz.to_datetime(to_jiff(at)?).date())
    }

    /// Every working interval of `hours` as instants `[start, end)`, for the local dates from
    /// the day before `from`'s to the day after `to`'s (so every interval meeting `[from, to)` is
    /// there), in time order. Intervals a change of offset empties are left out.
    pub fn intervals(
        &self,
        hours: &WeeklyHours,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let (Some(first), Some(last)) = (self.date_of(from), self.date_of(to)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut date = first.yesterday().unwrap_or(first);
        let end = last.tomorrow().unwrap_or(last);
        while date <= end {
            let weekday = u8::try_from(date.weekday().to_monday_one_offset()).unwrap_or(0);
            for w in hours.on(weekday) {
                if let (Some(s), Some(e)) =
                    (self.instant(date, w.start_minute), self.instant(date, w.end_minute))
                    && s < e
                {
                    out.push((s, e));
                }
            }
            let Ok(next) = date.tomorrow() else { break };
            date = next;
        }
        out.sort();
        out
    }
}

fn to_jiff(at: DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::from_microsecond(at.timestamp_micros()).ok()
}

fn from_jiff(ts: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(ts.as_microsecond())
}
