//! Prunes every clinic's change log of what is older than the kept history
//! (`WATCH_RETENTION_SECS`), every `WATCH_PRUNE_SECS`, and moves each log's horizon past it (a
//! resume token below the horizon then gets OUT_OF_RANGE).

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::log;
use crate::{error::Error, relay::reconcile::active_organizations, tenancy::TenantAccess};

/// Prunes one clinic's log at `now`; returns how many changes went.
pub async fn prune_tenant(
    access: &TenantAccess,
    organization_id: Uuid,
    retention: Duration,
    now: DateTime<Utc>,
) -> Result<u64, Error> {
    let org = access.organization(organization_id).await?;
    let conn = access.connect(&org.location).await?;
    log::prune(&*conn, retention, now).await
}

/// Prunes every active clinic's log every `every` until `stop` resolves; one failing does not
/// stop the others.
pub async fn run(
    access: TenantAccess,
    retention: Duration,
    every: Duration,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    // The first round after one period, not at start: a starting service opens no connection to
    // every clinic at once.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let orgs = match active_organizations(&access).await {
            Ok(orgs) => orgs,
            Err(e) => {
                tracing::warn!(error = %e, "change log pruning skipped: clinics not listed");
                continue;
            }
        };
        for org in orgs {
            let pruned = async {
                let conn = access.connect(&org.location).await?;
                log::prune(&*conn, retention, Utc::now()).await
            };
            match pruned.await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::debug!(organization_id = %org.id, pruned = n, "change log pruned")
                }
                Err(e) => {
                    tracing::warn!(organization_id = %org.id, error = %e, "change log pruning failed")
                }
            }
        }
    }
}
