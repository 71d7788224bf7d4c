//! ListAppointments: filters, order, role scope and keyset paging under concurrent inserts.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use crate::tenancy::{Db, TenantClient};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{Tenant, hours_ahead};
use crate::appointments::{
    domain::{
        Actor,
        AppointmentStatus::{self, *},
    },
    requests::{ListAppointments, MemberRef},
    service,
};

/// (id, patient, doctor, status, start) of a seeded appointment.
type Row = (Uuid, Uuid, Uuid, AppointmentStatus, DateTime<Utc>);

fn all() -> ListAppointments {
    ListAppointments {
        organization_id: Uuid::nil(),
        doctor: None,
        patient: None,
        statuses: vec![],
        start_from: None,
        start_to: None,
        page_size: 100,
        after: None,
    }
}

/// Inserts directly (the rules are tested elsewhere); `None` parties never overlap.
async fn seed(
    client: &TenantClient,
    patient: Option<Uuid>,
    doctor: Option<Uuid>,
    start: DateTime<Utc>,
    status: AppointmentStatus,
) -> Uuid {
    client
        .query_one(
            "INSERT INTO appointment (patient_id, doctor_id, appointment_date_time, status) \
             VALUES ($1, $2, $3, $4::text::appointment_status) RETURNING id",
            &[&patient, &doctor, &start, &status.as_sql()],
        )
        .await
        .expect("seed")
        .get(0)
}

/// Every page for `actor`, checking the order as it goes.
async fn walk(client: &TenantClient, actor: &Actor, mut req: ListAppointments) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut last: Option<(DateTime<Utc>, Uuid)> = None;
    loop {
        let (page, next) = service::list(client, actor, &req).await.unwrap();
        assert!(page.len() as i64 <= req.page_size);
        for a in &page {
            assert!(last < Some((a.start_time, a.id)), "ordered by (start, id)");
            last = Some((a.start_time, a.id));
            ids.push(a.id);
        }
        match next {
            Some(token) => req.after = Some(token),
            None => return ids,
        }
    }
}

#[tokio::test]
async fn filters_order_and_role_scope() {
    let t = Tenant::new().await;
    let admin = t.admin().await;
    let (d1, d2) = (t.doctor().await, t.doctor().await);
    let (p1, p2, p3) = (t.patient().await, t.patient().await, t.patient().await);
    let c = &t.client;
    let h = hours_ahead;
    let statuses = [Pending, Approved, Cancelled, Completed];
    let mut expected: Vec<Row> = vec![];
    for i in 0..4 {
        for (p, d, offset) in [(p1, d1, 0), (p2, d1, 10), (p3, d2, 0)] {
            let start = h(1 + offset + i);
            let s = statuses[i as usize];
            expected.push((
                seed(c, Some(p.member_id), Some(d.member_id), start, s).await,
                p.member_id,
                d.member_id,
                s,
                start,
            ));
        }
    }
    expected.sort_by_key(|e| (e.4, e.0));
    let ids = |pred: &dyn Fn(&Row) -> bool| {
        expected.iter().filter(|e| pred(e)).map(|e| e.0).collect::<Vec<_>>()
    };
    let id = MemberRef::Id;
    type Case<'a> = (&'a str, Actor, ListAppointments, Vec<Uuid>);
    let cases: Vec<Case> = vec![
        ("admin: all", admin, all(), ids(&|_| true)),
        (
            "admin: a doctor",
            admin,
            ListAppointments { doctor: Some(id(d1.member_id)), ..all() },
            ids(&|e| e.2 == d1.member_id),
        ),
        (
            "admin: a patient",
            admin,
            ListAppointments { patient: Some(id(p2.member_id)), ..all() },
            ids(&|e| e.1 == p2.member_id),
        ),
        (
            "admin: statuses",
            admin,
            ListAppointments { statuses: vec![Approved, Completed], ..all() },
            ids(&|e| matches!(e.3, Approved | Completed)),
        ),
        (
            "admin: range",
            admin,
            ListAppointments { start_from: Some(h(2)), start_to: Some(h(4)), ..all() },
            ids(&|e| e.4 >= h(2) && e.4 < h(4)),
        ),
        (
            "admin: doctor+status",
            admin,
            ListAppointments { doctor: Some(id(d2.member_id)), statuses: vec![Pending], ..all() },
            ids(&|e| e.2 == d2.member_id && e.3 == Pending),
        ),
        ("doctor: own only", d1, all(), ids(&|e| e.2 == d1.member_id)),
        (
            "doctor: me",
            d1,
            ListAppointments { doctor: Some(MemberRef::Me), ..all() },
            ids(&|e| e.2 == d1.member_id),
        ),
        (
            "doctor: asks for another doctor",
            d1,
            ListAppointments { doctor: Some(id(d2.member_id)), ..all() },
            vec![],
        ),
        (
            "doctor: asks for a patient not theirs",
            d1,
            ListAppointments { patient: Some(id(p3.member_id)), ..all() },
            vec![],
        ),
        (
            "doctor: their patient",
            d1,
            ListAppointments { patient: Some(id(p2.member_id)), ..all() },
            ids(&|e| e.1 == p2.member_id),
        ),
        ("patient: own only", p1, all(), ids(&|e| e.1 == p1.member_id)),
        (
            "patient: me",
            p1,
            ListAppointments { patient: Some(MemberRef::Me), ..all() },
            ids(&|e| e.1 == p1.member_id),
        ),
        (
            "patient: asks for another patient",
            p1,
            ListAppointments { patient: Some(id(p2.member_id)), ..all() },
            vec![],
        ),
        (
            "patient: asks by their doctor",
            p1,
            ListAppointments { doctor: Some(id(d1.member_id)), ..all() },
            ids(&|e| e.1 == p1.member_id),
        ),
        (
            "patient: asks for another doctor",
            p1,
            ListAppointments { doctor: Some(id(d2.member_id)), ..all() },
            vec![],
        ),
    ];
    for (name, actor, req, want) in cases {
        assert_eq!(walk(c, &actor, req.clone()).await, want, "{name}");
        let small = ListAppointments { page_size: 1, ..req };
        assert_eq!(walk(c, &actor, small).await, want, "{name}, one per page");
    }
    // Get follows the same scope: NOT_FOUND rather than someone else's appointment.
    let c2 = t.connect().await;
    let of_p2 = expected.iter().find(|e| e.1 == p2.member_id).unwrap().0;
    for (actor, visible) in [(admin, true), (d1, true), (p2, true), (p1, false), (d2, false)] {
        let r = service::get(&c2, &actor, of_p2).await;
        assert_eq!(r.is_ok(), visible, "{actor:?}");
    }
}

/// Walking every page while rows are inserted (by another connection all along, and between
/// pages right before, at and after the cursor) returns each pre-existing row exactly once,
/// nothing twice, and every row inserted beyond the cursor.
#[tokio::test]
async fn paging_is_stable_under_concurrent_inserts() {
    let t = Tenant::new().await;
    let admin = t.admin().await;
    let base = hours_ahead(48);
    let mut existing = HashSet::new();
    for i in 0..150 {
        // Groups of three rows share a start time, so the id breaks ties.
        let start = base + Duration::minutes(i / 3 * 10);
        existing.insert(seed(&t.client, None, None, start, Pending).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let inserting = {
        let (stop, writer) = (stop.clone(), t.connect().await);
        tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                seed(&writer, None, None, base + Duration::minutes((n * 37) % 500), Pending).await;
                n += 1;
            }
            n
        })
    };
    let reader = t.connect().await;
    let mut req = ListAppointments { page_size: 7, ..all() };
    let (mut seen, mut ahead) = (Vec::new(), Vec::new());
    loop {
        let (page, next) = service::list(&reader, &admin, &req).await.unwrap();
        seen.extend(page.iter().map(|a| a.id));
        let Some(token) = next else { break };
        for minutes in [-10, 0, 10] {
            let id =
                seed(&t.client, None, None, token.start_time + Duration::minutes(minutes), Pending)
                    .await;
            if minutes > 0 {
                ahead.push(id);
            }
        }
        req.after = Some(token);
    }
    stop.store(true, Ordering::Relaxed);
    let inserted = inserting.await.unwrap();
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    assert!(existing.is_subset(&unique), "every pre-existing row once");
    assert!(ahead.iter().all(|id| unique.contains(id)), "rows beyond the cursor are reached");
    eprintln!("paging: {} rows seen, {inserted} inserted concurrently", seen.len());
}
