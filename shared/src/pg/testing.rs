//! Uniquely named databases for tests, dropped afterwards.

use tokio_postgres::Config;

use super::{PgTls, connect_with_tls, create_database, drop_database, parse_url, with_dbname};

/// A uniquely named database for one test, dropped (with `FORCE`) when this value is dropped,
/// even when the test panics.
pub struct TestDatabase {
    /// Connection settings of the new database.
    pub config: Config,
    /// Its name.
    pub name: String,
    server: Config,
    tls: PgTls,
}

// Test support: failing to set up a test database should fail the test loudly.
#[allow(clippy::expect_used)]
impl TestDatabase {
    /// The server tests use: `TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`.
    pub fn server() -> Config {
        let url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        parse_url(&url).expect("TEST_DATABASE_URL must be a PostgreSQL URL")
    }

    /// Creates `<prefix>_<random>` on `server`, connecting in plaintext.
    pub async fn create(server: &Config, prefix: &str) -> Self {
        Self::create_with_tls(server, prefix, &PgTls::none()).await
    }

    /// Creates `<prefix>_<random>` on `server`, connecting through `tls` (also when dropping).
    pub async fn create_with_tls(server: &Config, prefix: &str, tls: &PgTls) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = connect_with_tls(&with_dbname(server, "postgres"), tls)
            .await
            .expect("connect to test server");
        create_database(&admin, &name, None).await.expect("create test database");
        Self { config: with_dbname(server, &name), name, server: server.clone(), tls: tls.clone() }
    }

    /// A real error from the test server carrying `sqlstate` (a fixed code from the test), to
    /// check how errors are classified.
    pub async fn raise(sqlstate: &str) -> tokio_postgres::Error {
        let client = connect_with_tls(&with_dbname(&Self::server(), "postgres"), &PgTls::none())
            .await
            .expect("connect to test server");
        let sql =
            format!("DO $$ BEGIN RAISE EXCEPTION 'test' USING ERRCODE = '{sqlstate}'; END $$");
        client.batch_execute(&sql).await.expect_err("the statement raises")
    }

    /// A `postgres://` URL of this database, for configuring a child process. Assumes a TCP
    /// host and no password, as test servers here use trust authentication.
    pub fn url(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("postgres");
        format!("postgres://{user}@{host}:{port}/{}", self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = with_dbname(&self.server, "postgres");
        let name = std::mem::take(&mut self.name);
        let tls = self.tls.clone();
        // Drop may run inside a runtime, which must not block: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let client =
                    connect_with_tls(&server, &tls).await.map_err(std::io::Error::other)?;
                drop_database(&client, &name).await.map_err(std::io::Error::other)
            })
        })
        .join();
    }
}
