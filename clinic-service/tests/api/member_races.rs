//! Members under concurrency: a clinic always keeps an active admin, and a profile update that
//! loses a race with a role change fails instead of reporting a change it did not make.

use std::time::{Duration, Instant};

use clinic_api::clinic::v1::{self as pb, member_profile::Kind};
use prost_types::FieldMask;
use tonic::Code;

use crate::helpers::{TestApp, TestUser, spawn_app};

const ROUNDS: usize = 20;

async fn active_admins(tenant: &tokio_postgres::Client) -> i64 {
    let sql = "SELECT count(*) FROM organization_user WHERE status = 'active' AND role = 'admin'";
    tenant.query_one(sql, &[]).await.unwrap().get(0)
}

fn demote(org: &str, member: &str) -> pb::UpdateMemberProfileRequest {
    pb::UpdateMemberProfileRequest {
        organization_id: org.to_owned(),
        member_id: member.to_owned(),
        profile: None,
        update_mask: Some(FieldMask { paths: vec!["role".into()] }),
        role: pb::Role::Doctor as i32,
    }
}

/// The refusal of the losing side: the clinic would be left without an admin, or the caller
/// is no admin any more (or, once removed, no member: NOT_FOUND).
fn assert_refused(result: Result<(), tonic::Status>) {
    if let Err(status) = result {
        assert!(
            matches!(
                status.code(),
                Code::FailedPrecondition | Code::PermissionDenied | Code::NotFound
            ),
            "{status:?}"
        );
    }
}

/// Two admins, each the other's target: `a` and `b` act at the same moment.
struct Pair {
    a: TestUser,
    b: TestUser,
    org: String,
}

impl Pair {
    async fn new(app: &TestApp, base: &str) -> Self {
        let a = app.user("admin-a").await;
        let b = app.user("admin-b").await;
        let org = app.create_org(&a, base).await.id;
        app.add_member(&a, &org, &b, pb::Role::Admin, None).await;
        // An invited admin is no admin: it must not count towards the one that stays.
        let invited = format!("invited-{}@example.com", uuid::Uuid::new_v4().simple());
        app.invite(&a, &org, &invited, pb::Role::Admin, None).await;
        Self { a, b, org }
    }

    async fn member_id(&self, app: &TestApp, who: &TestUser) -> String {
        let me = pb::GetMemberRequest { organization_id: self.org.clone(), member_id: "me".into() };
        app.members(&who.token).get_member(me).await.unwrap().into_inner().member.unwrap().id
    }
}

#[tokio::test]
async fn mutual_demotion_always_leaves_an_active_admin() {
    let app = spawn_app().await;
    let pair = Pair::new(&app, "Demotions").await;
    let tenant_name =
        app.access.organization(pair.org.parse().unwrap()).await.unwrap().location.database;
    let tenant = app.tenant_client("main", &tenant_name).await;
    let (id_a, id_b) = (pair.member_id(&app, &pair.a).await, pair.member_id(&app, &pair.b).await);
    for round in 0..ROUNDS {
        let (mut by_a, mut by_b) = (app.members(&pair.a.token), app.members(&pair.b.token));
        let (ra, rb) = tokio::join!(
            by_a.update_member_profile(demote(&pair.org, &id_b)),
            by_b.update_member_profile(demote(&pair.org, &id_a)),
        );
        let (ra, rb) = (ra.map(|_| ()), rb.map(|_| ()));
        assert!(ra.is_ok() || rb.is_ok(), "round {round}: one of them wins: {ra:?} {rb:?}");
        assert_refused(ra.clone());
        assert_refused(rb.clone());
        assert_eq!(active_admins(&tenant).await, 1, "round {round}");
        // The winner promotes the other back for the next round.
        let (winner, loser) = if ra.is_ok() { (&pair.a, &id_b) } else { (&pair.b, &id_a) };
        let mut promote = demote(&pair.org, loser);
        promote.role = pb::Role::Admin as i32;
        app.members(&winner.token).update_member_profile(promote).await.expect("promote back");
    }
}

#[tokio::test]
async fn mutual_removal_always_leaves_an_active_admin() {
    let app = spawn_app().await;
    let pair = Pair::new(&app, "Removals").await;
    let tenant_name =
        app.access.organization(pair.org.parse().unwrap()).await.unwrap().location.database;
    let tenant = app.tenant_client("main", &tenant_name).await;
    for round in 0..ROUNDS {
        let (id_a, id_b) =
            (pair.member_id(&app, &pair.a).await, pair.member_id(&app, &pair.b).await);
        let remove = |id: &str| pb::RemoveMemberRequest {
            organization_id: pair.org.clone(),
            member_id: id.to_owned(),
        };
        let (mut by_a, mut by_b) = (app.members(&pair.a.token), app.members(&pair.b.token));
        let (ra, rb) =
            tokio::join!(by_a.remove_member(remove(&id_b)), by_b.remove_member(remove(&id_a)));
        let (ra, rb) = (ra.map(|_| ()), rb.map(|_| ()));
        assert!(ra.is_ok() || rb.is_ok(), "round {round}: one of them wins: {ra:?} {rb:?}");
        assert_refused(ra.clone());
        assert_refused(rb.clone());
        assert_eq!(active_admins(&tenant).await, 1, "round {round}");
        // The winner adds the other back as an admin.
        let (winner, loser) = if ra.is_ok() { (&pair.a, &pair.b) } else { (&pair.b, &pair.a) };
        app.add_member(winner, &pair.org, loser, pb::Role::Admin, None).await;
    }
}

/// A member's own profile update racing an admin's role change: the role changes between the
/// update's read and its write (held open in a transaction here). The update must not report a
/// change it did not make.
#[tokio::test]
async fn a_profile_update_losing_a_race_with_a_role_change_fails() {
    let app = spawn_app().await;
    let c = app.clinic("Race").await;
    let mut tenant = app.tenant_client("main", &c.org.database_name).await;
    let patient_id: uuid::Uuid = c.patient_member.id.parse().unwrap();
    // What a role change to doctor does, left uncommitted.
    let tx = tenant.transaction().await.unwrap();
    let doctor_profile: uuid::Uuid = tx
        .query_one("INSERT INTO doctor_profile DEFAULT VALUES RETURNING id", &[])
        .await
        .unwrap()
        .get(0);
    let old: uuid::Uuid = tx
        .query_one(
            "UPDATE organization_user SET patient_profile_id = NULL, doctor_profile_id = $2 \
             WHERE id = $1 RETURNING (SELECT patient_profile_id FROM organization_user WHERE id = $1)",
            &[&patient_id, &doctor_profile],
        )
        .await
        .unwrap()
        .get(0);
    tx.execute("DELETE FROM patient_profile WHERE id = $1", &[&old]).await.unwrap();

    let mut members = app.members(&c.patient.token);
    let update = tokio::spawn(async move {
        members
            .update_member_profile(pb::UpdateMemberProfileRequest {
                organization_id: c.org.id.clone(),
                member_id: "me".into(),
                profile: Some(pb::MemberProfile {
                    kind: Some(Kind::Patient(pb::PatientProfile {
                        address: "3 Side St".into(),
                        ..Default::default()
                    })),
                }),
                update_mask: Some(FieldMask { paths: vec!["patient.address".into()] }),
                role: 0,
            })
            .await
    });
    // Wait until the update is blocked behind the role change, then let the change commit.
    let observer = app.tenant_client("main", &c.org.database_name).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the update never reached the member's rows");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();
    let result = update.await.unwrap();
    let status = result.expect_err("the update reported success but changed nothing");
    assert!(matches!(status.code(), Code::Aborted | Code::FailedPrecondition), "{status:?}");
}
