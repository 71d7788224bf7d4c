//! OrganizationService: creation, hostile names, crash-safe retries, placement on two servers.

use std::time::Instant;

use clinic_api::{clinic::v1 as pb, identity::v1 as ipb};
use clinic_shared::pg::{connect, create_database, database_exists, parse_url, with_dbname};
use tonic::Code;

use crate::helpers::{Options, first_server_url, second_server_url, spawn_app, spawn_with};

#[tokio::test]
async fn create_get_and_list_organizations() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let started = Instant::now();
    let org = app.create_org(&owner, "Sunrise Clinic").await;
    println!("first CreateOrganization (may migrate the template) took {:?}", started.elapsed());
    // Measured figures for the report: a clinic is ready in about CREATE DATABASE time.
    let started = Instant::now();
    app.create_org(&owner, "Second Clinic").await;
    let clinic = started.elapsed();
    let server = connect(&parse_url(&first_server_url()).unwrap()).await.unwrap();
    let started = Instant::now();
    create_database(&server, &format!("clinic_{}_plain", app.tag), None).await.unwrap();
    println!("CreateOrganization {clinic:?} vs plain CREATE DATABASE {:?}", started.elapsed());
    assert_eq!(org.status, pb::OrganizationStatus::Active as i32);
    assert_eq!(org.database_name, format!("clinic_{}_sunrise_clinic", app.tag));
    let got = app
        .orgs(&owner.token)
        .get_organization(pb::GetOrganizationRequest { organization_id: org.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.role, pb::Role::Admin as i32);
    assert_eq!(got.organization.unwrap().id, org.id);
    let list = app
        .orgs(&owner.token)
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.organizations.len(), 2);
    assert!(list.organizations.iter().all(|m| m.role == pb::Role::Admin as i32));
    // The same creator retrying gets the same clinic.
    let again = app.create_org(&owner, "Sunrise Clinic").await;
    assert_eq!(again.id, org.id);
    // Another user may not take the name (nor a name with the same database name).
    let other = app.user("other").await;
    let err = app
        .orgs(&other.token)
        .create_organization(pb::CreateOrganizationRequest {
            name: app.org_name("SUNRISE clinic!"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let bad = app
        .orgs(&owner.token)
        .list_organizations(pb::ListOrganizationsRequest { page_size: -1, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn unverified_users_cannot_create_and_missing_tokens_are_refused() {
    let app = spawn_app().await;
    // identity-service does not log unverified users in, so the check is driven directly.
    let owner = app.user("owner").await;
    let claims = clinic_service::auth::Person {
        user_id: owner.id.parse().unwrap(),
        email: owner.email.clone(),
        name: owner.name.clone(),
        email_verified: false,
    };
    let err = clinic_service::tenancy::provisioning::create_organization(
        &app.access,
        claims.user_id,
        std::future::ready(Ok(claims.clone())),
        &app.org_name("Nope"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, clinic_service::Error::PermissionDenied(_)), "{err:?}");
    let err = app
        .orgs("not-a-token")
        .list_organizations(pb::ListOrganizationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut anonymous =
        pb::organization_service_client::OrganizationServiceClient::new(app.clinic_channel());
    let err =
        anonymous.list_organizations(pb::ListOrganizationsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn hostile_names_give_safe_databases_or_clear_errors() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let mut orgs = app.orgs(&owner.token);
    let create = |name: String| {
        let mut orgs = orgs.clone();
        async move { orgs.create_organization(pb::CreateOrganizationRequest { name }).await }
    };
    let tag = &app.tag;
    let acme = create(app.org_name("Acme; DROP DATABASE clinic_db")).await.unwrap().into_inner();
    assert_eq!(
        acme.organization.unwrap().database_name,
        format!("clinic_{tag}_acme_drop_database_clinic_db")
    );
    let x = create(app.org_name("../x")).await.unwrap().into_inner();
    assert_eq!(x.organization.unwrap().database_name, format!("clinic_{tag}_x"));
    let upper = create(app.org_name("ACME")).await.unwrap().into_inner();
    assert_eq!(upper.organization.unwrap().database_name, format!("clinic_{tag}_acme"));
    // `acme` maps to the same database as `ACME`: the same creator gets ALREADY_EXISTS
    // or the same clinic, never a second database.
    match create(app.org_name("acme")).await {
        Ok(r) => assert_eq!(
            r.into_inner().organization.unwrap().database_name,
            format!("clinic_{tag}_acme")
        ),
        Err(e) => assert_eq!(e.code(), Code::AlreadyExists),
    }
    let emoji = create(app.org_name("🦷 Dental 🦷")).await.unwrap().into_inner();
    assert_eq!(emoji.organization.unwrap().database_name, format!("clinic_{tag}_dental"));
    for bad in ["🦷🦷".to_owned(), "x".repeat(300), String::new(), "a\u{0}b".to_owned()] {
        let err = create(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("name"), "{}", err.message());
    }
    let long = create(app.org_name(&"long name ".repeat(8))).await.unwrap().into_inner();
    let db = long.organization.unwrap().database_name;
    assert!(db.len() <= 63 && db.starts_with(&format!("clinic_{tag}")));
    // clinic_db and the template still exist and nothing else was dropped.
    let server = connect(&parse_url(&first_server_url()).unwrap()).await.unwrap();
    assert!(database_exists(&server, &app.config.template_database).await.unwrap());
    orgs.list_organizations(pb::ListOrganizationsRequest::default()).await.unwrap();
}

/// Drives provisioning step by step, as a crash would leave it, then retries.
#[tokio::test]
async fn retry_after_a_crash_at_any_step_completes_provisioning() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let mut directory = app.directory();
    let reserve = |name: String| {
        let mut directory = directory.clone();
        let owner = owner.id.clone();
        async move {
            directory
                .reserve_organization(ipb::ReserveOrganizationRequest {
                    name,
                    creator_user_id: owner,
                    candidate_servers: vec!["main".into()],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .organization
                .unwrap()
        }
    };
    let maintenance = connect(&parse_url(&first_server_url()).unwrap()).await.unwrap();
    // 1. crashed right after the reservation: no database yet.
    let reserved = reserve(app.org_name("Crash one")).await;
    assert!(!database_exists(&maintenance, &reserved.database_name).await.unwrap());
    // A PROVISIONING clinic refuses member calls.
    let err = app
        .members(&owner.token)
        .get_member(pb::GetMemberRequest {
            organization_id: reserved.id.clone(),
            member_id: "me".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // 2. crashed after CREATE DATABASE but before any migration: an empty database.
    let empty = reserve(app.org_name("Crash two")).await;
    create_database(&maintenance, &empty.database_name, None).await.unwrap();
    // 3. crashed after cloning the template but before the admin row.
    let cloned = reserve(app.org_name("Crash three")).await;
    let template = Some(app.config.template_database.as_str());
    create_database(&maintenance, &cloned.database_name, template).await.unwrap();

    for (base, org) in [("Crash one", reserved), ("Crash two", empty), ("Crash three", cloned)] {
        let done = app.create_org(&owner, base).await;
        assert_eq!(done.id, org.id, "{base}");
        assert_eq!(done.status, pb::OrganizationStatus::Active as i32);
        let me = app.me(&owner.token, &done.id).await;
        assert_eq!(me.role, pb::Role::Admin as i32, "{base}");
        let tenant = app.tenant_client("main", &done.database_name).await;
        let n: i64 =
            tenant.query_one("SELECT count(*) FROM organization_user", &[]).await.unwrap().get(0);
        assert_eq!(n, 1, "{base}: exactly one admin");
    }
    directory.list_organizations(ipb::ListOrganizationsRequest::default()).await.unwrap();
}

#[tokio::test]
async fn organizations_are_placed_on_the_emptier_server() {
    let app = spawn_with(Options { second_server: true, ..Default::default() }).await;
    let owner = app.user("owner").await;
    let mut placed = Vec::new();
    for i in 0..4 {
        let org = app.create_org(&owner, &format!("Placed {i}")).await;
        let row = app
            .directory()
            .get_organization(ipb::GetOrganizationRequest { organization_id: org.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .organization
            .unwrap();
        let url = if row.server == "b" { second_server_url() } else { first_server_url() };
        let server = connect(&with_dbname(&parse_url(&url).unwrap(), "postgres")).await.unwrap();
        assert!(
            database_exists(&server, &org.database_name).await.unwrap(),
            "db on recorded server"
        );
        let other = if row.server == "b" { first_server_url() } else { second_server_url() };
        let other = connect(&parse_url(&other).unwrap()).await.unwrap();
        assert!(!database_exists(&other, &org.database_name).await.unwrap());
        placed.push(row.server);
    }
    let on_b = placed.iter().filter(|s| *s == "b").count();
    assert_eq!(on_b, 2, "placements {placed:?} should fill both servers evenly");
}

#[tokio::test]
async fn concurrent_retries_of_one_creation_make_one_clinic_with_one_admin() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let mut orgs = app.orgs(&owner.token);
        let name = app.org_name("Raced");
        tasks.spawn(async move {
            orgs.create_organization(pb::CreateOrganizationRequest { name }).await
        });
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let org = match r.unwrap() {
            Ok(r) => r.into_inner().organization.unwrap(),
            Err(e) => {
                let logs = crate::helpers::captured_logs();
                let errors: Vec<_> =
                    logs.lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).collect();
                panic!("a retry failed: {e:?}\n{}", errors.join("\n"));
            }
        };
        assert_eq!(org.status, pb::OrganizationStatus::Active as i32);
        ids.push((org.id, org.database_name));
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let tenant = app.tenant_client("main", &ids[0].1).await;
    let n: i64 =
        tenant.query_one("SELECT count(*) FROM organization_user", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    let profiles: i64 =
        tenant.query_one("SELECT count(*) FROM admin_profile", &[]).await.unwrap().get(0);
    assert!(profiles >= 1);
}
