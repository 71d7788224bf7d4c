//! Tenant schema migrations: refinery migrations embedded in the binary, applied to one tenant
//! database under an advisory lock (two runners at once wait for each other instead of racing),
//! or to every tenant with bounded parallelism and a result per tenant.
//!
//! A successful run leaves a *schema marker* on the database: its comment,
//! `clinic-schema <version> <fingerprint>` (see [`marker`]). A PostgreSQL session cannot read
//! another database's tables, but every database's comment is in the shared catalog, so
//! [`migrate_all`] reads all markers of a server with one query and opens only the tenants
//! without the current one (none, an older version, another build's fingerprint).
//!
//! Why the marker never claims more than the schema has: refinery commits each migration in
//! transactions of its own, so the marker cannot be written in the last migration's
//! transaction without changing migration checksums. It is written right after refinery
//! succeeds, on the same connection, while the migration lock is still held: no other runner
//! migrates in between, and a crash between the two leaves the old marker (or none), so the
//! next run merely opens that database once more. Any change to the history table withdraws
//! the marker (a trigger, migration V14), so a history edited by hand is checked again too.

use std::{collections::HashMap, sync::Arc};

use tokio::{sync::Semaphore, task::JoinSet};
use uuid::Uuid;

use clinic_shared::pg::RowExt;

use super::{Location, TenantAccess, pools::RawConnection};
use crate::{error::Error, metrics::MigrationTarget};

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

/// The schema marker of a database migrated by this binary: its comment once [`migrate`] has
/// succeeded on it.
pub fn marker() -> String {
    format!("clinic-schema {} {}", latest_version(), fingerprint())
}

/// Brings the database `conn` is connected to up to [`latest_version`] and marks it (see the
/// module header), then closes `conn`; returns how many migrations were applied.
///
/// Two runners take turns under an advisory lock. refinery runs its own transactions, so a
/// transaction-level lock cannot cover it; the lock is session-level on this dedicated
/// connection instead, which is taken by value and never returns to a pool: the lock ends with
/// the connection, whether the migration finishes, fails or is abandoned (its future dropped
/// by a cancelled `CreateOrganization` or a timeout), so nothing is left to block the next one.
pub async fn migrate(mut conn: RawConnection) -> Result<usize, Error> {
    let result = async {
        conn.client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| Error::tenant_db("migration lock", &e))?;
        let report = embedded::migrations::runner()
            .run_async(&mut conn.client)
            .await
            .map_err(|e| Error::internal("migrate", e))?;
        // Still under the lock: see the module header.
        mark(&conn.client).await?;
        Ok(report.applied_migrations().len())
    }
    .await;
    conn.close().await;
    result
}

/// [`migrate`], its time observed in `clinic_migration_seconds{target}` (see
/// [`crate::metrics`]).
pub async fn migrate_measured(
    access: &TenantAccess,
    target: MigrationTarget,
    conn: RawConnection,
) -> Result<usize, Error> {
    let started = std::time::Instant::now();
    let result = migrate(conn).await;
    access.metrics().migrated(target, result.is_ok(), started);
    result
}

/// Sets the current database's comment to [`marker`]. PostgreSQL quotes both (COMMENT takes
/// no parameters).
async fn mark(client: &tokio_postgres::Client) -> Result<(), Error> {
    let db = |e: tokio_postgres::Error| Error::tenant_db("schema marker", &e);
    let sql: String = client
        .query_one(
            "SELECT format('COMMENT ON DATABASE %I IS %L', current_database(), $1::text)",
            &[&marker()],
        )
        .await
        .map_err(db)?
        .col(0)?;
    client.batch_execute(&sql).await.map_err(db)
}

/// Every database's marker on `server`, by database name: one catalog query. Empty when the
/// server cannot be asked; then every tenant there is opened (and reports its own error).
async fn markers(access: &TenantAccess, server: &str) -> HashMap<String, String> {
    let result = async {
        let conn = access.pools().connect(&access.maintenance_config(server)?).await?;
        let rows = conn
            .client
            .query(
                "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database",
                &[],
            )
            .await
            .map_err(|e| Error::tenant_db("schema markers", &e));
        conn.close().await;
        let mut markers = HashMap::new();
        for row in rows? {
            if let Some(marker) = row.col::<Option<String>>(1)? {
                markers.insert(row.col(0)?, marker);
            }
        }
        Ok::<_, Error>(markers)
    }
    .await;
    result.unwrap_or_else(|e| {
        tracing::warn!(server, error = %e, "schema markers unreadable");
        HashMap::new()
    })
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

/// Migrates every organization's database that lacks the current [`marker`], `concurrency` at
/// a time; the others are reported up to date (0 applied) without being opened. One tenant
/// failing is reported in its result and does not stop the others; listing organizations
/// failing is an error.
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
    // One catalog query per server holding tenants.
    let mut current = HashMap::new();
    for location in &tenants {
        if !current.contains_key(&location.server) {
            let markers = markers(access, &location.server).await;
            current.insert(location.server.clone(), markers);
        }
    }
    let marker = marker();
    let (up_to_date, behind): (Vec<_>, Vec<_>) = tenants
        .into_iter()
        .partition(|t| current.get(&t.server).and_then(|m| m.get(&t.database)) == Some(&marker));
    let mut results: Vec<_> = up_to_date
        .into_iter()
        .map(|location| TenantMigration {
            organization_id: location.organization_id,
            database: location.database,
            server: location.server,
            result: Ok(0),
        })
        .collect();
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for location in behind {
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
    let result = async {
        let config = access.owner_config(location)?;
        let conn = access.pools().connect(&config).await?;
        let applied = migrate_measured(access, MigrationTarget::Tenant, conn).await?;
        // Also gives tenants made before login roles existed theirs, and new tables their grants.
        let mut owner = access.pools().connect(&config).await?;
        let granted = access.grant_login(location, &mut owner.client).await;
        owner.close().await;
        granted.map(|()| applied)
    }
    .await;
    match &result {
        Ok(n) => tracing::info!(applied = n, "tenant migrated"),
        Err(e) => tracing::warn!(error = %e, "tenant migration failed"),
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clinic_shared::pg::{PgTls, TestDatabase, connect};
    use tokio_postgres::Client;

    use super::*;

    /// Whether some session holds the migration lock in `db`.
    async fn lock_held(monitor: &Client) -> bool {
        let sql = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
        monitor.query_one(sql, &[]).await.unwrap().get::<_, i64>(0) > 0
    }

    /// A migration abandoned while it holds the lock (a cancelled CreateOrganization, a
    /// `migrate` killed by a timeout) must not leave the lock behind for the next runner.
    #[tokio::test]
    async fn an_abandoned_migration_does_not_block_the_next() {
        let db = TestDatabase::create(&TestDatabase::server(), "clinic_migration_lock").await;
        let pools = super::super::Pools::new(4, 1, Duration::from_secs(5), PgTls::none());
        migrate(pools.connect(&db.config).await.unwrap()).await.unwrap();

        // Holds the next migration inside its lock, at refinery's history table.
        let blocker = connect(&db.config).await.unwrap();
        blocker
            .batch_execute("BEGIN; LOCK TABLE refinery_schema_history IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let abandoned = pools.connect(&db.config).await.unwrap();
        let monitor = connect(&db.config).await.unwrap();
        tokio::select! {
            result = migrate(abandoned) => panic!("the migration was not held: {result:?}"),
            () = async { while !lock_held(&monitor).await {} } => {}
        }
        blocker.batch_execute("ROLLBACK").await.unwrap();

        let next = pools.connect(&db.config).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), migrate(next)).await;
        assert!(outcome.is_ok(), "blocked by the abandoned migration's lock");
    }
}
