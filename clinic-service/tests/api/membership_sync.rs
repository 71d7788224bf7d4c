//! The tenant is the truth, the central index follows: membership changes commit in the tenant
//! (with an outbox row) and are relayed to identity-service, so an identity-service outage
//! never fails nor undoes them, and the central index converges once it is back.

use std::time::{Duration, Instant};

use clinic_api::{clinic::v1 as pb, identity::v1 as ipb};
use prost_types::FieldMask;
use tonic::Code;

use crate::{
    helpers::{Options, TestApp, TestUser, spawn_app, spawn_with},
    tokens::proxy::IdentityProxy,
};

/// An app whose clinic-service reaches identity-service through `proxy`. Cutting the proxy's
/// `DirectoryService` (organizations are cached once active; tokens are verified locally and the
/// revocation stream keeps running) fails only the calls that carry membership changes to the
/// central index. (With identity-service down altogether, token checks fail closed: see the
/// `tokens` tests.)
async fn behind(proxy: &IdentityProxy) -> TestApp {
    let addr = proxy.addr;
    let app = spawn_with(Options {
        tweak: Box::new(move |c| {
            c.identity_url = format!("http://{addr}");
            c.token_cache_ttl = Duration::from_secs(600);
        }),
        ..Default::default()
    })
    .await;
    proxy.point_at(app.identity_internal_addr);
    app
}

/// The user's central entries: (organization id, role, status).
async fn central(
    app: &TestApp,
    user: &TestUser,
) -> Vec<(String, ipb::MembershipRole, ipb::MembershipStatus)> {
    let request = ipb::ListUserMembershipsRequest {
        user_id: user.id.clone(),
        include_invitations: true,
        ..Default::default()
    };
    let listed = app.directory().list_user_memberships(request).await.expect("memberships");
    listed
        .into_inner()
        .memberships
        .into_iter()
        .map(|m| (m.organization.clone().unwrap_or_default().id, m.role(), m.status()))
        .collect()
}

/// Waits (polling, at most 20 s) until `user`'s central entries are `want`.
async fn converges(
    app: &TestApp,
    user: &TestUser,
    want: &[(String, ipb::MembershipRole, ipb::MembershipStatus)],
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = central(app, user).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "central index stuck at {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn role_change(org: &str, member: &str, role: pb::Role) -> pb::UpdateMemberProfileRequest {
    pb::UpdateMemberProfileRequest {
        organization_id: org.to_owned(),
        member_id: member.to_owned(),
        profile: None,
        update_mask: Some(FieldMask { paths: vec!["role".into()] }),
        role: role as i32,
    }
}

/// AddMember, a role change and RemoveMember each answer OK while the central index cannot be
/// reached (the tenant committed), and the central index catches up once it can.
#[tokio::test]
async fn changes_commit_during_an_identity_outage_and_the_central_index_converges() {
    use ipb::{MembershipRole as R, MembershipStatus as S};
    let proxy = IdentityProxy::start().await;
    let app = behind(&proxy).await;
    let admin = app.user("admin").await;
    let patient = app.user("patient").await;
    let org = app.create_org(&admin, "Outbox").await;
    let mut members = app.members(&admin.token);
    let me = pb::GetMemberRequest { organization_id: org.id.clone(), member_id: "me".into() };
    members.get_member(me.clone()).await.expect("cache the admin's token");
    app.orgs(&patient.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect("cache the patient's token");

    proxy.cut_directory(true);
    let add = pb::AddMemberRequest {
        organization_id: org.id.clone(),
        email: patient.email.clone(),
        role: pb::Role::Patient as i32,
        profile: None,
    };
    let invited = members.add_member(add).await.expect("AddMember commits in the tenant");
    let invited = invited.into_inner().member.unwrap();
    proxy.cut_directory(false);
    converges(&app, &patient, &[(org.id.clone(), R::Patient, S::Invited)]).await;
    app.accept(&patient, &org.id).await.expect("accept");
    converges(&app, &patient, &[(org.id.clone(), R::Patient, S::Active)]).await;

    proxy.cut_directory(true);
    let changed =
        members.update_member_profile(role_change(&org.id, &invited.id, pb::Role::Doctor));
    changed.await.expect("the role change commits in the tenant");
    proxy.cut_directory(false);
    converges(&app, &patient, &[(org.id.clone(), R::Doctor, S::Active)]).await;

    // Formerly "RemoveMember during an identity outage removes nothing": now it removes the
    // member at once, and the central index follows.
    proxy.cut_directory(true);
    let remove =
        pb::RemoveMemberRequest { organization_id: org.id.clone(), member_id: invited.id.clone() };
    members.remove_member(remove).await.expect("RemoveMember commits in the tenant");
    let get = pb::GetMemberRequest { organization_id: org.id.clone(), member_id: invited.id };
    assert_eq!(members.get_member(get).await.unwrap_err().code(), Code::NotFound);
    proxy.cut_directory(false);
    converges(&app, &patient, &[]).await;
}

/// Added, promoted and removed while the central index is unreachable: once it is back, the
/// member stays removed, however the relay orders or repeats what it delivers.
#[tokio::test]
async fn add_role_change_remove_never_brings_a_removed_member_back() {
    let proxy = IdentityProxy::start().await;
    let app = behind(&proxy).await;
    let admin = app.user("admin").await;
    let patient = app.user("patient").await;
    let org = app.create_org(&admin, "Order").await;
    let mut members = app.members(&admin.token);
    let me = pb::GetMemberRequest { organization_id: org.id.clone(), member_id: "me".into() };
    members.get_member(me).await.expect("cache the admin's token");
    app.orgs(&patient.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .expect("cache the patient's token");

    proxy.cut_directory(true);
    let member = app.invite(&admin, &org.id, &patient.email, pb::Role::Patient, None).await;
    app.accept(&patient, &org.id).await.expect("accept");
    members
        .update_member_profile(role_change(&org.id, &member.id, pb::Role::Admin))
        .await
        .expect("promote");
    let remove =
        pb::RemoveMemberRequest { organization_id: org.id.clone(), member_id: member.id.clone() };
    members.remove_member(remove).await.expect("remove");
    let tenant = app.tenant_client("main", &org.database_name).await;
    let pending = || async {
        let sql = "SELECT count(*) FROM member_outbox";
        tenant.query_one(sql, &[]).await.unwrap().get::<_, i64>(0)
    };
    assert!(pending().await >= 4, "the changes wait in the outbox");
    proxy.cut_directory(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while pending().await > 0 {
        assert!(Instant::now() < deadline, "the outbox was never drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(central(&app, &patient).await.is_empty(), "a removed member came back");
    // Replaying the older changes (a relay retrying, or a second replica) changes nothing.
    let mut directory = app.directory();
    for version in [1, 2, 3] {
        directory
            .record_membership(ipb::RecordMembershipRequest {
                organization_id: org.id.clone(),
                user_id: patient.id.clone(),
                role: ipb::MembershipRole::Admin as i32,
                version,
            })
            .await
            .expect("a stale change is answered OK and ignored");
    }
    assert!(central(&app, &patient).await.is_empty(), "a removed member came back");
}

/// `reconcile` repairs drift: central entries the tenant does not have go, missing or wrong
/// ones are re-published with the tenant's versions.
#[tokio::test]
async fn reconcile_repairs_the_central_index_from_the_tenants() {
    use ipb::{MembershipRole as R, MembershipStatus as S};
    let app = spawn_app().await;
    let c = app.clinic("Drift").await;
    let stranger = app.user("stranger").await;
    let invitee = app.user("invitee").await;
    app.invite(&c.admin, &c.org.id, &invitee.email, pb::Role::Doctor, None).await;
    let mut directory = app.directory();
    let record = |user: &TestUser, role: R| ipb::RecordMembershipRequest {
        organization_id: c.org.id.clone(),
        user_id: user.id.clone(),
        role: role as i32,
        version: 0,
    };
    // Drift, as the central index could have it from before the outbox: a member that is not
    // one, a wrong role, a missing membership and a missing invitation.
    directory.record_membership(record(&stranger, R::Admin)).await.unwrap();
    directory.record_membership(record(&c.patient, R::Admin)).await.unwrap();
    let remove = ipb::RemoveMembershipRequest {
        organization_id: c.org.id.clone(),
        user_id: c.doctor.id.clone(),
        version: 0,
    };
    directory.remove_membership(remove).await.unwrap();
    let remove_invitation = ipb::RemoveInvitationRequest {
        organization_id: c.org.id.clone(),
        email: invitee.email.clone(),
        version: 0,
    };
    directory.remove_invitation(remove_invitation).await.unwrap();

    let reports = clinic_service::relay::reconcile::reconcile_all(&app.access).await.unwrap();
    let report = reports.iter().find(|r| r.organization_id.to_string() == c.org.id).unwrap();
    assert!(report.result.is_ok(), "{report:?}");
    assert!(reports.iter().all(|r| r.result.is_ok()), "{reports:?}");
    let org = c.org.id.clone();
    assert!(central(&app, &stranger).await.is_empty());
    assert_eq!(central(&app, &c.patient).await, [(org.clone(), R::Patient, S::Active)]);
    assert_eq!(central(&app, &c.doctor).await, [(org.clone(), R::Doctor, S::Active)]);
    assert_eq!(central(&app, &c.admin).await, [(org.clone(), R::Admin, S::Active)]);
    assert_eq!(central(&app, &invitee).await, [(org.clone(), R::Doctor, S::Invited)]);
    // Reconciling again changes nothing.
    let again = clinic_service::relay::reconcile::reconcile_all(&app.access).await.unwrap();
    assert!(again.iter().all(|r| r.result.is_ok()), "{again:?}");
    assert_eq!(central(&app, &c.patient).await, [(org, R::Patient, S::Active)]);
}
