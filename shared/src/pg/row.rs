//! Reading columns without panicking. `Row::get` panics when a column is missing or its type
//! does not match the Rust type (a query and its reader disagree, or the schema drifted); a
//! service must answer that as INTERNAL instead of dropping the caller's connection.
//! [`RowExt::col`] is the one way to read a column: a typed [`RowError`] that each service
//! converts into its INTERNAL variant.

use std::fmt;

use tokio_postgres::{Row, row::RowIndex, types::FromSql};

/// A column could not be read: it is missing, or its SQL type does not convert to the Rust type
/// asked for. Always a bug (never the caller's input, never a lost connection).
#[derive(Debug, thiserror::Error)]
#[error("reading column {column}: {source}")]
pub struct RowError {
    /// The column's name or index.
    pub column: String,
    /// The driver's error (names the column and types, never the value).
    #[source]
    pub source: tokio_postgres::Error,
}

/// Column access that fails with [`RowError`] instead of panicking.
pub trait RowExt {
    /// The value of column `index` (a name or a position) as `T`.
    fn col<'a, T: FromSql<'a>>(
        &'a self,
        index: impl RowIndex + fmt::Display,
    ) -> Result<T, RowError>;
}

impl RowExt for Row {
    fn col<'a, T: FromSql<'a>>(
        &'a self,
        index: impl RowIndex + fmt::Display,
    ) -> Result<T, RowError> {
        let column = index.to_string();
        self.try_get(index).map_err(|source| RowError { column, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::{TestDatabase, connect, is_connection_loss, with_dbname};

    #[tokio::test]
    async fn mismatches_are_errors_not_panics() {
        let client = connect(&with_dbname(&TestDatabase::server(), "postgres")).await.unwrap();
        let row = client.query_one("SELECT 'x'::text AS name, 7::int4 AS n", &[]).await.unwrap();
        assert_eq!(row.col::<&str>("name").unwrap(), "x");
        assert_eq!(row.col::<i32>(1).unwrap(), 7);
        let wrong_type = row.col::<i64>("n").unwrap_err();
        assert_eq!(wrong_type.column, "n");
        assert!(!is_connection_loss(&wrong_type.source));
        let missing = row.col::<i32>("nope").unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
        assert!(row.col::<i32>(9).is_err());
    }
}
