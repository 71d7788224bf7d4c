//! DirectoryService invitations: SendInvitation records and mails alike whether or not the
//! email has an account, RemoveInvitation forgets, ListUserMemberships lists pending ones when
//! asked, and the janitor drops expired ones.

use chrono::{Duration, Utc};
use clinic_api::identity::v1::{self as pb, MembershipRole, MembershipStatus};
use tonic::{Code, Status};

use crate::{
    helpers::{PASSWORD, TestApp, assert_code, assert_invalid, spawn_app},
    organizations::reserve,
};

fn ts(t: chrono::DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: 0 }
}

fn invitation(
    org: &str,
    email: &str,
    role: MembershipRole,
    days: i64,
) -> pb::SendInvitationRequest {
    pb::SendInvitationRequest {
        organization_id: org.into(),
        email: email.into(),
        role: role.into(),
        expire_time: Some(ts(Utc::now() + Duration::days(days))),
        version: 0,
    }
}

async fn send(app: &TestApp, request: pb::SendInvitationRequest) -> Result<(), Status> {
    app.directory
        .clone()
        .send_invitation(request)
        .await
        .map(|r| assert_eq!(r.into_inner(), pb::SendInvitationResponse {}))
}

/// The invitation mails to `to` in the outbox, once there are `n` (they go out in the
/// background).
async fn mails_to(app: &TestApp, to: &str, n: usize) -> Vec<String> {
    for _ in 0..500 {
        let mut files: Vec<_> = std::fs::read_dir(&app.outbox)
            .map(|d| d.map(|e| e.expect("entry").path()).collect())
            .unwrap_or_default();
        files.retain(|f| f.extension().is_some_and(|e| e == "eml"));
        files.sort();
        let mails: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).expect("read"))
            .filter(|t| t.contains(&format!("To: {to}\n")) && t.contains("You are invited"))
            .collect();
        if mails.len() >= n {
            return mails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} invitation mails to {to} never came");
}

async fn list(app: &TestApp, user: &str, include_invitations: bool) -> Vec<pb::Membership> {
    let request = pb::ListUserMembershipsRequest {
        user_id: user.into(),
        page_size: 0,
        page_token: String::new(),
        include_invitations,
    };
    app.directory.clone().list_user_memberships(request).await.unwrap().into_inner().memberships
}

#[tokio::test]
async fn send_invitation_answers_alike_and_mails_the_right_kind() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let org =
        reserve(&app, "Riverside", &ann.user.id, &["s1"]).await.unwrap().organization.unwrap().id;
    app.register("Late@Example.com", "late", PASSWORD).await.unwrap();
    let bob = app.verified_user("bob").await;

    // A verified account, an unverified one and no account: the same (empty) answer.
    send(&app, invitation(&org, "BOB@example.com", MembershipRole::Doctor, 14)).await.unwrap();
    send(&app, invitation(&org, "late@example.com", MembershipRole::Patient, 14)).await.unwrap();
    send(&app, invitation(&org, "nobody@example.com", MembershipRole::Patient, 14)).await.unwrap();
    let to_bob = mails_to(&app, "BOB@example.com", 1).await;
    let to_late = mails_to(&app, "late@example.com", 1).await;
    let to_nobody = mails_to(&app, "nobody@example.com", 1).await;
    assert!(to_bob[0].contains("\"Riverside\" as a doctor") && to_bob[0].contains("Sign in"));
    assert!(to_late[0].contains("Verify this email address first"), "{to_late:?}");
    assert!(to_nobody[0].contains("register with this address first"), "{to_nobody:?}");
    assert_eq!(app.count("organization_invitation").await, 3);
    let stored: Vec<String> = app
        .db
        .query("SELECT email FROM organization_invitation ORDER BY email", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["bob@example.com", "late@example.com", "nobody@example.com"]);

    // Sending again renews the one record (role and expiry) and mails again.
    send(&app, invitation(&org, "bob@example.com", MembershipRole::Admin, 20)).await.unwrap();
    assert_eq!(app.count("organization_invitation").await, 3);
    let listed = list(&app, &bob.user.id, true).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].status(), listed[0].role()),
        (MembershipStatus::Invited, MembershipRole::Admin)
    );
    let expires = listed[0].invite_expire_time.unwrap().seconds;
    assert!(expires > (Utc::now() + Duration::days(19)).timestamp());
    // Mailed as given this time: the first went to `BOB@example.com`.
    mails_to(&app, "bob@example.com", 1).await;
}

#[tokio::test]
async fn listing_includes_pending_verified_unexpired_invitations_only_when_asked() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let bob = app.verified_user("bob").await;
    let orgs: Vec<String> = {
        let mut v = Vec::new();
        for name in ["One", "Two", "Three"] {
            v.push(reserve(&app, name, &ann, &["s1"]).await.unwrap().organization.unwrap().id);
        }
        v
    };
    let mut directory = app.directory.clone();
    // A member of orgs[0] and invited there too (a stale invitation): the membership wins.
    directory
        .record_membership(pb::RecordMembershipRequest {
            organization_id: orgs[0].clone(),
            user_id: bob.user.id.clone(),
            role: MembershipRole::Patient.into(),
            version: 0,
        })
        .await
        .unwrap();
    for org in &orgs {
        send(&app, invitation(org, &bob.email, MembershipRole::Doctor, 14)).await.unwrap();
    }
    // Expired invitations are not listed.
    app.db
        .execute(
            "UPDATE organization_invitation SET expires_at = now() - interval '1 minute' \
             WHERE organization_id = $1::text::uuid",
            &[&orgs[2]],
        )
        .await
        .unwrap();

    assert_eq!(list(&app, &bob.user.id, false).await.len(), 1, "memberships only");
    let mut listed: Vec<_> = list(&app, &bob.user.id, true)
        .await
        .into_iter()
        .map(|m| (m.organization.clone().unwrap().id, m.status(), m.role()))
        .collect();
    listed.sort();
    let mut want = vec![
        (orgs[0].clone(), MembershipStatus::Active, MembershipRole::Patient),
        (orgs[1].clone(), MembershipStatus::Invited, MembershipRole::Doctor),
    ];
    want.sort();
    assert_eq!(listed, want);

    // Pages of one walk both kinds, each once.
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = directory
            .list_user_memberships(pb::ListUserMembershipsRequest {
                user_id: bob.user.id.clone(),
                page_size: 1,
                page_token: token,
                include_invitations: true,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.memberships.into_iter().map(|m| m.organization.unwrap().id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 2);

    // An unverified account with an invited email sees nothing: it proves nothing.
    let late = app.register("late@example.com", "late", PASSWORD).await.unwrap().user.unwrap();
    send(&app, invitation(&orgs[1], "late@example.com", MembershipRole::Doctor, 14)).await.unwrap();
    assert!(list(&app, &late.id, true).await.is_empty());

    // The janitor deletes the expired invitation only.
    use identity_service::{config::ThrottleConfig, janitor, throttle::Throttle};
    let throttle = Throttle::new(ThrottleConfig::default());
    let week = std::time::Duration::from_secs(7 * 24 * 3600);
    let swept = janitor::sweep(&app.db, &throttle, week, Utc::now()).await.unwrap();
    assert_eq!(swept.invitations, 1);
    assert_eq!(app.count("organization_invitation").await, 3);
}

#[tokio::test]
async fn remove_invitation_is_idempotent_and_case_insensitive() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let org = reserve(&app, "Acme", &ann.user.id, &["s1"]).await.unwrap().organization.unwrap().id;
    send(&app, invitation(&org, "bob@example.com", MembershipRole::Patient, 14)).await.unwrap();
    let remove = pb::RemoveInvitationRequest {
        organization_id: org,
        email: "Bob@Example.com".into(),
        version: 0,
    };
    app.directory.clone().remove_invitation(remove.clone()).await.unwrap();
    app.directory.clone().remove_invitation(remove).await.unwrap();
    assert_eq!(app.count("organization_invitation").await, 0);
}

#[tokio::test]
async fn invitation_rpcs_validate_their_input() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let org = reserve(&app, "Acme", &ann, &["s1"]).await.unwrap().organization.unwrap().id;
    let ok = || invitation(&org, "bob@example.com", MembershipRole::Patient, 14);
    let cases = [
        (pb::SendInvitationRequest { organization_id: "x".into(), ..ok() }, "organization_id"),
        (pb::SendInvitationRequest { email: "no-at".into(), ..ok() }, "email"),
        (pb::SendInvitationRequest { email: "a b@example.com".into(), ..ok() }, "email"),
        (pb::SendInvitationRequest { role: 0, ..ok() }, "role"),
        (pb::SendInvitationRequest { expire_time: None, ..ok() }, "expire_time"),
        (invitation(&org, "bob@example.com", MembershipRole::Patient, -1), "expire_time"),
    ];
    for (request, field) in cases {
        assert_invalid(app.directory.clone().send_invitation(request).await, field);
    }
    let unknown = uuid::Uuid::new_v4().to_string();
    let r = app
        .directory
        .clone()
        .send_invitation(pb::SendInvitationRequest { organization_id: unknown, ..ok() })
        .await;
    assert_code(r, Code::NotFound);
    let r = app
        .directory
        .clone()
        .remove_invitation(pb::RemoveInvitationRequest {
            organization_id: org.clone(),
            email: String::new(),
            version: 0,
        })
        .await;
    assert_invalid(r, "email");
    assert_eq!(app.count("organization_invitation").await, 0);
}

/// Invitations are versioned like memberships: a removal outlives older sends, and
/// ListOrganizationMembers lists them after the memberships.
#[tokio::test]
async fn versioned_invitations_stay_removed() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let org =
        reserve(&app, "Versioned", &ann.user.id, &["s1"]).await.unwrap().organization.unwrap().id;
    let at = |version| pb::SendInvitationRequest {
        version,
        ..invitation(&org, "carol@example.com", MembershipRole::Doctor, 14)
    };
    send(&app, at(5)).await.unwrap();
    mails_to(&app, "carol@example.com", 1).await;
    let remove = pb::RemoveInvitationRequest {
        organization_id: org.clone(),
        email: "carol@example.com".into(),
        version: 6,
    };
    app.directory.clone().remove_invitation(remove).await.unwrap();
    send(&app, at(5)).await.unwrap();
    assert_eq!(app.count("organization_invitation").await, 0, "a stale send came back");
    send(&app, at(7)).await.unwrap();
    let request = pb::ListOrganizationMembersRequest {
        organization_id: org.clone(),
        page_size: 1,
        ..Default::default()
    };
    let page = app.directory.clone().list_organization_members(request).await.unwrap().into_inner();
    let entry = &page.members[0];
    assert_eq!(
        (entry.status(), entry.email.as_str(), entry.version),
        (MembershipStatus::Invited, "carol@example.com", 7)
    );
    assert!(page.next_page_token.is_empty());
}
