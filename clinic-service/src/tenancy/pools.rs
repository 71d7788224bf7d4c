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
//! like an idle tenant connection when the budget runs out, and replaced when found dead.

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
    pools: HashMap<Uuid, (TenantPool, u64)>,
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

    /// Closes the idle connections of the least recently used tenant that has any, and forgets
    /// pools left empty.
    fn evict_idle(&self, except: Option<Uuid>) {
        // Idle maintenance connections first: the next clinic can open one again.
        let idle = std::mem::take(&mut *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()));
        if !idle.is_empty() {
            self.evicted(idle.len());
            return;
        }
        let mut lru = self.lru.lock().unwrap_or_else(|p| p.into_inner());
        let mut order: Vec<(u64, Uuid)> = lru
            .pools
            .iter()
            .filter(|(id, _)| Some(**id) != except)
            .map(|(id, (_, used))| (*used, *id))
            .collect();
        order.sort_unstable();
        for (_, id) in order {
            let Some((pool, _)) = lru.pools.get(&id) else { continue };
            let removed = pool.retain(|_, _| false).removed.len();
            if pool.status().size == 0 {
                // Closed pools drop objects returned to them, so no connection can linger
                // idle outside the map.
                pool.close();
                lru.pools.remove(&id);
            }
            if removed > 0 {
                self.evicted(removed);
                return;
            }
        }
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
        let timeout = Some(self.shared.acquire_timeout);
        let timeouts = Timeouts { wait: timeout, create: timeout, recycle: timeout };
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

    fn pool(&self, id: Uuid, config: &tokio_postgres::Config) -> Result<TenantPool, Error> {
        let mut lru = self.shared.lru.lock().unwrap_or_else(|p| p.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((pool, used)) = lru.pools.get_mut(&id) {
            *used = tick;
            return Ok(pool.clone());
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
        lru.pools.insert(id, (pool.clone(), tick));
        Ok(pool)
    }

    /// A connection outside the tenant pools (maintenance, migrations), counted in the budget.
    pub async fn connect(&self, config: &tokio_postgres::Config) -> Result<RawConnection, Error> {
        let deadline = Instant::now() + self.shared.acquire_timeout;
        let permit = self.shared.permit(None, deadline).await?;
        let (client, task) = open(config, &self.shared.tls, permit).await?;
        Ok(RawConnection { client, task })
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
        if let Some((pool, _)) = lru.pools.remove(&id) {
            pool.close();
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
