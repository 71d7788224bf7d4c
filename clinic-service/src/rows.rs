//! Panic-free row access: `tokio_postgres::Row::get` panics on a type mismatch, this answers
//! INTERNAL naming the column instead. (Local to the members and relay code for now.)

use tokio_postgres::{Row, row::RowIndex, types::FromSql};

use crate::error::Error;

/// Column `column` of `row`, or INTERNAL naming it.
pub fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    column: impl RowIndex + std::fmt::Display,
) -> Result<T, Error> {
    row.try_get(&column).map_err(|e| Error::internal(&format!("column {column}"), e))
}
