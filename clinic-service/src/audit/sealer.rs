//! Sealing: links each tenant's unsealed events into its hash chain (one transaction per
//! batch, under a per-tenant advisory lock, so one sealer at a time writes a chain however many
//! replicas run), and checkpoints the latest seal with identity-service.
//!
//! Finding unsealed events without scanning the whole trail: every event carries the id of
//! the transaction that inserted it (`txid`), and every seal the *horizon* of its pass, the
//! oldest transaction still running when the pass first read the events (`pg_snapshot_xmin`,
//! taken in the same statement). Every event of an older transaction was visible to that pass
//! and is sealed by it, so the next pass looks only at `txid >= horizon`, one range of the
//! `(txid, id)` index read in its order, in batches that each go on from where the last one
//! stopped; an event whose transaction committed late is above the horizon and is simply
//! sealed by a later pass. The few events of that range sealed already are skipped by one probe
//! of the seals' `event_id` index each.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
};

use clinic_shared::pg::RowExt;
use tokio::sync::mpsc;
use tokio_postgres::types::Type;
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
    // Events are read from the pass's position on, by the `(txid, id)` index; whether each is
    // sealed already is one probe of the seals' unique index (the LIMIT keeps the planner from
    // hashing the whole seal table instead).
    let sql = format!(
        "SELECT h.xmin, e.* FROM \
         (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) h \
         LEFT JOIN LATERAL (SELECT {COLUMNS}, e.txid, s.sealed IS NOT NULL AS sealed \
            FROM audit_event e \
            LEFT JOIN LATERAL (SELECT true AS sealed FROM audit_seal s \
                               WHERE s.event_id = e.id LIMIT 1) s ON true \
            WHERE (e.txid, e.id) > ($1, $2) ORDER BY e.txid, e.id LIMIT $3) e ON true"
    );
    // Where this pass has read up to, in (txid, id) order, and the horizon it will leave: the
    // oldest transaction running at its *first* read. Every event of an older transaction was
    // visible to that read and to every later one, and each position is read once by the
    // batches of a pass, so all of them are sealed when the pass ends; later batches go on
    // from the last position read instead of reading the pass's seals again.
    let mut cursor: Option<(i64, i64)> = None;
    let mut pass_horizon: Option<i64> = None;
    loop {
        let tx = conn.transaction().await.map_err(db("begin seal"))?;
        // The trail grows fast from empty: plan with today's sizes, not a plan cached when the
        // tables were small (a pass runs a few statements; planning them is cheap).
        tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
            .await
            .map_err(db("seal plans"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SEAL_LOCK])
            .await
            .map_err(db("seal lock"))?;
        let head = tx
            // A parameter, so that the plan is a custom one (a statement without parameters
            // keeps the plan made when it was prepared).
            .query_opt(
                "SELECT seq, hash, horizon FROM audit_seal ORDER BY seq DESC LIMIT $1",
                &[&1_i64],
            )
            .await
            .map_err(db("seal head"))?;
        let (mut seq, mut hash, horizon) = match &head {
            Some(r) => (r.col::<i64>("seq")?, r.col::<Vec<u8>>("hash")?, r.col::<i64>("horizon")?),
            None => (0, GENESIS.to_vec(), 0),
        };
        // The first batch starts at the horizon: `(txid, id) > (horizon - 1, MAX)`.
        let (after_txid, after_id) = *cursor.get_or_insert((horizon - 1, i64::MAX));
        let rows = tx
            .query(&sql, &[&after_txid, &after_id, &BATCH])
            .await
            .map_err(db("unsealed events"))?;
        let xmin: i64 = rows.first().map(|r| r.col("xmin")).transpose()?.unwrap_or(horizon);
        let pass_horizon = *pass_horizon.get_or_insert(xmin.max(horizon));
        // (seq, event id, hash) of each seal to write.
        let mut seals: Vec<(i64, i64, Vec<u8>)> = Vec::new();
        let mut read = 0;
        for row in &rows {
            if row.col::<Option<i64>>("id")?.is_none() {
                continue;
            }
            read += 1;
            cursor = Some((row.col("txid")?, row.col("id")?));
            if row.col("sealed")? {
                continue;
            }
            let event = StoredEvent::from_row(row)?;
            seq += 1;
            hash = chain::link(&hash, seq, &event).to_vec();
            seals.push((seq, event.id, hash.clone()));
        }
        // A full batch leaves the rest of the pass unread: the horizon stays until it is done.
        let full = read == BATCH;
        if seals.is_empty() {
            tx.rollback().await.map_err(db("end seal"))?;
            if full {
                continue;
            }
            return Ok((seq > 0).then_some(Head { seq, hash }));
        }
        let next_horizon = if full { horizon } else { pass_horizon };
        // One binary COPY: rows inserted several per page and WAL record.
        let writer = tx
            .copy_in(
                "COPY audit_seal (seq, event_id, hash, horizon) FROM STDIN (FORMAT binary)",
                &[Type::INT8, Type::INT8, Type::BYTEA, Type::INT8],
            )
            .await
            .map_err(db("write seals"))?;
        let mut writer = std::pin::pin!(writer);
        for (seq, id, hash) in &seals {
            writer
                .as_mut()
                .write(&[seq, id, hash, &next_horizon])
                .await
                .map_err(db("write seals"))?;
        }
        writer.finish().await.map_err(db("write seals"))?;
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
