//! Queries on `app_user`.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use super::domain::{Email, User};
use crate::error::Error;
use clinic_shared::pg::RowExt;

/// Columns of [`User`], for SELECT lists.
pub const USER_COLUMNS: &str = "id, email, name, is_verified, created_at";

/// A stored user with their password hash.
pub struct Credentials {
    /// The user.
    pub user: User,
    /// argon2id PHC string.
    pub password_hash: String,
}

/// Inserts an unverified user (the email as typed and its normalised form); ALREADY_EXISTS
/// on a taken email or name.
pub async fn insert(
    db: &impl GenericClient,
    email: &Email,
    name: &str,
    password_hash: &str,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    let sql = format!(
        "INSERT INTO app_user \
         (id, email, email_normalized, name, password_hash, is_verified, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, false, $6, $6) RETURNING {USER_COLUMNS}"
    );
    let (typed, normalized) = (email.as_str(), email.normalized());
    let row = db
        .query_one(&sql, &[&Uuid::new_v4(), &typed, &normalized, &name, &password_hash, &now])
        .await
        .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
            Some("app_user_email_normalized_key") => {
                Error::AlreadyExists("email is already registered")
            }
            Some("app_user_name_key") => Error::AlreadyExists("name is already taken"),
            _ => Error::Database(e),
        })?;
    User::from_row(&row)
}

/// The user with this email (by its normalised form), with their hash.
pub async fn credentials_by_email(
    db: &impl GenericClient,
    email: &Email,
) -> Result<Option<Credentials>, Error> {
    let sql =
        format!("SELECT {USER_COLUMNS}, password_hash FROM app_user WHERE email_normalized = $1");
    let Some(row) = db.query_opt(&sql, &[&email.normalized()]).await? else {
        return Ok(None);
    };
    Ok(Some(Credentials { user: User::from_row(&row)?, password_hash: row.col("password_hash")? }))
}

/// The user with this id, with their hash.
pub async fn credentials_by_id(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<Credentials>, Error> {
    let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM app_user WHERE id = $1");
    let Some(row) = db.query_opt(&sql, &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some(Credentials { user: User::from_row(&row)?, password_hash: row.col("password_hash")? }))
}

/// The user with this email (by its normalised form).
pub async fn by_email(db: &impl GenericClient, email: &Email) -> Result<Option<User>, Error> {
    let sql = format!("SELECT {USER_COLUMNS} FROM app_user WHERE email_normalized = $1");
    db.query_opt(&sql, &[&email.normalized()]).await?.map(|r| User::from_row(&r)).transpose()
}

/// Marks a user verified and returns them.
pub async fn mark_verified(
    db: &impl GenericClient,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<User, Error> {
    let sql = format!(
        "UPDATE app_user SET is_verified = true, updated_at = $2 WHERE id = $1 RETURNING {USER_COLUMNS}"
    );
    User::from_row(&db.query_one(&sql, &[&id, &now]).await?)
}

/// Replaces a user's password hash.
pub async fn set_password_hash(
    db: &impl GenericClient,
    id: Uuid,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    db.execute(
        "UPDATE app_user SET password_hash = $2, updated_at = $3 WHERE id = $1",
        &[&id, &hash, &now],
    )
    .await?;
    Ok(())
}
