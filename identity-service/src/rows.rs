//! Reading rows without panicking. `tokio_postgres::Row::get` panics on a missing column or a
//! type mismatch, and clippy does not see it; [`RowExt::col`] answers [`Error::Row`] naming the
//! column instead, which callers propagate with `?` (an INTERNAL answer, logged).

use std::fmt::Display;

use tokio_postgres::{Row, row::RowIndex, types::FromSql};

use crate::error::Error;

/// Typed, non-panicking column access.
pub trait RowExt {
    /// The value of `column` (a name or a position) as `T`.
    fn col<'a, T: FromSql<'a>>(&'a self, column: impl RowIndex + Display) -> Result<T, Error>;
}

impl RowExt for Row {
    fn col<'a, T: FromSql<'a>>(&'a self, column: impl RowIndex + Display) -> Result<T, Error> {
        self.try_get(&column).map_err(|source| Error::Row { column: column.to_string(), source })
    }
}
