//! Creating a clinic's database. Every step is idempotent, so retrying `CreateOrganization`
//! after a crash at any point completes the work:
//!
//! 1. the central register reserves the organization (PROVISIONING) and places it on a server
//!    — before any database exists, so no database is ever without its organization;
//! 2. the database is cloned from `clinic_template`, a database kept at the latest migration
//!    (cloning costs about one `CREATE DATABASE`);
//! 3. migrations run on it (a no-op for a fresh clone; repairs a database created without them),
//!    and it gets its own login role, the only one besides its owner that may connect to it;
//! 4. the creator becomes its admin (once);
//! 5. the membership is recorded centrally and the organization marked ACTIVE.

use clinic_shared::pg::RowExt;
use tokio_postgres::Client;
use uuid::Uuid;

use super::{Db, Location, OrgRecord, OrgStatus, TenantAccess, TenantClient, migrations};
use crate::{auth::Person, error::Error, roles::Role};

/// Advisory lock key (taken in a server's maintenance database) guarding its template:
/// exclusive while migrating it, shared while cloning it ("clinictp"). Session-level, on a
/// maintenance connection of its own that is closed afterwards, or when a cancelled call drops
/// it: the lock never outlives the operation (the same holds for the login-role lock in
/// `login.rs`).
const TEMPLATE_LOCK: i64 = 0x636c_696e_6963_7470;

/// Creates (or finishes creating) the organization `name` for `claims`' user.
#[tracing::instrument(skip_all, fields(organization_id))]
pub async fn create_organization(
    access: &TenantAccess,
    claims: &Person,
    name: &str,
) -> Result<OrgRecord, Error> {
    if !claims.email_verified {
        return Err(Error::PermissionDenied("verify your email address first".into()));
    }
    let reserved = access
        .identity()
        .reserve_organization(name, claims.user_id, access.server_keys().to_vec())
        .await?;
    let org = OrgRecord::try_from(reserved)?;
    tracing::Span::current().record("organization_id", tracing::field::display(org.id));
    if org.creator.is_some_and(|c| c != claims.user_id) {
        return Err(Error::AlreadyExists("an organization with this name exists".into()));
    }
    if org.status == OrgStatus::Active {
        return Ok(org);
    }
    create_database(access, &org.location).await?;
    let owner_config = access.owner_config(&org.location)?;
    let applied = migrations::migrate(access.pools().connect(&owner_config).await?).await?;
    if applied > 0 {
        tracing::info!(applied, "repaired a tenant database created without its schema");
    }
    let owner = access.pools().connect(&owner_config).await?;
    let granted = access.grant_login(&org.location, &owner.client).await;
    tokio::spawn(owner.close());
    granted?;
    let mut conn = access.connect(&org.location).await?;
    insert_admin(&mut conn, claims).await?;
    drop(conn);
    access
        .identity()
        .record_membership(org.id, claims.user_id, Role::Admin.to_membership(), 0)
        .await?;
    let active = access.identity().activate_organization(org.id).await?;
    tracing::info!("organization provisioned");
    OrgRecord::try_from(active)
}

/// Makes sure the template on `server` exists and is at the latest migration, once per process.
pub async fn ensure_template(access: &TenantAccess, server: &str) -> Result<(), Error> {
    let once = access
        .template_once(server)
        .ok_or_else(|| Error::Internal(format!("tenant server {server:?} is not configured")))?;
    once.get_or_try_init(|| migrate_template(access, server)).await.map(|_| ())
}

async fn migrate_template(access: &TenantAccess, server: &str) -> Result<(), Error> {
    let maintenance = access.pools().connect(&access.maintenance_config(server)?).await?;
    if let Err(e) = access.check_role(&maintenance.client).await {
        maintenance.close().await;
        return Err(e);
    }
    lock(&maintenance.client, "SELECT pg_advisory_lock($1)").await?;
    let result = async {
        clinic_shared::pg::create_database(&maintenance.client, access.template(), None)
            .await
            .map_err(|e| server_error("create template", e))?;
        let config = access.database_config(server, access.template())?;
        // CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template;
        // `migrate` has fully closed its connection when it returns, before the lock is
        // released.
        migrations::migrate(access.pools().connect(&config).await?).await
    }
    .await;
    let unlocked = lock(&maintenance.client, "SELECT pg_advisory_unlock($1)").await;
    maintenance.close().await;
    let applied = result?;
    unlocked?;
    tracing::info!(server, applied, "tenant template ready");
    Ok(())
}

/// Clones the template into the tenant's database unless it exists.
async fn create_database(access: &TenantAccess, location: &Location) -> Result<(), Error> {
    ensure_template(access, &location.server).await?;
    let maintenance = access.pools().connect(&access.maintenance_config(&location.server)?).await?;
    let client = &maintenance.client;
    let result = async {
        if clinic_shared::pg::database_exists(client, &location.database)
            .await
            .map_err(|e| server_error("look up database", e))?
        {
            return Ok(());
        }
        lock(client, "SELECT pg_advisory_lock_shared($1)").await?;
        // Tolerates a racing retry that created it first (see `pg::create_database`).
        let created =
            clinic_shared::pg::create_database(client, &location.database, Some(access.template()))
                .await
                .map_err(|e| server_error("create database", e));
        let unlocked = lock(client, "SELECT pg_advisory_unlock_shared($1)").await;
        created?;
        unlocked
    }
    .await;
    // The close waits for the backend to exit (the budget permit is returned then); the clinic
    // does not need to wait for it.
    tokio::spawn(maintenance.close());
    result
}

async fn lock(client: &Client, sql: &str) -> Result<(), Error> {
    client
        .execute(sql, &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| Error::tenant_db("template lock", &e))?;
    Ok(())
}

fn server_error(context: &str, e: clinic_shared::pg::PgError) -> Error {
    match e {
        clinic_shared::pg::PgError::Postgres(e) => Error::tenant_db(context, &e),
        other => Error::internal(context, other),
    }
}

/// Inserts the creator as admin unless they are a member already.
async fn insert_admin(conn: &mut TenantClient, claims: &Person) -> Result<(), Error> {
    let db = |e: tokio_postgres::Error| Error::tenant_db("insert admin", &e);
    let tx = conn.transaction().await.map_err(db)?;
    let existing = tx
        .query_opt("SELECT id FROM organization_user WHERE user_id = $1", &[&claims.user_id])
        .await
        .map_err(db)?;
    if existing.is_none() {
        let profile: Uuid = tx
            .query_one("INSERT INTO admin_profile DEFAULT VALUES RETURNING id", &[])
            .await
            .map_err(db)?
            .col(0)?;
        tx.execute(
            "INSERT INTO organization_user (user_id, email, email_key, name, admin_profile_id) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
            &[
                &claims.user_id,
                &claims.email,
                &clinic_shared::email::normalize(&claims.email),
                &claims.name,
                &profile,
            ],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
