//! Least privilege in the tenant servers: clinic-service runs as `clinic_service` (CREATEDB
//! only, made by deploy/bootstrap.sql, which scripts/test.sh runs), owns the databases it
//! creates, and serves each one through a login role of its own that can connect to that
//! database alone.

use clinic_api::clinic::v1 as pb;
use clinic_service::{config::TenantServer, tenancy::login::TenantLogins};
use clinic_shared::pg::{connect, parse_url, with_dbname};
use tokio_postgres::error::SqlState;

use crate::helpers::{Options, first_server_url, spawn_with};

/// The test server, logged in as `role`.
fn as_role(role: &str, database: &str) -> tokio_postgres::Config {
    let mut config = with_dbname(&parse_url(&first_server_url()).unwrap(), database);
    config.user(role);
    config.password("trust authentication here; production checks the derived password");
    config
}

#[tokio::test]
async fn each_tenant_is_served_by_a_role_of_its_own_and_no_service_role_is_privileged() {
    let superuser = connect(&parse_url(&first_server_url()).unwrap()).await.unwrap();
    let service: Option<(bool, bool, bool)> = superuser
        .query_opt(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'clinic_service'",
            &[],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2)));
    let service = service
        .expect("role clinic_service missing: run deploy/bootstrap.sql (scripts/test.sh does)");
    assert_eq!(
        service,
        (false, false, true),
        "clinic_service: not superuser, not CREATEROLE, CREATEDB"
    );

    let app = spawn_with(Options {
        tweak: Box::new(|c| {
            let mut server = as_role("clinic_service", "postgres");
            server.password("dev-clinic-password");
            c.tenant_servers = vec![TenantServer { key: "main".into(), config: server }];
            // A template of its own: one the superuser made cannot be cloned by this role.
            c.template_database = format!("{}_service", c.template_database);
        }),
        ..Default::default()
    })
    .await;
    let a = app.clinic("Least A").await;
    let b = app.clinic("Least B").await;
    let (db_a, db_b) = (a.org.database_name.clone(), b.org.database_name.clone());
    let (role_a, role_b) = (TenantLogins::role(&db_a), TenantLogins::role(&db_b));

    // The service's role owns the databases; requests were served by the tenant's role only.
    let owner: String = superuser
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&db_a],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "clinic_service");
    let users: Vec<String> = superuser
        .query(
            "SELECT DISTINCT usename::text FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = $2",
            &[&db_a, &app.config.application_name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, vec![role_a.clone()], "pooled request connections of clinic A");

    // Clinic A's role: its own database only, even by hand; no DDL, no privileges.
    let own = connect(&as_role(&role_a, &db_a)).await.expect("role A opens clinic A");
    let attributes = own
        .query_one("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap();
    assert_eq!((attributes.get(0), attributes.get(1), attributes.get(2)), (false, false, false));
    let ddl = own.batch_execute("CREATE TABLE intruder (id int)").await.unwrap_err();
    assert_eq!(ddl.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let history = own.query("SELECT * FROM refinery_schema_history", &[]).await.unwrap_err();
    assert_eq!(history.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    // The roles share their table grants through clinic_tenants (so a clone of the template
    // arrives with them); CONNECT keeps each in its own database, and nobody but the owner
    // opens the template.
    let shared: bool = superuser
        .query_one("SELECT pg_has_role($1, 'clinic_tenants', 'USAGE')", &[&role_a])
        .await
        .unwrap()
        .get(0);
    assert!(shared, "tenant roles use the shared role's grants");
    let template = app.config.template_database.clone();
    for (role, database) in [(&role_a, &db_b), (&role_b, &db_a), (&role_a, &template)] {
        let refused = connect(&as_role(role, database)).await.expect_err("another clinic's role");
        let refused = match refused {
            clinic_shared::pg::PgError::Postgres(e) => e,
            other => panic!("{other}"),
        };
        assert_eq!(refused.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{refused:?}");
    }

    // clinic_service cannot make roles, except tenant roles through the bootstrap function.
    let maintenance = connect(&as_role("clinic_service", "postgres")).await.unwrap();
    let create =
        maintenance.batch_execute("CREATE ROLE intruder LOGIN SUPERUSER").await.unwrap_err();
    assert_eq!(create.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    let long_password = "x".repeat(40);
    let not_a_tenant = maintenance
        .execute("SELECT clinic_bootstrap.create_tenant_role('intruder', $1)", &[&long_password])
        .await
        .unwrap_err();
    assert_eq!(not_a_tenant.code(), Some(&SqlState::from_code("42939")));

    // And the clinic works as ever through its role.
    let members = app
        .members(&a.admin.token)
        .list_members(pb::ListMembersRequest {
            organization_id: a.org.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .members;
    assert_eq!(members.len(), 3);
}
