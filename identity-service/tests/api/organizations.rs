use clinic_api::identity::v1::{self as pb, OrganizationStatus};
use tonic::{Code, Status};

use crate::helpers::{PASSWORD, TestApp, assert_code, assert_invalid, spawn_app};

pub async fn reserve(
    app: &TestApp,
    name: &str,
    creator: &str,
    servers: &[&str],
) -> Result<pb::ReserveOrganizationResponse, Status> {
    let request = pb::ReserveOrganizationRequest {
        name: name.into(),
        creator_user_id: creator.into(),
        candidate_servers: servers.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    app.directory.clone().reserve_organization(request).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn organizations_go_to_the_least_loaded_server() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let cases = [
        ("A", &["s1", "s2"][..], "s1"),
        ("B", &["s1", "s2"][..], "s2"),
        ("C", &["s2", "s1", "s3"][..], "s3"),
        ("D", &["s1", "s2"][..], "s1"),
        ("E", &["s2", "s2"][..], "s2"),
    ];
    for (name, servers, want) in cases {
        let r = reserve(&app, name, &ann, servers).await.unwrap();
        assert!(r.created);
        let org = r.organization.unwrap();
        assert_eq!(org.server, want, "{name}");
        assert_eq!(org.status(), OrganizationStatus::Provisioning);
        assert_eq!(org.creator_user_id, ann);
    }
}

#[tokio::test]
async fn retries_by_the_creator_return_the_same_organization() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let first = reserve(&app, "Acme", &ann, &["s1"]).await.unwrap().organization.unwrap();
    assert_eq!(first.database_name, "clinic_acme");
    let again = reserve(&app, "Acme", &ann, &["s2"]).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.organization.unwrap().id, first.id);

    let mut directory = app.directory.clone();
    let request = pb::ActivateOrganizationRequest { organization_id: first.id.clone() };
    for _ in 0..2 {
        let org = directory
            .activate_organization(request.clone())
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap();
        assert_eq!(org.status(), OrganizationStatus::Active);
    }
    let after = reserve(&app, "Acme", &ann, &["s1"]).await.unwrap();
    assert!(!after.created);
    assert_eq!(after.organization.unwrap().status(), OrganizationStatus::Active);
    assert_eq!(app.count("organization").await, 1);
}

#[tokio::test]
async fn names_taken_by_another_creator_are_already_exists() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let bob = app.verified_user("bob").await.user.id;
    reserve(&app, "acme", &ann, &["s1"]).await.unwrap();
    assert_code(reserve(&app, "acme", &bob, &["s1"]).await, Code::AlreadyExists);
    // Same database name, different spelling.
    assert_code(reserve(&app, "ACME", &bob, &["s1"]).await, Code::AlreadyExists);
    assert_code(reserve(&app, "Acme!", &bob, &["s1"]).await, Code::AlreadyExists);
    assert_eq!(app.count("organization").await, 1);
}

#[tokio::test]
async fn hostile_names_are_mapped_safely_or_rejected() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let r = reserve(&app, "Acme; DROP DATABASE clinic_db", &ann, &["s1"]).await.unwrap();
    assert_eq!(r.organization.unwrap().database_name, "clinic_acme_drop_database_clinic_db");
    for name in ["🦷🦷", &"x".repeat(300), "", "   ", "a\u{0}b", "DB"] {
        assert_invalid(reserve(&app, name, &ann, &["s1"]).await, "name");
    }
    assert_eq!(app.count("organization").await, 1);
}

#[tokio::test]
async fn reserve_checks_the_creator_and_the_servers() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let unverified =
        app.register("bob@example.com", "bob", PASSWORD).await.unwrap().user.unwrap().id;
    assert_code(reserve(&app, "Acme", &unverified, &["s1"]).await, Code::FailedPrecondition);
    assert_code(
        reserve(&app, "Acme", &uuid::Uuid::new_v4().to_string(), &["s1"]).await,
        Code::NotFound,
    );
    assert_invalid(reserve(&app, "Acme", "not-a-uuid", &["s1"]).await, "creator_user_id");
    assert_invalid(reserve(&app, "Acme", "", &["s1"]).await, "creator_user_id");
    assert_invalid(reserve(&app, "Acme", &ann, &[]).await, "candidate_servers");
    assert_invalid(reserve(&app, "Acme", &ann, &[""]).await, "candidate_servers");
    assert_eq!(app.count("organization").await, 0);
}

#[tokio::test]
async fn get_and_activate_need_an_existing_organization() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let org = reserve(&app, "Acme", &ann, &["s1"]).await.unwrap().organization.unwrap();
    let mut directory = app.directory.clone();
    let got = directory
        .get_organization(pb::GetOrganizationRequest { organization_id: org.id.clone() })
        .await
        .unwrap();
    assert_eq!(got.into_inner().organization.unwrap(), org);
    let missing = uuid::Uuid::new_v4().to_string();
    let r = directory
        .get_organization(pb::GetOrganizationRequest { organization_id: missing.clone() })
        .await;
    assert_code(r, Code::NotFound);
    let r = directory
        .activate_organization(pb::ActivateOrganizationRequest { organization_id: missing })
        .await;
    assert_code(r, Code::NotFound);
    let r = directory
        .get_organization(pb::GetOrganizationRequest { organization_id: "x".into() })
        .await;
    assert_invalid(r, "organization_id");
    let r = directory
        .activate_organization(pb::ActivateOrganizationRequest { organization_id: "x".into() })
        .await;
    assert_invalid(r, "organization_id");
}

#[tokio::test]
async fn list_organizations_walks_every_row_once() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let mut all = Vec::new();
    for i in 0..5 {
        all.push(
            reserve(&app, &format!("Org {i}"), &ann, &["s1"])
                .await
                .unwrap()
                .organization
                .unwrap()
                .id,
        );
    }
    let mut directory = app.directory.clone();
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = directory
            .list_organizations(pb::ListOrganizationsRequest { page_size: 2, page_token: token })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.organizations.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    all.sort();
    assert_eq!(seen, all);
    let bad = directory
        .list_organizations(pb::ListOrganizationsRequest { page_size: 2, page_token: "!!".into() })
        .await;
    assert_invalid(bad, "page_token");
    let bad = directory
        .list_organizations(pb::ListOrganizationsRequest {
            page_size: -1,
            page_token: String::new(),
        })
        .await;
    assert_invalid(bad, "page_size");
}

#[tokio::test]
async fn concurrent_reservations_spread_over_the_servers() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let (a, b, c, d) = tokio::join!(
        reserve(&app, "A", &ann, &["s1", "s2"]),
        reserve(&app, "B", &ann, &["s1", "s2"]),
        reserve(&app, "C", &ann, &["s1", "s2"]),
        reserve(&app, "D", &ann, &["s1", "s2"]),
    );
    let mut servers: Vec<_> =
        [a, b, c, d].into_iter().map(|r| r.unwrap().organization.unwrap().server).collect();
    servers.sort();
    assert_eq!(servers, ["s1", "s1", "s2", "s2"]);
}

#[tokio::test]
async fn clinics_per_user_are_capped_with_a_quota_failure() {
    use tonic_types::StatusExt;
    let app = crate::helpers::spawn_app_with(|c| c.max_clinics_per_user = 2).await;
    let ann = app.verified_user("ann").await.user.id;
    reserve(&app, "One", &ann, &["s1"]).await.unwrap();
    reserve(&app, "Two", &ann, &["s1"]).await.unwrap();
    // A retry of an earlier reservation is not a new clinic.
    assert!(!reserve(&app, "Two", &ann, &["s1"]).await.unwrap().created);
    let status = assert_code(reserve(&app, "Three", &ann, &["s1"]).await, Code::ResourceExhausted);
    let quota = status.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, format!("user:{ann}"));
    assert!(quota.violations[0].description.contains("at most 2"));
    assert_eq!(app.count("organization").await, 2);
    // Another user has a quota of their own.
    let bob = app.verified_user("bob").await.user.id;
    reserve(&app, "Three", &bob, &["s1"]).await.unwrap();
}

#[tokio::test]
async fn creating_clinics_is_rate_limited_per_user() {
    use tonic_types::StatusExt;
    let app = crate::helpers::spawn_app_with(|c| c.throttle.create_organization_per_user = 2).await;
    let ann = app.verified_user("ann").await.user.id;
    reserve(&app, "One", &ann, &["s1"]).await.unwrap();
    // A name taken by someone else is refused without using up the rate.
    let bob = app.verified_user("bob").await.user.id;
    reserve(&app, "Bobs", &bob, &["s1"]).await.unwrap();
    assert_code(reserve(&app, "Bobs", &ann, &["s1"]).await, Code::AlreadyExists);
    reserve(&app, "Two", &ann, &["s1"]).await.unwrap();
    let status = assert_code(reserve(&app, "Three", &ann, &["s1"]).await, Code::ResourceExhausted);
    let retry = status.get_details_retry_info().expect("RetryInfo");
    assert!(retry.retry_delay.is_some_and(|d| d.as_secs() >= 1));
    assert_eq!(app.count("organization").await, 3);
}
