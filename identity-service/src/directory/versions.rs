//! Versions of membership state: clinic-service relays each change with the tenant's version
//! of the member (monotonic per member), possibly late, twice, or out of order. The newest
//! version applied per (organization, subject) is kept, removals included, and a change is
//! applied only if it is not older. Version 0 is an unversioned change (from before versions):
//! applied, nothing recorded.

use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::error::Error;

/// Whose state a version is about.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A user's membership.
    Member(Uuid),
    /// An invitation of a (normalized) email address.
    Invitation(&'a str),
}

impl Subject<'_> {
    fn key(self) -> String {
        match self {
            Subject::Member(user) => format!("member:{user}"),
            Subject::Invitation(email) => format!("invitation:{email}"),
        }
    }
}

/// How a change's version compares with the one applied before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Older than what was applied: ignore it.
    Stale,
    /// The version applied last (a repeat): apply again, idempotently, with no side effects.
    Same,
    /// Newer (or unversioned): apply it.
    Newer,
}

/// Compares `version` with the one recorded for `subject` and records it when newer. Holds the
/// version's row lock until `tx` ends, so concurrent changes of one subject apply one at a time.
pub async fn claim(
    tx: &Transaction<'_>,
    organization: Uuid,
    subject: Subject<'_>,
    version: i64,
) -> Result<Freshness, Error> {
    if version == 0 {
        return Ok(Freshness::Newer);
    }
    let key = subject.key();
    let inserted = tx
        .query_opt(
            "INSERT INTO membership_version (organization_id, subject, version) \
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING version",
            &[&organization, &key, &version],
        )
        .await
        .map_err(|e| match e.as_db_error().and_then(|d| d.constraint()) {
            Some("membership_version_organization_id_fkey") => {
                Error::NotFound("organization not found")
            }
            _ => Error::Database(e),
        })?;
    if inserted.is_some() {
        return Ok(Freshness::Newer);
    }
    let recorded: i64 = tx
        .query_one(
            "SELECT version FROM membership_version \
             WHERE organization_id = $1 AND subject = $2 FOR UPDATE",
            &[&organization, &key],
        )
        .await?
        .try_get(0)?;
    if version < recorded {
        tracing::debug!(organization_id = %organization, version, recorded, "stale change ignored");
        return Ok(Freshness::Stale);
    }
    if version == recorded {
        return Ok(Freshness::Same);
    }
    tx.execute(
        "UPDATE membership_version SET version = $3 WHERE organization_id = $1 AND subject = $2",
        &[&organization, &key, &version],
    )
    .await?;
    Ok(Freshness::Newer)
}

/// A request's `version`: not negative.
pub fn parse(version: i64) -> Result<i64, Error> {
    if version < 0 { Err(Error::invalid("version", "must not be negative")) } else { Ok(version) }
}
