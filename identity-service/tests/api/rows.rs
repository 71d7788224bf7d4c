//! Row access never panics: a missing column or a type mismatch is an internal error naming
//! the column, answered as a bare INTERNAL.

use clinic_shared::pg::{RowExt, TestDatabase};
use identity_service::Error;
use tonic::{Code, Status};

#[tokio::test]
async fn mismatched_and_missing_columns_are_internal_errors_naming_the_column() {
    let db = clinic_shared::pg::connect(&TestDatabase::server()).await.unwrap();
    let row = db.query_one("SELECT 'secret value'::text AS name, 7::int4", &[]).await.unwrap();
    assert_eq!(row.col::<String>("name").unwrap(), "secret value");
    assert_eq!(row.col::<i32>(1).unwrap(), 7);
    for (error, column) in [
        (Error::from(row.col::<i64>("name").unwrap_err()), "name"),
        (Error::from(row.col::<String>("missing").unwrap_err()), "missing"),
        (Error::from(row.col::<String>(5).unwrap_err()), "5"),
    ] {
        assert!(matches!(&error, Error::Row(e) if e.column == column), "{error:?}");
        let status = Status::from(error);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains(column), "{status:?}");
    }
}
