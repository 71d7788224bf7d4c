//! Tenant connections that prepare each statement once: every statement text is parsed and
//! planned by PostgreSQL the first time a connection runs it, and bound by name afterwards (one
//! round trip per statement instead of two, and no re-parsing).
//!
//! [`TenantClient`] and [`TenantTransaction`] are the only ways requests reach a tenant
//! database. Neither dereferences to the tokio-postgres type it wraps, so no call can bypass the
//! cache by accident; [`Db`] is what SQL code takes, whether or not a transaction is open.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Mutex, PoisonError},
};

use tokio_postgres::{
    Client, Error as PgError, GenericClient, IsolationLevel, Row, Statement, Transaction,
    binary_copy::BinaryCopyInWriter,
    error::SqlState,
    types::{ToSql, Type},
};

/// The statements one connection has prepared, by text.
#[derive(Default)]
pub struct Statements(Mutex<HashMap<Box<str>, Statement>>);

impl Statements {
    /// `sql` prepared on `client`'s connection: from the cache, or prepared and cached.
    async fn prepare(&self, client: &impl GenericClient, sql: &str) -> Result<Statement, PgError> {
        if let Some(statement) = self.lock().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql).await?;
        self.lock().insert(sql.into(), statement.clone());
        Ok(statement)
    }

    /// Forgets every statement after an error saying the server no longer has one (or its
    /// plan no longer fits, after a migration changed a table under it): the next use prepares
    /// again.
    fn invalidate_on(&self, error: &PgError) {
        let stale = matches!(
            error.code(),
            Some(&SqlState::FEATURE_NOT_SUPPORTED | &SqlState::INVALID_SQL_STATEMENT_NAME)
        );
        if stale {
            self.lock().clear();
        }
    }

    /// How many statements are cached.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Statement>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Runs statements with the cache of the connection they run on.
pub trait Db: Sync {
    /// The tokio-postgres client or transaction underneath.
    type Client: GenericClient + Sync;

    /// The client and its connection's statements.
    fn parts(&self) -> (&Self::Client, &Statements);

    /// Like `tokio_postgres::Client::query`, with `sql` prepared once per connection.
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Vec<Row>, PgError>> + Send {
        async move {
            let (client, statements) = self.parts();
            let statement = statements.prepare(client, sql).await?;
            let result = client.query(&statement, params).await;
            if let Err(e) = &result {
                statements.invalidate_on(e);
            }
            result
        }
    }

    /// Like `tokio_postgres::Client::query_opt`, with `sql` prepared once per connection.
    fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Option<Row>, PgError>> + Send {
        async move {
            let (client, statements) = self.parts();
            let statement = statements.prepare(client, sql).await?;
            let result = client.query_opt(&statement, params).await;
            if let Err(e) = &result {
                statements.invalidate_on(e);
            }
            result
        }
    }

    /// Like `tokio_postgres::Client::query_one`, with `sql` prepared once per connection.
    fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<Row, PgError>> + Send {
        async move {
            let (client, statements) = self.parts();
            let statement = statements.prepare(client, sql).await?;
            let result = client.query_one(&statement, params).await;
            if let Err(e) = &result {
                statements.invalidate_on(e);
            }
            result
        }
    }

    /// Like `tokio_postgres::Client::execute`, with `sql` prepared once per connection.
    fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> impl Future<Output = Result<u64, PgError>> + Send {
        async move {
            let (client, statements) = self.parts();
            let statement = statements.prepare(client, sql).await?;
            let result = client.execute(&statement, params).await;
            if let Err(e) = &result {
                statements.invalidate_on(e);
            }
            result
        }
    }

    /// A binary `COPY ... FROM STDIN` of `sql` (prepared once per connection) for rows of
    /// columns `types`: write each row, then `finish` (dropped unfinished, the copy is aborted).
    /// For batches: PostgreSQL inserts copied rows several per heap page and WAL record, which
    /// costs it well under what an `INSERT` of the same rows does.
    fn copy_in(
        &self,
        sql: &str,
        types: &[Type],
    ) -> impl Future<Output = Result<BinaryCopyInWriter, PgError>> + Send {
        async move {
            let (client, statements) = self.parts();
            let statement = statements.prepare(client, sql).await?;
            let result = client.client().copy_in(&statement).await;
            match result {
                Ok(sink) => Ok(BinaryCopyInWriter::new(sink, types)),
                Err(e) => {
                    statements.invalidate_on(&e);
                    Err(e)
                }
            }
        }
    }

    /// Runs `sql` (one or more statements, no parameters) with the simple protocol: for
    /// `LOCK` and similar commands that are not worth preparing.
    fn batch_execute(&self, sql: &str) -> impl Future<Output = Result<(), PgError>> + Send {
        async move { self.parts().0.batch_execute(sql).await }
    }
}

/// A connection to a tenant database with its statement cache.
pub struct TenantClient {
    client: Client,
    statements: Statements,
}

impl TenantClient {
    /// Wraps a fresh connection (nothing prepared yet).
    pub fn new(client: Client) -> Self {
        Self { client, statements: Statements::default() }
    }

    /// Starts a transaction (READ COMMITTED, read-write).
    pub async fn transaction(&mut self) -> Result<TenantTransaction<'_>, PgError> {
        let tx = self.client.transaction().await?;
        Ok(TenantTransaction { tx, statements: &self.statements })
    }

    /// Starts a read-only REPEATABLE READ transaction: every statement in it sees one
    /// snapshot.
    pub async fn snapshot(&mut self) -> Result<TenantTransaction<'_>, PgError> {
        let tx = self
            .client
            .build_transaction()
            .read_only(true)
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .await?;
        Ok(TenantTransaction { tx, statements: &self.statements })
    }

    /// Whether the connection is known to be closed.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The statements this connection has prepared.
    pub fn statements(&self) -> &Statements {
        &self.statements
    }

    /// The tokio-postgres client, for what the cache does not serve (simple queries).
    pub fn raw(&self) -> &Client {
        &self.client
    }
}

impl Db for TenantClient {
    type Client = Client;

    fn parts(&self) -> (&Client, &Statements) {
        (&self.client, &self.statements)
    }
}

/// A transaction on a [`TenantClient`], preparing through its connection's cache. Dropped
/// without [`Self::commit`], it rolls back.
pub struct TenantTransaction<'a> {
    tx: Transaction<'a>,
    statements: &'a Statements,
}

impl TenantTransaction<'_> {
    /// Commits.
    pub async fn commit(self) -> Result<(), PgError> {
        self.tx.commit().await
    }

    /// Rolls back.
    pub async fn rollback(self) -> Result<(), PgError> {
        self.tx.rollback().await
    }
}

impl<'a> Db for TenantTransaction<'a> {
    type Client = Transaction<'a>;

    fn parts(&self) -> (&Transaction<'a>, &Statements) {
        (&self.tx, self.statements)
    }
}

impl<M> Db for deadpool::managed::Object<M>
where
    M: deadpool::managed::Manager<Type = TenantClient>,
    deadpool::managed::Object<M>: Sync,
{
    type Client = Client;

    fn parts(&self) -> (&Client, &Statements) {
        let client: &TenantClient = self;
        client.parts()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]

    use clinic_shared::pg::{TestDatabase, connect};

    use super::*;

    async fn client(db: &TestDatabase) -> TenantClient {
        TenantClient::new(connect(&db.config).await.expect("connect"))
    }

    /// What the server has prepared on this connection.
    async fn prepared(client: &TenantClient) -> i64 {
        let row = client
            .raw()
            .query_one(
                "SELECT count(*) FROM pg_prepared_statements \
                 WHERE statement NOT LIKE '%pg_prepared_statements%'",
                &[],
            )
            .await
            .expect("pg_prepared_statements");
        row.get(0)
    }

    #[tokio::test]
    async fn each_statement_is_prepared_once_per_connection_in_and_out_of_transactions() {
        let db = TestDatabase::create(&TestDatabase::server(), "stmt_cache").await;
        let mut client = client(&db).await;
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)").await.unwrap();
        for i in 0..5 {
            client.execute("INSERT INTO t VALUES ($1, 'x')", &[&i]).await.unwrap();
            let tx = client.transaction().await.unwrap();
            tx.query_one("SELECT v FROM t WHERE id = $1", &[&i]).await.unwrap();
            tx.execute("UPDATE t SET v = 'y' WHERE id = $1", &[&i]).await.unwrap();
            tx.commit().await.unwrap();
            client.query_opt("SELECT v FROM t WHERE id = $1", &[&i]).await.unwrap();
        }
        assert_eq!(client.statements().len(), 3);
        // Each of the 15 calls above bound a statement the server had prepared once.
        assert_eq!(prepared(&client).await, 3);
    }

    #[tokio::test]
    async fn a_binary_copy_is_prepared_once_and_an_unfinished_one_writes_nothing() {
        let db = TestDatabase::create(&TestDatabase::server(), "stmt_copy").await;
        let mut client = client(&db).await;
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v text)").await.unwrap();
        let copy = "COPY t (id, v) FROM STDIN (FORMAT binary)";
        let types = [Type::INT4, Type::TEXT];
        for batch in 0..3 {
            let tx = client.transaction().await.unwrap();
            let writer = tx.copy_in(copy, &types).await.unwrap();
            let mut writer = std::pin::pin!(writer);
            for i in 0..100 {
                let (id, v): (i32, Option<&str>) = (batch * 100 + i, (i % 2 == 0).then_some("x"));
                writer.as_mut().write(&[&id, &v]).await.unwrap();
            }
            assert_eq!(writer.finish().await.unwrap(), 100);
            tx.commit().await.unwrap();
        }
        // Dropped before `finish`: the copy is aborted, and the connection goes on.
        {
            let writer = client.copy_in(copy, &types).await.unwrap();
            let mut writer = std::pin::pin!(writer);
            writer.as_mut().write(&[&1000_i32, &"lost"]).await.unwrap();
        }
        let row = client
            .query_one("SELECT count(*), count(v) FROM t", &[])
            .await
            .expect("the connection is usable after an aborted copy");
        assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (300, 150));
        assert_eq!(client.statements().len(), 2);
        assert_eq!(prepared(&client).await, 2);
    }

    #[tokio::test]
    async fn a_statement_a_migration_invalidated_is_prepared_again() {
        let db = TestDatabase::create(&TestDatabase::server(), "stmt_stale").await;
        let client = client(&db).await;
        client.batch_execute("CREATE TABLE t (id int PRIMARY KEY, v int)").await.unwrap();
        client.execute("INSERT INTO t VALUES (1, 1)", &[]).await.unwrap();
        let read = "SELECT * FROM t WHERE id = 1";
        client.query_one(read, &[]).await.unwrap();
        // A migration run elsewhere changes the result type under the cached statement.
        let other = connect(&db.config).await.unwrap();
        other.batch_execute("ALTER TABLE t ADD COLUMN w text").await.unwrap();
        let stale = client.query_one(read, &[]).await.expect_err("the old plan no longer fits");
        assert_eq!(stale.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED));
        assert!(client.statements().is_empty(), "the cache was cleared");
        let row = client.query_one(read, &[]).await.expect("prepared again");
        assert_eq!(row.len(), 3);
    }
}
