use clinic_api::identity::v1::{self as pb, MembershipRole};
use tonic::Code;

use crate::{
    helpers::{assert_code, assert_invalid, spawn_app},
    organizations::reserve,
};

#[tokio::test]
async fn lookup_user_finds_users_by_email_case_insensitively() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let mut directory = app.directory.clone();
    let found = directory
        .lookup_user(pb::LookupUserRequest { email: "ANN@example.com".into() })
        .await
        .unwrap();
    let user = found.into_inner().user.unwrap();
    assert_eq!((user.id, user.name, user.email_verified), (ann.user.id, "ann".to_owned(), true));
    let missing =
        directory.lookup_user(pb::LookupUserRequest { email: "bob@example.com".into() }).await;
    assert_code(missing, Code::NotFound);
    assert_invalid(
        directory.lookup_user(pb::LookupUserRequest { email: String::new() }).await,
        "email",
    );
}

fn membership(org: &str, user: &str, role: MembershipRole) -> pb::RecordMembershipRequest {
    pb::RecordMembershipRequest {
        organization_id: org.into(),
        user_id: user.into(),
        role: role.into(),
        version: 0,
    }
}

#[tokio::test]
async fn memberships_are_recorded_listed_and_removed() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let bob = app.verified_user("bob").await.user.id;
    let mut orgs = Vec::new();
    for name in ["One", "Two", "Three"] {
        orgs.push(reserve(&app, name, &ann, &["s1"]).await.unwrap().organization.unwrap().id);
    }
    let mut directory = app.directory.clone();
    for org in &orgs {
        directory.record_membership(membership(org, &bob, MembershipRole::Patient)).await.unwrap();
    }
    // Recording again updates the role.
    directory.record_membership(membership(&orgs[0], &bob, MembershipRole::Doctor)).await.unwrap();

    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = directory
            .list_user_memberships(pb::ListUserMembershipsRequest {
                user_id: bob.clone(),
                page_size: 2,
                page_token: token,
                include_invitations: false,
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(
            page.memberships
                .into_iter()
                .map(|m| (m.role(), m.organization.unwrap().id))
                .map(|(r, id)| (id, r)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut want: Vec<_> = orgs
        .iter()
        .map(|o| {
            (
                o.clone(),
                if *o == orgs[0] { MembershipRole::Doctor } else { MembershipRole::Patient },
            )
        })
        .collect();
    want.sort();
    assert_eq!(seen, want);

    let remove = pb::RemoveMembershipRequest {
        organization_id: orgs[0].clone(),
        user_id: bob.clone(),
        version: 0,
    };
    directory.remove_membership(remove.clone()).await.unwrap();
    directory.remove_membership(remove).await.unwrap();
    assert_eq!(app.count("organization_member").await, 2);
}

#[tokio::test]
async fn membership_rpcs_validate_their_input() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let org = reserve(&app, "Acme", &ann, &["s1"]).await.unwrap().organization.unwrap().id;
    let mut directory = app.directory.clone();
    let missing = uuid::Uuid::new_v4().to_string();
    assert_invalid(
        directory.record_membership(membership("x", &ann, MembershipRole::Admin)).await,
        "organization_id",
    );
    assert_invalid(
        directory.record_membership(membership(&org, "x", MembershipRole::Admin)).await,
        "user_id",
    );
    assert_invalid(
        directory.record_membership(membership(&org, &ann, MembershipRole::Unspecified)).await,
        "role",
    );
    assert_code(
        directory.record_membership(membership(&missing, &ann, MembershipRole::Admin)).await,
        Code::NotFound,
    );
    assert_code(
        directory.record_membership(membership(&org, &missing, MembershipRole::Admin)).await,
        Code::NotFound,
    );
    let r = directory
        .remove_membership(pb::RemoveMembershipRequest {
            organization_id: org.clone(),
            user_id: "x".into(),
            version: 0,
        })
        .await;
    assert_invalid(r, "user_id");
    let r = directory
        .list_user_memberships(pb::ListUserMembershipsRequest {
            user_id: "x".into(),
            page_size: 0,
            page_token: String::new(),
            include_invitations: false,
        })
        .await;
    assert_invalid(r, "user_id");
    let r = directory
        .list_user_memberships(pb::ListUserMembershipsRequest {
            user_id: ann,
            page_size: 0,
            page_token: "@@".into(),
            include_invitations: false,
        })
        .await;
    assert_invalid(r, "page_token");
    assert_eq!(app.count("organization_member").await, 0);
}

/// Changes carry the tenant's version of the member: an older one than applied (a removal
/// included) is answered OK and ignored, so a change relayed late or twice never brings a
/// removed member back; ListOrganizationMembers shows what is recorded, with versions.
#[tokio::test]
async fn versioned_changes_never_go_back() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let bob = app.verified_user("bob").await.user.id;
    let org = reserve(&app, "Versions", &ann, &["s1"]).await.unwrap().organization.unwrap().id;
    let mut directory = app.directory.clone();
    let at =
        |role, version| pb::RecordMembershipRequest { version, ..membership(&org, &bob, role) };
    let remove = |version| pb::RemoveMembershipRequest {
        organization_id: org.clone(),
        user_id: bob.clone(),
        version,
    };
    let listed = || {
        let mut directory = app.directory.clone();
        let request = pb::ListOrganizationMembersRequest {
            organization_id: org.clone(),
            ..Default::default()
        };
        async move {
            let members = directory.list_organization_members(request).await.unwrap();
            let members = members.into_inner().members;
            members
                .into_iter()
                .map(|m| (m.user_id.clone(), m.role(), m.version))
                .collect::<Vec<_>>()
        }
    };
    directory.record_membership(at(MembershipRole::Patient, 2)).await.unwrap();
    directory.record_membership(at(MembershipRole::Admin, 1)).await.unwrap();
    assert_eq!(listed().await, [(bob.clone(), MembershipRole::Patient, 2)]);
    directory.remove_membership(remove(3)).await.unwrap();
    directory.record_membership(at(MembershipRole::Doctor, 2)).await.unwrap();
    directory.remove_membership(remove(1)).await.unwrap();
    assert_eq!(listed().await, [], "a stale change brought a removed member back");
    directory.record_membership(at(MembershipRole::Doctor, 4)).await.unwrap();
    assert_eq!(listed().await, [(bob.clone(), MembershipRole::Doctor, 4)]);
    directory.remove_membership(remove(3)).await.unwrap();
    assert_eq!(listed().await, [(bob.clone(), MembershipRole::Doctor, 4)]);
    assert_invalid(directory.record_membership(at(MembershipRole::Doctor, -1)).await, "version");
}
