//! ScheduleService and the schedule's say on bookings, over gRPC with real PostgreSQL: the role
//! matrix of every RPC, bad input with field names, bookings refused outside working hours or
//! in time off (nothing written) and the admin override (in the history), the buffer under
//! concurrent bookings, and schedule changes that keep existing bookings. The pure search and
//! the time-zone tables and properties live in `clinic_service::schedules`.

use chrono::{DateTime, Duration, Utc};
use clinic_api::clinic::v1::{
    self as pb, appointment_service_client::AppointmentServiceClient,
    schedule_service_client::ScheduleServiceClient,
};
use clinic_service::schedules::zone::Zone;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::helpers::{Authed, Clinic, TestApp, TestUser, WEEK, bearer, spawn_app};

fn schedules(app: &TestApp, user: &TestUser) -> ScheduleServiceClient<Authed> {
    ScheduleServiceClient::with_interceptor(app.clinic_channel(), bearer(&user.token))
}

fn appointments(app: &TestApp, user: &TestUser) -> AppointmentServiceClient<Authed> {
    AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(&user.token))
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    clinic_shared::time::to_timestamp(t)
}

fn from_ts(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    clinic_shared::time::from_timestamp(t.as_ref().expect("timestamp")).expect("valid")
}

fn interval(weekday: pb::Weekday, start: &str, end: &str) -> pb::WorkingInterval {
    pb::WorkingInterval { weekday: weekday as i32, start_time: start.into(), end_time: end.into() }
}

/// 08:00-12:00 and 13:00-17:00 on every day of the week.
fn every_day(c: &Clinic, step: i32, buffer: i32) -> pb::UpdateScheduleRequest {
    let weekly_hours =
        WEEK.iter().flat_map(|d| [interval(*d, "08:00", "12:00"), interval(*d, "13:00", "17:00")]);
    pb::UpdateScheduleRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        weekly_hours: weekly_hours.collect(),
        slot_step_minutes: step,
        buffer_minutes: buffer,
    }
}

async fn set_zone(app: &TestApp, c: &Clinic, zone: &str) -> Result<pb::Organization, Status> {
    let request = pb::UpdateOrganizationRequest {
        organization_id: c.org.id.clone(),
        time_zone: zone.into(),
        update_mask: Some(prost_types::FieldMask { paths: vec!["time_zone".into()] }),
        ..Default::default()
    };
    let response = app.orgs(&c.admin.token).update_organization(request).await?;
    Ok(response.into_inner().organization.expect("organization"))
}

/// The instant of wall-clock `minute` of the local date `days` after today's in `zone`.
fn local(zone: &str, days: i64, minute: u16) -> DateTime<Utc> {
    let z = Zone::parse(zone).expect("zone");
    let today = z.date_of(Utc::now()).expect("today");
    let day = today.checked_add(jiff::Span::new().days(days)).expect("day");
    z.instant(day, minute).expect("instant")
}

fn booking(
    c: &Clinic,
    patient: &str,
    start: DateTime<Utc>,
    minutes: i32,
) -> pb::CreateAppointmentRequest {
    pb::CreateAppointmentRequest {
        organization_id: c.org.id.clone(),
        patient_id: patient.into(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(start)),
        duration_minutes: minutes,
        ..Default::default()
    }
}

async fn book(
    api: &mut AppointmentServiceClient<Authed>,
    req: pb::CreateAppointmentRequest,
) -> Result<pb::Appointment, Status> {
    Ok(api.create_appointment(req).await?.into_inner().appointment.expect("appointment"))
}

async fn slots(
    app: &TestApp,
    c: &Clinic,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    minutes: i32,
) -> Vec<DateTime<Utc>> {
    let request = pb::FindAvailableSlotsRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(from)),
        end_time: Some(ts(to)),
        duration_minutes: minutes,
    };
    let response = schedules(app, &c.patient).find_available_slots(request).await.expect("slots");
    response.into_inner().slots.iter().map(|s| from_ts(&s.start_time)).collect()
}

fn violated_fields(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let details = status.get_error_details();
    let bad = details.bad_request().expect("BadRequest details");
    bad.field_violations.iter().map(|v| v.field.clone()).collect()
}

async fn appointment_count(app: &TestApp, c: &Clinic) -> i64 {
    let db = app.tenant_client("main", &c.org.database_name).await;
    db.query_one("SELECT count(*) FROM appointment", &[]).await.expect("count").get(0)
}

/// Who may call what: the doctor themself and admins write; every member reads; a non-member
/// gets NOT_FOUND for all of it; only admins change the clinic's settings.
#[tokio::test]
async fn role_matrix() {
    let app = spawn_app().await;
    let c = app.clinic("sched-roles").await;
    let other_doctor_user = app.user("doctor2").await;
    app.add_member(&c.admin, &c.org.id, &other_doctor_user, pb::Role::Doctor, None).await;
    let outsider = app.user("outsider").await;
    let callers: [(&str, &TestUser); 5] = [
        ("admin", &c.admin),
        ("doctor", &c.doctor),
        ("other doctor", &other_doctor_user),
        ("patient", &c.patient),
        ("outsider", &outsider),
    ];
    use Code::{NotFound as NF, Ok as OK, PermissionDenied as PD};
    // (rpc, expected code per caller, in the order above)
    let table: [(&str, [Code; 5]); 8] = [
        ("UpdateSchedule", [OK, OK, PD, PD, NF]),
        ("GetSchedule", [OK, OK, OK, OK, NF]),
        ("FindAvailableSlots", [OK, OK, OK, OK, NF]),
        ("CreateTimeOff", [OK, OK, PD, PD, NF]),
        ("ListTimeOff", [OK, OK, OK, OK, NF]),
        ("DeleteTimeOff", [OK, OK, PD, PD, NF]),
        ("DeleteSchedule", [OK, OK, PD, PD, NF]),
        ("UpdateOrganization", [OK, PD, PD, PD, NF]),
    ];
    let org = c.org.id.clone();
    let doctor = c.doctor_member.id.clone();
    let start = Utc::now() + Duration::days(2);
    for (rpc, expected) in table {
        for ((who, user), want) in callers.iter().zip(expected) {
            // Each call works on a schedule and a time off that exist (made by the admin).
            let mut admin = schedules(&app, &c.admin);
            admin.update_schedule(every_day(&c, 30, 0)).await.expect("admin sets schedule");
            let off = admin
                .create_time_off(pb::CreateTimeOffRequest {
                    organization_id: org.clone(),
                    doctor_id: doctor.clone(),
                    start_time: Some(ts(start)),
                    end_time: Some(ts(start + Duration::hours(1))),
                    reason: String::new(),
                })
                .await
                .expect("admin adds time off")
                .into_inner()
                .time_off
                .expect("time off");
            let mut api = schedules(&app, user);
            let (o, d) = (org.clone(), doctor.clone());
            let result: Result<(), Status> = match rpc {
                "UpdateSchedule" => api.update_schedule(every_day(&c, 15, 5)).await.map(drop),
                "GetSchedule" => api
                    .get_schedule(pb::GetScheduleRequest { organization_id: o, doctor_id: d })
                    .await
                    .map(|r| assert!(r.into_inner().schedule.is_some())),
                "FindAvailableSlots" => api
                    .find_available_slots(pb::FindAvailableSlotsRequest {
                        organization_id: o,
                        doctor_id: d,
                        start_time: Some(ts(start)),
                        end_time: Some(ts(start + Duration::days(1))),
                        duration_minutes: 30,
                    })
                    .await
                    .map(drop),
                "CreateTimeOff" => api
                    .create_time_off(pb::CreateTimeOffRequest {
                        organization_id: o,
                        doctor_id: d,
                        start_time: Some(ts(start + Duration::days(1))),
                        end_time: Some(ts(start + Duration::days(2))),
                        reason: "conference".into(),
                    })
                    .await
                    .map(drop),
                "ListTimeOff" => api
                    .list_time_off(pb::ListTimeOffRequest {
                        organization_id: o,
                        doctor_id: d,
                        ..Default::default()
                    })
                    .await
                    .map(|r| assert!(!r.into_inner().time_off.is_empty())),
                "DeleteTimeOff" => api
                    .delete_time_off(pb::DeleteTimeOffRequest {
                        organization_id: o,
                        doctor_id: d,
                        time_off_id: off.id.clone(),
                    })
                    .await
                    .map(drop),
                "DeleteSchedule" => api
                    .delete_schedule(pb::DeleteScheduleRequest { organization_id: o, doctor_id: d })
                    .await
                    .map(|r| assert!(r.into_inner().deleted)),
                "UpdateOrganization" => app
                    .orgs(&user.token)
                    .update_organization(pb::UpdateOrganizationRequest {
                        organization_id: o,
                        time_zone: "Europe/Berlin".into(),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["time_zone".into()],
                        }),
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                other => unreachable!("{other}"),
            };
            let got = result.err().map_or(Code::Ok, |s| s.code());
            assert_eq!(got, want, "{rpc} as {who}");
        }
    }
    // A doctor names themself as `me`; a patient is no doctor.
    let mut doctor_api = schedules(&app, &c.doctor);
    let me = pb::GetScheduleRequest { organization_id: org.clone(), doctor_id: "me".into() };
    let mine =
        doctor_api.get_schedule(me).await.expect("me").into_inner().schedule.expect("schedule");
    assert_eq!(mine.doctor_id, doctor);
    let not_doctor = pb::GetScheduleRequest {
        organization_id: org.clone(),
        doctor_id: c.patient_member.id.clone(),
    };
    let e = doctor_api.get_schedule(not_doctor).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

/// Bad input is INVALID_ARGUMENT naming the field, and changes nothing.
#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let app = spawn_app().await;
    let c = app.clinic("sched-bad").await;
    let mut admin = schedules(&app, &c.admin);
    let stored = admin.update_schedule(every_day(&c, 30, 0)).await.expect("schedule");
    let stored = stored.into_inner().schedule.expect("schedule");

    let with = |f: &dyn Fn(&mut pb::UpdateScheduleRequest)| {
        let mut r = every_day(&c, 30, 0);
        f(&mut r);
        r
    };
    let cases: Vec<(pb::UpdateScheduleRequest, &str)> = vec![
        (with(&|r| r.slot_step_minutes = 0), "slot_step_minutes"),
        (with(&|r| r.buffer_minutes = 241), "buffer_minutes"),
        (with(&|r| r.weekly_hours[0].end_time = "07:00".into()), "weekly_hours[0].end_time"),
        (with(&|r| r.weekly_hours[1].start_time = "11:00".into()), "weekly_hours[1]"),
        (with(&|r| r.weekly_hours[2].start_time = "8am".into()), "weekly_hours[2].start_time"),
        (with(&|r| r.weekly_hours[3].weekday = 0), "weekly_hours[3].weekday"),
        (with(&|r| r.doctor_id = "nobody".into()), "doctor_id"),
        (with(&|r| r.organization_id = String::new()), "organization_id"),
    ];
    for (request, field) in cases {
        let e = admin.update_schedule(request).await.unwrap_err();
        assert_eq!(violated_fields(&e), vec![field.to_owned()], "{field}");
    }
    let get = pb::GetScheduleRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
    };
    let now = admin.get_schedule(get).await.expect("get").into_inner().schedule.expect("schedule");
    assert_eq!(now, stored, "nothing changed");

    let start = Utc::now() + Duration::days(1);
    let search = |from: DateTime<Utc>, to: DateTime<Utc>, minutes| pb::FindAvailableSlotsRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(from)),
        end_time: Some(ts(to)),
        duration_minutes: minutes,
    };
    for (request, field) in [
        (search(start, start + Duration::days(32), 30), "end_time"),
        (search(start, start - Duration::hours(1), 30), "end_time"),
        (search(start, start + Duration::days(1), 1000), "duration_minutes"),
        (
            pb::FindAvailableSlotsRequest { start_time: None, ..search(start, start, 30) },
            "start_time",
        ),
        (
            pb::FindAvailableSlotsRequest {
                start_time: Some(prost_types::Timestamp { seconds: 250_000_000_000, nanos: 0 }),
                ..search(start, start, 30)
            },
            "start_time",
        ),
    ] {
        let e = admin.find_available_slots(request).await.unwrap_err();
        assert_eq!(violated_fields(&e), vec![field.to_owned()], "{field}");
    }
    let off = |from: DateTime<Utc>, to: DateTime<Utc>, reason: &str| pb::CreateTimeOffRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(from)),
        end_time: Some(ts(to)),
        reason: reason.into(),
    };
    for (request, field) in [
        (off(start, start, ""), "end_time"),
        (off(start, start + Duration::days(400), ""), "end_time"),
        (off(start, start + Duration::hours(1), &"x".repeat(501)), "reason"),
    ] {
        let e = admin.create_time_off(request).await.unwrap_err();
        assert_eq!(violated_fields(&e), vec![field.to_owned()], "{field}");
    }
    let list = pb::ListTimeOffRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        ..Default::default()
    };
    assert!(admin.list_time_off(list).await.expect("list").into_inner().time_off.is_empty());

    let mut orgs = app.orgs(&c.admin.token);
    let update = |zone: &str, paths: &[&str]| pb::UpdateOrganizationRequest {
        organization_id: c.org.id.clone(),
        time_zone: zone.into(),
        min_notice_minutes: -5,
        booking_horizon_days: 0,
        update_mask: Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    for (request, field) in [
        (update("Mars/Olympus", &["time_zone"]), "time_zone"),
        (update("UTC", &[]), "update_mask"),
        (update("UTC", &["colour"]), "update_mask"),
        (update("UTC", &["min_notice_minutes"]), "min_notice_minutes"),
        (update("UTC", &["booking_horizon_days"]), "booking_horizon_days"),
    ] {
        let e = orgs.update_organization(request).await.unwrap_err();
        assert_eq!(violated_fields(&e), vec![field.to_owned()], "{field}");
    }
    let get = pb::GetOrganizationRequest { organization_id: c.org.id.clone() };
    let org =
        orgs.get_organization(get).await.expect("get").into_inner().organization.expect("org");
    assert_eq!(
        (org.time_zone.as_str(), org.min_notice_minutes, org.booking_horizon_days),
        ("UTC", 60, 180)
    );
}

/// Outside working hours, across an interval's end, in time off, too soon or too far ahead:
/// FAILED_PRECONDITION naming why, nothing booked. An admin's override books and is recorded;
/// a patient may not override. A doctor without a schedule stays bookable at any future time.
#[tokio::test]
async fn bookings_follow_the_schedule_unless_an_admin_overrides() {
    let app = spawn_app().await;
    let c = app.clinic("sched-book").await;
    // Without a schedule: 03:00 is fine (the first round's behaviour); search has nothing to say.
    let mut patient = appointments(&app, &c.patient);
    let night = local("UTC", 3, 180);
    book(&mut patient, booking(&c, "me", night, 30)).await.expect("no schedule: any time");
    let none = pb::FindAvailableSlotsRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(ts(night)),
        end_time: Some(ts(night + Duration::days(1))),
        duration_minutes: 30,
    };
    let e = schedules(&app, &c.patient).find_available_slots(none).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);

    let zone = "Europe/Berlin";
    assert_eq!(set_zone(&app, &c, zone).await.expect("zone").time_zone, zone);
    schedules(&app, &c.doctor).update_schedule(every_day(&c, 15, 0)).await.expect("schedule");
    let day = 4;
    let before = appointment_count(&app, &c).await;
    for (start, minutes, why) in [
        (local(zone, day, 12 * 60 + 30), 30, "working hours"), // lunch
        (local(zone, day, 11 * 60 + 45), 30, "working hours"), // runs past 12:00
        (local(zone, day, 3 * 60), 30, "working hours"),       // 03:00
        (Utc::now() + Duration::minutes(20), 30, "minimum notice"),
        (Utc::now() + Duration::days(200), 30, "horizon"),
    ] {
        let e = book(&mut patient, booking(&c, "me", start, minutes)).await.unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{why}: {e:?}");
        assert!(e.message().contains(why), "{why}: {}", e.message());
    }
    let mut doctor = schedules(&app, &c.doctor);
    let away = local(zone, day + 1, 9 * 60);
    doctor
        .create_time_off(pb::CreateTimeOffRequest {
            organization_id: c.org.id.clone(),
            doctor_id: "me".into(),
            start_time: Some(ts(away)),
            end_time: Some(ts(away + Duration::hours(2))),
            reason: "dentist".into(),
        })
        .await
        .expect("time off");
    let e =
        book(&mut patient, booking(&c, "me", away + Duration::minutes(30), 30)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("time off"), "{}", e.message());
    assert_eq!(appointment_count(&app, &c).await, before, "nothing booked");

    // Inside hours, off the step: fine, and no override recorded.
    let fine = book(&mut patient, booking(&c, "me", local(zone, day, 8 * 60 + 7), 30))
        .await
        .expect("fits");
    // Patients may not override.
    let mut cheeky = booking(&c, "me", local(zone, day, 12 * 60 + 15), 30);
    cheeky.schedule_override = true;
    assert_eq!(book(&mut patient, cheeky).await.unwrap_err().code(), Code::PermissionDenied);
    // An admin may, and the history says so.
    let mut admin = appointments(&app, &c.admin);
    let mut lunch = booking(&c, &c.patient_member.id, local(zone, day, 12 * 60 + 15), 30);
    lunch.schedule_override = true;
    let overridden = book(&mut admin, lunch).await.expect("override");
    for (id, want) in [(&overridden.id, true), (&fine.id, false)] {
        let got = admin
            .get_appointment(pb::GetAppointmentRequest {
                organization_id: c.org.id.clone(),
                appointment_id: id.clone(),
            })
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got.history.len(), 1);
        assert_eq!(got.history[0].schedule_override, want, "{id}");
    }
    // Without the flag, the admin is refused like anyone.
    let lunch2 = booking(&c, &c.patient_member.id, local(zone, day + 2, 12 * 60 + 15), 30);
    assert_eq!(book(&mut admin, lunch2).await.unwrap_err().code(), Code::FailedPrecondition);
}

/// The buffer is held by the database: two bookings back to back (fine without a buffer) race
/// in parallel, round after round, and exactly one wins each time.
#[tokio::test]
async fn buffer_is_enforced_under_concurrency() {
    let app = spawn_app().await;
    let c = app.clinic("sched-race").await;
    let second_user = app.user("patient2").await;
    let second = app.add_member(&c.admin, &c.org.id, &second_user, pb::Role::Patient, None).await;
    schedules(&app, &c.admin).update_schedule(every_day(&c, 15, 15)).await.expect("schedule");
    for round in 0..6 {
        let nine = local("UTC", 2 + round, 9 * 60);
        let mut a = appointments(&app, &c.admin);
        let mut b = appointments(&app, &c.admin);
        let first = booking(&c, &c.patient_member.id, nine, 30);
        let next = booking(&c, &second.id, nine + Duration::minutes(30), 30);
        let (x, y) = tokio::join!(book(&mut a, first), book(&mut b, next));
        let won = [x.is_ok(), y.is_ok()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "round {round}: {x:?} {y:?}");
        for lost in [x, y].into_iter().filter_map(Result::err) {
            assert!(matches!(lost.code(), Code::AlreadyExists | Code::Aborted), "{lost:?}");
        }
    }
    // Without a buffer the same pair both book.
    schedules(&app, &c.admin).update_schedule(every_day(&c, 15, 0)).await.expect("schedule");
    let nine = local("UTC", 10, 9 * 60);
    let mut a = appointments(&app, &c.admin);
    book(&mut a, booking(&c, &c.patient_member.id, nine, 30)).await.expect("first");
    book(&mut a, booking(&c, &second.id, nine + Duration::minutes(30), 30)).await.expect("second");
}

/// Changing the schedule or adding time off keeps existing bookings, and search never offers
/// their time (with their buffers).
#[tokio::test]
async fn schedule_changes_keep_bookings_and_search_skips_them() {
    let app = spawn_app().await;
    let c = app.clinic("sched-keep").await;
    let mut doctor = schedules(&app, &c.doctor);
    doctor.update_schedule(every_day(&c, 30, 10)).await.expect("schedule");
    let day_start = local("UTC", 3, 0);
    let nine = day_start + Duration::hours(9);
    let mut patient = appointments(&app, &c.patient);
    let booked = book(&mut patient, booking(&c, "me", nine, 30)).await.expect("book 09:00");

    let found = slots(&app, &c, day_start, day_start + Duration::days(1), 30).await;
    let hm = |h: i64, m: i64| day_start + Duration::hours(h) + Duration::minutes(m);
    assert!(found.contains(&hm(8, 0)));
    // 08:30 would run into 09:00 with its own buffer; 09:00 is taken; 09:30 is the booked
    // visit's buffer (10 minutes, copied at booking).
    for taken in [hm(8, 30), hm(9, 0), hm(9, 30)] {
        assert!(!found.contains(&taken), "{taken}");
    }
    assert!(found.contains(&hm(10, 0)));
    // Afternoon only from now on, and time off over the booking: the booking stays.
    let mut afternoon = every_day(&c, 30, 0);
    afternoon.weekly_hours.retain(|w| w.start_time == "13:00");
    doctor.update_schedule(afternoon).await.expect("afternoon");
    doctor
        .create_time_off(pb::CreateTimeOffRequest {
            organization_id: c.org.id.clone(),
            doctor_id: "me".into(),
            start_time: Some(ts(hm(8, 0))),
            end_time: Some(ts(hm(10, 0))),
            reason: String::new(),
        })
        .await
        .expect("time off");
    let got = patient
        .get_appointment(pb::GetAppointmentRequest {
            organization_id: c.org.id.clone(),
            appointment_id: booked.id.clone(),
        })
        .await
        .expect("get")
        .into_inner()
        .appointment
        .expect("appointment");
    assert_eq!(got.status, pb::AppointmentStatus::Pending as i32);
    let found = slots(&app, &c, day_start, day_start + Duration::days(1), 30).await;
    assert_eq!(found.first(), Some(&hm(13, 0)));
    assert!(found.iter().all(|t| *t >= hm(13, 0)));
    // Back to mornings with a longer buffer: the booking keeps its own 10 minutes; the new
    // visit's 15 decide where it may start before it.
    doctor.update_schedule(every_day(&c, 15, 15)).await.expect("mornings again");
    let found = slots(&app, &c, hm(10, 0), day_start + Duration::days(1), 30).await;
    assert_eq!(found.first(), Some(&hm(10, 0)));
    let found =
        slots(&app, &c, day_start + Duration::days(1), day_start + Duration::days(2), 30).await;
    assert_eq!(found.first(), Some(&hm(32, 0)), "the next day starts at 08:00");
}

/// The clinic's settings: defaults, admins change them, GetOrganization shows them, and slot
/// search reads hours in the zone.
#[tokio::test]
async fn clinic_settings_and_the_zone_of_the_hours() {
    let app = spawn_app().await;
    let c = app.clinic("sched-zone").await;
    let mut orgs = app.orgs(&c.admin.token);
    let request = pb::UpdateOrganizationRequest {
        organization_id: c.org.id.clone(),
        time_zone: "America/New_York".into(),
        min_notice_minutes: 0,
        booking_horizon_days: 30,
        update_mask: Some(prost_types::FieldMask {
            paths: vec![
                "time_zone".into(),
                "min_notice_minutes".into(),
                "booking_horizon_days".into(),
            ],
        }),
    };
    let org = orgs.update_organization(request).await.expect("update").into_inner();
    let org = org.organization.expect("org");
    assert_eq!(
        (org.time_zone.as_str(), org.min_notice_minutes, org.booking_horizon_days),
        ("America/New_York", 0, 30)
    );
    let get = pb::GetOrganizationRequest { organization_id: c.org.id.clone() };
    let seen = app.orgs(&c.patient.token).get_organization(get).await.expect("get");
    assert_eq!(seen.into_inner().organization.expect("org").time_zone, "America/New_York");

    schedules(&app, &c.doctor).update_schedule(every_day(&c, 60, 0)).await.expect("schedule");
    let zone = "America/New_York";
    let from = local(zone, 2, 0);
    let found = slots(&app, &c, from, from + Duration::days(1), 60).await;
    let want: Vec<_> =
        [8, 9, 10, 11, 13, 14, 15, 16].iter().map(|h| local(zone, 2, h * 60)).collect();
    assert_eq!(found, want);
    // The horizon cuts the search.
    let late = local(zone, 29, 0);
    let found = slots(&app, &c, late, late + Duration::days(5), 60).await;
    assert!(found.iter().all(|t| *t <= Utc::now() + Duration::days(30)));
    assert!(!found.is_empty());
}

/// Time off lists in (start, id) order across pages, each once; deleting one twice is
/// NOT_FOUND the second time; another doctor's id is NOT_FOUND.
#[tokio::test]
async fn time_off_pages_and_deletes() {
    let app = spawn_app().await;
    let c = app.clinic("sched-off").await;
    let mut doctor = schedules(&app, &c.doctor);
    let base = Utc::now() + Duration::days(3);
    let mut made = Vec::new();
    for i in [2, 0, 4, 1, 3] {
        let start = base + Duration::days(i);
        let off = doctor
            .create_time_off(pb::CreateTimeOffRequest {
                organization_id: c.org.id.clone(),
                doctor_id: "me".into(),
                start_time: Some(ts(start)),
                end_time: Some(ts(start + Duration::hours(3))),
                reason: format!("away {i}"),
            })
            .await
            .expect("time off")
            .into_inner()
            .time_off
            .expect("time off");
        assert_eq!(off.created_by_member_id, c.doctor_member.id);
        made.push((from_ts(&off.start_time), off.id));
    }
    made.sort();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = schedules(&app, &c.patient)
            .list_time_off(pb::ListTimeOffRequest {
                organization_id: c.org.id.clone(),
                doctor_id: c.doctor_member.id.clone(),
                page_size: 2,
                page_token: token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.time_off.len() <= 2);
        seen.extend(page.time_off.iter().map(|t| (from_ts(&t.start_time), t.id.clone())));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, made);
    let delete = |id: &str, doctor_id: &str| pb::DeleteTimeOffRequest {
        organization_id: c.org.id.clone(),
        doctor_id: doctor_id.into(),
        time_off_id: id.into(),
    };
    let mut admin = schedules(&app, &c.admin);
    let e = admin.delete_time_off(delete(&made[0].1, &c.admin_member.id)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "an admin is not a doctor");
    doctor.delete_time_off(delete(&made[0].1, "me")).await.expect("delete");
    let e = doctor.delete_time_off(delete(&made[0].1, "me")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}
