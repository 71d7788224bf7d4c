//! The central database: created when missing, migrated under an advisory lock (so instances
//! starting together take turns), then served from a bounded pool.

use deadpool_postgres::Pool;

use crate::{config::Config, error::Error};

refinery::embed_migrations!("migrations");

/// Advisory lock key held while migrating the central database.
const MIGRATION_LOCK: i64 = 0x1d_0c_0a_01;

/// Creates the database if needed, applies pending migrations and returns a pool.
pub async fn prepare(config: &Config) -> Result<Pool, Error> {
    let tls = &config.database_tls;
    clinic_shared::pg::ensure_database_with_tls(&config.database, tls).await?;
    let mut client = clinic_shared::pg::connect_with_tls(&config.database, tls).await?;
    if config.mode == clinic_shared::config::Mode::Production {
        clinic_shared::pg::refuse_privileged(&client).await?;
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let outcome = migrations::runner().run_async(&mut client).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    let report = outcome?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "migration applied");
    }
    let pool = clinic_shared::pg::pool_with_tls(
        config.database.clone(),
        config.pool_size,
        config.pool_wait,
        tls,
    )?;
    Ok(pool)
}
