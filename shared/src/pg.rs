//! PostgreSQL helpers: pools from URLs, creating databases by quoted name, and uniquely named
//! per-test databases that drop themselves. Every connection goes through one connector,
//! [`PgTls`]: plaintext unless the URL says `sslmode=require`, then TLS verified against a CA.

use std::{str::FromStr, time::Duration};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::Config;

use crate::slug::quote_ident;

mod failure;
mod row;
mod testing;
mod tls;

pub use failure::{is_connection_loss, is_pool_unavailable, is_transaction_conflict};
pub use row::{RowError, RowExt};
pub use testing::TestDatabase;
pub use tls::{PgTls, PgTlsConnect};

/// Errors of these helpers.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL does not parse (its text is not repeated: it may hold a password).
    #[error("invalid PostgreSQL URL")]
    InvalidUrl,
    /// PostgreSQL refused or failed.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// A column could not be read.
    #[error(transparent)]
    Row(#[from] RowError),
    /// The pool could not be built or hand out a connection.
    #[error("connection pool: {0}")]
    Pool(String),
    /// The URL asks for TLS but no CA is configured to verify the server with.
    #[error("sslmode asks for TLS but no CA is configured to verify the PostgreSQL server")]
    TlsWithoutCa,
    /// The CA file could not be loaded.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The service connected as a role with more power than it may have at run time.
    #[error(
        "connected as PostgreSQL role {0:?}, a superuser or CREATEROLE role: run as the roles \
         deploy/bootstrap.sql makes"
    )]
    Privileged(String),
}

/// Refuses a connection whose role is a superuser or may create roles (which on PostgreSQL 15
/// can grant itself superuser-equivalent roles): in production the services run as the roles
/// `deploy/bootstrap.sql` makes, nothing more.
pub async fn refuse_privileged(client: &tokio_postgres::Client) -> Result<(), PgError> {
    let row = client
        .query_one(
            "SELECT current_user::text, rolsuper OR rolcreaterole FROM pg_roles \
             WHERE rolname = current_user",
            &[],
        )
        .await?;
    let (user, privileged): (String, bool) = (row.col(0)?, row.col(1)?);
    if privileged { Err(PgError::Privileged(user)) } else { Ok(()) }
}

/// Parses a `postgres://` URL or key=value connection string.
pub fn parse_url(url: &str) -> Result<Config, PgError> {
    Config::from_str(url).map_err(|_| PgError::InvalidUrl)
}

/// `config` pointed at another database on the same server.
pub fn with_dbname(config: &Config, dbname: &str) -> Config {
    let mut config = config.clone();
    config.dbname(dbname);
    config
}

/// A deadpool pool of at most `max_size` connections, waiting at most `wait` for one;
/// plaintext only (see [`pool_with_tls`]).
pub fn pool(config: Config, max_size: usize, wait: Duration) -> Result<Pool, PgError> {
    pool_with_tls(config, max_size, wait, &PgTls::none())
}

/// [`pool`] connecting through `tls`. A URL asking for TLS without a CA in `tls` is an error
/// here, before any connection is attempted.
pub fn pool_with_tls(
    config: Config,
    max_size: usize,
    wait: Duration,
    tls: &PgTls,
) -> Result<Pool, PgError> {
    let manager = Manager::from_config(
        tls.apply(&config)?,
        tls.clone(),
        // Verified: a connection whose server side is gone (restart, failover, terminated
        // backend) is noticed and replaced before a caller gets it.
        ManagerConfig { recycling_method: RecyclingMethod::Verified },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(wait))
        .create_timeout(Some(wait))
        .build()
        .map_err(|e| PgError::Pool(e.to_string()))
}

/// Opens one plaintext connection, driving it on a background task (see [`connect_with_tls`]).
pub async fn connect(config: &Config) -> Result<tokio_postgres::Client, PgError> {
    connect_with_tls(config, &PgTls::none()).await
}

/// [`connect`] through `tls`.
pub async fn connect_with_tls(
    config: &Config,
    tls: &PgTls,
) -> Result<tokio_postgres::Client, PgError> {
    let (client, connection) = tls.apply(config)?.connect(tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Whether database `name` exists on the server `client` is connected to.
pub async fn database_exists(client: &tokio_postgres::Client, name: &str) -> Result<bool, PgError> {
    let row = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?;
    Ok(row.is_some())
}

/// Creates database `name` (optionally from `template`) unless it exists. Tolerates a
/// concurrent creator.
pub async fn create_database(
    client: &tokio_postgres::Client,
    name: &str,
    template: Option<&str>,
) -> Result<(), PgError> {
    if database_exists(client, name).await? {
        return Ok(());
    }
    let mut sql = format!("CREATE DATABASE {}", quote_ident(name));
    if let Some(template) = template {
        sql.push_str(&format!(" TEMPLATE {}", quote_ident(template)));
    }
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        // A concurrent creator makes ours fail with "already exists", or with a unique
        // violation on pg_database when both got past the catalogue check at once.
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Drops database `name` if it exists, disconnecting its sessions.
pub async fn drop_database(client: &tokio_postgres::Client, name: &str) -> Result<(), PgError> {
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name)))
        .await?;
    Ok(())
}

/// Makes sure the database `config` names exists, creating it through the server's
/// `postgres` maintenance database when missing; plaintext only (see
/// [`ensure_database_with_tls`]).
pub async fn ensure_database(config: &Config) -> Result<(), PgError> {
    ensure_database_with_tls(config, &PgTls::none()).await
}

/// [`ensure_database`] through `tls`.
pub async fn ensure_database_with_tls(config: &Config, tls: &PgTls) -> Result<(), PgError> {
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let admin = connect_with_tls(&with_dbname(config, "postgres"), tls).await?;
    create_database(&admin, &name, None).await
}
