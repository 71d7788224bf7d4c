//! The audit trail (migration V17, `clinic_service::audit`): what calls record, that the
//! tenant's runtime role may only append to it, and that `audit verify` detects tampering.

use std::time::{Duration, Instant};

use clinic_api::clinic::v1 as pb;
use clinic_service::{
    audit::{
        chain::{self, COLUMNS, StoredEvent},
        sealer, verify,
    },
    tenancy::login::TenantLogins,
};
use clinic_shared::pg::{connect, parse_url, with_dbname};
use tokio_postgres::{Client, error::SqlState};
use uuid::Uuid;

use crate::helpers::{
    Authed, Clinic, Options, TestApp, bearer, first_server_url, spawn_app, spawn_with,
};
use clinic_api::clinic::v1::audit_service_client::AuditServiceClient;

/// The tenant database as the postgres superuser (the tamperer of these tests).
async fn superuser(app: &TestApp, clinic: &Clinic) -> Client {
    app.tenant_client("main", &clinic.org.database_name).await
}

/// Waits (polling, bounded) until `sql` counts at least `n` rows.
async fn wait_for(db: &Client, sql: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count: i64 = db.query_one(sql, &[]).await.unwrap().get(0);
        if count >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {count} < {n} rows after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An event as these tests look at it: action, member, role, resource, patients, outcome.
type Recorded = (String, Option<String>, Option<String>, Option<String>, Vec<String>, i16);

/// A stack whose background sealer stays idle (its first pass is at start): the test seals.
async fn spawn_unsealed() -> TestApp {
    spawn_with(Options {
        tweak: Box::new(|c| c.audit.seal_every = Duration::from_secs(3600)),
        ..Default::default()
    })
    .await
}

/// Waits until the set-up's buffered event (CreateOrganization) is written: from then on only
/// the test's own calls add events.
async fn settled(app: &TestApp, clinic: &Clinic) {
    let db = superuser(app, clinic).await;
    let sql = "SELECT count(*) FROM audit_event WHERE action LIKE '%/CreateOrganization'";
    wait_for(&db, sql, 1).await;
}

fn org_id(clinic: &Clinic) -> Uuid {
    clinic.org.id.parse().unwrap()
}

#[tokio::test]
async fn reads_of_patients_writes_and_refusals_are_recorded_without_field_values() {
    let app = spawn_app().await;
    let clinic = app.clinic("Audit Events").await;
    let patient = clinic.patient_member.id.clone();
    let admin = app.members(&clinic.admin.token);
    admin
        .clone()
        .get_member(pb::GetMemberRequest {
            organization_id: clinic.org.id.clone(),
            member_id: patient.clone(),
        })
        .await
        .unwrap();
    admin
        .clone()
        .list_members(pb::ListMembersRequest {
            organization_id: clinic.org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = app
        .members(&clinic.patient.token)
        .remove_member(pb::RemoveMemberRequest {
            organization_id: clinic.org.id.clone(),
            member_id: clinic.doctor_member.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let db = superuser(&app, &clinic).await;
    wait_for(&db, "SELECT count(*) FROM audit_event WHERE action LIKE '%/RemoveMember'", 1).await;
    wait_for(&db, "SELECT count(*) FROM audit_event WHERE action LIKE '%/ListMembers'", 1).await;
    let rows = db
        .query(
            "SELECT action, member_id::text, role, resource_id::text, \
             array(SELECT p::text FROM unnest(patients) p), outcome FROM audit_event ORDER BY id",
            &[],
        )
        .await
        .unwrap();
    let events: Vec<Recorded> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))).collect();
    let admin_id = Some(clinic.admin_member.id.clone());
    let find = |action: &str| {
        events
            .iter()
            .find(|e| e.0 == format!("clinic.v1.MemberService/{action}"))
            .unwrap_or_else(|| panic!("no {action} event in {events:?}"))
    };
    // The two AddMember writes of the set-up, in their transactions; the patient's names them.
    let adds: Vec<_> = events.iter().filter(|e| e.0.ends_with("/AddMember")).collect();
    assert_eq!(adds.len(), 2, "{events:?}");
    assert!(adds.iter().any(|e| e.4 == vec![patient.clone()] && e.5 == 0));
    let get = find("GetMember");
    assert_eq!(
        (&get.1, get.2.as_deref(), &get.3, &get.4, get.5),
        (&admin_id, Some("admin"), &Some(patient.clone()), &vec![patient.clone()], 0)
    );
    let list = find("ListMembers");
    assert_eq!((&list.4, list.5), (&vec![patient.clone()], 0), "the page's one patient");
    let refusal = find("RemoveMember");
    assert_eq!(
        (&refusal.1, refusal.2.as_deref(), &refusal.3, refusal.5),
        (
            &Some(clinic.patient_member.id.clone()),
            Some("patient"),
            &clinic.doctor_member.id.clone().into(),
            7
        )
    );
    // Creating the clinic is its creator's first event there.
    let created = events
        .iter()
        .find(|e| e.0 == "clinic.v1.OrganizationService/CreateOrganization")
        .expect("CreateOrganization");
    assert_eq!((&created.1, &created.3, created.5), (&admin_id, &Some(clinic.org.id.clone()), 0));
    // The admin's GetMember of themself (a non-patient) in the set-up is no patient read.
    assert_eq!(events.iter().filter(|e| e.0.ends_with("/GetMember")).count(), 1, "{events:?}");
    // No field value anywhere in the trail.
    let text: String = db
        .query_one("SELECT string_agg(e::text, ' ') FROM audit_event e", &[])
        .await
        .unwrap()
        .get(0);
    for value in ["1980-02-03", "O+", "Cardiology", "+1 555 0199", "LIC-123", &clinic.patient.email]
    {
        assert!(!text.contains(value), "{value} in the trail");
    }
}

#[tokio::test]
async fn the_tenant_role_may_only_insert_and_select_the_trail() {
    let app = spawn_app().await;
    let clinic = app.clinic("Audit Grants").await;
    let db = &clinic.org.database_name;
    let mut config = with_dbname(&parse_url(&first_server_url()).unwrap(), db);
    config.user(TenantLogins::role(db));
    config.password("trust authentication here");
    let tenant = connect(&config).await.expect("the tenant's role");
    tenant
        .execute(
            "INSERT INTO audit_event (occurred_at, user_id, action, resource_type, outcome) \
             VALUES (now(), $1, 'test', 'test', 0)",
            &[&Uuid::new_v4()],
        )
        .await
        .expect("INSERT");
    tenant.query("SELECT * FROM audit_event", &[]).await.expect("SELECT");
    tenant.query("SELECT * FROM audit_seal", &[]).await.expect("SELECT seals");
    for sql in [
        "UPDATE audit_event SET outcome = 1",
        "DELETE FROM audit_event",
        "TRUNCATE audit_event",
        "UPDATE audit_seal SET hash = hash",
        "DELETE FROM audit_seal",
        "TRUNCATE audit_seal",
        "ALTER TABLE audit_event DROP COLUMN peer",
    ] {
        let refused = tenant.batch_execute(sql).await.expect_err(sql);
        let code = refused.code().cloned();
        assert!(
            code == Some(SqlState::INSUFFICIENT_PRIVILEGE)
                || code == Some(SqlState::from_code("42501")),
            "{sql}: {refused:?}"
        );
    }
    // The grants are made again on every login grant: still append-only after one.
    let owner = app
        .access
        .owner_config(&app.access.organization(org_id(&clinic)).await.unwrap().location)
        .unwrap();
    let mut owner = connect(&owner).await.unwrap();
    let tx = owner.transaction().await.unwrap();
    TenantLogins::grant_tables(&tx, &TenantLogins::role(db)).await.unwrap();
    tx.commit().await.unwrap();
    let refused = tenant.batch_execute("DELETE FROM audit_event").await.unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
}

/// Seals everything written so far and checkpoints it; returns the head's position.
async fn seal_and_checkpoint(app: &TestApp, clinic: &Clinic) -> i64 {
    let head = sealer::seal(&app.access, org_id(clinic)).await.unwrap().expect("events");
    sealer::checkpoint(&app.access, org_id(clinic), &head).await.unwrap();
    head.seq
}

async fn report(app: &TestApp, clinic: &Clinic) -> verify::Report {
    let org = app.access.organization(org_id(clinic)).await.unwrap();
    verify::verify(&app.access, &org).await.unwrap()
}

/// The chain as stored, in seal order: `(seq, event)`.
async fn chain_rows(db: &Client) -> Vec<(i64, StoredEvent)> {
    let sql = format!(
        "SELECT s.seq, {COLUMNS} FROM audit_seal s JOIN audit_event e ON e.id = s.event_id \
         ORDER BY s.seq"
    );
    let rows = db.query(&sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get("seq"), StoredEvent::from_row(r).unwrap())).collect()
}

#[tokio::test]
async fn verify_names_the_first_broken_row_of_each_tampering() {
    // Twelve users sign up from one address.
    let app = spawn_with(Options {
        identity_tweak: Box::new(|c| c.throttle.register_per_peer = 100),
        ..Default::default()
    })
    .await;
    let (edited, rehashed, deleted, truncated) = (
        app.clinic("Audit Edit").await,
        app.clinic("Audit Rehash").await,
        app.clinic("Audit Delete").await,
        app.clinic("Audit Tail").await,
    );
    let mut heads = Vec::new();
    for clinic in [&edited, &rehashed, &deleted, &truncated] {
        // Writes and reads enough events for a chain with a middle.
        for _ in 0..3 {
            app.members(&clinic.admin.token)
                .get_member(pb::GetMemberRequest {
                    organization_id: clinic.org.id.clone(),
                    member_id: clinic.patient_member.id.clone(),
                })
                .await
                .unwrap();
        }
        let db = superuser(&app, clinic).await;
        wait_for(&db, "SELECT count(*) FROM audit_event WHERE action LIKE '%/GetMember'", 3).await;
        let seq = seal_and_checkpoint(&app, clinic).await;
        assert!(seq >= 5, "{seq}");
        let intact = report(&app, clinic).await;
        assert_eq!((intact.sealed, intact.checkpoint, &intact.broken), (seq, Some(seq), &None));
        heads.push(seq);
    }

    // A row edited by hand: its own seal no longer matches.
    let db = superuser(&app, &edited).await;
    let (seq, event) = chain_rows(&db).await[2].clone();
    db.execute("UPDATE audit_event SET outcome = 5 WHERE id = $1", &[&event.id]).await.unwrap();
    let broken = report(&app, &edited).await.broken.expect("edit detected");
    assert_eq!((broken.seq, broken.event_id), (seq, Some(event.id)), "{broken:?}");
    assert!(broken.reason.contains("hash mismatch"), "{broken:?}");

    // A row edited and every later hash recomputed: consistent in itself, not with the
    // central checkpoint.
    let db = superuser(&app, &rehashed).await;
    let rows = chain_rows(&db).await;
    db.execute("UPDATE audit_event SET resource_type = 'tampered' WHERE id = $1", &[&rows[1].1.id])
        .await
        .unwrap();
    let mut hash = chain::GENESIS.to_vec();
    for (seq, _) in &rows {
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_event e JOIN audit_seal s ON s.event_id = e.id WHERE s.seq = $1"
        );
        let event = StoredEvent::from_row(&db.query_one(&sql, &[seq]).await.unwrap()).unwrap();
        hash = chain::link(&hash, *seq, &event).to_vec();
        db.execute("UPDATE audit_seal SET hash = $2 WHERE seq = $1", &[seq, &hash]).await.unwrap();
    }
    let broken = report(&app, &rehashed).await.broken.expect("rewrite detected");
    assert_eq!(broken.seq, heads[1], "{broken:?}");
    assert!(broken.reason.contains("checkpoint"), "{broken:?}");

    // A row deleted, with its seal: the chain has a gap.
    let db = superuser(&app, &deleted).await;
    let (seq, event) = chain_rows(&db).await[2].clone();
    db.execute("DELETE FROM audit_seal WHERE seq = $1", &[&seq]).await.unwrap();
    db.execute("DELETE FROM audit_event WHERE id = $1", &[&event.id]).await.unwrap();
    let broken = report(&app, &deleted).await.broken.expect("deletion detected");
    assert_eq!(broken.seq, seq, "{broken:?}");
    // Only the event row deleted: its seal points nowhere.
    let (seq, event) = chain_rows(&db).await[0].clone();
    db.execute("DELETE FROM audit_event WHERE id = $1", &[&event.id]).await.unwrap();
    let broken = report(&app, &deleted).await.broken.expect("deletion detected");
    assert_eq!((broken.seq, broken.event_id), (seq, Some(event.id)), "{broken:?}");

    // The tail truncated (seals and events): shorter than the checkpoint.
    let db = superuser(&app, &truncated).await;
    let tail = heads[3] - 1;
    db.execute(
        "DELETE FROM audit_event WHERE id IN (SELECT event_id FROM audit_seal WHERE seq >= $1)",
        &[&tail],
    )
    .await
    .unwrap();
    db.execute("DELETE FROM audit_seal WHERE seq >= $1", &[&tail]).await.unwrap();
    let report_ = report(&app, &truncated).await;
    let broken = report_.broken.expect("truncation detected");
    assert_eq!((report_.sealed, broken.seq), (tail - 1, tail), "{broken:?}");
    assert!(broken.reason.contains("truncated"), "{broken:?}");
}

#[tokio::test]
async fn events_not_sealed_yet_are_reported_apart_and_sealed_later_in_seal_order() {
    let app = spawn_unsealed().await;
    let clinic = app.clinic("Audit Late").await;
    settled(&app, &clinic).await;
    let db = superuser(&app, &clinic).await;
    let before = seal_and_checkpoint(&app, &clinic).await;
    // A transaction that inserted its event long ago commits only after a later one was
    // sealed: it is sealed after it, not skipped.
    let mut late = app.tenant_client("main", &clinic.org.database_name).await;
    let tx = late.transaction().await.unwrap();
    let insert = "INSERT INTO audit_event (occurred_at, user_id, action, resource_type, outcome) \
                  VALUES (now(), $1, $2, 'test', 0) RETURNING id";
    let early: i64 = tx.query_one(insert, &[&Uuid::new_v4(), &"late"]).await.unwrap().get(0);
    let other: i64 = db.query_one(insert, &[&Uuid::new_v4(), &"other"]).await.unwrap().get(0);
    assert!(early < other);
    let head = sealer::seal(&app.access, org_id(&clinic)).await.unwrap().unwrap();
    assert_eq!(head.seq, before + 1, "only the committed one");
    tx.commit().await.unwrap();
    assert_eq!(report(&app, &clinic).await.unsealed, 1);
    let head = sealer::seal(&app.access, org_id(&clinic)).await.unwrap().unwrap();
    assert_eq!(head.seq, before + 2);
    let order: Vec<i64> = db
        .query("SELECT event_id FROM audit_seal WHERE seq > $1 ORDER BY seq", &[&before])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(order, vec![other, early]);
    let done = report(&app, &clinic).await;
    assert_eq!((done.unsealed, done.broken), (0, None));
}

#[tokio::test]
async fn a_pass_over_several_batches_seals_every_event_once_even_one_committing_late() {
    let app = spawn_unsealed().await;
    let clinic = app.clinic("Audit Batches").await;
    settled(&app, &clinic).await;
    let db = superuser(&app, &clinic).await;
    let before = seal_and_checkpoint(&app, &clinic).await;
    // An event whose transaction stays open below 2,500 committed ones (more than two of the
    // sealer's batches): the pass seals the 2,500 batch after batch, and the late one after.
    let mut late = app.tenant_client("main", &clinic.org.database_name).await;
    let tx = late.transaction().await.unwrap();
    let early: i64 = tx
        .query_one(
            "INSERT INTO audit_event (occurred_at, user_id, action, resource_type, outcome) \
             VALUES (now(), $1, 'late', 'test', 0) RETURNING id",
            &[&Uuid::new_v4()],
        )
        .await
        .unwrap()
        .get(0);
    db.execute(
        "INSERT INTO audit_event (occurred_at, user_id, action, resource_type, outcome) \
         SELECT now(), gen_random_uuid(), 'bulk', 'test', 0 FROM generate_series(1, 2500)",
        &[],
    )
    .await
    .unwrap();
    let head = sealer::seal(&app.access, org_id(&clinic)).await.unwrap().unwrap();
    assert_eq!(head.seq, before + 2500);
    tx.commit().await.unwrap();
    let head = sealer::seal(&app.access, org_id(&clinic)).await.unwrap().unwrap();
    assert_eq!(head.seq, before + 2501);
    let last: i64 = db
        .query_one("SELECT event_id FROM audit_seal ORDER BY seq DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, early);
    let twice: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT event_id FROM audit_seal GROUP BY event_id \
             HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(twice, 0);
    // Nothing left: a further pass seals nothing.
    let again = sealer::seal(&app.access, org_id(&clinic)).await.unwrap().unwrap();
    assert_eq!(again.seq, before + 2501);
    let done = report(&app, &clinic).await;
    assert_eq!((done.unsealed, done.broken), (0, None));
}

fn audit_client(app: &TestApp, token: &str) -> AuditServiceClient<Authed> {
    AuditServiceClient::with_interceptor(app.clinic_channel(), bearer(token))
}

#[tokio::test]
async fn admins_list_who_read_a_patient_newest_first_and_the_listing_is_audited() {
    let app = spawn_app().await;
    let clinic = app.clinic("Audit List").await;
    let stranger = app.user("stranger").await;
    let patient = clinic.patient_member.id.clone();
    let get =
        pb::GetMemberRequest { organization_id: clinic.org.id.clone(), member_id: patient.clone() };
    app.members(&clinic.admin.token).get_member(get.clone()).await.unwrap();
    app.members(&clinic.doctor.token).get_member(get).await.unwrap_err();
    let db = superuser(&app, &clinic).await;
    wait_for(&db, "SELECT count(*) FROM audit_event WHERE action LIKE '%/GetMember'", 2).await;

    let request = |patient: &str| pb::ListAuditEventsRequest {
        organization_id: clinic.org.id.clone(),
        patient_id: patient.to_owned(),
        action: "clinic.v1.MemberService/GetMember".into(),
        ..Default::default()
    };
    // Admins only; a non-member learns nothing.
    for (who, token, code) in [
        ("admin", &clinic.admin.token, tonic::Code::Ok),
        ("doctor", &clinic.doctor.token, tonic::Code::PermissionDenied),
        ("patient", &clinic.patient.token, tonic::Code::PermissionDenied),
        ("stranger", &stranger.token, tonic::Code::NotFound),
    ] {
        let answer = audit_client(&app, token).list_audit_events(request(&patient)).await;
        assert_eq!(answer.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok), code, "{who}");
    }

    // Who read the patient's record (and who was refused), newest first.
    let mut admin = audit_client(&app, &clinic.admin.token);
    let events = admin.list_audit_events(request(&patient)).await.unwrap().into_inner().events;
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.actor_member_id.clone(), e.outcome, e.patient_ids.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (clinic.doctor_member.id.clone(), 7, vec![patient.clone()]),
            (clinic.admin_member.id.clone(), 0, vec![patient.clone()]),
        ]
    );
    let only_admin = pb::ListAuditEventsRequest {
        actor_member_id: clinic.admin_member.id.clone(),
        outcome: Some(0),
        ..request(&patient)
    };
    let events = admin.list_audit_events(only_admin).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 1);
    let later = pb::ListAuditEventsRequest {
        start_time: Some(clinic_shared::time::to_timestamp(
            chrono::Utc::now() + chrono::Duration::hours(1),
        )),
        ..request(&patient)
    };
    assert!(admin.list_audit_events(later).await.unwrap().into_inner().events.is_empty());
    let bad = pb::ListAuditEventsRequest { outcome: Some(99), ..request("not-a-uuid") };
    let bad = admin.list_audit_events(bad).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // Keyset pages of one, newest first, cover the whole trail once.
    let all = pb::ListAuditEventsRequest {
        organization_id: clinic.org.id.clone(),
        page_size: 100,
        ..Default::default()
    };
    let everything = admin.list_audit_events(all.clone()).await.unwrap().into_inner().events;
    let (mut paged, mut token) = (Vec::new(), String::new());
    loop {
        let page = pb::ListAuditEventsRequest { page_size: 1, page_token: token, ..all.clone() };
        let page = admin.list_audit_events(page).await.unwrap().into_inner();
        paged.extend(page.events.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let ids: Vec<i64> = everything.iter().map(|e| e.id).collect();
    assert_eq!(paged[..ids.len()], ids[..], "pages continue where the list was");
    assert!(everything.windows(2).all(|w| {
        let t = |e: &pb::AuditEvent| e.event_time.as_ref().map(|t| (t.seconds, t.nanos));
        t(&w[0]) >= t(&w[1])
    }));

    // The listings themselves are in the trail: the admin's, and the doctor's refusal.
    wait_for(
        &db,
        "SELECT count(*) FROM audit_event WHERE action = 'clinic.v1.AuditService/ListAuditEvents' \
         AND outcome = 7",
        2,
    )
    .await;
    wait_for(
        &db,
        "SELECT count(*) FROM audit_event WHERE action = 'clinic.v1.AuditService/ListAuditEvents' \
         AND outcome = 0",
        3,
    )
    .await;
}

/// Validates each line of `lines` as a FHIR `AuditEvent` with PyPI's fhir.resources (R4B, whose
/// AuditEvent is R4's). Without python3 or the package the test is skipped, except in CI.
const VALIDATE: &str = r#"
import json, sys
from fhir.resources.R4B.auditevent import AuditEvent
n = 0
for line in sys.stdin:
    data = json.loads(line)
    assert data["resourceType"] == "AuditEvent", data
    AuditEvent.model_validate(data)
    n += 1
print(n)
"#;

#[tokio::test]
async fn the_export_is_fhir_audit_events_and_is_itself_audited() {
    let app = spawn_app().await;
    let clinic = app.clinic("Audit Export").await;
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    app.members(&clinic.admin.token)
        .get_member(pb::GetMemberRequest {
            organization_id: clinic.org.id.clone(),
            member_id: clinic.patient_member.id.clone(),
        })
        .await
        .unwrap();
    let db = superuser(&app, &clinic).await;
    wait_for(&db, "SELECT count(*) FROM audit_event WHERE action LIKE '%/GetMember'", 1).await;
    seal_and_checkpoint(&app, &clinic).await;
    let org = app.access.organization(org_id(&clinic)).await.unwrap();
    let mut out = Vec::new();
    let n =
        clinic_service::audit::export::export(&app.access, &org, since, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), n);
    assert!(n >= 4, "two AddMember, the GetMember and the export itself: {text}");
    let read = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["subtype"][0]["code"] == "clinic.v1.MemberService/GetMember")
        .expect("the read");
    assert_eq!(read["action"], "R");
    assert_eq!(read["agent"][0]["altId"], clinic.admin_member.id.as_str());
    assert_eq!(read["entity"][1]["what"]["identifier"]["value"], clinic.patient_member.id.as_str());
    assert!(text.contains("clinic-service/audit export"), "the export is in the trail");

    let python = tokio::process::Command::new("python3")
        .args(["-c", "import fhir.resources.R4B.auditevent"])
        .output()
        .await;
    if !python.as_ref().is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with fhir.resources is required in CI (scripts/test.sh installs it)"
        );
        eprintln!("skipped the FHIR validation: no python3 with fhir.resources here");
        return;
    }
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let done = child.wait_with_output().await.unwrap();
    assert!(
        done.status.success(),
        "fhir.resources rejected the export: {}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&done.stdout).trim(), n.to_string());
}

#[tokio::test]
async fn recording_reads_cannot_be_turned_off_in_production() {
    let mut config = clinic_service::Config::for_tests("http://127.0.0.1:1".into(), Vec::new());
    config.mode = clinic_shared::config::Mode::Production;
    config.audit.record_reads = false;
    let refused = clinic_service::Application::build(config).await.err().expect("refused");
    assert!(refused.to_string().contains("audit trail cannot be turned off"), "{refused}");
}

/// Buffered events are written only at shutdown here (an hour between flushes, batches larger
/// than the buffer): a graceful stop loses none, seals them and checkpoints the chain.
#[tokio::test]
async fn a_full_buffer_refuses_the_read_and_a_graceful_shutdown_writes_seals_and_checkpoints() {
    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            c.audit.flush_every = Duration::from_secs(3600);
            c.audit.checkpoint_every = Duration::from_secs(3600);
            c.audit.batch_events = 1000;
            c.audit.buffer_events = 3;
        }),
        ..Default::default()
    })
    .await;
    let clinic = app.clinic("Audit Shutdown").await;
    // The set-up's CreateOrganization is buffered already; two reads fill the buffer.
    let read = || pb::GetMemberRequest {
        organization_id: clinic.org.id.clone(),
        member_id: clinic.patient_member.id.clone(),
    };
    let mut admin = app.members(&clinic.admin.token);
    admin.get_member(read()).await.unwrap();
    admin.get_member(read()).await.unwrap();
    let full = admin.get_member(read()).await.unwrap_err();
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    // Writes do not wait on the buffer: they carry their event in their transaction.
    let db = superuser(&app, &clinic).await;
    let reads = "SELECT count(*) FROM audit_event WHERE action LIKE '%/GetMember'";
    let count: i64 = db.query_one(reads, &[]).await.unwrap().get(0);
    assert_eq!(count, 0, "nothing flushed yet");

    app.stop_clinic();
    wait_for(&db, reads, 2).await;
    wait_for(
        &db,
        "SELECT count(*) FROM audit_seal s JOIN audit_event e ON e.id = s.event_id \
                   WHERE e.action LIKE '%/GetMember'",
        2,
    )
    .await;
    let head: i64 = db.query_one("SELECT max(seq) FROM audit_seal", &[]).await.unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let checkpoint = app
            .directory()
            .get_audit_checkpoint(clinic_api::identity::v1::GetAuditCheckpointRequest {
                organization_id: clinic.org.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .checkpoint;
        if checkpoint.as_ref().is_some_and(|c| c.seq == head) {
            break;
        }
        assert!(Instant::now() < deadline, "checkpoint {checkpoint:?}, head {head}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `clinic-service audit …` as an operator runs it, configured like the running service.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_clinic-service"))
        .args(args)
        .env("APP_MODE", "development")
        .env("RUST_LOG", "off")
        .env("IDENTITY_URL", format!("http://{}", app.identity_internal_addr))
        .env("SERVICE_TOKEN", "test-service-token")
        .env("TENANT_ROLE_SECRET", "test-tenant-role-secret")
        .env("TENANT_SERVERS", format!("main={}", first_server_url()))
        .output()
        .await
        .expect("run clinic-service");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn the_audit_commands_verify_and_export_and_fail_on_a_broken_chain() {
    let app = spawn_unsealed().await;
    let clinic = app.clinic("Audit Cli").await;
    settled(&app, &clinic).await;
    let head = seal_and_checkpoint(&app, &clinic).await;
    let org = clinic.org.id.as_str();
    let (ok, out) = cli(&app, &["audit", "verify", "--org", org]).await;
    assert!(ok && out.contains(&format!("{org}: ok, {head} sealed")), "{out}");
    let (ok, out) =
        cli(&app, &["audit", "export", "--org", org, "--since", "2020-01-01T00:00:00Z"]).await;
    assert!(ok, "{out}");
    assert!(out.lines().count() as i64 > head, "every event and the export itself: {out}");
    for line in out.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(event["resourceType"], "AuditEvent", "{line}");
    }

    let db = superuser(&app, &clinic).await;
    db.execute(
        "UPDATE audit_event SET peer = '10.0.0.1:1' WHERE id = (SELECT min(id) FROM audit_event)",
        &[],
    )
    .await
    .unwrap();
    let (ok, out) = cli(&app, &["audit", "verify", "--org", org]).await;
    assert!(!ok && out.contains("BROKEN at seq 1"), "{out}");
    let (ok, _) = cli(&app, &["audit", "verify", "--org", "not-a-uuid"]).await;
    assert!(!ok);
}
