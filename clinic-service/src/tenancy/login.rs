//! Least privilege inside the tenant servers: each tenant database is served through a login
//! role of its own, which may CONNECT to that database alone and only read and write its tables.
//! clinic-service's own role owns the databases (and migrates them) but serves no request.
//!
//! The role's name comes from the database name (`clinic_tenant_` + 32 hex digits of its
//! SHA-256), its password from `TENANT_ROLE_SECRET` (HMAC-SHA-256 of the role name), so nothing
//! is stored. Roles are made by the superuser-owned `clinic_bootstrap.create_tenant_role`
//! (deploy/bootstrap.sql), since clinic-service holds no CREATEROLE.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::error::Error;

/// Derives tenant login roles and their passwords.
#[derive(Clone)]
pub struct TenantLogins {
    secret: SecretString,
}

impl std::fmt::Debug for TenantLogins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantLogins(..)")
    }
}

impl TenantLogins {
    /// Logins derived from `secret`.
    pub fn new(secret: SecretString) -> Self {
        Self { secret }
    }

    /// The login role serving `database`.
    pub fn role(database: &str) -> String {
        let digest = hex::encode(Sha256::digest(database.as_bytes()));
        format!("clinic_tenant_{}", &digest[..32])
    }

    /// The password of `role`.
    fn password(&self, role: &str) -> Result<String, Error> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .map_err(|e| Error::internal("tenant role password", e))?;
        mac.update(role.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// `config` (pointing at `database`) logging in as the database's own role.
    pub fn apply(
        &self,
        mut config: tokio_postgres::Config,
        database: &str,
    ) -> Result<tokio_postgres::Config, Error> {
        let role = Self::role(database);
        config.password(self.password(&role)?);
        config.user(&role);
        Ok(config)
    }

    /// Creates (or refreshes) the role of `database` through `maintenance` (the server's
    /// maintenance database), and through `owner` (the tenant database, as its owner) closes the
    /// database to everyone else and grants the role what serving needs: CONNECT, and reading
    /// and writing the tables of the current and future migrations. Idempotent.
    pub async fn grant(
        &self,
        maintenance: &Client,
        owner: &Client,
        database: &str,
    ) -> Result<(), Error> {
        self.grant_database(maintenance, database).await?;
        Self::grant_tables(owner, database).await
    }

    /// The part of [`Self::grant`] done in the maintenance database: the role, and CONNECT on
    /// `database` for it alone. Provisioning runs it before it opens the tenant database, so it
    /// never holds two connections at once.
    pub async fn grant_database(&self, maintenance: &Client, database: &str) -> Result<(), Error> {
        let role = Self::role(database);
        let db = |e: tokio_postgres::Error| Error::tenant_db("tenant login role", &e);
        // Concurrent retries would both change the same catalogue rows ("tuple concurrently
        // updated"): one at a time per role, under a lock in the maintenance database.
        let key = lock_key(&role);
        maintenance.execute("SELECT pg_advisory_lock($1)", &[&key]).await.map_err(db)?;
        let granted = async {
            maintenance
                .execute(
                    "SELECT clinic_bootstrap.create_tenant_role($1, $2)",
                    &[&role, &self.password(&role)?],
                )
                .await
                .map_err(db)?;
            let (database, role) = (quote(database), quote(&role));
            maintenance
                .batch_execute(&format!(
                    "REVOKE ALL ON DATABASE {database} FROM PUBLIC;
                     GRANT CONNECT ON DATABASE {database} TO {role};"
                ))
                .await
                .map_err(db)
        }
        .await;
        let unlocked = maintenance.execute("SELECT pg_advisory_unlock($1)", &[&key]).await;
        granted?;
        unlocked.map(drop).map_err(db)
    }

    /// The part of [`Self::grant`] done inside the tenant database, as its owner: reading and
    /// writing the tables (and sequences) of the current and future migrations. One transaction,
    /// serialised per database with concurrent retries by a transaction-level lock.
    pub async fn grant_tables(owner: &Client, database: &str) -> Result<(), Error> {
        let role = Self::role(database);
        let key = lock_key(&role);
        let role = quote(&role);
        owner
            .batch_execute(&format!(
                "BEGIN;
                 SELECT pg_advisory_xact_lock({key});
                 GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 REVOKE ALL ON TABLE refinery_schema_history FROM {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA public
                     GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA public
                     GRANT USAGE, SELECT ON SEQUENCES TO {role};
                 COMMIT;"
            ))
            .await
            .map_err(|e| Error::tenant_db("tenant login role", &e))
    }
}

/// The advisory lock serialising grants to `role`.
fn lock_key(role: &str) -> i64 {
    i64::from_be_bytes(Sha256::digest(role.as_bytes())[..8].try_into().unwrap_or_default())
}

fn quote(name: &str) -> String {
    clinic_shared::slug::quote_ident(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_one_pattern_the_bootstrap_function_accepts() {
        let role = TenantLogins::role("clinic_acme");
        assert!(role.starts_with("clinic_tenant_") && role.len() == 46, "{role}");
        assert!(role["clinic_tenant_".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(role, TenantLogins::role("clinic_acme2"));
        let logins = TenantLogins::new(SecretString::from("s1"));
        let other = TenantLogins::new(SecretString::from("s2"));
        assert_eq!(logins.password(&role).unwrap().len(), 64);
        assert_ne!(logins.password(&role).unwrap(), other.password(&role).unwrap());
    }
}
