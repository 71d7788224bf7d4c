//! Planned for size: with 100,000 appointments in one clinic, a page of a doctor's schedule
//! (and a patient's, and the admin's whole list) is read through an index, never a scan of the
//! table. Checked with EXPLAIN, not by timing.

use std::time::Instant;

use super::{Tenant, hours_ahead};
use crate::appointments::{
    domain::{Actor, Role},
    listing::{list_for_caller_query, list_query},
    page_token::PageToken,
    requests::ListAppointments,
};
use crate::tenancy::Db;

const DOCTORS: i64 = 100;
const PATIENTS: i64 = 1000;
const APPOINTMENTS: i64 = 100_000;
const DOCTOR_IDX: &str = "appointment_doctor_start_idx";
const PATIENT_IDX: &str = "appointment_patient_start_idx";
const START_IDX: &str = "appointment_start_idx";

#[tokio::test]
async fn list_queries_use_an_index_at_100k_rows() {
    let t = Tenant::new().await;
    let c = &t.client;
    let seeded = Instant::now();
    c.batch_execute(&format!(
        "INSERT INTO doctor_profile (id) SELECT gen_random_uuid() FROM generate_series(1, {DOCTORS});
         INSERT INTO patient_profile (id) SELECT gen_random_uuid() FROM generate_series(1, {PATIENTS});
         INSERT INTO organization_user (user_id, email, email_key, name, doctor_profile_id)
             SELECT gen_random_uuid(), 'd@example.test', 'd@example.test', 'doctor', id FROM doctor_profile;
         INSERT INTO organization_user (user_id, email, email_key, name, patient_profile_id)
             SELECT gen_random_uuid(), 'p@example.test', 'p@example.test', 'patient', id FROM patient_profile;
         -- Appointment i: doctor i % {DOCTORS}, patient i % {PATIENTS}, every 30 minutes per
         -- doctor, so neither side overlaps; a fifth of them already final.
         WITH d AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM organization_user WHERE role = 'doctor'),
              p AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS n FROM organization_user WHERE role = 'patient')
         INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, status, notes)
         SELECT p.id, d.id, now() + interval '1 day' + (i / {DOCTORS}) * interval '30 minutes',
                (CASE i % 5 WHEN 0 THEN 'COMPLETED' WHEN 1 THEN 'APPROVED' ELSE 'PENDING' END)::appointment_status,
                'seeded'
         FROM generate_series(0, {APPOINTMENTS} - 1) AS i
         JOIN d ON d.n = i % {DOCTORS}
         JOIN p ON p.n = i % {PATIENTS};
         ANALYZE;"
    ))
    .await
    .expect("seed 100k appointments");
    let seed_time = seeded.elapsed();
    assert_eq!(t.count("appointment").await, APPOINTMENTS);

    let member = |role: &str| {
        let sql = format!("SELECT id FROM organization_user WHERE role = '{role}' LIMIT 1");
        async move { c.query_one(&sql, &[]).await.unwrap().get::<_, uuid::Uuid>(0) }
    };
    let doctor = Actor { member_id: member("doctor").await, role: Role::Doctor };
    let patient = Actor { member_id: member("patient").await, role: Role::Patient };
    let admin = Actor { member_id: doctor.member_id, role: Role::Admin };
    let page = ListAppointments {
        organization_id: uuid::Uuid::nil(),
        doctor: None,
        patient: None,
        statuses: vec![],
        start_from: None,
        start_to: None,
        page_size: 20,
        after: None,
    };
    // The seeded schedule spans about 21 days: cursors and ranges fall in the middle of it.
    let later = PageToken { start_time: hours_ahead(24 * 10), id: uuid::Uuid::nil() };
    let cases = [
        ("doctor's schedule, first page", DOCTOR_IDX, doctor, page.clone()),
        (
            "doctor's schedule, a later page",
            DOCTOR_IDX,
            doctor,
            ListAppointments { after: Some(later), ..page.clone() },
        ),
        (
            "doctor's week",
            DOCTOR_IDX,
            doctor,
            ListAppointments {
                start_from: Some(hours_ahead(24 * 7)),
                start_to: Some(hours_ahead(24 * 14)),
                ..page.clone()
            },
        ),
        ("patient's visits", PATIENT_IDX, patient, page.clone()),
        (
            "patient's visits, a later page",
            PATIENT_IDX,
            patient,
            ListAppointments { after: Some(later), ..page.clone() },
        ),
        (
            "admin, everything",
            START_IDX,
            admin,
            ListAppointments { after: Some(later), ..page.clone() },
        ),
    ];
    // Each case as the page query for a known caller, and with the caller lookup folded in.
    let cases = cases
        .into_iter()
        .flat_map(|(n, i, a, r)| [(n, i, a, r.clone(), false), (n, i, a, r, true)]);
    for (name, index, actor, req, folded) in cases {
        let name =
            if folded { format!("{name} (with the caller lookup)") } else { name.to_owned() };
        let user_id: uuid::Uuid = c
            .query_one("SELECT user_id FROM organization_user WHERE id = $1", &[&actor.member_id])
            .await
            .unwrap()
            .get(0);
        let q = if folded { list_for_caller_query(&req) } else { list_query(&actor, &req) };
        let mut params = q.param_refs();
        if folded {
            params.insert(0, &user_id);
        }
        let explain = format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) {}", q.sql);
        let started = Instant::now();
        let rows = c.query(&explain, &params).await.unwrap();
        let elapsed = started.elapsed();
        let plan: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        let plan = plan.join("\n");
        assert!(
            plan.contains(&format!("Index Scan using {index} on appointment")),
            "{name}:\n{plan}"
        );
        // The table itself (the one-row change log head read beside the page may be scanned).
        assert!(!plan.contains("Seq Scan on appointment "), "{name}:\n{plan}");
        let summary = plan
            .lines()
            .filter(|l| l.contains("Index") || l.contains("Execution Time"))
            .collect::<Vec<_>>();
        eprintln!("{name} ({elapsed:?} incl. round trip):\n  {}", summary.join("\n  "));
    }
    eprintln!("seeded {APPOINTMENTS} appointments in {seed_time:?}");
}
