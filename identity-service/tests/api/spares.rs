//! The register of spare tenant databases: registration, states, claims inside reservations,
//! and activation forgetting the claimed spare.

use clinic_api::identity::v1::{self as pb, SpareDatabaseState as State};
use tonic::Code;

use crate::helpers::{TestApp, assert_code, assert_invalid, spawn_app};

async fn register(app: &TestApp, server: &str, name: &str) -> pb::SpareDatabase {
    let request = pb::RegisterSpareDatabaseRequest {
        server: server.into(),
        database_name: name.into(),
        ..Default::default()
    };
    let response = app.directory.clone().register_spare_database(request).await.unwrap();
    response.into_inner().spare_database.unwrap()
}

async fn set_state(
    app: &TestApp,
    name: &str,
    from: State,
    to: State,
) -> Result<pb::SpareDatabase, tonic::Status> {
    let request = pb::UpdateSpareDatabaseRequest {
        database_name: name.into(),
        expected_state: from.into(),
        state: to.into(),
    };
    let response = app.directory.clone().update_spare_database(request).await?;
    Ok(response.into_inner().spare_database.unwrap())
}

async fn list(app: &TestApp, server: &str) -> Vec<pb::SpareDatabase> {
    let request = pb::ListSpareDatabasesRequest { server: server.into() };
    app.directory.clone().list_spare_databases(request).await.unwrap().into_inner().spare_databases
}

async fn reserve_claiming(
    app: &TestApp,
    name: &str,
    creator: &str,
) -> pb::ReserveOrganizationResponse {
    reserve_preferring(app, name, creator, &[]).await.unwrap()
}

async fn reserve_preferring(
    app: &TestApp,
    name: &str,
    creator: &str,
    preferred: &[&str],
) -> Result<pb::ReserveOrganizationResponse, tonic::Status> {
    let request = pb::ReserveOrganizationRequest {
        name: name.into(),
        creator_user_id: creator.into(),
        candidate_servers: vec!["s1".into()],
        claim_spare_database: true,
        preferred_spare_database_names: preferred.iter().map(|p| (*p).to_owned()).collect(),
    };
    Ok(app.directory.clone().reserve_organization(request).await?.into_inner())
}

#[tokio::test]
async fn a_preferred_spare_is_claimed_first_then_the_oldest() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    for name in ["spare_old", "spare_new"] {
        register(&app, "s1", name).await;
        set_state(&app, name, State::Creating, State::Ready).await.unwrap();
    }
    register(&app, "s2", "spare_elsewhere").await;
    set_state(&app, "spare_elsewhere", State::Creating, State::Ready).await.unwrap();
    let bad = reserve_preferring(&app, "Bad", &ann, &["clinic_taken"]).await;
    assert_invalid(bad, "preferred_spare_database_names");
    // Another server's spare is never claimed, preferred or not.
    let preferring = ["spare_elsewhere", "spare_new"];
    let first = reserve_preferring(&app, "First", &ann, &preferring).await.unwrap();
    assert_eq!(first.spare_database_name, "spare_new");
    let second = reserve_preferring(&app, "Second", &ann, &preferring).await.unwrap();
    assert_eq!(second.spare_database_name, "spare_old", "the preferred one is claimed already");
    let third = reserve_preferring(&app, "Third", &ann, &preferring).await.unwrap();
    assert_eq!(third.spare_database_name, "");
}

#[tokio::test]
async fn spare_names_stay_outside_the_clinics_namespace() {
    let app = spawn_app().await;
    let mut directory = app.directory.clone();
    for bad in ["clinic_spare", "clinic_", "Spare", "", "a-b", "1spare", &"s".repeat(64)] {
        let request = pb::RegisterSpareDatabaseRequest {
            server: "s1".into(),
            database_name: bad.into(),
            ..Default::default()
        };
        assert_invalid(directory.register_spare_database(request).await, "database_name");
    }
    let request = pb::RegisterSpareDatabaseRequest {
        server: String::new(),
        database_name: "spare_a".into(),
        ..Default::default()
    };
    assert_invalid(directory.register_spare_database(request).await, "server");
    // Login roles: only the one pattern bootstrap.sql's create_tenant_role accepts.
    for bad in ["postgres", "clinic_tenant_", "clinic_tenant_0123456789ABCDEF0123456789abcdef"] {
        let request = pb::RegisterSpareDatabaseRequest {
            server: "s1".into(),
            database_name: "spare_a".into(),
            login_role: bad.into(),
        };
        assert_invalid(directory.register_spare_database(request).await, "login_role");
    }
    let update = pb::UpdateSpareDatabaseRequest {
        database_name: "spare_a".into(),
        expected_state: State::Creating.into(),
        state: State::Claimed.into(),
    };
    assert_invalid(directory.update_spare_database(update).await, "state");
}

#[tokio::test]
async fn spares_are_registered_made_ready_claimed_once_and_forgotten_on_activation() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let first = register(&app, "s1", "spare_first").await;
    assert_eq!(first.state(), State::Creating);
    // Idempotent on the same server, refused on another.
    assert_eq!(register(&app, "s1", "spare_first").await.state(), State::Creating);
    let elsewhere = pb::RegisterSpareDatabaseRequest {
        server: "s2".into(),
        database_name: "spare_first".into(),
        ..Default::default()
    };
    let refused = app.directory.clone().register_spare_database(elsewhere).await;
    assert_code(refused, Code::AlreadyExists);
    register(&app, "s1", "spare_second").await;
    register(&app, "s2", "spare_other_server").await;

    // A CREATING spare is never claimed.
    let none = reserve_claiming(&app, "Too Early", &ann).await;
    assert!(none.created);
    assert_eq!(none.spare_database_name, "");

    for name in ["spare_first", "spare_second", "spare_other_server"] {
        assert_eq!(
            set_state(&app, name, State::Creating, State::Ready).await.unwrap().state(),
            State::Ready
        );
    }
    // Compare and set: already READY is fine; from a state it is not in, refused.
    set_state(&app, "spare_first", State::Creating, State::Ready).await.unwrap();
    let missing = set_state(&app, "spare_missing", State::Creating, State::Ready).await;
    assert_code(missing, Code::NotFound);

    // Oldest first, on the chosen server only; a retry returns the same claim.
    let claimed = reserve_claiming(&app, "Sunrise", &ann).await;
    assert_eq!(claimed.spare_database_name, "spare_first");
    let again = reserve_claiming(&app, "Sunrise", &ann).await;
    assert!(!again.created);
    assert_eq!(again.spare_database_name, "spare_first");
    let second = reserve_claiming(&app, "Sunset", &ann).await;
    assert_eq!(second.spare_database_name, "spare_second");
    let third = reserve_claiming(&app, "Noon", &ann).await;
    assert_eq!(third.spare_database_name, "", "the other server's spare is not taken");

    // A claimed spare can be neither moved nor removed: it is the organization's.
    let moved = set_state(&app, "spare_first", State::Ready, State::Creating).await;
    assert_code(moved, Code::FailedPrecondition);
    let remove = pb::RemoveSpareDatabaseRequest { database_name: "spare_first".into() };
    assert_code(
        app.directory.clone().remove_spare_database(remove).await,
        Code::FailedPrecondition,
    );
    let states: Vec<_> = list(&app, "s1").await.iter().map(|s| s.state()).collect();
    assert_eq!(states, [State::Claimed, State::Claimed]);

    // Activation forgets the claim; removing an unclaimed spare is idempotent.
    let org = claimed.organization.unwrap();
    let activate = pb::ActivateOrganizationRequest { organization_id: org.id.clone() };
    app.directory.clone().activate_organization(activate).await.unwrap();
    let left: Vec<_> = list(&app, "s1").await.into_iter().map(|s| s.database_name).collect();
    assert_eq!(left, ["spare_second"]);
    for _ in 0..2 {
        let remove = pb::RemoveSpareDatabaseRequest { database_name: "spare_other_server".into() };
        app.directory.clone().remove_spare_database(remove).await.unwrap();
    }
    assert!(list(&app, "s2").await.is_empty());
    assert_eq!(list(&app, "").await.len(), 1);
}

#[tokio::test]
async fn a_spare_s_login_role_becomes_its_organization_s() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await.user.id;
    let role = format!("clinic_tenant_{}", "0123456789abcdef".repeat(2));
    let request = pb::RegisterSpareDatabaseRequest {
        server: "s1".into(),
        database_name: "spare_with_role".into(),
        login_role: role.clone(),
    };
    let spare = app.directory.clone().register_spare_database(request.clone()).await.unwrap();
    assert_eq!(spare.into_inner().spare_database.unwrap().login_role, role);
    // Idempotent with the same role, refused with another.
    app.directory.clone().register_spare_database(request.clone()).await.unwrap();
    let other = pb::RegisterSpareDatabaseRequest { login_role: String::new(), ..request };
    assert_code(app.directory.clone().register_spare_database(other).await, Code::AlreadyExists);
    set_state(&app, "spare_with_role", State::Creating, State::Ready).await.unwrap();

    let reserved = reserve_claiming(&app, "With Role", &ann).await;
    assert_eq!(reserved.spare_database_name, "spare_with_role");
    assert_eq!(reserved.organization.as_ref().unwrap().login_role, role);
    // A retry, GetOrganization and the activation all carry it.
    let again = reserve_claiming(&app, "With Role", &ann).await;
    assert_eq!(again.organization.unwrap().login_role, role);
    let id = reserved.organization.unwrap().id;
    let request = pb::ActivateOrganizationRequest { organization_id: id.clone() };
    let active = app.directory.clone().activate_organization(request).await.unwrap();
    assert_eq!(active.into_inner().organization.unwrap().login_role, role);
    // Without a spare, no role is recorded (clinic-service derives it).
    let plain = reserve_claiming(&app, "Without Spare", &ann).await;
    assert_eq!(plain.spare_database_name, "");
    assert_eq!(plain.organization.unwrap().login_role, "");
}
