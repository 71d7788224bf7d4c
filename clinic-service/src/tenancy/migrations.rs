//! Tenant schema migrations: refinery migrations embedded in the binary, applied to one tenant
//! database under an advisory lock (two runners at once wait for each other instead of racing),
//! or to every tenant with bounded parallelism and a result per tenant.

use std::sync::Arc;

use tokio::{sync::Semaphore, task::JoinSet};
use tokio_postgres::Client;
use uuid::Uuid;

use super::{Location, TenantAccess};
use crate::error::Error;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Advisory lock key taken inside a tenant database while migrating it ("clinicmg").
const MIGRATION_LOCK: i64 = 0x636c_696e_6963_6d67;

/// The newest migration version embedded in this binary.
pub fn latest_version() -> i64 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| i64::from(m.version()))
        .max()
        .unwrap_or(0)
}

/// A short digest of every embedded migration (version, name and checksum): two binaries with
/// the same fingerprint build identical templates.
pub fn fingerprint() -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    let mut migrations = embedded::migrations::runner().get_migrations().clone();
    migrations.sort_by_key(|m| m.version());
    for m in &migrations {
        digest.update(format!("{}:{}:{}\n", m.version(), m.name(), m.checksum()));
    }
    hex::encode(&digest.finalize()[..6])
}

/// Brings the database `client` is connected to up to [`latest_version`]; returns how many
/// migrations were applied. Holds an advisory lock while doing so.
pub async fn migrate(client: &mut Client) -> Result<usize, Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| Error::tenant_db("migration lock", &e))?;
    let result = embedded::migrations::runner().run_async(client).await;
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await;
    let report = result.map_err(|e| Error::internal("migrate", e))?;
    unlock.map_err(|e| Error::tenant_db("migration unlock", &e))?;
    Ok(report.applied_migrations().len())
}

/// The outcome of migrating one tenant.
#[derive(Debug)]
pub struct TenantMigration {
    /// The organization.
    pub organization_id: Uuid,
    /// Its database.
    pub database: String,
    /// Its server key.
    pub server: String,
    /// Migrations applied, or why it failed.
    pub result: Result<usize, String>,
}

/// Migrates every organization's database, `concurrency` at a time. One tenant failing is
/// reported in its result and does not stop the others; listing organizations failing is an
/// error.
pub async fn migrate_all(
    access: &TenantAccess,
    concurrency: usize,
) -> Result<Vec<TenantMigration>, Error> {
    let mut tenants = Vec::new();
    let mut token = String::new();
    loop {
        let page = access.identity().list_organizations(500, token).await?;
        for org in page.organizations {
            match Location::from_directory(&org) {
                Ok(location) => tenants.push(location),
                Err(e) => tracing::warn!(organization_id = %org.id, error = %e, "skipping"),
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for location in tenants {
        let access = access.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _slot = limit.acquire_owned().await;
            let result = migrate_one(&access, &location).await.map_err(|e| e.to_string());
            TenantMigration {
                organization_id: location.organization_id,
                database: location.database,
                server: location.server,
                result,
            }
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(outcome) => results.push(outcome),
            Err(e) => tracing::error!(error = %e, "migration task panicked"),
        }
    }
    results.sort_by_key(|r| r.organization_id);
    Ok(results)
}

#[tracing::instrument(skip_all, fields(organization_id = %location.organization_id))]
async fn migrate_one(access: &TenantAccess, location: &Location) -> Result<usize, Error> {
    let config = access.owner_config(location)?;
    let mut conn = access.pools().connect(&config).await?;
    let mut result = migrate(&mut conn.client).await;
    // Also gives tenants made before login roles existed theirs, and new tables their grants.
    if result.is_ok()
        && let Err(e) = access.grant_login(location, &conn.client).await
    {
        result = Err(e);
    }
    conn.close().await;
    match &result {
        Ok(n) => tracing::info!(applied = n, "tenant migrated"),
        Err(e) => tracing::warn!(error = %e, "tenant migration failed"),
    }
    result
}
