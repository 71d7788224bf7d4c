//! A clinic always keeps at least one ACTIVE admin (an invited admin is none yet). Every role
//! change and removal runs [`guard`] first, in its transaction: it locks the clinic's active
//! admin rows (in id order, so concurrent guards queue instead of deadlocking) until the
//! transaction ends. Two admins demoting or removing each other at the same moment therefore
//! go one after the other, and the second sees the first's change.

use crate::tenancy::{Db, TenantTransaction};
use uuid::Uuid;

use clinic_shared::pg::RowExt;

use crate::error::Error;

/// Locks the active admins and checks that changing `target`'s role (or removing it) leaves
/// one, and that `caller` still is one (they may have been demoted since their request was
/// authorized). FAILED_PRECONDITION or PERMISSION_DENIED otherwise.
pub async fn guard(tx: &TenantTransaction<'_>, caller: Uuid, target: Uuid) -> Result<(), Error> {
    let rows = tx
        .query(
            "SELECT id FROM organization_user WHERE status = 'active' AND role = 'admin' \
             ORDER BY id FOR UPDATE",
            &[],
        )
        .await
        .map_err(|e| Error::tenant_db("lock admins", &e))?;
    let admins = rows.iter().map(|r| r.col::<Uuid>(0)).collect::<Result<Vec<_>, _>>()?;
    if admins.contains(&target) && admins.iter().all(|id| *id == target) {
        return Err(Error::FailedPrecondition(
            "a clinic keeps at least one active admin: this is the last one".into(),
        ));
    }
    if !admins.contains(&caller) {
        return Err(Error::PermissionDenied("only admins may do this".into()));
    }
    Ok(())
}
