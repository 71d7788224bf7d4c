//! Connections within a budget: one deadpool pool per tenant, created on first use, and one
//! semaphore of `DB_CONNECTION_BUDGET` permits shared by every connection the process opens
//! (tenant pools and maintenance connections). A connection holds its permit until its socket
//! is closed, so PostgreSQL never sees more than the budget. While less than a tenth of the
//! budget is free, idle connections of the least recently used tenants are closed ahead of
//! demand (a closed connection's permit comes back only once its backend has exited, which a
//! call for another tenant should not have to wait for); when the budget is spent they are
//! closed on demand, and a request that still cannot get a connection within the acquire
//! timeout gets RESOURCE_EXHAUSTED.
//!
//! Each server also keeps at most one idle maintenance connection (for the short statements of
//! provisioning: renames, look-ups, grants), so a new clinic does not open one; it is closed
//! when the budget runs out and no tenant has an idle connection left to close, and replaced
//! when found dead. Likewise at most one warm connection to a READY spare database per server
//! (see `spares`: the next clinic there inserts its admin through it), closed with the idle
//! maintenance connections.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use clinic_shared::pg::PgTls;
use deadpool::managed::{
    self, Metrics, PoolError, RecycleError, RecycleResult, TimeoutType, Timeouts,
};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinHandle,
    time::Instant,
};
use tokio_postgres::Client;
use uuid::Uuid;

use super::statements::TenantClient;
use crate::{error::Error, metrics::ServiceMetrics};

/// A pooled connection to one tenant database; derefs to [`TenantClient`].
pub type TenantConnection = managed::Object<TenantManager>;
type TenantPool = managed::Pool<TenantManager>;

/// A pooled connection that concurrent single-statement reads of one tenant share (see
/// [`Pools::get_shared`]); back in its pool when the last of them is done with it.
pub type SharedConnection = Arc<TenantConnection>;

/// How many reads may be in flight on a shared connection before another is taken from the
/// pool for the next (while the tenant has fewer than [`SHARED_CONNECTIONS`]).
const SHARED_DEPTH: usize = 4;

/// The most connections of one tenant that reads share; beyond, they queue deeper.
const SHARED_CONNECTIONS: usize = 2;

/// Longest wait for a TCP connection and the PostgreSQL handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection idle for longer is verified with a round trip before it is handed out; one used
/// more recently is trusted unless its socket is known to be closed (a request that finds it
/// dead anyway is retried on another connection, see `TenantAccess::acquire`).
const VERIFY_AFTER_IDLE: Duration = Duration::from_secs(30);

/// Retry step while waiting for idle connections elsewhere to be returned and evicted.
const EVICTION_POLL: Duration = Duration::from_millis(10);

/// Every tenant pool, and the budget they share.
#[derive(Clone)]
pub struct Pools {
    shared: Arc<Shared>,
}

struct Shared {
    permits: Arc<Semaphore>,
    /// TLS where a server's URL asks for it.
    tls: PgTls,
    budget: usize,
    /// Idle connections of least recently used tenants are closed while fewer permits than
    /// this are free (a tenth of the budget), so a call for a tenant without a connection
    /// seldom waits for one to be closed.
    headroom: usize,
    pool_size: usize,
    acquire_timeout: Duration,
    lru: Mutex<Lru>,
    /// The idle maintenance connection of each server (key), and when it was returned.
    maintenance: Mutex<HashMap<String, (RawConnection, Instant)>>,
    /// The warm connection to a READY spare of each server (key), with the spare's name.
    armed: Mutex<HashMap<String, (String, RawConnection)>>,
    /// Callers waiting for a permit.
    waiting: AtomicUsize,
    /// Where evictions are counted (none in tests of the pools alone).
    metrics: Option<ServiceMetrics>,
}

/// One caller counted in `Shared::waiting` while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Lru {
    tick: u64,
    pools: HashMap<Uuid, Tenant>,
}

/// One tenant's pool, the connections its reads share, and when it was last used (an
/// [`Lru::tick`]).
struct Tenant {
    pool: TenantPool,
    readers: Readers,
    used: u64,
}

/// What [`Readers::pick`] advises.
enum Pick {
    /// Share this one.
    Join(SharedConnection),
    /// Take another from the pool; if it has none idle and no room, share this one (when any).
    Take(Option<SharedConnection>),
}

/// The shared connections of one tenant, out of its pool while a read holds them.
#[derive(Default)]
struct Readers(Vec<Weak<TenantConnection>>);

impl Readers {
    /// The shared connection with the fewest reads in flight, to join unless it has
    /// [`SHARED_DEPTH`] and another may be taken.
    fn pick(&mut self) -> Pick {
        self.0.retain(|c| c.upgrade().is_some_and(|c| !c.is_closed()));
        let least = self.0.iter().map(Weak::strong_count).enumerate().min_by_key(|&(_, n)| n);
        let Some((least, in_flight)) = least else { return Pick::Take(None) };
        let conn = self.0[least].upgrade();
        if in_flight >= SHARED_DEPTH && self.0.len() < SHARED_CONNECTIONS {
            Pick::Take(conn)
        } else {
            conn.map_or(Pick::Take(None), Pick::Join)
        }
    }

    /// Lets later reads share `conn` (unless the tenant shares enough already).
    fn add(&mut self, conn: &SharedConnection) {
        if self.0.len() < SHARED_CONNECTIONS {
            self.0.push(Arc::downgrade(conn));
        }
    }

    /// Stops handing out `conn` (found dead).
    fn remove(&mut self, conn: &SharedConnection) {
        let dead = Arc::downgrade(conn);
        self.0.retain(|c| !c.ptr_eq(&dead));
    }
}

/// Opens tenant connections for one pool, each with a budget permit.
pub struct TenantManager {
    config: tokio_postgres::Config,
    organization_id: Uuid,
    shared: Weak<Shared>,
}

impl managed::Manager for TenantManager {
    type Type = TenantClient;
    type Error = Error;

    async fn create(&self) -> Result<TenantClient, Error> {
        let shared =
            self.shared.upgrade().ok_or_else(|| Error::Internal("pools dropped".into()))?;
        let deadline = Instant::now() + shared.acquire_timeout;
        let permit = shared.permit(Some(self.organization_id), deadline).await?;
        Ok(TenantClient::new(open(&self.config, &shared.tls, permit).await?.0))
    }

    /// Drops a connection whose socket is closed (the server ended it: restart, failover,
    /// terminated backend). One idle for longer than [`VERIFY_AFTER_IDLE`] is also verified
    /// with an empty query, since a silent network failure leaves its socket open; a busy
    /// connection is not, so the hot path pays no extra round trip per call.
    async fn recycle(&self, client: &mut TenantClient, metrics: &Metrics) -> RecycleResult<Error> {
        if client.is_closed() {
            return Err(RecycleError::message("connection closed"));
        }
        if metrics.last_used() < VERIFY_AFTER_IDLE {
            return Ok(());
        }
        client
            .raw()
            .simple_query("")
            .await
            .map(drop)
            .map_err(|e| RecycleError::Backend(Error::tenant_db("verify connection", &e)))
    }
}

/// Connects and drives the connection on a task that keeps `permit` until the server has
/// closed the socket (see `socket.rs`).
async fn open(
    config: &tokio_postgres::Config,
    tls: &PgTls,
    permit: OwnedSemaphorePermit,
) -> Result<(Client, JoinHandle<()>), Error> {
    let (client, connection) = super::socket::connect(config, tls, CONNECT_TIMEOUT).await?;
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "tenant connection ended");
        }
        drop(permit);
    });
    Ok((client, task))
}

impl Shared {
    /// A budget permit, evicting idle connections of other tenants (LRU first) when none is free.
    async fn permit(
        &self,
        except: Option<Uuid>,
        deadline: Instant,
    ) -> Result<OwnedSemaphorePermit, Error> {
        let mut waiting = None;
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                // Keep some permits free ahead of demand: a closed connection returns its permit
                // only once its backend has exited, which a call would otherwise wait for.
                if self.permits.available_permits() < self.headroom {
                    self.evict_idle(except);
                }
                return Ok(permit);
            }
            waiting.get_or_insert_with(|| Waiting::new(&self.waiting));
            self.evict_idle(except);
            let step = (Instant::now() + EVICTION_POLL).min(deadline);
            match tokio::time::timeout_at(step, self.permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => return Ok(permit),
                Ok(Err(_)) => return Err(Error::Internal("connection budget closed".into())),
                Err(_) if Instant::now() >= deadline => {
                    return Err(Error::Exhausted(format!(
                        "all {} database connections are busy, retry later",
                        self.budget
                    )));
                }
                Err(_) => {}
            }
        }
    }

    /// Closes the idle connections of the least recently used tenant that has any (forgetting
    /// pools left empty), else the idle maintenance connections. A tenant's idle connection
    /// serves that tenant alone, the maintenance one every clinic created on its server: it
    /// goes last.
    fn evict_idle(&self, except: Option<Uuid>) {
        if !self.evict_idle_tenant(except) {
            let idle =
                std::mem::take(&mut *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()));
            let armed = std::mem::take(&mut *self.armed.lock().unwrap_or_else(|p| p.into_inner()));
            if idle.len() + armed.len() > 0 {
                self.evicted(idle.len() + armed.len());
            }
        }
    }

    /// The tenants' half of [`Self::evict_idle`]: whether a connection was closed.
    fn evict_idle_tenant(&self, except: Option<Uuid>) -> bool {
        let mut lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<(u64, Uuid)> = lru
            .pools
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(id, tenant)| (tenant.used, *id))
            .collect();
        order.sort_unstable();
        for (_, id) in order {
            let Some(Tenant { pool, .. }) = lru.pools.get(&id) else { continue };
            let removed = pool.retain(|_, _| false).removed.len();
            if pool.status().size == 0 {
                // Closed pools drop objects returned to them, so no connection can linger
                // idle outside the map.
                pool.close();
                lru.pools.remove(&id);
            }
            if removed > 0 {
                self.evicted(removed);
                return true;
            }
        }
        false
    }

    fn evicted(&self, count: usize) {
        if let Some(metrics) = &self.metrics {
            metrics.connections_evicted(count);
        }
    }
}

impl Pools {
    /// Pools sharing `budget` connections, each tenant holding at most `pool_size`.
    pub fn new(budget: usize, pool_size: usize, acquire_timeout: Duration, tls: PgTls) -> Self {
        Self::build(budget, pool_size, acquire_timeout, tls, None)
    }

    /// Like [`Self::new`], counting evictions in `metrics`.
    pub fn measured(
        budget: usize,
        pool_size: usize,
        acquire_timeout: Duration,
        tls: PgTls,
        metrics: ServiceMetrics,
    ) -> Self {
        Self::build(budget, pool_size, acquire_timeout, tls, Some(metrics))
    }

    fn build(
        budget: usize,
        pool_size: usize,
        acquire_timeout: Duration,
        tls: PgTls,
        metrics: Option<ServiceMetrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                permits: Arc::new(Semaphore::new(budget)),
                tls,
                budget,
                headroom: budget / 10,
                pool_size: pool_size.clamp(1, budget.max(1)),
                acquire_timeout,
                lru: Mutex::new(Lru::default()),
                maintenance: Mutex::new(HashMap::new()),
                armed: Mutex::new(HashMap::new()),
                waiting: AtomicUsize::new(0),
                metrics,
            }),
        }
    }

    /// A connection to tenant `organization_id` (whose database `config` points at).
    pub async fn get(
        &self,
        organization_id: Uuid,
        config: &tokio_postgres::Config,
    ) -> Result<TenantConnection, Error> {
        self.get_within(organization_id, config, self.shared.acquire_timeout).await
    }

    /// [`Self::get`], waiting at most `wait` for one of the pool's connections to come back
    /// (opening or verifying one still has the acquire timeout).
    async fn get_within(
        &self,
        organization_id: Uuid,
        config: &tokio_postgres::Config,
        wait: Duration,
    ) -> Result<TenantConnection, Error> {
        let timeout = Some(self.shared.acquire_timeout);
        let timeouts = Timeouts { wait: Some(wait), create: timeout, recycle: timeout };
        // A pool closed by eviction between lookup and use is replaced once.
        for _ in 0..2 {
            let pool = self.pool(organization_id, config)?;
            match pool.timeout_get(&timeouts).await {
                Ok(conn) => return Ok(conn),
                Err(PoolError::Closed) => continue,
                Err(PoolError::Backend(e)) => return Err(e),
                // Every connection busy: the documented RESOURCE_EXHAUSTED of the budget.
                Err(PoolError::Timeout(TimeoutType::Wait)) => {
                    return Err(Error::Exhausted(
                        "no database connection available in time".into(),
                    ));
                }
                // Opening or verifying one hung: the server is not answering.
                Err(PoolError::Timeout(_)) => {
                    return Err(Error::Unavailable {
                        what: "tenant database",
                        cause: "connecting or verifying a connection timed out".into(),
                    });
                }
                Err(e) => return Err(Error::internal("tenant pool", e)),
            }
        }
        Err(Error::Exhausted("tenant pool was closed, retry".into()))
    }

    /// A connection to tenant `organization_id` for one read of a single statement, shared
    /// with the tenant's other reads in flight: their statements are pipelined on it
    /// (tokio-postgres sends each as soon as it is issued; PostgreSQL answers them in order),
    /// so PostgreSQL reads several per wake-up and one connection does the work of several.
    /// A read joins the least busy of the tenant's shared connections; one with
    /// [`SHARED_DEPTH`] reads in flight has another taken from the pool beside it, up to
    /// [`SHARED_CONNECTIONS`], unless the pool has none to spare at once (its other
    /// connections held by calls of their own): then the read queues deeper. Nothing but autocommit statements may run on it: no
    /// transaction, no session state.
    pub async fn get_shared(
        &self,
        organization_id: Uuid,
        config: &tokio_postgres::Config,
    ) -> Result<SharedConnection, Error> {
        let busy = match self.readers(organization_id, Readers::pick) {
            Some(Pick::Join(conn)) => return Ok(conn),
            Some(Pick::Take(busy)) => busy,
            None => None,
        };
        let conn = match busy {
            None => self.get(organization_id, config).await?,
            // Rather than wait for a connection the tenant's other calls hold, queue deeper.
            Some(busy) => match self.get_within(organization_id, config, Duration::ZERO).await {
                Ok(conn) => conn,
                Err(Error::Exhausted(_)) => return Ok(busy),
                Err(e) => return Err(e),
            },
        };
        let conn = Arc::new(conn);
        self.readers(organization_id, |readers| readers.add(&conn));
        Ok(conn)
    }

    /// Stops sharing `conn`, found dead: the reads that hold it fail or retry, and it is
    /// discarded when it comes back to its pool.
    pub fn drop_shared(&self, organization_id: Uuid, conn: &SharedConnection) {
        self.readers(organization_id, |readers| readers.remove(conn));
    }

    /// `f` on tenant `id`'s shared connections (`None` when it has no pool).
    fn readers<T>(&self, id: Uuid, f: impl FnOnce(&mut Readers) -> T) -> Option<T> {
        let mut lru = self.shared.lru.lock().unwrap_or_else(|p| p.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        let tenant = lru.pools.get_mut(&id)?;
        tenant.used = tick;
        Some(f(&mut tenant.readers))
    }

    fn pool(&self, id: Uuid, config: &tokio_postgres::Config) -> Result<TenantPool, Error> {
        let mut lru = self.shared.lru.lock().unwrap_or_else(|p| p.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        if let Some(tenant) = lru.pools.get_mut(&id) {
            tenant.used = tick;
            return Ok(tenant.pool.clone());
        }
        let manager = TenantManager {
            config: config.clone(),
            organization_id: id,
            shared: Arc::downgrade(&self.shared),
        };
        let pool = TenantPool::builder(manager)
            .max_size(self.shared.pool_size)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| Error::internal("build tenant pool", e))?;
        lru.pools
            .insert(id, Tenant { pool: pool.clone(), readers: Readers::default(), used: tick });
        Ok(pool)
    }

    /// A connection outside the tenant pools (maintenance, migrations), counted in the budget.
    pub async fn connect(&self, config: &tokio_postgres::Config) -> Result<RawConnection, Error> {
        let deadline = Instant::now() + self.shared.acquire_timeout;
        let permit = self.shared.permit(None, deadline).await?;
        let (client, task) = open(config, &self.shared.tls, permit).await?;
        Ok(RawConnection { client, task })
    }

    /// Like [`Self::connect`] when the budget has a permit free at once, else `None` without
    /// waiting: for work that may run beside a connection already held, and otherwise waits
    /// until that one is released.
    pub async fn try_connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> Result<Option<RawConnection>, Error> {
        let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else { return Ok(None) };
        let (client, task) = open(config, &self.shared.tls, permit).await?;
        Ok(Some(RawConnection { client, task }))
    }

    /// `server`'s idle maintenance connection (`config`) if it is alive (verified with a round
    /// trip after [`VERIFY_AFTER_IDLE`]), else a new one. See [`Self::release_maintenance`].
    pub async fn maintenance(
        &self,
        server: &str,
        config: &tokio_postgres::Config,
    ) -> Result<RawConnection, Error> {
        let idle = self.shared.maintenance.lock().unwrap_or_else(|p| p.into_inner()).remove(server);
        if let Some((conn, since)) = idle {
            let alive = !conn.client.is_closed()
                && (since.elapsed() < VERIFY_AFTER_IDLE
                    || conn.client.simple_query("").await.is_ok());
            if alive {
                return Ok(conn);
            }
        }
        self.connect(config).await
    }

    /// Keeps `conn` as `server`'s idle maintenance connection; it must hold no transaction or
    /// session lock. Closed instead when one is kept already or its socket is closed.
    pub fn release_maintenance(&self, server: &str, conn: RawConnection) {
        if conn.client.is_closed() {
            return;
        }
        let mut idle = self.shared.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        if idle.contains_key(server) {
            drop(idle);
            tokio::spawn(conn.close());
        } else {
            idle.insert(server.to_owned(), (conn, Instant::now()));
        }
    }

    /// Keeps `conn`, a warm connection to the READY spare `spare`, as `server`'s armed one
    /// (closing the one it replaces).
    pub fn arm(&self, server: &str, spare: &str, conn: RawConnection) {
        let mut armed = self.shared.armed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = armed.insert(server.to_owned(), (spare.to_owned(), conn)) {
            tokio::spawn(old.close());
        }
    }

    /// Whether `server` has an armed spare whose connection is open.
    pub fn is_armed(&self, server: &str) -> bool {
        let armed = self.shared.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.get(server).is_some_and(|(_, c)| !c.client.is_closed())
    }

    /// Takes `server`'s armed spare (its name and connection) if its connection is open.
    pub fn take_armed(&self, server: &str) -> Option<(String, RawConnection)> {
        let mut armed = self.shared.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.remove(server).filter(|(_, c)| !c.client.is_closed())
    }

    /// The connection budget.
    pub fn budget(&self) -> usize {
        self.shared.budget
    }

    /// Budget permits held now (by open connections, or ones still closing).
    pub fn in_use(&self) -> usize {
        self.shared.budget.saturating_sub(self.shared.permits.available_permits())
    }

    /// Callers waiting for a budget permit now.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// The number of tenant pools currently open.
    pub fn open_pools(&self) -> usize {
        self.shared.lru.lock().unwrap_or_else(|p| p.into_inner()).pools.len()
    }

    /// Closes the pool of one tenant (after its database was dropped, for instance).
    pub fn forget(&self, id: Uuid) {
        let mut lru = self.shared.lru.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tenant) = lru.pools.remove(&id) {
            tenant.pool.close();
        }
    }
}

/// A connection outside the pools; [`RawConnection::close`] waits until its socket is closed.
pub struct RawConnection {
    /// The client.
    pub client: Client,
    task: JoinHandle<()>,
}

impl RawConnection {
    /// Closes the connection and waits until PostgreSQL has been told.
    pub async fn close(self) {
        drop(self.client);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clinic_shared::pg::{PgTls, TestDatabase, connect};
    use uuid::Uuid;

    use super::{Pools, SHARED_CONNECTIONS, SHARED_DEPTH, SharedConnection};

    async fn raw_pid(conn: &super::RawConnection) -> i32 {
        conn.client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
    }

    async fn backend_pid(conn: &SharedConnection) -> Result<i32, tokio_postgres::Error> {
        Ok(conn.raw().query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
    }

    /// Reads in flight share a connection up to the depth, then a second one, and beyond the
    /// most connections queue on the least busy; all come back to the pool afterwards.
    #[tokio::test]
    async fn concurrent_reads_share_few_connections() {
        let db = TestDatabase::create(&TestDatabase::server(), "clinic_shared_reads").await;
        let pools = Pools::new(10, 5, Duration::from_secs(5), PgTls::none());
        let org = Uuid::new_v4();
        let mut held = Vec::new();
        for _ in 0..SHARED_CONNECTIONS * SHARED_DEPTH + 1 {
            held.push(pools.get_shared(org, &db.config).await.unwrap());
        }
        let mut pids = Vec::new();
        for conn in &held {
            pids.push(backend_pid(conn).await.unwrap());
        }
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), SHARED_CONNECTIONS, "backends of {pids:?}");
        assert!(held[..SHARED_DEPTH].iter().all(|c| std::sync::Arc::ptr_eq(c, &held[0])));
        assert!(!std::sync::Arc::ptr_eq(&held[SHARED_DEPTH], &held[0]));
        // The reads beyond every connection's depth joined the least busy.
        let on_first = held.iter().filter(|c| std::sync::Arc::ptr_eq(c, &held[0])).count();
        assert_eq!(on_first, SHARED_DEPTH + 1);

        let pool = pools.pool(org, &db.config).unwrap();
        assert_eq!(pool.status().size, SHARED_CONNECTIONS);
        assert_eq!(pool.status().available, 0);
        drop(held);
        assert_eq!(pool.status().available, SHARED_CONNECTIONS, "shared connections came back");
    }

    /// When the tenant's pool has no connection to spare (the others held by calls of their
    /// own), reads beyond the depth queue on the shared one instead of waiting for the pool.
    #[tokio::test]
    async fn reads_queue_deeper_rather_than_wait_for_a_full_pool() {
        let db = TestDatabase::create(&TestDatabase::server(), "clinic_shared_full").await;
        // Waiting for the pool would take a minute; the test allows half of that.
        let pools = Pools::new(10, 2, Duration::from_secs(60), PgTls::none());
        let org = Uuid::new_v4();
        let exclusive = pools.get(org, &db.config).await.unwrap();
        let held = tokio::time::timeout(Duration::from_secs(30), async {
            let mut held = Vec::new();
            for _ in 0..SHARED_DEPTH * 2 {
                held.push(pools.get_shared(org, &db.config).await.unwrap());
            }
            held
        })
        .await
        .expect("a read waited for the full pool");
        assert!(held.iter().all(|c| std::sync::Arc::ptr_eq(c, &held[0])));
        assert_eq!(
            backend_pid(&held[SHARED_DEPTH * 2 - 1]).await.unwrap(),
            backend_pid(&held[0]).await.unwrap()
        );
        drop(exclusive);
    }

    /// Short of permits, the pools close an idle tenant connection before the server's idle
    /// maintenance connection, which every clinic created there uses.
    #[tokio::test]
    async fn the_maintenance_connection_is_evicted_after_idle_tenant_ones() {
        let db = TestDatabase::create(&TestDatabase::server(), "clinic_evict_order").await;
        // A budget of 10 keeps one permit free ahead of demand.
        let pools = Pools::new(10, 10, Duration::from_secs(5), PgTls::none());
        let maintenance = pools.maintenance("main", &db.config).await.unwrap();
        let maintenance_pid = raw_pid(&maintenance).await;
        pools.release_maintenance("main", maintenance);
        let (idle_tenant, busy_tenant) = (Uuid::new_v4(), Uuid::new_v4());
        drop(pools.get(idle_tenant, &db.config).await.unwrap());
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(pools.get(busy_tenant, &db.config).await.unwrap());
        }
        // The last permit went to the busy tenant: the idle tenant's connection was closed.
        assert_eq!(pools.open_pools(), 1);
        let maintenance = pools.maintenance("main", &db.config).await.unwrap();
        assert_eq!(
            raw_pid(&maintenance).await,
            maintenance_pid,
            "the maintenance connection was kept"
        );
        drop(held);
        maintenance.close().await;
    }

    /// A shared connection whose backend is gone is not handed to the next read.
    #[tokio::test]
    async fn a_dead_shared_connection_is_not_shared_again() {
        let db = TestDatabase::create(&TestDatabase::server(), "clinic_shared_dead").await;
        let pools = Pools::new(10, 5, Duration::from_secs(5), PgTls::none());
        let org = Uuid::new_v4();
        let dead = pools.get_shared(org, &db.config).await.unwrap();
        let pid = backend_pid(&dead).await.unwrap();
        let admin = connect(&db.config).await.unwrap();
        admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).await.unwrap();
        let err = loop {
            match backend_pid(&dead).await {
                Err(e) => break e,
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        assert!(clinic_shared::pg::is_connection_loss(&err), "{err}");
        pools.drop_shared(org, &dead);

        let next = pools.get_shared(org, &db.config).await.unwrap();
        assert!(!std::sync::Arc::ptr_eq(&next, &dead));
        assert_ne!(backend_pid(&next).await.unwrap(), pid);
    }
}
