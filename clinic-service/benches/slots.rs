//! FindAvailableSlots over 31 days for a doctor working 8 hours a day with 200 booked
//! appointments, printed beside its baseline measured in the same run on the same PostgreSQL:
//! the raw SQL that reads the same rows (settings, schedule, time off, booked ranges; one
//! prepared statement over tokio-postgres), and the pure slot computation alone.
//!
//! Run with `cargo bench -p clinic-service --bench slots` (PostgreSQL at `TEST_DATABASE_URL`,
//! default 127.0.0.1:5432).

// A benchmark may panic on a row it did not expect.
#![allow(clippy::disallowed_methods)]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration as StdDuration, Instant};

use chrono::{Duration, DurationRound, Utc};
use clinic_api::clinic::v1::{self as pb, schedule_service_client::ScheduleServiceClient};
use clinic_service::schedules::{repository::LOAD, slots};
use helpers::{WEEK, bearer, spawn_app};
use uuid::Uuid;

const BOOKED: i64 = 200;
const CALLS: usize = 500;
const DAYS: i64 = 31;

struct Figures(Vec<StdDuration>);

impl Figures {
    fn new(mut samples: Vec<StdDuration>) -> Self {
        samples.sort();
        Self(samples)
    }
    fn q(&self, q: f64) -> f64 {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i].as_secs_f64() * 1e3
    }
    fn line(&self, label: &str) -> String {
        format!(
            "{label:<52} n={:<4} p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms",
            self.0.len(),
            self.q(0.5),
            self.q(0.99),
            self.q(1.0)
        )
    }
}

#[tokio::main]
async fn main() {
    let app = spawn_app().await;
    let c = app.clinic("slots-bench").await;
    let weekly_hours = WEEK
        .iter()
        .map(|d| pb::WorkingInterval {
            weekday: *d as i32,
            start_time: "09:00".into(),
            end_time: "17:00".into(),
        })
        .collect();
    let mut api =
        ScheduleServiceClient::with_interceptor(app.clinic_channel(), bearer(&c.doctor.token));
    api.update_schedule(pb::UpdateScheduleRequest {
        organization_id: c.org.id.clone(),
        doctor_id: "me".into(),
        weekly_hours,
        slot_step_minutes: 15,
        buffer_minutes: 5,
    })
    .await
    .expect("schedule");

    // 200 bookings spread over the 31 days (about 6.5 a day, 45 minutes apart from 09:00).
    let db = app.tenant_client("main", &c.org.database_name).await;
    let doctor: Uuid = c.doctor_member.id.parse().expect("uuid");
    let patient: Uuid = c.patient_member.id.parse().expect("uuid");
    let tomorrow = (Utc::now() + Duration::days(1)).duration_trunc(Duration::days(1)).expect("day");
    for i in 0..BOOKED {
        let start = tomorrow
            + Duration::days(i % DAYS)
            + Duration::hours(9)
            + Duration::minutes(45 * (i / DAYS));
        db.execute(
            "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, \
             duration_minutes, buffer_minutes) VALUES ($1, $2, $3, 30, 5)",
            &[&patient, &doctor, &start],
        )
        .await
        .expect("book");
    }
    db.batch_execute("ANALYZE").await.expect("analyze");

    let (from, to) = (tomorrow, tomorrow + Duration::days(DAYS));
    let request = || pb::FindAvailableSlotsRequest {
        organization_id: c.org.id.clone(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(clinic_shared::time::to_timestamp(from)),
        end_time: Some(clinic_shared::time::to_timestamp(to)),
        duration_minutes: 30,
    };
    let first = api.find_available_slots(request()).await.expect("warm up").into_inner();
    let statement = db.prepare(LOAD).await.expect("prepare");
    let look_ahead = to + Duration::hours(12);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&doctor, &from, &look_ahead];
    db.query_one(&statement, &params).await.expect("warm up");

    // Interleaved, so whatever else the machine does hits both alike.
    let (mut rpc, mut sql) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for _ in 0..CALLS {
        let started = Instant::now();
        api.find_available_slots(request()).await.expect("find");
        rpc.push(started.elapsed());
        let started = Instant::now();
        db.query_one(&statement, &params).await.expect("raw read");
        sql.push(started.elapsed());
    }

    // The computation alone, on the rows the service read.
    let calendar = {
        let conn = app.access.organization(c.org.id.parse().expect("uuid")).await.expect("org");
        let client = app.access.connect(&conn.location).await.expect("connect");
        clinic_service::schedules::repository::load(&client, doctor, from, look_ahead)
            .await
            .expect("load")
    };
    let (schedule, _) = calendar.schedule.clone().expect("schedule");
    let search = slots::Search { from, to, duration_minutes: 30, now: Utc::now() };
    let time_off = slots::Blocked::new(calendar.time_off.clone());
    let booked = slots::Blocked::new(calendar.booked.clone());
    let mut compute = Vec::with_capacity(CALLS);
    let mut found = 0;
    for _ in 0..CALLS {
        let started = Instant::now();
        found = slots::find(&calendar.settings, &schedule, &time_off, &booked, &search).len();
        compute.push(started.elapsed());
    }

    let (rpc, sql, compute) = (Figures::new(rpc), Figures::new(sql), Figures::new(compute));
    println!(
        "\n== FindAvailableSlots: {DAYS} days, 8 h a day, 15-minute step, {} booked, {found} free slots",
        calendar.booked.len()
    );
    assert_eq!(first.slots.len(), found, "the service and the computation agree");
    println!("{}", sql.line("baseline: raw SQL reading the same rows (prepared)"));
    println!("{}", rpc.line("FindAvailableSlots over gRPC (auth, tenant, SQL, Rust)"));
    println!("{}", compute.line("of which the slot computation in Rust"));
    println!(
        "p99: {:.3} ms ({:.2}x the baseline's p99); target under 20 ms",
        rpc.q(0.99),
        rpc.q(0.99) / sql.q(0.99)
    );
}
