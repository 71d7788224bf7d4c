//! Sealing: links each tenant's unsealed events into its hash chain (one transaction per
//! batch, under a per-tenant advisory lock, so one sealer at a time writes a chain however many
//! replicas run), and checkpoints the latest seal with identity-service.
//!
//! Finding unsealed events without scanning the whole trail: every event carries the id of
//! the transaction that inserted it (`txid`), and every seal the *horizon* of its pass, the
//! oldest transaction still running when the pass read the events (`pg_snapshot_xmin`, taken in
//! the same statement). Every event of an older transaction was visible to that pass and is
//! sealed by it, so the next pass looks only at `txid >= horizon` (one range of the
//! `(txid, id)` index, read in its order); an event whose transaction committed late is above
//! the horizon and is simply sealed by a later pass.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
};

use clinic_shared::pg::RowExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    AuditConfig,
    chain::{self, COLUMNS, GENESIS, StoredEvent},
};
use crate::{
    error::Error,
    tenancy::{Db, TenantAccess},
};

/// Advisory lock key of a tenant's sealer ("clinicas").
const SEAL_LOCK: i64 = 0x636c_696e_6963_6173;

/// Events sealed per transaction, at most.
const BATCH: i64 = 1000;

/// Tenants of the start-up sweep looked at per seal tick: a restart over many tenants does not
/// open them all at once (their connections are the requests' too).
const SWEEP_PER_TICK: usize = 4;

/// The latest seal of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Its position.
    pub seq: i64,
    /// Its hash.
    pub hash: Vec<u8>,
}

fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| Error::tenant_db(context, &e)
}

/// Seals every event of `organization_id` committed so far; returns the chain's head (`None`:
/// no event yet).
pub async fn seal(access: &TenantAccess, organization_id: Uuid) -> Result<Option<Head>, Error> {
    let org = access.organization(organization_id).await?;
    let mut conn = access.connect(&org.location).await?;
    loop {
        let tx = conn.transaction().await.map_err(db("begin seal"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEAL_LOCK])
            .await
            .map_err(db("seal lock"))?;
        let head = tx
            .query_opt("SELECT seq, hash, horizon FROM audit_seal ORDER BY seq DESC LIMIT 1", &[])
            .await
            .map_err(db("seal head"))?;
        let (mut seq, mut hash, horizon) = match &head {
            Some(r) => (r.col::<i64>("seq")?, r.col::<Vec<u8>>("hash")?, r.col::<i64>("horizon")?),
            None => (0, GENESIS.to_vec(), 0),
        };
        let sql = format!(
            "SELECT h.xmin, e.* FROM \
             (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) h \
             LEFT JOIN LATERAL (SELECT {COLUMNS} FROM audit_event e WHERE e.txid >= $1 \
                AND NOT EXISTS (SELECT 1 FROM audit_seal s WHERE s.event_id = e.id) \
                ORDER BY e.txid, e.id LIMIT $2) e ON true"
        );
        let rows = tx.query(&sql, &[&horizon, &BATCH]).await.map_err(db("unsealed events"))?;
        let xmin: i64 = rows.first().map(|r| r.col("xmin")).transpose()?.unwrap_or(horizon);
        let mut seqs = Vec::new();
        let mut ids = Vec::new();
        let mut hashes: Vec<Vec<u8>> = Vec::new();
        for row in &rows {
            if row.col::<Option<i64>>("id")?.is_none() {
                continue;
            }
            let event = StoredEvent::from_row(row)?;
            seq += 1;
            hash = chain::link(&hash, seq, &event).to_vec();
            seqs.push(seq);
            ids.push(event.id);
            hashes.push(hash.clone());
        }
        if ids.is_empty() {
            tx.rollback().await.map_err(db("end seal"))?;
            return Ok((seq > 0).then_some(Head { seq, hash }));
        }
        // A full batch may have left older events unread: keep the horizon for the next one.
        let full = ids.len() as i64 == BATCH;
        let next_horizon = if full { horizon } else { xmin.max(horizon) };
        tx.execute(
            "INSERT INTO audit_seal (seq, event_id, hash, horizon) \
             SELECT s, e, h, $4 FROM unnest($1::bigint[], $2::bigint[], $3::bytea[]) AS u(s, e, h)",
            &[&seqs, &ids, &hashes, &next_horizon],
        )
        .await
        .map_err(db("write seals"))?;
        tx.commit().await.map_err(db("commit seals"))?;
        if !full {
            return Ok(Some(Head { seq, hash }));
        }
    }
}

/// Records `head` as `organization_id`'s checkpoint with identity-service.
pub async fn checkpoint(
    access: &TenantAccess,
    organization_id: Uuid,
    head: &Head,
) -> Result<(), Error> {
    access.identity().record_audit_checkpoint(organization_id, head.seq, &head.hash).await
}

/// Seals the tenants it is told of (`written`: events committed there) every `seal_every`,
/// and checkpoints the heads that moved every `checkpoint_every`; at `stop`, seals and
/// checkpoints once more. After start it also looks at every active tenant once, a few per
/// tick, for events a crash left unsealed.
pub(super) async fn run(
    access: TenantAccess,
    mut written: mpsc::UnboundedReceiver<Uuid>,
    config: AuditConfig,
    stop: impl Future<Output = ()>,
) {
    let mut sweep: Vec<Uuid> = match crate::relay::reconcile::active_organizations(&access).await {
        Ok(orgs) => orgs.into_iter().map(|o| o.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "audit sealer: tenants not listed at start");
            Vec::new()
        }
    };
    let mut dirty: HashSet<Uuid> = HashSet::new();
    let mut moved: HashMap<Uuid, Head> = HashMap::new();
    let mut seal_ticks = tokio::time::interval(config.seal_every);
    let mut checkpoint_ticks = tokio::time::interval(config.checkpoint_every);
    checkpoint_ticks.tick().await;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(org) = written.recv() => { dirty.insert(org); }
            _ = seal_ticks.tick() => {
                let at = sweep.len().saturating_sub(SWEEP_PER_TICK);
                dirty.extend(sweep.drain(at..));
                seal_all(&access, &mut dirty, &mut moved).await;
            }
            _ = checkpoint_ticks.tick() => checkpoint_all(&access, &mut moved).await,
        }
    }
    while let Ok(org) = written.try_recv() {
        dirty.insert(org);
    }
    seal_all(&access, &mut dirty, &mut moved).await;
    checkpoint_all(&access, &mut moved).await;
}

async fn seal_all(
    access: &TenantAccess,
    dirty: &mut HashSet<Uuid>,
    moved: &mut HashMap<Uuid, Head>,
) {
    for org in std::mem::take(dirty) {
        match seal(access, org).await {
            Ok(Some(head)) => {
                moved.insert(org, head);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(organization_id = %org, error = %e, "audit events not sealed; retrying");
                dirty.insert(org);
            }
        }
    }
}

async fn checkpoint_all(access: &TenantAccess, moved: &mut HashMap<Uuid, Head>) {
    for (org, head) in std::mem::take(moved) {
        if let Err(e) = checkpoint(access, org, &head).await {
            tracing::warn!(organization_id = %org, error = %e, "audit checkpoint not recorded");
            // A FAILED_PRECONDITION means the central checkpoint is ahead or disagrees: the
            // chain was tampered with; `audit verify` tells where. Retrying will not help.
            if !matches!(e, Error::FailedPrecondition(_)) {
                moved.entry(org).or_insert(head);
            }
        }
    }
}
