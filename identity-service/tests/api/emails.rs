//! Email addresses are keyed by one normalised form, computed in Rust (Unicode NFC, then
//! lowercase): the composed and decomposed spellings of one address, in any case, are one
//! account, one throttle counter and one invitation. The address is kept as typed for display.

use chrono::{Duration, Utc};
use clinic_api::identity::v1::{self as pb, MembershipRole};
use tonic::Code;

use crate::{
    helpers::{PASSWORD, assert_code, spawn_app, spawn_app_with},
    organizations::reserve,
};

/// `Ünïcode@Example.com` with precomposed letters (NFC).
const COMPOSED: &str = "\u{dc}n\u{ef}code@Example.com";
/// The same address with combining marks (NFD): `U` + diaeresis, `i` + diaeresis.
const DECOMPOSED: &str = "U\u{308}ni\u{308}code@Example.com";
/// Its normalised form.
const NORMALISED: &str = "\u{fc}n\u{ef}code@example.com";

#[tokio::test]
async fn composed_and_decomposed_spellings_are_one_account() {
    let app = spawn_app().await;
    let registered = app.register(DECOMPOSED, "ann", PASSWORD).await.unwrap();
    // Kept as typed for display and mail.
    assert_eq!(registered.user.as_ref().unwrap().email, DECOMPOSED);
    assert_code(app.register(COMPOSED, "ann2", PASSWORD).await, Code::AlreadyExists);
    assert_code(app.register(NORMALISED, "ann3", PASSWORD).await, Code::AlreadyExists);
    assert_eq!(app.count("app_user").await, 1);

    // Verify, log in and look up with other spellings, in other cases.
    app.verify(COMPOSED, &registered.verification_code).await.unwrap();
    let login = app.login(&COMPOSED.to_uppercase(), PASSWORD).await.unwrap();
    assert_eq!(login.user.unwrap().email, DECOMPOSED);
    app.login(NORMALISED, PASSWORD).await.unwrap();
    let found = app
        .directory
        .clone()
        .lookup_user(pb::LookupUserRequest { email: COMPOSED.to_uppercase() })
        .await
        .unwrap();
    assert_eq!(found.into_inner().user.unwrap().id, registered.user.unwrap().id);
    let stored: String =
        app.db.query_one("SELECT email_normalized FROM app_user", &[]).await.unwrap().get(0);
    assert_eq!(stored, NORMALISED);
}

#[tokio::test]
async fn every_spelling_counts_against_one_login_throttle() {
    let app = spawn_app_with(|c| c.throttle.account_failures = 2).await;
    let registered = app.register(COMPOSED, "ann", PASSWORD).await.unwrap();
    app.verify(COMPOSED, &registered.verification_code).await.unwrap();
    assert_code(app.login(COMPOSED, "wrong password").await, Code::Unauthenticated);
    assert_code(app.login(DECOMPOSED, "wrong password").await, Code::Unauthenticated);
    assert_code(app.login(NORMALISED, PASSWORD).await, Code::ResourceExhausted);
}

#[tokio::test]
async fn invitations_are_keyed_by_the_normalised_address() {
    let app = spawn_app().await;
    let ann = app.verified_user("ann").await;
    let org = reserve(&app, "Acme", &ann.user.id, &["s1"]).await.unwrap().organization.unwrap().id;
    let send = pb::SendInvitationRequest {
        organization_id: org.clone(),
        email: DECOMPOSED.into(),
        role: MembershipRole::Patient.into(),
        expire_time: Some(prost_types::Timestamp {
            seconds: (Utc::now() + Duration::days(1)).timestamp(),
            nanos: 0,
        }),
        version: 0,
    };
    app.directory.clone().send_invitation(send).await.unwrap();
    let stored: String =
        app.db.query_one("SELECT email FROM organization_invitation", &[]).await.unwrap().get(0);
    assert_eq!(stored, NORMALISED);
    let remove =
        pb::RemoveInvitationRequest { organization_id: org, email: COMPOSED.into(), version: 0 };
    app.directory.clone().remove_invitation(remove).await.unwrap();
    assert_eq!(app.count("organization_invitation").await, 0);
}

/// Adds a user row the way a schema before the normalised column held it.
async fn old_user(db: &tokio_postgres::Client, email: &str, name: &str) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    db.execute(
        "INSERT INTO app_user (id, email, name, password_hash, is_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, 'not a hash', true, now(), now())",
        &[&id, &email, &name],
    )
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn the_migration_normalises_existing_rows_and_stops_at_collisions() {
    use clinic_shared::pg::TestDatabase;
    use identity_service::{Application, Config, db};

    let database = TestDatabase::create(&TestDatabase::server(), "identity_test").await;
    let mut client = clinic_shared::pg::connect(&database.config).await.unwrap();
    db::migrate(&mut client, refinery::Target::Version(3)).await.unwrap();
    let composed = old_user(&client, COMPOSED, "composed").await;
    let decomposed = old_user(&client, DECOMPOSED, "decomposed").await;
    let other = old_user(&client, "Other@Example.com", "other").await;
    client
        .execute(
            "INSERT INTO organization (id, name, database_name, server, status, creator_user_id, \
             created_at) VALUES ($1, 'Acme', 'clinic_acme', 's1', 'active', $2, now())",
            &[&uuid::Uuid::new_v4(), &other],
        )
        .await
        .unwrap();
    // Invitations were keyed by the lowercase address, not composed.
    client
        .execute(
            "INSERT INTO organization_invitation \
             (organization_id, email, role, expires_at, created_at, updated_at) \
             SELECT id, $1, 'patient', now() + interval '1 day', now(), now() FROM organization",
            &[&DECOMPOSED.to_lowercase()],
        )
        .await
        .unwrap();

    // Two accounts with one normalised address: start-up stops and names both.
    let Err(error) = Application::build(Config::for_tests(database.config.clone())).await else {
        panic!("migrated although two accounts share a normalised address");
    };
    let message = error.to_string();
    for id in [composed, decomposed] {
        assert!(message.contains(&id.to_string()), "{message}");
    }
    assert!(!message.contains(&other.to_string()), "{message}");
    // Ids only: start-up errors go to logs, addresses stay out of them.
    assert!(!message.contains("code@"), "{message}");

    // Once the operator resolves the collision, the migration completes.
    client.execute("DELETE FROM app_user WHERE id = $1", &[&decomposed]).await.unwrap();
    Application::build(Config::for_tests(database.config.clone())).await.unwrap();
    let rows = client
        .query("SELECT id, email, email_normalized FROM app_user ORDER BY name", &[])
        .await
        .unwrap();
    let rows: Vec<(uuid::Uuid, String, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        rows,
        [
            (composed, COMPOSED.to_owned(), NORMALISED.to_owned()),
            (other, "Other@Example.com".to_owned(), "other@example.com".to_owned()),
        ]
    );
    let invited: String =
        client.query_one("SELECT email FROM organization_invitation", &[]).await.unwrap().get(0);
    assert_eq!(invited, NORMALISED);
}
