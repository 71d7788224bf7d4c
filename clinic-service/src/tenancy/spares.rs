//! Spare databases: a few fully migrated databases kept ready on every tenant server, so that
//! `CreateOrganization` renames one into place (`ALTER DATABASE ... RENAME`, no data copied)
//! instead of waiting for `CREATE DATABASE`.
//!
//! They are the one kind of tenant-server database without an organization, and never orphans:
//! each is registered centrally (identity-service, state CREATING) before it is created, cloned
//! from the migrated template (whose schema marker it inherits), then marked READY. A new
//! organization claims one inside its reservation (one central transaction: no spare goes to two
//! organizations), renames it to `clinic_<slug>`, and its activation forgets the claim. Spares are
//! named `SPARE_DATABASE_PREFIX` + 32 hex digits, outside the clinics' `clinic_` namespace.
//!
//! Each spare is made with its tenant login role (derived from the spare's name, registered with
//! it) and that role's grants: CONNECT on the spare alone and the tables inside it. Privileges
//! belong to the database, not its name, so they survive the rename; the claim records the role
//! with the organization, and the new clinic does no role work at all. A spare discarded before
//! it is claimed leaves its role behind, with no privilege anywhere (its grants went with its
//! database; clinic-service cannot drop roles).
//!
//! The replenisher (one task per process) tops every server up to `SPARE_DATABASES` after each
//! claim, at start and every `SPARE_CHECK_SECS`. A round on a server holds an advisory lock (in
//! the server's maintenance database, keyed by the prefix) for its whole length, so replicas take
//! turns and whoever holds it may treat every CREATING spare as left behind by a runner that
//! stopped: it is dropped and forgotten. `clinic-service migrate` takes the same lock, moves each
//! outdated READY spare back to CREATING (nobody can claim it then), migrates it and marks it
//! READY again.
//!
//! Each process keeps one READY spare per server *armed*: a connection to it as its owner,
//! warmed by inserting an admin and rolling back (the backend has its catalogues, plans and
//! foreign-key checks cached; the spare is unchanged). A creation asks to claim that spare
//! first and, when it gets it, inserts its admin through that connection and closes it before
//! the rename: no connection is opened on the way, and the first statement is not a cold one.
//! Arming follows every replenisher round and every use. Any other connection to a spare (a
//! racing arm, another replica's armed one) is ended by the rename, which then waits only for
//! that backend's exit.

use std::{
    collections::HashSet,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use clinic_api::identity::v1::{self as ipb, SpareDatabaseState as State};
use clinic_shared::pg::RowExt;
use sha2::{Digest, Sha256};
use tokio::sync::{Mutex, Notify};
use tokio_postgres::Client;

use super::{TenantAccess, login::TenantLogins, migrations, pools::RawConnection, provisioning};
use crate::{error::Error, metrics::MigrationTarget};

/// Settings and coordination of one process's spares.
pub struct Spares {
    count: usize,
    prefix: String,
    wake: Notify,
    paused: AtomicBool,
    /// Held for the length of a round, so [`Spares::pause`] can wait for one to end.
    round: Mutex<()>,
}

impl Spares {
    /// `count` spares per server, named `prefix` + 32 hex digits.
    pub fn new(count: usize, prefix: String) -> Self {
        Self {
            count,
            prefix,
            wake: Notify::new(),
            paused: AtomicBool::new(false),
            round: Mutex::new(()),
        }
    }

    /// Whether spares are kept (`SPARE_DATABASES` > 0).
    pub fn enabled(&self) -> bool {
        self.count > 0
    }

    /// Asks the background replenisher for a round (after a claim).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the background replenisher from starting rounds, and waits for the one running to
    /// end (benchmarks measure with it idle). Explicit [`replenish_all`] calls still work.
    pub async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        drop(self.round.lock().await);
    }

    /// Lets the background replenisher run again, and wakes it.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.wake();
    }

    /// A fresh spare name.
    fn new_name(&self) -> String {
        format!("{}{}", self.prefix, uuid::Uuid::new_v4().simple())
    }

    /// Advisory lock key (in each server's maintenance database) of this prefix's spares.
    fn lock_key(&self) -> i64 {
        let digest = Sha256::digest(format!("clinic-spares:{}", self.prefix).as_bytes());
        i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

/// What one round did on one server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replenished {
    /// Spares created.
    pub created: usize,
    /// Spares dropped: left CREATING by a runner that stopped, missing, or beyond the count.
    pub discarded: usize,
}

/// Runs [`replenish_all`] at start, whenever woken and every `interval`, until `stop`
/// completes; skips rounds while paused. Nothing to do (no spares wanted, none registered)
/// costs one directory call per server and round.
pub async fn run(
    access: TenantAccess,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        if !access.spares().paused.load(Ordering::SeqCst) {
            tokio::select! {
                () = &mut stop => return,
                _ = replenish_all(&access) => {}
            }
        }
        tokio::select! {
            () = &mut stop => return,
            () = access.spares().wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One round on every server, one server at a time; failures are logged and reported.
pub async fn replenish_all(access: &TenantAccess) -> Vec<(String, Result<Replenished, Error>)> {
    let _round = access.spares().round.lock().await;
    let mut results = Vec::new();
    for server in access.server_keys().to_vec() {
        let result = replenish(access, &server).await;
        match &result {
            Ok(r) if *r == Replenished::default() => {}
            Ok(r) => tracing::info!(server, created = r.created, discarded = r.discarded, "spares"),
            Err(e) => tracing::warn!(server, error = %e, "replenishing spares failed"),
        }
        results.push((server, result));
    }
    results
}

/// Tops `server` up to the configured number of READY spares (see the module header).
pub async fn replenish(access: &TenantAccess, server: &str) -> Result<Replenished, Error> {
    let spares = access.spares();
    let listed = access.identity().list_spare_databases(server).await?;
    if listed.is_empty() && spares.count == 0 {
        return Ok(Replenished::default());
    }
    if spares.count > 0 {
        provisioning::ensure_template(access, server).await?;
    }
    let mut maintenance = locked(access, server).await?;
    let result = replenish_locked(access, server, &mut maintenance.client).await;
    // Closing the connection ends the lock.
    maintenance.close().await;
    if spares.count > 0 {
        arm(access, server).await;
    }
    result
}

/// Arms a READY spare of `server` (see the module header) unless one is armed; best effort:
/// without one, a creation opens its connection after the rename.
pub async fn arm(access: &TenantAccess, server: &str) {
    if access.pools().is_armed(server) {
        return;
    }
    let armed = async {
        let listed = access.identity().list_spare_databases(server).await?;
        // The newest: other replicas' creations default to the oldest.
        let Some(spare) = listed.iter().rev().find(|s| s.state() == State::Ready) else {
            return Ok(());
        };
        let config = access.database_config(server, &spare.database_name)?;
        let Some(mut conn) = access.pools().try_connect(&config).await? else { return Ok(()) };
        if let Err(e) = provisioning::warm_up(&mut conn.client).await {
            tokio::spawn(conn.close());
            return Err(e);
        }
        access.pools().arm(server, &spare.database_name, conn);
        Ok::<_, Error>(())
    }
    .await;
    if let Err(e) = armed {
        tracing::debug!(server, error = %e, "no spare armed");
    }
}

/// A maintenance connection of `server` holding the spares' lock until it is closed.
async fn locked(access: &TenantAccess, server: &str) -> Result<RawConnection, Error> {
    let maintenance = access.pools().connect(&access.maintenance_config(server)?).await?;
    let key = access.spares().lock_key();
    if let Err(e) = maintenance.client.execute("SELECT pg_advisory_lock($1)", &[&key]).await {
        maintenance.close().await;
        return Err(Error::tenant_db("spares lock", &e));
    }
    Ok(maintenance)
}

async fn replenish_locked(
    access: &TenantAccess,
    server: &str,
    client: &mut Client,
) -> Result<Replenished, Error> {
    let identity = access.identity();
    // Listed again under the lock: what another replica did before is now visible.
    let listed = identity.list_spare_databases(server).await?;
    let existing =
        existing(client, listed.iter().map(|s| s.database_name.clone()).collect()).await?;
    let mut done = Replenished::default();
    let mut ready = Vec::new();
    for spare in &listed {
        let forget = match spare.state() {
            // Under the lock nobody else works on spares: a runner stopped half-way.
            State::Creating => true,
            State::Ready if existing.contains(&spare.database_name) => {
                ready.push(spare);
                false
            }
            // Dropped by hand: forgotten (unless claimed meanwhile).
            State::Ready => unready(access, &spare.database_name).await?,
            _ => false,
        };
        if forget {
            discard(access, client, &spare.database_name).await?;
            done.discarded += 1;
        }
    }
    let wanted = access.spares().count;
    // Beyond the count (SPARE_DATABASES lowered): the newest go first.
    for spare in ready.iter().skip(wanted).rev() {
        if unready(access, &spare.database_name).await? {
            discard(access, client, &spare.database_name).await?;
            done.discarded += 1;
        }
    }
    for _ in ready.len()..wanted {
        let name = access.spares().new_name();
        let role = access.has_logins().then(|| TenantLogins::role(&name));
        identity.register_spare_database(server, &name, role.as_deref()).await?;
        if let Some(finish) = provisioning::clone_template(access, client, &name, None).await? {
            // Its marker, and the template's lock released.
            client
                .batch_execute(&finish)
                .await
                .map_err(|e| Error::tenant_db("finish the spare", &e))?;
        }
        // This connection also builds the new database's relation cache file, so the clinic's
        // first connection after the rename finds it; closed (backend gone) before the spare is
        // READY, so the rename never waits for it.
        let config = access.database_config(server, &name)?;
        access.pools().connect(&config).await?.close().await;
        if let Some(role) = &role {
            grant(access, client, &name, role).await?;
        }
        identity.update_spare_database(&name, State::Creating, State::Ready).await?;
        done.created += 1;
    }
    Ok(done)
}

/// Makes `role` the login of spare `name`: the role and CONNECT on the spare alone (through
/// `maintenance`); the tables inside came with the template's grants to the role it joins.
async fn grant(
    access: &TenantAccess,
    maintenance: &mut Client,
    name: &str,
    role: &str,
) -> Result<(), Error> {
    let Some(login) = access.prepare_login(name, role).await? else { return Ok(()) };
    TenantLogins::grant_database(maintenance, &login).await
}

/// Which of `names` exist on the server.
async fn existing(client: &Client, names: Vec<String>) -> Result<HashSet<String>, Error> {
    let rows = client
        .query("SELECT datname::text FROM pg_database WHERE datname = ANY($1)", &[&names])
        .await
        .map_err(|e| Error::tenant_db("look up spares", &e))?;
    rows.iter().map(|r| r.col(0).map_err(Error::from)).collect()
}

/// Moves a READY spare back to CREATING; false when it was claimed meanwhile.
async fn unready(access: &TenantAccess, name: &str) -> Result<bool, Error> {
    match access.identity().update_spare_database(name, State::Ready, State::Creating).await {
        Ok(()) => Ok(true),
        Err(Error::FailedPrecondition(_) | Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Drops a CREATING spare's database (if it exists), then forgets it.
async fn discard(access: &TenantAccess, client: &Client, name: &str) -> Result<(), Error> {
    clinic_shared::pg::drop_database(client, name).await.map_err(|e| match e {
        clinic_shared::pg::PgError::Postgres(e) => Error::tenant_db("drop spare", &e),
        other => Error::internal("drop spare", other),
    })?;
    access.identity().remove_spare_database(name).await
}

/// The outcome of migrating one spare.
#[derive(Debug)]
pub struct SpareMigration {
    /// The spare's database.
    pub database: String,
    /// Migrations applied, or why it failed (it is then dropped and replaced by the next
    /// replenisher round).
    pub result: Result<usize, String>,
}

/// Migrates every READY spare of `server` without the current schema marker (for
/// `clinic-service migrate`), under the spares' lock; up-to-date ones are not opened and not
/// reported.
pub async fn migrate_spares(
    access: &TenantAccess,
    server: &str,
) -> Result<Vec<SpareMigration>, Error> {
    let listed = access.identity().list_spare_databases(server).await?;
    if listed.is_empty() {
        return Ok(Vec::new());
    }
    let maintenance = locked(access, server).await?;
    let result = migrate_locked(access, server, &maintenance.client, listed).await;
    maintenance.close().await;
    result
}

async fn migrate_locked(
    access: &TenantAccess,
    server: &str,
    client: &Client,
    listed: Vec<ipb::SpareDatabase>,
) -> Result<Vec<SpareMigration>, Error> {
    let marker = migrations::marker();
    let mut outcomes = Vec::new();
    for spare in listed.into_iter().filter(|s| s.state() == State::Ready) {
        let name = spare.database_name;
        if provisioning::marker_of_db(client, &name).await?.as_deref() == Some(marker.as_str()) {
            continue;
        }
        // CREATING: nobody claims it while it is open.
        if !unready(access, &name).await? {
            continue;
        }
        let result = async {
            let config = access.database_config(server, &name)?;
            let conn = access.pools().connect(&config).await?;
            let applied =
                migrations::migrate_measured(access, MigrationTarget::Spare, conn).await?;
            access.identity().update_spare_database(&name, State::Creating, State::Ready).await?;
            Ok::<_, Error>(applied)
        }
        .await;
        outcomes.push(SpareMigration { database: name, result: result.map_err(|e| e.to_string()) });
    }
    Ok(outcomes)
}
