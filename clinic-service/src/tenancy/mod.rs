//! Tenancy: where each clinic's database lives (the central register, cached), connections to
//! it within the budget, creating clinic databases (from spares kept ready), and migrating them.
//!
//! [`TenantAccess::acquire`] is what every clinic RPC starts with: it resolves the organization,
//! takes a pooled connection to its database and loads the caller's membership there.

pub mod login;
pub mod migrations;
pub mod pools;
pub mod provisioning;
mod registry;
mod socket;
pub mod spares;
pub mod statements;

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use clinic_api::identity::v1 as ipb;
use clinic_shared::pg::RowExt;
use tokio_postgres::{Row, types::ToSql};
use uuid::Uuid;

pub use pools::{Pools, TenantConnection};
use registry::Registry;
pub use statements::{Db, TenantClient, TenantTransaction};

use crate::{
    auth::Claims,
    config::{Config, TenantServer},
    error::Error,
    identity::IdentityClient,
    metrics::ServiceMetrics,
    roles::Role,
};

/// Provisioning state of an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgStatus {
    /// Registered; its database may not be ready.
    Provisioning,
    /// Ready.
    Active,
}

/// An organization as the central register knows it.
#[derive(Debug, Clone)]
pub struct OrgRecord {
    /// Identifier.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Where its database lives.
    pub location: Location,
    /// Provisioning state.
    pub status: OrgStatus,
    /// Who created it.
    pub creator: Option<Uuid>,
    /// When it was registered.
    pub created_at: Option<DateTime<Utc>>,
}

impl TryFrom<ipb::Organization> for OrgRecord {
    type Error = Error;

    fn try_from(org: ipb::Organization) -> Result<Self, Error> {
        let location = Location::from_directory(&org)?;
        let status = match ipb::OrganizationStatus::try_from(org.status) {
            Ok(ipb::OrganizationStatus::Active) => OrgStatus::Active,
            _ => OrgStatus::Provisioning,
        };
        Ok(Self {
            id: location.organization_id,
            name: org.name,
            location,
            status,
            creator: org.creator_user_id.parse().ok(),
            created_at: org.create_time.as_ref().and_then(clinic_shared::time::from_timestamp),
        })
    }
}

/// Where a tenant database lives. Placement never changes once recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The organization.
    pub organization_id: Uuid,
    /// Key of its server in `TENANT_SERVERS`.
    pub server: String,
    /// Its database name (`clinic_<slug>`).
    pub database: String,
    /// The login role serving it: the one recorded with the organization (made from a spare
    /// that carried its role and grants), else derived from `database`.
    pub login_role: String,
    /// Whether `login_role` was recorded (came with the spare) rather than derived.
    pub login_role_recorded: bool,
}

impl Location {
    /// From the central register's row; refuses database names outside the `clinic_` mapping.
    pub fn from_directory(org: &ipb::Organization) -> Result<Self, Error> {
        let organization_id = org.id.parse().map_err(|_| {
            Error::Internal("directory returned a malformed organization id".into())
        })?;
        let db = &org.database_name;
        let safe = db.starts_with(clinic_shared::slug::DATABASE_PREFIX)
            && db.len() <= clinic_shared::slug::MAX_IDENTIFIER_BYTES
            && db.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !safe {
            return Err(Error::Internal("directory returned an unsafe database name".into()));
        }
        let recorded = !org.login_role.is_empty();
        if recorded && !login::is_role_name(&org.login_role) {
            return Err(Error::Internal("directory returned an unsafe login role".into()));
        }
        let login_role =
            if recorded { org.login_role.clone() } else { login::TenantLogins::role(db) };
        Ok(Self {
            organization_id,
            server: org.server.clone(),
            database: db.clone(),
            login_role,
            login_role_recorded: recorded,
        })
    }
}

/// The caller inside one tenant: their member row and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The caller's `organization_user.id`.
    pub member_id: Uuid,
    /// The caller's central user id.
    pub user_id: Uuid,
    /// The caller's role.
    pub role: Role,
}

/// Resolves organizations and hands out tenant connections. Cheap to clone.
#[derive(Clone)]
pub struct TenantAccess {
    inner: Arc<Inner>,
}

struct Inner {
    identity: IdentityClient,
    pools: Pools,
    servers: HashMap<String, TenantServer>,
    server_keys: Vec<String>,
    registry: Registry,
    application_name: String,
    template: String,
    templates_ready: HashMap<String, tokio::sync::OnceCell<()>>,
    /// Each tenant's own login role (`None`: the servers' configured user serves requests too,
    /// which only development allows).
    logins: Option<login::TenantLogins>,
    /// Production: refuse to work through a superuser or CREATEROLE role.
    refuse_privileged: bool,
    /// Spare databases kept ready on every server.
    spares: spares::Spares,
    /// Where provisioning, migrations and evictions are counted.
    metrics: ServiceMetrics,
}

impl TenantAccess {
    /// Access to the tenants of `config`'s servers.
    pub fn new(config: &Config, identity: IdentityClient, metrics: ServiceMetrics) -> Self {
        let servers: HashMap<_, _> =
            config.tenant_servers.iter().map(|s| (s.key.clone(), s.clone())).collect();
        let templates_ready =
            servers.keys().map(|k| (k.clone(), tokio::sync::OnceCell::new())).collect();
        Self {
            inner: Arc::new(Inner {
                identity,
                pools: Pools::measured(
                    config.connection_budget,
                    config.tenant_pool_size,
                    config.acquire_timeout,
                    config.database_tls.clone(),
                    metrics.clone(),
                ),
                server_keys: config.tenant_servers.iter().map(|s| s.key.clone()).collect(),
                servers,
                registry: Registry::default(),
                application_name: config.application_name.clone(),
                template: config.template_database.clone(),
                templates_ready,
                logins: config.tenant_role_secret.clone().map(login::TenantLogins::new),
                refuse_privileged: config.mode == clinic_shared::config::Mode::Production,
                spares: spares::Spares::new(config.spare_databases, config.spare_prefix.clone()),
                metrics,
            }),
        }
    }

    /// The identity-service client.
    pub fn identity(&self) -> &IdentityClient {
        &self.inner.identity
    }

    /// The connection pools.
    pub fn pools(&self) -> &Pools {
        &self.inner.pools
    }

    /// This service's counters and histograms (see [`crate::metrics`]).
    pub fn metrics(&self) -> &ServiceMetrics {
        &self.inner.metrics
    }

    /// The spare databases' settings and replenisher controls.
    pub fn spares(&self) -> &spares::Spares {
        &self.inner.spares
    }

    /// Keys of the configured servers, in configuration order.
    pub fn server_keys(&self) -> &[String] {
        &self.inner.server_keys
    }

    /// The organization (cached once ACTIVE). NOT_FOUND when it does not exist.
    pub async fn organization(&self, id: Uuid) -> Result<OrgRecord, Error> {
        if let Some(org) = self.inner.registry.get(id) {
            return Ok(org);
        }
        let org = match self.inner.identity.get_organization(id).await {
            Ok(org) => OrgRecord::try_from(org)?,
            Err(Error::NotFound(_)) => return Err(Error::organization_not_found()),
            Err(e) => return Err(e),
        };
        if org.status == OrgStatus::Active {
            self.inner.registry.insert(org.clone());
        }
        Ok(org)
    }

    /// Connection settings for a database on `server`, with this service's application_name.
    pub fn database_config(
        &self,
        server: &str,
        database: &str,
    ) -> Result<tokio_postgres::Config, Error> {
        let server = self.inner.servers.get(server).ok_or_else(|| {
            Error::Internal(format!("tenant server {server:?} is not configured"))
        })?;
        let mut config = clinic_shared::pg::with_dbname(&server.config, database);
        config.application_name(&self.inner.application_name);
        Ok(config)
    }

    /// Connection settings serving requests on a tenant database: its own login role.
    pub fn tenant_config(&self, location: &Location) -> Result<tokio_postgres::Config, Error> {
        let config = self.owner_config(location)?;
        match &self.inner.logins {
            Some(logins) => logins.apply(config, &location.login_role),
            None => Ok(config),
        }
    }

    /// Connection settings of a tenant database as its owner (clinic-service's own role), for
    /// migrations and grants; never for requests.
    pub fn owner_config(&self, location: &Location) -> Result<tokio_postgres::Config, Error> {
        self.database_config(&location.server, &location.database)
    }

    /// Gives a tenant database its login role (see [`login`]); a no-op without one configured.
    /// `owner` is a connection to the tenant database as its owner.
    pub async fn grant_login(
        &self,
        location: &Location,
        owner: &mut tokio_postgres::Client,
    ) -> Result<(), Error> {
        let Some(logins) = &self.inner.logins else { return Ok(()) };
        let mut maintenance = self.maintenance(&location.server).await?;
        let (database, role) = (&location.database, &location.login_role);
        let granted = logins.grant(&mut maintenance.client, owner, database, role).await;
        if granted.is_ok() {
            self.release_maintenance(&location.server, maintenance);
        } else {
            tokio::spawn(maintenance.close());
        }
        granted
    }

    /// The login role `role` of `database` ready to be granted (its password's verifier
    /// computed on a blocking thread); `None` without login roles configured.
    pub async fn prepare_login(
        &self,
        database: &str,
        role: &str,
    ) -> Result<Option<login::PreparedLogin>, Error> {
        match &self.inner.logins {
            Some(logins) => logins.prepare_async(database, role).await.map(Some),
            None => Ok(None),
        }
    }

    /// Whether tenants are served through login roles of their own (`TENANT_ROLE_SECRET`).
    pub fn has_logins(&self) -> bool {
        self.inner.logins.is_some()
    }

    /// A maintenance connection of `server`: the one kept open for it when idle (and alive),
    /// else a new one. Give it back with [`Self::release_maintenance`] when it is in a clean
    /// state (no transaction or session lock left); otherwise close it.
    pub async fn maintenance(&self, server: &str) -> Result<pools::RawConnection, Error> {
        let config = self.maintenance_config(server)?;
        self.pools().maintenance(server, &config).await
    }

    /// Keeps `conn` as `server`'s idle maintenance connection (or closes it when one is kept
    /// already).
    pub fn release_maintenance(&self, server: &str, conn: pools::RawConnection) {
        self.pools().release_maintenance(server, conn);
    }

    /// The half of [`Self::grant_login`] done through `maintenance` (the server's maintenance
    /// database): the login role and CONNECT on the database.
    pub async fn grant_login_database(
        &self,
        maintenance: &mut tokio_postgres::Client,
        login: Option<&login::PreparedLogin>,
    ) -> Result<(), Error> {
        match login {
            Some(login) => login::TenantLogins::grant_database(maintenance, login).await,
            None => Ok(()),
        }
    }

    /// The half of [`Self::grant_login`] done inside the tenant database, in the owner's
    /// transaction `owner`: the tables.
    pub async fn grant_login_tables(
        &self,
        owner: &tokio_postgres::Transaction<'_>,
        location: &Location,
    ) -> Result<(), Error> {
        if self.inner.logins.is_none() {
            return Ok(());
        }
        login::TenantLogins::grant_tables(owner, &location.login_role).await
    }

    /// Connection settings of a server's maintenance database.
    pub fn maintenance_config(&self, server: &str) -> Result<tokio_postgres::Config, Error> {
        let base = self.inner.servers.get(server).ok_or_else(|| {
            Error::Internal(format!("tenant server {server:?} is not configured"))
        })?;
        let mut config = base.config.clone();
        config.application_name(&self.inner.application_name);
        Ok(config)
    }

    /// The name of the template database on every server.
    pub fn template(&self) -> &str {
        &self.inner.template
    }

    /// In production, refuses a maintenance connection through a superuser or CREATEROLE role.
    pub(crate) async fn check_role(
        &self,
        maintenance: &tokio_postgres::Client,
    ) -> Result<(), Error> {
        if self.inner.refuse_privileged {
            clinic_shared::pg::refuse_privileged(maintenance)
                .await
                .map_err(|e| Error::internal("tenant server role", e))?;
        }
        Ok(())
    }

    /// Runs `init` once per process for `server`'s template (see provisioning).
    pub(crate) fn template_once(&self, server: &str) -> Option<&tokio::sync::OnceCell<()>> {
        self.inner.templates_ready.get(server)
    }

    /// A pooled connection to an organization's database.
    pub async fn connect(&self, location: &Location) -> Result<TenantConnection, Error> {
        let config = self.tenant_config(location)?;
        self.inner.pools.get(location.organization_id, &config).await
    }

    /// Resolves an ACTIVE organization and takes a pooled connection to its database, without
    /// looking at the caller's membership (see [`Self::acquire`] for that). NOT_FOUND for an
    /// unknown organization and, while it is provisioned, for anyone but its creator (who is told
    /// FAILED_PRECONDITION so they retry CreateOrganization). Records the (validated)
    /// organization id on the request's span.
    pub async fn open(
        &self,
        claims: &Claims,
        organization_id: Uuid,
    ) -> Result<TenantConnection, Error> {
        self.connect(&self.active_location(claims, organization_id).await?).await
    }

    /// Where an ACTIVE organization's database is, checked as [`Self::open`] describes.
    async fn active_location(
        &self,
        claims: &Claims,
        organization_id: Uuid,
    ) -> Result<Location, Error> {
        tracing::Span::current()
            .record("organization_id", tracing::field::display(organization_id));
        let org = self.organization(organization_id).await?;
        if org.status != OrgStatus::Active {
            if org.creator != Some(claims.user_id) {
                return Err(Error::organization_not_found());
            }
            return Err(Error::FailedPrecondition(
                "the organization is still being provisioned; retry CreateOrganization".into(),
            ));
        }
        Ok(org.location)
    }

    /// [`Self::open`], then loads the caller's membership. A caller who is not an active
    /// member (an invited one who has not accepted included: their row has no user yet) learns
    /// nothing: NOT_FOUND, exactly as for an id that does not exist.
    pub async fn acquire(
        &self,
        claims: &Claims,
        organization_id: Uuid,
    ) -> Result<(TenantConnection, Caller), Error> {
        let (conn, caller, _) =
            self.first_statement(claims, organization_id, Sharing::Exclusive, CALLER, &[]).await?;
        match conn {
            Conn::Exclusive(conn) => Ok((*conn, caller)),
            Conn::Shared(_) => Err(Error::Internal("an exclusive connection was shared".into())),
        }
    }

    /// A read in one statement with the caller's membership folded in, so both take one round
    /// trip: `sql` takes the caller's user id as `$1` and `params` from `$2` on, and every row
    /// it returns starts with the caller's member id and role (`caller_id`, `caller_role`, see
    /// [`CALLER`]); no row means the caller is not an active member, who learns nothing (as for
    /// [`Self::acquire`]). The statement runs on a connection the tenant's concurrent reads
    /// share (see [`Pools::get_shared`]): it must read only, and nothing may follow it.
    pub async fn read_with(
        &self,
        claims: &Claims,
        organization_id: Uuid,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Caller, Vec<Row>), Error> {
        let (_, caller, rows) =
            self.first_statement(claims, organization_id, Sharing::Shared, sql, params).await?;
        Ok((caller, rows))
    }

    /// Runs a call's first statement, which loads the caller's membership (see
    /// [`Self::read_with`]), on a connection taken as `sharing` says.
    ///
    /// The first statement also tells whether a pooled connection is still alive (pools do not
    /// verify busy connections): one found dead is discarded and the call goes on with another,
    /// up to [`DEAD_CONNECTION_RETRIES`] times. Nothing of the call has run on it, so nothing is
    /// repeated.
    async fn first_statement(
        &self,
        claims: &Claims,
        organization_id: Uuid,
        sharing: Sharing,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Conn, Caller, Vec<Row>), Error> {
        let location = self.active_location(claims, organization_id).await?;
        let config = self.tenant_config(&location)?;
        let pools = &self.inner.pools;
        let mut all: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(params.len() + 1);
        all.push(&claims.user_id);
        all.extend_from_slice(params);
        let mut retries = 0;
        loop {
            let conn = match sharing {
                Sharing::Exclusive => {
                    Conn::Exclusive(Box::new(pools.get(organization_id, &config).await?))
                }
                Sharing::Shared => Conn::Shared(pools.get_shared(organization_id, &config).await?),
            };
            let rows = match conn.client().query(sql, &all).await {
                Ok(rows) => rows,
                Err(e)
                    if retries < DEAD_CONNECTION_RETRIES
                        && clinic_shared::pg::is_connection_loss(&e) =>
                {
                    retries += 1;
                    tracing::debug!(retries, "pooled tenant connection was dead; taking another");
                    match conn {
                        // Taken out of the pool, so it is closed rather than returned.
                        Conn::Exclusive(conn) => drop(TenantConnection::take(*conn)),
                        // Its pool discards it when the last read sharing it is done.
                        Conn::Shared(conn) => pools.drop_shared(organization_id, &conn),
                    }
                    continue;
                }
                Err(e) => return Err(Error::tenant_db("load caller", &e)),
            };
            let first = rows.first().ok_or_else(Error::organization_not_found)?;
            let role = Role::from_db(first.col::<Option<&str>>("caller_role")?)
                .ok_or_else(Error::organization_not_found)?;
            let caller =
                Caller { member_id: first.col("caller_id")?, user_id: claims.user_id, role };
            return Ok((conn, caller, rows));
        }
    }
}

/// How [`TenantAccess::first_statement`] takes its connection.
#[derive(Clone, Copy)]
enum Sharing {
    /// For the call alone (it may write, open a transaction, run more).
    Exclusive,
    /// Shared with the tenant's other reads in flight.
    Shared,
}

/// A connection as [`Sharing`] took it. The exclusive one is boxed: a pooled connection is a
/// few hundred bytes, a shared one a pointer.
enum Conn {
    Exclusive(Box<TenantConnection>),
    Shared(pools::SharedConnection),
}

impl Conn {
    fn client(&self) -> &TenantClient {
        match self {
            Conn::Exclusive(conn) => conn,
            Conn::Shared(conn) => conn,
        }
    }
}

/// The caller's membership in a tenant, as [`TenantAccess::read_with`] expects it: `$1` is
/// the caller's user id. Reads fold it in as a CTE: `WITH caller AS (CALLER) ...`.
pub const CALLER: &str = "SELECT id AS caller_id, role AS caller_role FROM organization_user \
    WHERE user_id = $1 AND status = 'active'";

/// How many dead pooled connections one call may discard before it fails (a restarted server
/// leaves at most a pool's worth).
const DEAD_CONNECTION_RETRIES: usize = 8;
