//! Validated requests of `ScheduleService` (and `UpdateOrganization`'s settings): each proto
//! message becomes one of these once, with every offending field named.

use chrono::{DateTime, Duration, Utc};
use clinic_api::clinic::v1 as pb;
use clinic_shared::{
    error::Violations,
    paging::{MAX_PAGE_SIZE, Page},
};
use uuid::Uuid;

use super::{
    week::{
        BUFFER_RANGE, HoursError, STEP_RANGE, Schedule, WeeklyHours, WorkingInterval, parse_hhmm,
    },
    zone::Zone,
};
use crate::{error::Error, grpc::MemberRef};

/// Longest range of FindAvailableSlots.
pub const MAX_SEARCH_DAYS: i64 = 31;
/// Longest time off.
pub const MAX_TIME_OFF_DAYS: i64 = 366;
/// Longest time-off reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Default visit length of a search.
pub const DEFAULT_DURATION_MINUTES: i32 = 30;
/// Token kind of ListTimeOff.
pub const TIME_OFF_KIND: &str = "time_off";

fn finish<T>(v: Violations, value: T) -> Result<T, Error> {
    v.finish(value).map_err(Error::InvalidArgument)
}

fn doctor(v: &mut Violations, text: &str) -> MemberRef {
    MemberRef::parse_field("doctor_id", text).unwrap_or_else(|violation| {
        v.extend([violation]);
        MemberRef::Me
    })
}

/// A doctor of a clinic (GetSchedule, DeleteSchedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoctorRef {
    /// The clinic.
    pub organization_id: Uuid,
    /// The doctor (`me` allowed).
    pub doctor: MemberRef,
}

impl DoctorRef {
    fn parse(organization_id: &str, doctor_id: &str, v: &mut Violations) -> Self {
        Self {
            organization_id: v.uuid("organization_id", organization_id),
            doctor: doctor(v, doctor_id),
        }
    }
}

impl TryFrom<pb::GetScheduleRequest> for DoctorRef {
    type Error = Error;
    fn try_from(req: pb::GetScheduleRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let r = Self::parse(&req.organization_id, &req.doctor_id, &mut v);
        finish(v, r)
    }
}

impl TryFrom<pb::DeleteScheduleRequest> for DoctorRef {
    type Error = Error;
    fn try_from(req: pb::DeleteScheduleRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let r = Self::parse(&req.organization_id, &req.doctor_id, &mut v);
        finish(v, r)
    }
}

/// UpdateSchedule, validated.
#[derive(Debug, Clone)]
pub struct UpdateSchedule {
    /// Whose.
    pub target: DoctorRef,
    /// The new schedule.
    pub schedule: Schedule,
}

fn weekday(value: i32) -> Option<u8> {
    match pb::Weekday::try_from(value).ok()? {
        pb::Weekday::Unspecified => None,
        day => u8::try_from(day as i32).ok(),
    }
}

impl TryFrom<pb::UpdateScheduleRequest> for UpdateSchedule {
    type Error = Error;
    fn try_from(req: pb::UpdateScheduleRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = DoctorRef::parse(&req.organization_id, &req.doctor_id, &mut v);
        let mut intervals = Vec::with_capacity(req.weekly_hours.len());
        for (i, w) in req.weekly_hours.iter().enumerate() {
            let field = |name: &str| format!("weekly_hours[{i}].{name}");
            let day = weekday(w.weekday).unwrap_or_else(|| {
                v.add(field("weekday"), "must be a specified weekday");
                1
            });
            let start = parse_hhmm(&w.start_time).filter(|m| *m < 1440).unwrap_or_else(|| {
                v.add(field("start_time"), "must be HH:MM, 00:00 to 23:59");
                0
            });
            let end = parse_hhmm(&w.end_time).unwrap_or_else(|| {
                v.add(field("end_time"), "must be HH:MM, 00:01 to 24:00");
                1440
            });
            intervals.push(WorkingInterval { weekday: day, start_minute: start, end_minute: end });
        }
        let hours = if v.is_empty() {
            WeeklyHours::new(intervals).unwrap_or_else(|errors| {
                for e in errors {
                    match e {
                        HoursError::TooMany => v.add("weekly_hours", "at most 100 intervals"),
                        HoursError::Weekday(i) => v.add(
                            format!("weekly_hours[{i}].weekday"),
                            "must be a specified weekday",
                        ),
                        HoursError::EndNotAfterStart(i) => {
                            v.add(format!("weekly_hours[{i}].end_time"), "must be after start_time")
                        }
                        HoursError::Overlap(i, j) => v.add(
                            format!("weekly_hours[{i}]"),
                            format!("overlaps weekly_hours[{j}] on the same weekday"),
                        ),
                    }
                }
                WeeklyHours::default()
            })
        } else {
            WeeklyHours::default()
        };
        if !STEP_RANGE.contains(&req.slot_step_minutes) {
            v.add("slot_step_minutes", "must be 5 to 480 minutes");
        }
        if !BUFFER_RANGE.contains(&req.buffer_minutes) {
            v.add("buffer_minutes", "must be 0 to 240 minutes");
        }
        let schedule = Schedule {
            hours,
            step_minutes: req.slot_step_minutes,
            buffer_minutes: req.buffer_minutes,
        };
        finish(v, Self { target, schedule })
    }
}

/// CreateTimeOff, validated.
#[derive(Debug, Clone)]
pub struct CreateTimeOff {
    /// Whose.
    pub target: DoctorRef,
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive), after start.
    pub end: DateTime<Utc>,
    /// Why (may be empty).
    pub reason: String,
}

/// A required timestamp field, between 1970 and 9000 (schedules are read through the IANA
/// zone data, which covers years up to 9999; arithmetic past the window cannot overflow).
fn required_time(
    v: &mut Violations,
    field: &str,
    ts: Option<&prost_types::Timestamp>,
) -> Option<DateTime<Utc>> {
    if ts.is_none() {
        v.add(field, "required");
    }
    let t = v.time(field, ts)?;
    if !(0..LATEST_SECONDS).contains(&t.timestamp()) {
        v.add(field, "must be between 1970 and 9000");
        return None;
    }
    Some(t)
}

/// 9000-01-01T00:00:00Z.
const LATEST_SECONDS: i64 = 221_845_392_000;

impl TryFrom<pb::CreateTimeOffRequest> for CreateTimeOff {
    type Error = Error;
    fn try_from(req: pb::CreateTimeOffRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = DoctorRef::parse(&req.organization_id, &req.doctor_id, &mut v);
        let start = required_time(&mut v, "start_time", req.start_time.as_ref());
        let end = required_time(&mut v, "end_time", req.end_time.as_ref());
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                v.add("end_time", "must be after start_time");
            } else if e - s > Duration::days(MAX_TIME_OFF_DAYS) {
                v.add("end_time", "at most 366 days after start_time");
            }
        }
        if req.reason.chars().count() > MAX_REASON_CHARS {
            v.add("reason", "at most 500 characters");
        }
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let (start, end) = (start.unwrap_or(epoch), end.unwrap_or(epoch));
        finish(v, Self { target, start, end, reason: req.reason })
    }
}

/// ListTimeOff, validated.
#[derive(Debug, Clone)]
pub struct ListTimeOff {
    /// Whose.
    pub target: DoctorRef,
    /// Rows per page.
    pub page_size: i64,
    /// Continue after this (start, id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

impl TryFrom<pb::ListTimeOffRequest> for ListTimeOff {
    type Error = Error;
    fn try_from(req: pb::ListTimeOffRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = DoctorRef::parse(&req.organization_id, &req.doctor_id, &mut v);
        let page =
            Page::parse(TIME_OFF_KIND, req.page_size, &req.page_token, MAX_PAGE_SIZE, &mut v);
        finish(v, Self { target, page_size: page.size, after: page.after })
    }
}

/// DeleteTimeOff, validated.
#[derive(Debug, Clone, Copy)]
pub struct DeleteTimeOff {
    /// Whose.
    pub target: DoctorRef,
    /// Which.
    pub time_off_id: Uuid,
}

impl TryFrom<pb::DeleteTimeOffRequest> for DeleteTimeOff {
    type Error = Error;
    fn try_from(req: pb::DeleteTimeOffRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = DoctorRef::parse(&req.organization_id, &req.doctor_id, &mut v);
        let time_off_id = v.uuid("time_off_id", &req.time_off_id);
        finish(v, Self { target, time_off_id })
    }
}

/// FindAvailableSlots, validated: a range of at most [`MAX_SEARCH_DAYS`].
#[derive(Debug, Clone, Copy)]
pub struct FindSlots {
    /// Whose.
    pub target: DoctorRef,
    /// Earliest start.
    pub from: DateTime<Utc>,
    /// Latest start (exclusive).
    pub to: DateTime<Utc>,
    /// Visit length.
    pub duration_minutes: i32,
}

impl TryFrom<pb::FindAvailableSlotsRequest> for FindSlots {
    type Error = Error;
    fn try_from(req: pb::FindAvailableSlotsRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let target = DoctorRef::parse(&req.organization_id, &req.doctor_id, &mut v);
        let from = required_time(&mut v, "start_time", req.start_time.as_ref());
        let to = required_time(&mut v, "end_time", req.end_time.as_ref());
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                v.add("end_time", "must be after start_time");
            } else if t - f > Duration::days(MAX_SEARCH_DAYS) {
                v.add("end_time", "at most 31 days after start_time");
            }
        }
        let duration_minutes = match req.duration_minutes {
            0 => DEFAULT_DURATION_MINUTES,
            d if crate::appointments::requests::DURATION_RANGE.contains(&d) => d,
            d => {
                v.add("duration_minutes", "must be 5 to 480 minutes (0 for the default of 30)");
                d
            }
        };
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let (from, to) = (from.unwrap_or(epoch), to.unwrap_or(epoch));
        finish(v, Self { target, from, to, duration_minutes })
    }
}

/// UpdateOrganization's settings, validated: only the fields the mask names.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    /// The clinic.
    pub organization_id: Uuid,
    /// New zone.
    pub zone: Option<Zone>,
    /// New minimum notice.
    pub min_notice_minutes: Option<i32>,
    /// New horizon.
    pub horizon_days: Option<i32>,
}

/// Minimum notice bounds, in minutes.
pub const NOTICE_RANGE: std::ops::RangeInclusive<i32> = 0..=43_200;
/// Horizon bounds, in days.
pub const HORIZON_RANGE: std::ops::RangeInclusive<i32> = 1..=730;

impl TryFrom<pb::UpdateOrganizationRequest> for SettingsChange {
    type Error = Error;
    fn try_from(req: pb::UpdateOrganizationRequest) -> Result<Self, Error> {
        let mut v = Violations::default();
        let mut change = Self {
            organization_id: v.uuid("organization_id", &req.organization_id),
            ..Self::default()
        };
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            v.add(
                "update_mask",
                "name at least one of time_zone, min_notice_minutes, booking_horizon_days",
            );
        }
        for path in &paths {
            match path.as_str() {
                "time_zone" => match Zone::parse(&req.time_zone) {
                    Some(zone) => change.zone = Some(zone),
                    None => v.add(
                        "time_zone",
                        "must be a known IANA time zone name, e.g. Europe/Berlin",
                    ),
                },
                "min_notice_minutes" if NOTICE_RANGE.contains(&req.min_notice_minutes) => {
                    change.min_notice_minutes = Some(req.min_notice_minutes);
                }
                "min_notice_minutes" => v.add("min_notice_minutes", "must be 0 to 43200 minutes"),
                "booking_horizon_days" if HORIZON_RANGE.contains(&req.booking_horizon_days) => {
                    change.horizon_days = Some(req.booking_horizon_days);
                }
                "booking_horizon_days" => v.add("booking_horizon_days", "must be 1 to 730 days"),
                _ => v.add(
                    "update_mask",
                    "unknown path (time_zone, min_notice_minutes, booking_horizon_days)",
                ),
            }
        }
        finish(v, change)
    }
}
