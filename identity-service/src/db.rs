//! The central database: created when missing, migrated under an advisory lock (so instances
//! starting together take turns), then served from a bounded pool.
//!
//! One step of the migration is Rust: right after V4, the normalised form of every email is
//! computed by the function every later write uses (see `migrations/V4__*.sql`).

use deadpool_postgres::Pool;
use refinery::Target;
use uuid::Uuid;

use crate::{accounts::normalize_email, config::Config, error::Error};
use clinic_shared::pg::RowExt;

refinery::embed_migrations!("migrations");

/// Advisory lock key held while migrating the central database.
const MIGRATION_LOCK: i64 = 0x1d_0c_0a_01;

/// The migration after which the Rust step [`fill_normalized_emails`] runs.
const FILL_EMAILS_AT: i32 = 4;

/// Applies the embedded migrations up to `target` (tests start from an older schema with
/// `Target::Version`), with the Rust step after V4. Hold [`MIGRATION_LOCK`] or own the
/// database alone.
pub async fn migrate(client: &mut tokio_postgres::Client, target: Target) -> Result<(), Error> {
    let first = match target {
        Target::Version(v) if v < FILL_EMAILS_AT => target,
        _ => Target::Version(FILL_EMAILS_AT),
    };
    run(client, first).await?;
    let runner = migrations::runner();
    let last = runner.get_last_applied_migration_async(client).await?;
    if last.is_some_and(|m| m.version() == FILL_EMAILS_AT) {
        fill_normalized_emails(client).await?;
    }
    run(client, target).await
}

async fn run(client: &mut tokio_postgres::Client, target: Target) -> Result<(), Error> {
    let report = migrations::runner().set_target(target).run_async(client).await?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "migration applied");
    }
    Ok(())
}

/// Between V4 and V5: stores [`normalize_email`] of every account's address and re-keys the
/// invitations by it (merging two that become one, keeping the later expiry). Recomputes every
/// row, so an address an operator changed to resolve a collision V5 reported is seen.
async fn fill_normalized_emails(client: &mut tokio_postgres::Client) -> Result<(), Error> {
    let tx = client.transaction().await?;
    let (mut ids, mut forms) = (Vec::<Uuid>::new(), Vec::<String>::new());
    for row in tx.query("SELECT id, email FROM app_user", &[]).await? {
        ids.push(row.col("id")?);
        forms.push(normalize_email(row.col("email")?));
    }
    tx.execute(
        "UPDATE app_user u SET email_normalized = v.form \
         FROM unnest($1::uuid[], $2::text[]) AS v(id, form) WHERE u.id = v.id",
        &[&ids, &forms],
    )
    .await?;
    for row in tx.query("SELECT organization_id, email FROM organization_invitation", &[]).await? {
        let (organization, email): (Uuid, String) = (row.col(0)?, row.col(1)?);
        let form = normalize_email(&email);
        if form == email {
            continue;
        }
        tx.execute(
            "WITH old AS (DELETE FROM organization_invitation \
                          WHERE organization_id = $1 AND email = $2 RETURNING *) \
             INSERT INTO organization_invitation AS i \
               (organization_id, email, role, expires_at, created_at, updated_at) \
             SELECT organization_id, $3, role, expires_at, created_at, updated_at FROM old \
             ON CONFLICT (organization_id, email) \
             DO UPDATE SET expires_at = greatest(i.expires_at, EXCLUDED.expires_at)",
            &[&organization, &email, &form],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Creates the database if needed, applies pending migrations and returns a pool.
pub async fn prepare(config: &Config) -> Result<Pool, Error> {
    let tls = &config.database_tls;
    clinic_shared::pg::ensure_database_with_tls(&config.database, tls).await?;
    let mut client = clinic_shared::pg::connect_with_tls(&config.database, tls).await?;
    if config.mode == clinic_shared::config::Mode::Production {
        clinic_shared::pg::refuse_privileged(&client).await?;
    }
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let outcome = migrate(&mut client, Target::Latest).await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    outcome?;
    let pool = clinic_shared::pg::pool_with_tls(
        config.database.clone(),
        config.pool_size,
        config.pool_wait,
        tls,
    )?;
    Ok(pool)
}
