//! What a PostgreSQL failure means for the caller, decided once for both services: a lost or
//! refused connection is *unavailability* (answered `UNAVAILABLE`, safe to retry once the server
//! is back), a transaction lost to a concurrent one is a *conflict* (run it again), and anything
//! else is a bug or a broken invariant (`INTERNAL`).

use std::error::Error as _;

use tokio_postgres::error::SqlState;

/// Whether `e` means the connection to PostgreSQL is gone or cannot be had: SQLSTATE class 08
/// (connection exception), 57P01–57P03 (the server is shutting down, crashed or not yet
/// accepting connections: what a restart or failover sends), a closed connection, or an I/O
/// error on the socket. Retrying on a new connection may succeed.
pub fn is_connection_loss(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        return code.code().starts_with("08")
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    // Socket errors (reading, writing, connecting) carry the `io::Error` as their source.
    e.source().is_some_and(|source| source.is::<std::io::Error>())
}

/// Whether a deadpool-postgres pool failed for want of a connection: none was free or could be
/// opened in time, opening one failed, or the pool is shutting down. Everything else (a missing
/// runtime, a failing post-create hook) is a configuration bug.
pub fn is_pool_unavailable(e: &deadpool_postgres::PoolError) -> bool {
    use deadpool_postgres::PoolError;
    matches!(e, PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed)
}

/// Whether PostgreSQL aborted the transaction only because it ran into a concurrent one
/// (deadlock detected, serialization failure): running the same transaction again is the
/// documented remedy, and it then sees what the other one committed.
pub fn is_transaction_conflict(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::{TestDatabase, connect, with_dbname};

    #[tokio::test]
    async fn server_errors_are_classified_by_sqlstate() {
        for (sqlstate, lost, conflict) in [
            ("08000", true, false),  // connection exception
            ("08006", true, false),  // connection failure
            ("08P01", true, false),  // protocol violation
            ("57P01", true, false),  // admin shutdown (pg_terminate_backend, fast restart)
            ("57P02", true, false),  // crash shutdown
            ("57P03", true, false),  // cannot connect now (starting up)
            ("57014", false, false), // query cancelled: not a lost connection
            ("40P01", false, true),  // deadlock detected
            ("40001", false, true),  // serialization failure
            ("23505", false, false), // unique violation
            ("XX000", false, false), // internal error
        ] {
            let e = TestDatabase::raise(sqlstate).await;
            assert_eq!(is_connection_loss(&e), lost, "{sqlstate}");
            assert_eq!(is_transaction_conflict(&e), conflict, "{sqlstate}");
        }
    }

    #[tokio::test]
    async fn closed_connections_and_refused_connects_are_losses() {
        let client = connect(&with_dbname(&TestDatabase::server(), "postgres")).await.unwrap();
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        let killer = connect(&with_dbname(&TestDatabase::server(), "postgres")).await.unwrap();
        killer.execute("SELECT pg_terminate_backend($1, 10000)", &[&pid]).await.unwrap();
        let e = client.simple_query("SELECT 1").await.unwrap_err();
        assert!(is_connection_loss(&e), "{e:?}");

        // Nothing listens on port 1.
        let refused = crate::pg::parse_url("postgres://postgres@127.0.0.1:1/postgres").unwrap();
        let e = match connect(&refused).await {
            Err(crate::pg::PgError::Postgres(e)) => e,
            other => panic!("expected a connect error, got {:?}", other.map(|_| ())),
        };
        assert!(is_connection_loss(&e), "{e:?}");
    }

    #[tokio::test]
    async fn conversion_errors_are_not_losses() {
        let client = connect(&with_dbname(&TestDatabase::server(), "postgres")).await.unwrap();
        let row = client.query_one("SELECT 'text'::text", &[]).await.unwrap();
        let e = row.try_get::<_, i32>(0).unwrap_err();
        assert!(!is_connection_loss(&e), "{e:?}");
    }
}
