//! Pure tests of the week, the zone mapping and the slot search: tables across the daylight-
//! saving changes of 2026 in America/New_York (8 March, 1 November) and Europe/Berlin
//! (29 March, 25 October), and properties over random schedules around them.

use chrono::{DateTime, Duration, TimeZone as _, Utc};
use jiff::civil::{Date, date};
use proptest::prelude::*;

use super::{
    slots::{Blocked, Refusal, Search, Settings, check_booking, find},
    week::{HoursError, Schedule, WeeklyHours, WorkingInterval, parse_hhmm},
    zone::Zone,
};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).single().expect("valid time")
}

fn zone(name: &str) -> Zone {
    Zone::parse(name).expect("known zone")
}

fn every_day(start: u16, end: u16) -> WeeklyHours {
    let days =
        (1..=7).map(|weekday| WorkingInterval { weekday, start_minute: start, end_minute: end });
    WeeklyHours::new(days.collect()).expect("valid week")
}

fn settings(z: Zone) -> Settings {
    Settings { zone: z, min_notice_minutes: 0, horizon_days: 3650 }
}

/// A clock far before every date used, so notice and horizon never interfere.
fn long_ago() -> DateTime<Utc> {
    utc(2025, 1, 1, 0, 0)
}

fn search(
    s: &Settings,
    hours: WeeklyHours,
    step: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    d: i32,
) -> Vec<DateTime<Utc>> {
    let schedule = Schedule { hours, step_minutes: step, buffer_minutes: 0 };
    let q = Search { from, to, duration_minutes: d, now: long_ago() };
    find(s, &schedule, &Blocked::default(), &Blocked::default(), &q)
}

#[test]
fn hhmm_parses_and_rejects() {
    assert_eq!(parse_hhmm("08:30"), Some(510));
    assert_eq!(parse_hhmm("24:00"), Some(1440));
    for bad in ["8:30", "24:01", "12:60", "", "ab:cd", "12-30", "-1:00"] {
        assert_eq!(parse_hhmm(bad), None, "{bad}");
    }
}

#[test]
fn overlapping_and_reversed_intervals_are_refused() {
    let w = |weekday, s, e| WorkingInterval { weekday, start_minute: s, end_minute: e };
    assert_eq!(
        WeeklyHours::new(vec![w(1, 480, 720), w(1, 700, 800)]),
        Err(vec![HoursError::Overlap(1, 0)])
    );
    assert_eq!(WeeklyHours::new(vec![w(1, 600, 540)]), Err(vec![HoursError::EndNotAfterStart(0)]));
    assert_eq!(WeeklyHours::new(vec![w(8, 60, 120)]), Err(vec![HoursError::Weekday(0)]));
    // Touching intervals and the same hours on other days are fine; the week comes out sorted.
    let week =
        WeeklyHours::new(vec![w(2, 780, 1020), w(1, 780, 1020), w(1, 480, 780)]).expect("valid");
    assert_eq!(week.intervals(), &[w(1, 480, 780), w(1, 780, 1020), w(2, 780, 1020)]);
}

#[test]
fn unknown_zones_are_refused() {
    assert!(Zone::parse("Mars/Olympus_Mons").is_none());
    assert!(Zone::parse("").is_none());
    assert_eq!(zone("Europe/Berlin").name(), "Europe/Berlin");
    assert_eq!(zone("UTC").name(), "UTC");
}

#[test]
fn wall_clock_maps_the_rfc_5545_way() {
    let ny = zone("America/New_York");
    let berlin = zone("Europe/Berlin");
    // (zone, date, minute, instant): skipped times move forward by the gap, repeated times take
    // the earlier instant.
    let table: [(&Zone, Date, u16, DateTime<Utc>); 8] = [
        (&ny, date(2026, 3, 8), 90, utc(2026, 3, 8, 6, 30)), // 01:30 EST
        (&ny, date(2026, 3, 8), 150, utc(2026, 3, 8, 7, 30)), // 02:30 skipped -> 03:30 EDT
        (&ny, date(2026, 3, 8), 180, utc(2026, 3, 8, 7, 0)), // 03:00 EDT
        (&ny, date(2026, 11, 1), 90, utc(2026, 11, 1, 5, 30)), // 01:30 twice -> EDT
        (&ny, date(2026, 11, 1), 120, utc(2026, 11, 1, 7, 0)), // 02:00 EST
        (&berlin, date(2026, 3, 29), 150, utc(2026, 3, 29, 1, 30)), // 02:30 -> 03:30 CEST
        (&berlin, date(2026, 10, 25), 150, utc(2026, 10, 25, 0, 30)), // 02:30 twice -> CEST
        (&berlin, date(2026, 10, 25), 1440, utc(2026, 10, 25, 23, 0)), // 24:00 = next 00:00 CET
    ];
    for (z, d, minute, want) in table {
        assert_eq!(z.instant(d, minute), Some(want), "{} {d} {minute}", z.name());
    }
}

#[test]
fn a_nine_to_five_doctor_starts_at_nine_local_on_both_sides_of_every_change() {
    // (zone, the day before a change, UTC hour of 09:00 before, after)
    let table = [
        ("America/New_York", date(2026, 3, 7), 14, 13),
        ("America/New_York", date(2026, 10, 31), 13, 14),
        ("Europe/Berlin", date(2026, 3, 28), 8, 7),
        ("Europe/Berlin", date(2026, 10, 24), 7, 8),
    ];
    for (name, before, h_before, h_after) in table {
        let z = zone(name);
        let s = settings(z.clone());
        let from = z.instant(before, 0).expect("instant");
        let to = from + Duration::days(3);
        let slots = search(&s, every_day(540, 1020), 60, from, to, 60);
        // Eight a day, on three days, each once.
        assert_eq!(slots.len(), 24, "{name}");
        let after = before.tomorrow().expect("date");
        let (y, m, d) = (i32::from(before.year()), before.month() as u32, before.day() as u32);
        assert_eq!(slots[0], utc(y, m, d, h_before, 0), "{name} before");
        let (ya, ma, da) = (i32::from(after.year()), after.month() as u32, after.day() as u32);
        assert_eq!(slots[8], utc(ya, ma, da, h_after, 0), "{name} after");
        // Every slot is on the hour in local time, 09:00 to 16:00.
        for t in &slots {
            let local = z.date_of(*t).expect("date");
            let nine = z.instant(local, 540).expect("nine");
            let k = (*t - nine).num_minutes();
            assert!(k % 60 == 0 && (0..=420).contains(&k), "{name} {t}");
        }
    }
}

/// (zone, Sunday of a change, interval minutes, expected starts as UTC (hour, minute)).
type NightCase<'a> = (&'a Zone, Date, (u16, u16), &'a [(u32, u32)]);

#[test]
fn night_shifts_over_the_changed_hour() {
    let ny = zone("America/New_York");
    let berlin = zone("Europe/Berlin");
    // (zone, Sunday of the change, interval, expected starts (UTC hh:mm) with 30-minute steps)
    let sunday = |s, e| {
        WeeklyHours::new(vec![WorkingInterval { weekday: 7, start_minute: s, end_minute: e }])
            .expect("week")
    };
    let table: [NightCase; 5] = [
        // 01:00-04:00 on the spring change lasts two hours.
        (&ny, date(2026, 3, 8), (60, 240), &[(6, 0), (6, 30), (7, 0), (7, 30)]),
        // ... and four on the autumn change: 01:00 and 01:30 come twice, at distinct instants.
        (
            &ny,
            date(2026, 11, 1),
            (60, 240),
            &[(5, 0), (5, 30), (6, 0), (6, 30), (7, 0), (7, 30), (8, 0), (8, 30)],
        ),
        // 02:00-03:00 does not exist on the spring change.
        (&ny, date(2026, 3, 8), (120, 180), &[]),
        (&berlin, date(2026, 3, 29), (120, 180), &[]),
        // ... and lasts two hours on the autumn change (02:00 CEST to 03:00 CET).
        (&berlin, date(2026, 10, 25), (120, 180), &[(0, 0), (0, 30), (1, 0), (1, 30)]),
    ];
    for (z, day, (s, e), want) in table {
        let from = z.instant(day, 0).expect("midnight");
        let slots =
            search(&settings(z.clone()), sunday(s, e), 30, from, from + Duration::days(1), 30);
        // UTC times of day, on the first such time at or after local midnight.
        let first_day = from.date_naive();
        let want: Vec<_> = want
            .iter()
            .map(|&(h, mi)| first_day.and_hms_opt(h, mi, 0).expect("time").and_utc())
            .map(|t| if t < from { t + Duration::days(1) } else { t })
            .collect();
        assert_eq!(slots, want, "{} {day} {s}-{e}", z.name());
    }
}

#[test]
fn booking_check_names_why() {
    let z = zone("Europe/Berlin");
    let s = Settings { zone: z.clone(), min_notice_minutes: 60, horizon_days: 30 };
    let schedule = Schedule { hours: every_day(480, 720), step_minutes: 15, buffer_minutes: 5 };
    let now = utc(2026, 6, 1, 5, 0); // 07:00 CEST
    let off = Blocked::new(vec![(utc(2026, 6, 3, 6, 0), utc(2026, 6, 3, 10, 0))]);
    let check = |start, d| check_booking(&s, &schedule, &off, start, d, now);
    assert_eq!(check(utc(2026, 6, 1, 6, 7), 30), Ok(())); // 08:07: off the step is fine
    assert_eq!(check(utc(2026, 6, 1, 5, 30), 30), Err(Refusal::TooSoon(60)));
    assert_eq!(check(utc(2026, 7, 2, 6, 0), 30), Err(Refusal::BeyondHorizon(30)));
    assert_eq!(check(utc(2026, 6, 1, 9, 45), 30), Err(Refusal::OutsideWorkingHours)); // to 12:15
    assert_eq!(check(utc(2026, 6, 2, 4, 0), 30), Err(Refusal::OutsideWorkingHours)); // 06:00
    assert_eq!(check(utc(2026, 6, 3, 7, 0), 30), Err(Refusal::TimeOff));
}

#[test]
fn buffers_keep_booked_time_and_the_time_after_it_free() {
    let z = zone("UTC");
    let s = settings(z);
    let schedule = Schedule { hours: every_day(480, 720), step_minutes: 15, buffer_minutes: 10 };
    let day = utc(2026, 6, 1, 0, 0);
    // 09:00-09:30 booked with a 10-minute buffer: held until 09:40.
    let booked = Blocked::new(vec![(utc(2026, 6, 1, 9, 0), utc(2026, 6, 1, 9, 40))]);
    let q =
        Search { from: day, to: day + Duration::days(1), duration_minutes: 30, now: long_ago() };
    let slots = find(&s, &schedule, &Blocked::default(), &booked, &q);
    let hm = |h, m| utc(2026, 6, 1, h, m);
    // 08:15 + 30 + 10 buffer = 08:55 is clear; 08:30 would run into 09:00 with its buffer.
    assert!(slots.contains(&hm(8, 15)));
    for taken in [hm(8, 30), hm(8, 45), hm(9, 0), hm(9, 15), hm(9, 30)] {
        assert!(!slots.contains(&taken), "{taken}");
    }
    assert!(slots.contains(&hm(9, 45)));
    // The last start fits the visit (not its buffer) inside the interval.
    assert_eq!(slots.last(), Some(&hm(11, 30)));
}

#[test]
fn notice_and_horizon_bound_the_search() {
    let s = Settings { zone: zone("UTC"), min_notice_minutes: 90, horizon_days: 1 };
    let schedule = Schedule { hours: every_day(0, 1440), step_minutes: 60, buffer_minutes: 0 };
    let now = utc(2026, 6, 1, 10, 0);
    let q = Search {
        from: now - Duration::days(1),
        to: now + Duration::days(5),
        duration_minutes: 30,
        now,
    };
    let slots = find(&s, &schedule, &Blocked::default(), &Blocked::default(), &q);
    assert_eq!(slots.first(), Some(&utc(2026, 6, 1, 12, 0)));
    assert_eq!(slots.last(), Some(&utc(2026, 6, 2, 10, 0)));
}

/// Dates around the 2026 changes of both zones.
fn around_a_change() -> impl Strategy<Value = (&'static str, Date)> {
    let changes = [
        ("America/New_York", date(2026, 3, 8)),
        ("America/New_York", date(2026, 11, 1)),
        ("Europe/Berlin", date(2026, 3, 29)),
        ("Europe/Berlin", date(2026, 10, 25)),
    ];
    (0..changes.len(), -3i32..=3).prop_map(move |(i, shift)| {
        let (name, day) = changes[i];
        (name, day.checked_add(jiff::Span::new().days(shift)).expect("date"))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any interval (night shifts over the changed hour included): slots are distinct, in time
    /// order, fit their interval, sit on the step from its start, and none is missing: the
    /// count is what the interval's real length allows.
    #[test]
    fn slots_fit_and_none_vanish(
        (name, day) in around_a_change(),
        start in 0u16..(24 * 12),
        length in 1u16..(8 * 12),
        step in 1i32..=24,
        duration in 1i32..=24,
    ) {
        let (start, step, duration) = (start * 5, step * 5, duration * 5);
        let end = (start + length * 5).min(1440);
        prop_assume!(start < end);
        let z = zone(name);
        let weekday = u8::try_from(day.weekday().to_monday_one_offset()).expect("weekday");
        let hours = WeeklyHours::new(vec![WorkingInterval { weekday, start_minute: start, end_minute: end }]).expect("week");
        let midnight = z.instant(day, 0).expect("midnight");
        let slots = search(&settings(z.clone()), hours, step, midnight - Duration::hours(1), midnight + Duration::days(1) + Duration::hours(1), duration);
        // The interval's instants, through jiff's Zoned API (compatible disambiguation).
        let tz = jiff::tz::TimeZone::get(name).expect("zone");
        let at = |m: u16| {
            let (d, m) = if m == 1440 { (day.tomorrow().expect("day"), 0) } else { (day, m) };
            let z = d.at(i8::try_from(m / 60).expect("h"), i8::try_from(m % 60).expect("m"), 0, 0).to_zoned(tz.clone()).expect("zoned");
            DateTime::from_timestamp(z.timestamp().as_second(), 0).expect("instant")
        };
        let (s, e) = (at(start), at(end));
        let real = (e - s).num_minutes();
        let want = if real >= i64::from(duration) { (real - i64::from(duration)) / i64::from(step) + 1 } else { 0 };
        prop_assert_eq!(slots.len() as i64, want);
        for pair in slots.windows(2) {
            prop_assert!(pair[0] < pair[1]);
        }
        for t in &slots {
            prop_assert!(s <= *t && *t + Duration::minutes(duration.into()) <= e);
            prop_assert_eq!((*t - s).num_minutes() % i64::from(step), 0);
        }
    }

    /// A daytime doctor gets the same local times every day, across the change.
    #[test]
    fn daytime_hours_keep_their_wall_clock(
        (name, day) in around_a_change(),
        start in (4 * 12u16)..(12 * 12),
        length in 1u16..(8 * 12),
        step in 1i32..=12,
    ) {
        let (start, step) = (start * 5, step * 5);
        let end = (start + length * 5).min(23 * 60);
        let z = zone(name);
        let from = z.instant(day, 0).expect("midnight");
        let slots = search(&settings(z.clone()), every_day(start, end), step, from, z.instant(day.checked_add(jiff::Span::new().days(2)).expect("day"), 0).expect("end"), 5);
        let per_day = i64::from(end - start - 5) / i64::from(step) + 1;
        prop_assert_eq!(slots.len() as i64, 2 * per_day);
        for t in &slots {
            let local = z.date_of(*t).expect("date");
            let offset = (*t - z.instant(local, start).expect("start")).num_minutes();
            prop_assert!(offset >= 0 && offset % i64::from(step) == 0);
        }
    }

    /// Booking any slot found removes every start whose visit plus buffer would overlap it, and
    /// every slot found passes the booking check.
    #[test]
    fn booked_slots_and_their_buffers_are_not_offered(
        (name, day) in around_a_change(),
        pick in 0usize..64,
        buffer in 0i32..=6,
        duration in 1i32..=12,
    ) {
        let (buffer, duration) = (buffer * 5, duration * 5);
        let z = zone(name);
        let s = settings(z.clone());
        let schedule = Schedule { hours: every_day(60, 1020), step_minutes: 15, buffer_minutes: buffer };
        let from = z.instant(day, 0).expect("midnight");
        let q = Search { from, to: from + Duration::days(1), duration_minutes: duration, now: long_ago() };
        let free = find(&s, &schedule, &Blocked::default(), &Blocked::default(), &q);
        prop_assume!(!free.is_empty());
        for t in &free {
            prop_assert_eq!(check_booking(&s, &schedule, &Blocked::default(), *t, duration, long_ago()), Ok(()));
        }
        let t = free[pick % free.len()];
        let held = Duration::minutes((duration + buffer).into());
        let after = find(&s, &schedule, &Blocked::default(), &Blocked::new(vec![(t, t + held)]), &q);
        for u in &after {
            prop_assert!(*u + held <= t || *u >= t + held, "{} overlaps {}", u, t);
        }
        prop_assert!(!after.contains(&t));
    }
}
