//! Schema markers: `migrate_all` reads every tenant's `clinic-schema <version> <fingerprint>`
//! database comment with one catalog query per server and opens only the tenants without the
//! current one.

use clinic_service::tenancy::migrations;
use clinic_shared::pg::{connect, parse_url};
use tokio_postgres::Client;

use crate::helpers::{TestApp, first_server_url, spawn_app};

/// The marker this binary writes (spelled out here, not taken from the code under test).
fn current() -> String {
    format!("clinic-schema {} {}", migrations::latest_version(), migrations::fingerprint())
}

async fn maintenance() -> Client {
    connect(&parse_url(&first_server_url()).unwrap()).await.unwrap()
}

/// The database comment of `database`, read the way an operator would.
async fn marker(database: &str) -> Option<String> {
    maintenance()
        .await
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// Sets (or with `None` removes) the comment of `database`.
async fn set_marker(database: &str, comment: Option<&str>) {
    let client = maintenance().await;
    let sql: String = client
        .query_one(
            "SELECT format('COMMENT ON DATABASE %I IS %L', $1::text, $2::text)",
            &[&database, &comment],
        )
        .await
        .unwrap()
        .get(0);
    client.batch_execute(&sql).await.unwrap();
}

/// `migrate_all`'s result for `database`.
async fn migrate_result(app: &TestApp, database: &str) -> Result<usize, String> {
    let results = migrations::migrate_all(&app.access, 2).await.unwrap();
    results.into_iter().find(|r| r.database == database).expect("tenant reported").result
}

#[tokio::test]
async fn a_tenant_with_the_current_marker_is_not_opened() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "Marked").await;
    assert_eq!(marker(&org.database_name).await, Some(current()), "provisioning marks it");
    // Opening it now would make refinery recreate its history and re-run every migration,
    // which fails on the existing tables.
    let tenant = app.tenant_client("main", &org.database_name).await;
    tenant.batch_execute("DROP TABLE refinery_schema_history").await.unwrap();

    assert_eq!(migrate_result(&app, &org.database_name).await, Ok(0), "reported as up to date");
    let history: Option<String> = tenant
        .query_one("SELECT to_regclass('refinery_schema_history')::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, None, "the tenant was not migrated");
}

#[tokio::test]
async fn tenants_without_the_current_marker_are_migrated_and_marked() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let older = format!("clinic-schema 1 {}", migrations::fingerprint());
    let other = format!("clinic-schema {} 000000000000", migrations::latest_version());
    for (name, comment) in
        [("Unmarked", None), ("Older", Some(older.as_str())), ("Other", Some(other.as_str()))]
    {
        let org = app.create_org(&owner, name).await;
        set_marker(&org.database_name, comment).await;
        assert_eq!(migrate_result(&app, &org.database_name).await, Ok(0), "{name}");
        assert_eq!(marker(&org.database_name).await, Some(current()), "{name}");
    }
}

#[tokio::test]
async fn a_failed_migration_leaves_no_current_marker() {
    let app = spawn_app().await;
    let owner = app.user("owner").await;
    let org = app.create_org(&owner, "Diverged").await;
    let tenant = app.tenant_client("main", &org.database_name).await;
    tenant
        .execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 1", &[])
        .await
        .unwrap();
    assert_eq!(marker(&org.database_name).await, None, "a changed history withdraws the marker");
    let older = format!("clinic-schema 1 {}", migrations::fingerprint());
    set_marker(&org.database_name, Some(&older)).await;

    assert!(migrate_result(&app, &org.database_name).await.is_err(), "divergence reported");
    assert_eq!(marker(&org.database_name).await, Some(older), "the marker is left as it was");
}
