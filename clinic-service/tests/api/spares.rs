//! Spare databases: clinics renamed into place from a spare, replenishment, crash-safe retries
//! around the claim, concurrent creations, `migrate` on outdated spares, and SPARE_DATABASES=0.
//!
//! Each test pauses the background replenisher and runs rounds explicitly where it needs them,
//! so what it checks does not depend on timing (the replenishment test resumes it on purpose).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use chrono::{DurationRound, Utc};
use clinic_api::{
    clinic::v1::{self as pb, appointment_service_client::AppointmentServiceClient},
    identity::v1::{self as ipb, SpareDatabaseState as State},
};
use clinic_service::tenancy::{login::TenantLogins, spares};
use clinic_shared::pg::{connect, parse_url, with_dbname};
use tokio_postgres::Client;

use crate::helpers::{
    Options, TestApp, TestUser, bearer, first_server_url, second_server_url, spawn_with,
};

/// Both services with `count` spares per server (on both servers when `second`), the
/// background replenisher paused.
async fn spawn_spares(count: usize, second: bool) -> TestApp {
    let app = spawn_with(Options {
        second_server: second,
        tweak: Box::new(move |c| c.spare_databases = count),
        ..Options::default()
    })
    .await;
    app.access.spares().pause().await;
    app
}

/// One explicit replenisher round on every server; panics on a failure.
async fn replenish(app: &TestApp) -> HashMap<String, spares::Replenished> {
    let mut done = HashMap::new();
    for (server, result) in spares::replenish_all(&app.access).await {
        done.insert(server.clone(), result.unwrap_or_else(|e| panic!("{server}: {e}")));
    }
    done
}

async fn list(app: &TestApp, server: &str) -> Vec<ipb::SpareDatabase> {
    let request = ipb::ListSpareDatabasesRequest { server: server.into() };
    app.directory().list_spare_databases(request).await.unwrap().into_inner().spare_databases
}

async fn ready(app: &TestApp, server: &str) -> Vec<String> {
    let spares = list(app, server).await.into_iter();
    spares.filter(|s| s.state() == State::Ready).map(|s| s.database_name).collect()
}

async fn maintenance(server: &str) -> Client {
    let url = if server == "b" { second_server_url() } else { first_server_url() };
    connect(&with_dbname(&parse_url(&url).unwrap(), "postgres")).await.unwrap()
}

/// The OID of database `name` on `server` (it survives a rename), if it exists.
async fn oid(server: &str, name: &str) -> Option<u32> {
    let client = maintenance(server).await;
    let row = client.query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name]).await;
    row.unwrap().map(|r| r.get(0))
}

async fn server_of(app: &TestApp, org: &pb::Organization) -> String {
    let request = ipb::GetOrganizationRequest { organization_id: org.id.clone() };
    let found = app.directory().get_organization(request).await.unwrap().into_inner();
    found.organization.unwrap().server
}

/// `owner` is the admin of `org`, which has `members` member rows.
async fn admin_check(app: &TestApp, owner: &TestUser, org: &pb::Organization, members: i64) {
    let me = app.me(&owner.token, &org.id).await;
    assert_eq!(me.role, pb::Role::Admin as i32, "{}", org.name);
    let tenant = app.tenant_client(&server_of(app, org).await, &org.database_name).await;
    let n: i64 =
        tenant.query_one("SELECT count(*) FROM organization_user", &[]).await.unwrap().get(0);
    assert_eq!(n, members, "{}: member rows", org.name);
}

/// `org` (on `server`) is served through the login role made with spare `spare`: recorded
/// centrally, used by the service's connections, able to read its tables with its derived
/// password; no role was derived from the clinic's own database name.
async fn served_through_spare_role(
    app: &TestApp,
    org: &pb::Organization,
    server: &str,
    spare: &str,
) {
    let role = TenantLogins::role(spare);
    let request = ipb::GetOrganizationRequest { organization_id: org.id.clone() };
    let found = app.directory().get_organization(request).await.unwrap().into_inner();
    assert_eq!(found.organization.unwrap().login_role, role, "{}: recorded", org.name);
    let client = maintenance(server).await;
    let users: Vec<String> = client
        .query(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = $1",
            &[&org.database_name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(users.contains(&role), "{}: served by {users:?}, not {role}", org.name);
    let derived: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&TenantLogins::role(&org.database_name)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(derived, 0, "{}: no role derived from the clinic's name", org.name);
    let logins = TenantLogins::new(app.config.tenant_role_secret.clone().unwrap());
    let url = if server == "b" { second_server_url() } else { first_server_url() };
    let config = logins.apply(with_dbname(&parse_url(&url).unwrap(), &org.database_name), &role);
    let tenant = connect(&config.unwrap()).await.expect("the spare's role logs in");
    let n: i64 =
        tenant.query_one("SELECT count(*) FROM organization_user", &[]).await.unwrap().get(0);
    assert!(n >= 1, "{}: the spare's role reads the tables", org.name);
}

/// Reserves `base` for `owner` claiming a spare, as CreateOrganization does, then "crashes".
async fn reserve_claiming(
    app: &TestApp,
    owner: &TestUser,
    base: &str,
) -> (ipb::Organization, String) {
    let request = ipb::ReserveOrganizationRequest {
        name: app.org_name(base),
        creator_user_id: owner.id.clone(),
        candidate_servers: vec!["main".into()],
        claim_spare_database: true,
        ..Default::default()
    };
    let reserved = app.directory().reserve_organization(request).await.unwrap().into_inner();
    (reserved.organization.unwrap(), reserved.spare_database_name)
}

#[tokio::test]
async fn a_clinic_from_a_spare_works_end_to_end_and_the_spare_is_replenished() {
    let app = spawn_spares(2, true).await;
    let done = replenish(&app).await;
    assert_eq!(done["main"].created, 2);
    assert_eq!(done["b"].created, 2);
    let mut spare_oids = HashMap::new();
    for server in ["main", "b"] {
        let names = ready(&app, server).await;
        assert_eq!(names.len(), 2, "{server}: {names:?}");
        for name in names {
            assert!(name.starts_with(&app.config.spare_prefix), "{name}");
            assert!(!name.starts_with("clinic_"), "{name}");
            spare_oids.insert(oid(server, &name).await.expect("spare exists"), name);
        }
    }

    let c = app.clinic("From a spare").await;
    let server = server_of(&app, &c.org).await;
    let renamed = oid(&server, &c.org.database_name).await.expect("clinic database");
    let spare = spare_oids.get(&renamed).expect("the clinic's database is a renamed spare");
    assert_eq!(oid(&server, spare).await, None, "the spare's old name is gone");
    assert_eq!(ready(&app, &server).await.len(), 1, "consumed and forgotten");
    admin_check(&app, &c.admin, &c.org, 3).await;
    served_through_spare_role(&app, &c.org, &server, spare).await;

    // Bookings work in it: the patient books, the doctor approves.
    let start = (Utc::now() + chrono::Duration::hours(30))
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let booking = pb::CreateAppointmentRequest {
        organization_id: c.org.id.clone(),
        patient_id: "me".into(),
        doctor_id: c.doctor_member.id.clone(),
        start_time: Some(prost_types::Timestamp { seconds: start.timestamp(), nanos: 0 }),
        ..Default::default()
    };
    let mut patient =
        AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(&c.patient.token));
    let appointment =
        patient.create_appointment(booking).await.unwrap().into_inner().appointment.unwrap();
    let mut doctor =
        AppointmentServiceClient::with_interceptor(app.clinic_channel(), bearer(&c.doctor.token));
    let approved = doctor
        .approve_appointment(pb::ApproveAppointmentRequest {
            organization_id: c.org.id.clone(),
            appointment_id: appointment.id,
        })
        .await
        .unwrap()
        .into_inner()
        .appointment
        .unwrap();
    assert_eq!(approved.status, pb::AppointmentStatus::Approved as i32);

    // The background replenisher tops the server up again once it runs (woken by the claim).
    app.access.spares().resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready(&app, &server).await.len() < 2 {
        assert!(Instant::now() < deadline, "the spare was never replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.access.spares().pause().await;
    assert_eq!(ready(&app, &server).await.len(), 2);
}

#[tokio::test]
async fn a_crash_around_the_claim_is_completed_by_a_retry() {
    let app = spawn_spares(3, false).await;
    replenish(&app).await;
    let owner = app.user("owner").await;

    // 1. Crashed right after the claim: the spare still has its own name.
    let (one, spare_one) = reserve_claiming(&app, &owner, "Claimed").await;
    assert!(!spare_one.is_empty());
    let spare_oid = oid("main", &spare_one).await.expect("spare exists");
    assert_eq!(oid("main", &one.database_name).await, None);
    // 2. Crashed right after the rename.
    let (two, spare_two) = reserve_claiming(&app, &owner, "Renamed").await;
    assert!(!spare_two.is_empty() && spare_two != spare_one);
    let renamed_oid = oid("main", &spare_two).await.expect("spare exists");
    maintenance("main")
        .await
        .batch_execute(&format!("ALTER DATABASE {spare_two} RENAME TO {}", two.database_name))
        .await
        .unwrap();
    // 3. The claimed spare vanished (dropped by hand; FORCE, since it may be the armed one):
    // cloned from the template instead.
    let (three, spare_three) = reserve_claiming(&app, &owner, "Vanished").await;
    let drop = format!("DROP DATABASE {spare_three} WITH (FORCE)");
    maintenance("main").await.batch_execute(&drop).await.unwrap();

    for (base, reserved, spare, from) in [
        ("Claimed", &one, &spare_one, Some(spare_oid)),
        ("Renamed", &two, &spare_two, Some(renamed_oid)),
        ("Vanished", &three, &spare_three, None),
    ] {
        let done = app.create_org(&owner, base).await;
        assert_eq!(done.id, reserved.id, "{base}");
        assert_eq!(done.status, pb::OrganizationStatus::Active as i32);
        let now = oid("main", &done.database_name).await.expect("clinic database");
        if let Some(from) = from {
            assert_eq!(now, from, "{base}: the claimed spare was renamed into place");
        }
        admin_check(&app, &owner, &done, 1).await;
        // Even the clone of a vanished spare is served through the role the spare carried.
        served_through_spare_role(&app, &done, "main", spare).await;
    }
    assert_eq!(oid("main", &spare_one).await, None);
    assert!(list(&app, "main").await.is_empty(), "every claim was forgotten on activation");
}

/// Rows in `organization_user` of database `name` on the first server.
async fn member_rows(name: &str) -> i64 {
    let url = parse_url(&first_server_url()).unwrap();
    let client = connect(&with_dbname(&url, name)).await.unwrap();
    client.query_one("SELECT count(*) FROM organization_user", &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_armed_spare_commits_its_admin_only_when_claimed() {
    let app = spawn_spares(2, false).await;
    replenish(&app).await;
    assert!(app.access.pools().is_armed("main"), "a round arms a spare");
    // Oldest first in the register: the armed one is the newest.
    let names = ready(&app, "main").await;
    let (oldest, armed) = (names[0].clone(), names[1].clone());
    let oldest_oid = oid("main", &oldest).await.expect("spare exists");

    // Another replica's reservation takes the armed spare (and "crashes" before the rename).
    let other = app.user("other").await;
    let request = ipb::ReserveOrganizationRequest {
        name: app.org_name("Elsewhere"),
        creator_user_id: other.id.clone(),
        candidate_servers: vec!["main".into()],
        claim_spare_database: true,
        preferred_spare_database_names: vec![armed.clone()],
    };
    let reserved = app.directory().reserve_organization(request).await.unwrap().into_inner();
    assert_eq!(reserved.spare_database_name, armed);

    // This creation staged its admin in the armed spare, got the other one: rolled back.
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "Here").await;
    let renamed = oid("main", &org.database_name).await.expect("clinic database");
    assert_eq!(renamed, oldest_oid, "the oldest spare was renamed into place");
    admin_check(&app, &owner, &org, 1).await;
    assert_eq!(member_rows(&armed).await, 0, "nothing committed in the spare it did not get");

    // The other creation completes: its rename is not held up by a connection to its spare.
    let done = app.create_org(&other, "Elsewhere").await;
    assert_eq!(done.status, pb::OrganizationStatus::Active as i32);
    assert_eq!(oid("main", &armed).await, None);
    admin_check(&app, &other, &done, 1).await;
}

#[tokio::test]
async fn spares_left_half_made_are_dropped_and_replaced() {
    let app = spawn_spares(1, false).await;
    // A runner stopped after registering a spare and creating its database.
    let stale = format!("{}{}", app.config.spare_prefix, uuid::Uuid::new_v4().simple());
    let request = ipb::RegisterSpareDatabaseRequest {
        server: "main".into(),
        database_name: stale.clone(),
        ..Default::default()
    };
    app.directory().register_spare_database(request).await.unwrap();
    maintenance("main").await.batch_execute(&format!("CREATE DATABASE {stale}")).await.unwrap();

    let done = replenish(&app).await;
    assert_eq!(done["main"], spares::Replenished { created: 1, discarded: 1 });
    assert_eq!(oid("main", &stale).await, None, "the half-made spare was dropped");
    let now = ready(&app, "main").await;
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], stale);
    // Nothing more to do.
    assert_eq!(replenish(&app).await["main"], spares::Replenished::default());
}

#[tokio::test]
async fn concurrent_creations_never_get_the_same_spare() {
    let app = spawn_spares(3, false).await;
    replenish(&app).await;
    let mut spare_oids = HashSet::new();
    for name in ready(&app, "main").await {
        spare_oids.insert(oid("main", &name).await.unwrap());
    }
    assert_eq!(spare_oids.len(), 3);
    let owners = [app.user("ann").await, app.user("bob").await];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let mut orgs = app.orgs(&owners[i % 2].token);
        let name = app.org_name(&format!("Race {i}"));
        tasks.spawn(async move {
            orgs.create_organization(pb::CreateOrganizationRequest { name }).await
        });
    }
    let mut oids = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let org = joined.unwrap().expect("create organization").into_inner().organization.unwrap();
        assert_eq!(org.status, pb::OrganizationStatus::Active as i32);
        oids.push(oid("main", &org.database_name).await.expect("clinic database"));
    }
    let distinct: HashSet<_> = oids.iter().copied().collect();
    assert_eq!(distinct.len(), 6, "six databases");
    let from_spares = oids.iter().filter(|o| spare_oids.contains(o)).count();
    assert_eq!(from_spares, 3, "each spare went to exactly one clinic, the rest were cloned");
    assert!(list(&app, "main").await.is_empty());
}

#[tokio::test]
async fn migrate_brings_an_outdated_spare_up_to_date() {
    let app = spawn_spares(1, false).await;
    replenish(&app).await;
    let spare = ready(&app, "main").await.remove(0);
    let current = clinic_service::tenancy::migrations::marker();
    // Outdated: the newest migration undone, an older marker.
    let latest = clinic_service::tenancy::migrations::latest_version();
    let tenant = app.tenant_client("main", &spare).await;
    tenant
        .batch_execute(&format!(
            "DROP TRIGGER refinery_schema_history_withdraws_marker ON refinery_schema_history;
             DROP FUNCTION withdraw_schema_marker();
             DELETE FROM refinery_schema_history WHERE version = {latest};
             COMMENT ON DATABASE {spare} IS 'clinic-schema {} 000000000000';",
            latest - 1
        ))
        .await
        .unwrap();
    drop(tenant);

    let outcomes = spares::migrate_spares(&app.access, "main").await.unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].database, spare);
    assert_eq!(outcomes[0].result, Ok(1));
    let marker: Option<String> = maintenance("main")
        .await
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&spare],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(marker.as_deref(), Some(current.as_str()));
    assert_eq!(ready(&app, "main").await, std::slice::from_ref(&spare), "READY again");
    // Up to date now: not opened, not reported.
    assert!(spares::migrate_spares(&app.access, "main").await.unwrap().is_empty());

    // The migrated spare becomes a working clinic.
    let spare_oid = oid("main", &spare).await.unwrap();
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "Migrated spare").await;
    assert_eq!(oid("main", &org.database_name).await, Some(spare_oid));
    admin_check(&app, &owner, &org, 1).await;
}

#[tokio::test]
async fn without_spares_clinics_are_cloned_as_before() {
    let app = spawn_with(Options::default()).await;
    assert_eq!(app.config.spare_databases, 0);
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "No spares").await;
    admin_check(&app, &owner, &org, 1).await;
    assert_eq!(replenish(&app).await["main"], spares::Replenished::default());
    assert!(list(&app, "").await.is_empty());
    let pattern = format!("{}%", app.config.spare_prefix.replace('_', "\\_"));
    let n: i64 = maintenance("main")
        .await
        .query_one("SELECT count(*) FROM pg_database WHERE datname LIKE $1", &[&pattern])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "no spare database was made");

    // The tenant's role got the verifier computed here, stored as it is (not taken for a
    // password and hashed again), so the derived password logs in.
    let logins = TenantLogins::new(app.config.tenant_role_secret.clone().unwrap());
    let role = TenantLogins::role(&org.database_name);
    let expected = logins.prepare(&org.database_name, &role).unwrap();
    let stored: Option<String> = maintenance("main")
        .await
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&TenantLogins::role(&org.database_name)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored.as_deref(), Some(expected.verifier()));
}
