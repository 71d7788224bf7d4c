//! Least privilege inside the tenant servers: each tenant database is served through a login
//! role of its own, which may CONNECT to that database alone and only read and write its tables.
//! clinic-service's own role owns the databases (and migrates them) but serves no request.
//!
//! The role's name is `clinic_tenant_` + 32 hex digits of the SHA-256 of a database name: of
//! the spare database it was made with (see `spares`; recorded centrally with the spare, then
//! with the organization that claims it, since the rename changes the database's name), or else
//! of the tenant database itself. Its password comes from `TENANT_ROLE_SECRET` (HMAC-SHA-256 of
//! the role name), so nothing secret is stored. Roles are made by the superuser-owned `clinic_bootstrap.create_tenant_role`
//! (deploy/bootstrap.sql), since clinic-service holds no CREATEROLE. It is handed the
//! password's SCRAM-SHA-256 verifier, computed here (PostgreSQL stores a verifier as it is):
//! the password itself never reaches the server, and the 4,096 PBKDF2 rounds run on a blocking
//! thread of this service, while other work goes on, instead of inside the provisioning's
//! critical path on the database server.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Transaction, types::Type};

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

    /// The login role derived from `database`: the role of a tenant database without a
    /// recorded one, and the role made with a spare database.
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

    /// `config` (pointing at the database `role` serves) logging in as `role`.
    pub fn apply(
        &self,
        mut config: tokio_postgres::Config,
        role: &str,
    ) -> Result<tokio_postgres::Config, Error> {
        config.password(self.password(role)?);
        config.user(role);
        Ok(config)
    }

    /// The login `role` of `database`, ready to be granted: its name and the SCRAM-SHA-256
    /// verifier of its password. CPU-heavy (PBKDF2): call it off the async threads.
    pub fn prepare(&self, database: &str, role: &str) -> Result<PreparedLogin, Error> {
        let role = role.to_owned();
        let password = self.password(&role)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.expose_secret().as_bytes())
            .map_err(|e| Error::internal("tenant role salt", e))?;
        mac.update(b"scram-salt\0");
        mac.update(role.as_bytes());
        let salt = mac.finalize().into_bytes();
        let verifier = scram_verifier(&password, &salt[..16], SCRAM_ITERATIONS)?;
        Ok(PreparedLogin { database: database.to_owned(), role, verifier })
    }

    /// [`Self::prepare`] on a blocking thread.
    pub async fn prepare_async(&self, database: &str, role: &str) -> Result<PreparedLogin, Error> {
        let (logins, database, role) = (self.clone(), database.to_owned(), role.to_owned());
        tokio::task::spawn_blocking(move || logins.prepare(&database, &role))
            .await
            .map_err(|e| Error::internal("tenant role verifier", e))?
    }

    /// Creates (or refreshes) `role`, serving `database`, through `maintenance` (the server's
    /// maintenance database), and through `owner` (the tenant database, as its owner) closes the
    /// database to everyone else and grants the role what serving needs: CONNECT, and reading
    /// and writing the tables of the current and future migrations. Idempotent.
    pub async fn grant(
        &self,
        maintenance: &mut Client,
        owner: &mut Client,
        database: &str,
        role: &str,
    ) -> Result<(), Error> {
        let login = self.prepare_async(database, role).await?;
        Self::grant_database(maintenance, &login).await?;
        let tx = owner.transaction().await.map_err(|e| Error::tenant_db("begin", &e))?;
        Self::grant_tables(&tx, role).await?;
        tx.commit().await.map_err(|e| Error::tenant_db("commit", &e))
    }

    /// The part of [`Self::grant`] done in the maintenance database: the role (see
    /// [`Self::create_role`]), then CONNECT on the database for it alone
    /// ([`Self::database_grants`]). Provisioning runs it before it opens the tenant database, so
    /// it never holds two connections at once.
    pub async fn grant_database(
        maintenance: &mut Client,
        login: &PreparedLogin,
    ) -> Result<(), Error> {
        Self::create_role(maintenance, login).await?;
        maintenance
            .batch_execute(&Self::database_grants(&login.database, &login.role))
            .await
            .map_err(|e| Error::tenant_db("tenant database grants", &e))
    }

    /// Creates (or refreshes) the login role of `login`, in one statement (its own transaction)
    /// through `maintenance`, sent whole at the first poll (no separate prepare), so it may be
    /// pipelined ahead of later requests on the same connection. Concurrent retries would both
    /// change the same catalogue rows ("tuple concurrently updated"): one at a time per role.
    pub async fn create_role(maintenance: &Client, login: &PreparedLogin) -> Result<(), Error> {
        maintenance
            .execute_typed(
                "WITH locked AS (SELECT pg_advisory_xact_lock($1)) \
                 SELECT clinic_bootstrap.create_tenant_role($2, $3) FROM locked",
                &[
                    (&lock_key(&login.role), Type::INT8),
                    (&login.role, Type::TEXT),
                    (&login.verifier, Type::TEXT),
                ],
            )
            .await
            .map_err(|e| Error::tenant_db("tenant login role", &e))?;
        Ok(())
    }

    /// Statements (for a batch: one implicit transaction) that close `database` to everyone
    /// but its login `role`, which may CONNECT; serialised per role with concurrent retries.
    /// The role must exist by the time they run.
    pub fn database_grants(database: &str, role: &str) -> String {
        let key = lock_key(role);
        let (database, role) = (quote(database), quote(role));
        format!(
            "SELECT pg_advisory_xact_lock({key});
             REVOKE ALL ON DATABASE {database} FROM PUBLIC;
             GRANT CONNECT ON DATABASE {database} TO {role};"
        )
    }

    /// The part of [`Self::grant`] done inside the tenant database, as its owner, in the
    /// caller's transaction: reading and writing the tables (and sequences) of the current and
    /// future migrations, to `role`, serialised per role with concurrent retries.
    pub async fn grant_tables(owner: &Transaction<'_>, role: &str) -> Result<(), Error> {
        let db = |e: tokio_postgres::Error| Error::tenant_db("tenant login role", &e);
        owner.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(role)]).await.map_err(db)?;
        let role = quote(role);
        let append_only = append_only(&role);
        owner
            .batch_execute(&format!(
                "GRANT USAGE ON SCHEMA public TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
                 REVOKE ALL ON TABLE refinery_schema_history FROM {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA public
                     GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
                 ALTER DEFAULT PRIVILEGES IN SCHEMA public
                     GRANT USAGE, SELECT ON SEQUENCES TO {role};
                 {append_only}"
            ))
            .await
            .map_err(db)
    }
}

/// The tables the runtime roles may only INSERT and SELECT (the audit trail, migration V17):
/// the blanket grants above are taken back on them.
pub const APPEND_ONLY_TABLES: &[&str] = &["audit_event", "audit_seal"];

/// SQL revoking from `role` (quoted; tenant role names are `[a-z0-9_]` only, so it cannot end
/// the `$$` body) everything but SELECT and INSERT on the [`APPEND_ONLY_TABLES`] that exist (a
/// database migrated before V17 has none).
fn append_only(role: &str) -> String {
    APPEND_ONLY_TABLES
        .iter()
        .map(|table| {
            format!(
                "DO $$ BEGIN IF to_regclass('public.{table}') IS NOT NULL THEN \
                 REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.{table} \
                 FROM {role}; END IF; END $$;"
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The role every tenant login role is a member of (made by `deploy/bootstrap.sql`, which makes
/// each tenant role a member). The template's owner grants it the tables, so clones come with
/// their grants; CONNECT, granted per database to its own login role alone, is what keeps each
/// tenant role inside its database.
pub const SHARED_ROLE: &str = "clinic_tenants";

/// Whether `role` has the one form of tenant login role names (`clinic_tenant_` and 32 hex
/// digits), the only one `deploy/bootstrap.sql`'s `create_tenant_role` accepts.
pub fn is_role_name(role: &str) -> bool {
    role.strip_prefix("clinic_tenant_").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A tenant login ready to be granted (see [`TenantLogins::prepare`]); holds no secret in
/// clear (the verifier cannot log in).
#[derive(Clone)]
pub struct PreparedLogin {
    database: String,
    role: String,
    verifier: String,
}

impl std::fmt::Debug for PreparedLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedLogin").field("role", &self.role).finish_non_exhaustive()
    }
}

impl PreparedLogin {
    /// The database it is for.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The role's name.
    pub fn role(&self) -> &str {
        &self.role
    }

    /// The SCRAM-SHA-256 verifier handed to PostgreSQL.
    pub fn verifier(&self) -> &str {
        &self.verifier
    }
}

/// PBKDF2 rounds of the verifiers (PostgreSQL's default `scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM-SHA-256 verifier of `password` (RFC 5802/7677, in PostgreSQL's stored form
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`). The passwords here are hex
/// digits, which SASLprep leaves as they are.
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> Result<String, Error> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    type HmacSha256 = Hmac<Sha256>;
    let keyed = |key: &[u8]| {
        HmacSha256::new_from_slice(key).map_err(|e| Error::internal("scram verifier", e))
    };
    let base = keyed(password.as_bytes())?;
    let mut mac = base.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u = mac.finalize().into_bytes();
    let mut salted = u;
    for _ in 1..iterations {
        let mut mac = base.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes();
        salted.iter_mut().zip(u.iter()).for_each(|(s, b)| *s ^= b);
    }
    let mut client = keyed(&salted)?;
    client.update(b"Client Key");
    let stored = Sha256::digest(client.finalize().into_bytes());
    let mut server = keyed(&salted)?;
    server.update(b"Server Key");
    let server = server.finalize().into_bytes();
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored),
        STANDARD.encode(server)
    ))
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
        assert!(is_role_name(&role), "{role}");
        assert!(is_role_name(&TenantLogins::role("spare_x_0123")));
        for bad in ["clinic_tenant_", "clinic_tenant_0123456789ABCDEF0123456789abcdef", "postgres"]
        {
            assert!(!is_role_name(bad), "{bad}");
        }
        assert_ne!(role, TenantLogins::role("clinic_acme2"));
        let logins = TenantLogins::new(SecretString::from("s1"));
        let other = TenantLogins::new(SecretString::from("s2"));
        assert_eq!(logins.password(&role).unwrap().len(), 64);
        assert_ne!(logins.password(&role).unwrap(), other.password(&role).unwrap());
    }

    #[test]
    fn scram_verifiers_match_an_independent_computation() {
        use base64::{Engine, engine::general_purpose::STANDARD};
        // Python's hashlib.pbkdf2_hmac / hmac over RFC 7677's example password and salt.
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        assert_eq!(
            scram_verifier("pencil", &salt, 4096).unwrap(),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
             WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        let logins = TenantLogins::new(SecretString::from("s1"));
        let role = |d: &str| TenantLogins::role(d);
        let a = logins.prepare("clinic_a", &role("clinic_a")).unwrap();
        let again = logins.prepare("clinic_a", &role("clinic_a")).unwrap();
        assert_eq!(a.verifier, again.verifier, "deterministic");
        assert_ne!(a.verifier, logins.prepare("clinic_b", &role("clinic_b")).unwrap().verifier);
        assert!(!a.verifier.contains(&logins.password(&a.role).unwrap()));
    }
}
