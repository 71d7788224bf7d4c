//! clinic-service configuration: environment variables with documented defaults.

use std::{net::SocketAddr, time::Duration};

use clinic_shared::{
    config::{self, ConfigError, Mode},
    limits::Limits,
    pg::PgTls,
    tls::{ClientTls, ServerTls, settings as tls},
};
use secrecy::SecretString;

use crate::{audit::AuditConfig, feed::FeedConfig};

/// One PostgreSQL server that may hold tenant databases.
#[derive(Clone)]
pub struct TenantServer {
    /// Stable key recorded centrally as the organization's `server`.
    pub key: String,
    /// Connection settings of the server's maintenance database (used for CREATE DATABASE);
    /// tenant connections use the same settings with the tenant's database name.
    pub config: tokio_postgres::Config,
}

impl std::fmt::Debug for TenantServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: print only where it points.
        f.debug_struct("TenantServer")
            .field("key", &self.key)
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .finish()
    }
}

/// Everything clinic-service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `CLINIC_ADDR` (default `127.0.0.1:50052`): address to listen on; port 0 picks one.
    pub addr: SocketAddr,
    /// `IDENTITY_URL` (default `http://127.0.0.1:50061`): identity-service's internal listener
    /// (`IDENTITY_INTERNAL_ADDR` there). `https://` needs `IDENTITY_CA_FILE`; production mode
    /// requires `https://` unless `TLS_DISABLED=true`.
    pub identity_url: String,
    /// TLS towards identity-service: `IDENTITY_CA_FILE` (the CA its certificate must chain to),
    /// optionally `TLS_CLIENT_CERT_FILE` + `TLS_CLIENT_KEY_FILE` (this service's client
    /// certificate, the service credential under mutual TLS) and `IDENTITY_TLS_DOMAIN` (the
    /// name to verify instead of the URL's host).
    pub identity_tls: Option<ClientTls>,
    /// `SERVICE_TOKEN` (development default `dev-service-token`): the shared secret sent as
    /// `x-service-token` on identity-service's internal RPCs. Required in production unless a
    /// client certificate is configured.
    pub service_token: Option<SecretString>,
    /// `TLS_CERT_FILE` + `TLS_KEY_FILE` (re-read when they change): the listener serves TLS.
    /// Required in production unless `TLS_DISABLED=true` (TLS ends in front of the service).
    pub tls: Option<ServerTls>,
    /// `TENANT_ROLE_SECRET`: each tenant database is served through a login role of its own
    /// (created through deploy/bootstrap.sql's function), whose password is derived from this
    /// secret. Required in production; in development, unset serves requests as the servers'
    /// configured user.
    pub tenant_role_secret: Option<SecretString>,
    /// `DATABASE_CA_FILE`: CA for tenant server URLs with `sslmode=require` (certificate and
    /// host name verified; without a CA such a URL is refused).
    pub database_tls: PgTls,
    /// `APP_MODE` (default `production`).
    pub mode: Mode,
    /// `TENANT_SERVERS` (default `main=postgres://postgres@127.0.0.1:5432/postgres`):
    /// comma-separated `key=postgres-url` of the maintenance databases of tenant servers.
    pub tenant_servers: Vec<TenantServer>,
    /// `DB_CONNECTION_BUDGET` (default 40): the most PostgreSQL connections this process holds
    /// at once, tenant pools and maintenance connections together.
    pub connection_budget: usize,
    /// `TENANT_POOL_SIZE` (default 5): the most connections one tenant's pool holds.
    pub tenant_pool_size: usize,
    /// `DB_ACQUIRE_TIMEOUT_MS` (default 2000): how long a request waits for a connection before
    /// RESOURCE_EXHAUSTED.
    pub acquire_timeout: Duration,
    /// `DB_APPLICATION_NAME` (default `clinic-service`): `application_name` of every connection,
    /// so operators (and tests) can count them in `pg_stat_activity`.
    pub application_name: String,
    /// `TOKEN_CACHE_TTL_SECS` (default 5): how long a token's verified signature is reused (its
    /// session is checked against the revocations on every call regardless, so this no longer
    /// delays a logout). 0 disables the cache.
    pub token_cache_ttl: Duration,
    /// `TOKEN_CACHE_CAPACITY` (default 10000): most cached verified tokens.
    pub token_cache_capacity: usize,
    /// `JWT_ISSUER` (default `clinic-identity`): the `iss` access tokens must carry (as
    /// identity-service's `JWT_ISSUER`).
    pub jwt_issuer: String,
    /// `SIGNING_KEYS_REFETCH_SECS` (default 5): a token naming an unknown key makes this service
    /// fetch identity-service's keys again, at most this often.
    pub signing_keys_refetch: Duration,
    /// `SIGNING_KEYS_REFRESH_SECS` (default 300): the keys are fetched again this often anyway,
    /// so a key withdrawn from identity-service (compromised) stops verifying here.
    pub signing_keys_refresh: Duration,
    /// `REVOCATION_STALE_SECS` (default 15, three of identity-service's heartbeats): a revocation
    /// stream silent this long counts as down (every call is then validated with
    /// identity-service until it is back and caught up).
    pub revocation_stale_after: Duration,
    /// `IDENTITY_TIMEOUT_MS` (default 2000): deadline of every call to identity-service.
    pub identity_timeout: Duration,
    /// `MIGRATION_CONCURRENCY` (default 4): tenants migrated at once.
    pub migration_concurrency: usize,
    /// `MIGRATE_ON_START` (default false): migrate every tenant before serving.
    pub migrate_on_start: bool,
    /// `SHUTDOWN_GRACE_SECS` (default 0 in development, 5 in production): how long health
    /// reports NOT_SERVING before the server stops accepting.
    pub shutdown_grace: Duration,
    /// `METRICS_ADDR` (default unset: no metrics listener): where Prometheus scrapes
    /// `/metrics`; a bare port means loopback (`9101` is `127.0.0.1:9101`).
    pub metrics_addr: Option<SocketAddr>,
    /// Server limits (`MAX_CONCURRENT_REQUESTS`, `MAX_CONCURRENT_STREAMS`,
    /// `REQUEST_TIMEOUT_SECS`, `MAX_REQUEST_BYTES`): see [`Limits`].
    pub limits: Limits,
    /// `TEMPLATE_DATABASE` (default `clinic_template`, reserved by the name mapping): the
    /// migrated template database cloned for new clinics on every server. Any other name must
    /// lie outside the clinics' `clinic_` namespace.
    pub template_database: String,
    /// `INVITATION_TTL_SECS` (default 1209600, 14 days): how long an invitation (AddMember)
    /// may be accepted.
    pub invitation_ttl: Duration,
    /// `OUTBOX_SWEEP_SECS` (default 300): how often the relay looks through every tenant for
    /// central changes left undelivered (see `relay`).
    pub outbox_sweep_interval: Duration,
    /// `SPARE_DATABASES` (default 2; 0 disables): ready, migrated spare databases kept on every
    /// server, so that CreateOrganization renames one into place (see `tenancy::spares`).
    pub spare_databases: usize,
    /// `SPARE_DATABASE_PREFIX` (default `spare_`): spare databases are named this followed by
    /// 32 hex digits; outside the clinics' `clinic_` namespace.
    pub spare_prefix: String,
    /// `SPARE_CHECK_SECS` (default 60): how often (besides after every claim, and once at
    /// start) the replenisher checks every server's spares.
    pub spare_check_interval: Duration,
    /// The appointment feed's settings (`WATCH_HEARTBEAT_SECS`, `WATCH_POLL_MS`,
    /// `WATCH_RETENTION_SECS`, `WATCH_PRUNE_SECS`): see [`FeedConfig`].
    pub feed: FeedConfig,
    /// The audit trail's settings (`AUDIT_BUFFER_EVENTS`, `AUDIT_FLUSH_MS`,
    /// `AUDIT_BATCH_EVENTS`, `AUDIT_SEAL_MS`, `AUDIT_CHECKPOINT_SECS`; see [`AuditConfig`]).
    pub audit: AuditConfig,
}

/// TLS towards identity-service, checked against the URL: `https://` needs a CA, a CA needs
/// `https://`, and production mode needs `https://` unless `TLS_DISABLED=true`.
fn identity_tls(url: &str, mode: Mode) -> Result<Option<ClientTls>, ConfigError> {
    let https = url.starts_with("https://");
    let cert = tls::path("TLS_CLIENT_CERT_FILE");
    let key = tls::path("TLS_CLIENT_KEY_FILE");
    let Some(ca) = tls::path("IDENTITY_CA_FILE") else {
        if https {
            return Err(ConfigError::new(
                "IDENTITY_CA_FILE",
                "required for an https:// IDENTITY_URL",
            ));
        }
        if cert.is_some() {
            return Err(ConfigError::new("TLS_CLIENT_CERT_FILE", "needs IDENTITY_CA_FILE"));
        }
        if mode == Mode::Production && !tls::disabled_from_env()? {
            return Err(ConfigError::new(
                "IDENTITY_URL",
                "production mode reaches identity-service over TLS: use https:// and \
                 IDENTITY_CA_FILE, or TLS_DISABLED=true when TLS ends in front of it",
            ));
        }
        return Ok(None);
    };
    if !https {
        return Err(ConfigError::new(
            "IDENTITY_URL",
            "must be https:// when IDENTITY_CA_FILE is set",
        ));
    }
    let mut client = ClientTls::new(ca);
    match (cert, key) {
        (Some(cert), Some(key)) => client = client.with_identity(cert, key),
        (None, None) => {}
        (Some(_), None) => {
            return Err(ConfigError::new(
                "TLS_CLIENT_KEY_FILE",
                "required with TLS_CLIENT_CERT_FILE",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "TLS_CLIENT_CERT_FILE",
                "required with TLS_CLIENT_KEY_FILE",
            ));
        }
    }
    if let Some(domain) = config::var("IDENTITY_TLS_DOMAIN") {
        client = client.with_domain(domain);
    }
    Ok(Some(client))
}

/// Default lifetime of an invitation, in seconds: 14 days.
const DEFAULT_INVITATION_TTL_SECS: usize = 14 * 24 * 3600;

/// Default lifetime of an invitation.
pub const DEFAULT_INVITATION_TTL: Duration =
    Duration::from_secs(DEFAULT_INVITATION_TTL_SECS as u64);

/// Default tenant server list.
pub const DEFAULT_TENANT_SERVERS: &str = "main=postgres://postgres@127.0.0.1:5432/postgres";

impl Config {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mode = config::mode()?;
        let identity_url = config::string("IDENTITY_URL", "http://127.0.0.1:50061");
        let identity_tls = identity_tls(&identity_url, mode)?;
        let has_client_cert = identity_tls.as_ref().is_some_and(|t| t.identity.is_some());
        let service_token = match (config::secret("SERVICE_TOKEN"), mode) {
            (Some(token), _) => Some(token),
            (None, Mode::Development) => Some(SecretString::from("dev-service-token")),
            (None, Mode::Production) if has_client_cert => None,
            (None, Mode::Production) => {
                return Err(ConfigError::new(
                    "SERVICE_TOKEN",
                    "required in production unless TLS_CLIENT_CERT_FILE is set",
                ));
            }
        };
        let default_grace = if mode == Mode::Development { 0 } else { 5 };
        let database_tls = tls::database_from_env()?;
        let tenant_servers =
            parse_servers(&config::string("TENANT_SERVERS", DEFAULT_TENANT_SERVERS))?;
        for server in &tenant_servers {
            // A URL asking for TLS without a CA to verify it against is refused now, not later.
            database_tls
                .apply(&server.config)
                .map_err(|e| ConfigError::new("TENANT_SERVERS", format!("{}: {e}", server.key)))?;
        }
        let tenant_role_secret = config::secret("TENANT_ROLE_SECRET");
        if mode == Mode::Production && tenant_role_secret.is_none() {
            return Err(ConfigError::new(
                "TENANT_ROLE_SECRET",
                "required in production (each tenant is served through a login role of its own)",
            ));
        }
        Ok(Self {
            addr: config::parse("CLINIC_ADDR", SocketAddr::from(([127, 0, 0, 1], 50052)))?,
            tenant_role_secret,
            identity_url,
            identity_tls,
            tls: tls::server_from_env(mode)?,
            database_tls,
            limits: Limits::from_env()?,
            service_token,
            mode,
            tenant_servers,
            connection_budget: positive("DB_CONNECTION_BUDGET", 40)?,
            tenant_pool_size: positive("TENANT_POOL_SIZE", 5)?,
            acquire_timeout: Duration::from_millis(config::parse("DB_ACQUIRE_TIMEOUT_MS", 2000)?),
            application_name: config::string("DB_APPLICATION_NAME", "clinic-service"),
            token_cache_ttl: Duration::from_secs(config::parse("TOKEN_CACHE_TTL_SECS", 5)?),
            token_cache_capacity: positive("TOKEN_CACHE_CAPACITY", 10_000)?,
            jwt_issuer: config::string("JWT_ISSUER", "clinic-identity"),
            signing_keys_refetch: Duration::from_secs(
                positive("SIGNING_KEYS_REFETCH_SECS", 5)? as u64
            ),
            signing_keys_refresh: Duration::from_secs(
                positive("SIGNING_KEYS_REFRESH_SECS", 300)? as u64
            ),
            revocation_stale_after: Duration::from_secs(
                positive("REVOCATION_STALE_SECS", 15)? as u64
            ),
            identity_timeout: Duration::from_millis(config::parse("IDENTITY_TIMEOUT_MS", 2000)?),
            migration_concurrency: positive("MIGRATION_CONCURRENCY", 4)?,
            migrate_on_start: config::flag("MIGRATE_ON_START", false)?,
            shutdown_grace: Duration::from_secs(config::parse(
                "SHUTDOWN_GRACE_SECS",
                default_grace,
            )?),
            metrics_addr: clinic_shared::metrics::addr_from_env()?,
            template_database: template_database(&config::string(
                "TEMPLATE_DATABASE",
                DEFAULT_TEMPLATE_DATABASE,
            ))?,
            invitation_ttl: Duration::from_secs(positive(
                "INVITATION_TTL_SECS",
                DEFAULT_INVITATION_TTL_SECS,
            )? as u64),
            outbox_sweep_interval: Duration::from_secs(positive("OUTBOX_SWEEP_SECS", 300)? as u64),
            spare_databases: spare_count(config::parse("SPARE_DATABASES", 2)?)?,
            spare_prefix: spare_prefix(&config::string("SPARE_DATABASE_PREFIX", "spare_"))?,
            spare_check_interval: Duration::from_secs(positive("SPARE_CHECK_SECS", 60)? as u64),
            feed: FeedConfig::from_env()?,
            audit: AuditConfig::from_env()?,
        })
    }

    /// A configuration for tests: development mode, port 0, the given identity endpoint and
    /// tenant servers, service token `test-service-token`, no metrics listener.
    pub fn for_tests(identity_url: String, tenant_servers: Vec<TenantServer>) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            identity_url,
            identity_tls: None,
            tls: None,
            tenant_role_secret: Some(SecretString::from("test-tenant-role-secret")),
            database_tls: PgTls::none(),
            limits: Limits::default(),
            service_token: Some(SecretString::from("test-service-token")),
            mode: Mode::Development,
            tenant_servers,
            connection_budget: 20,
            tenant_pool_size: 4,
            acquire_timeout: Duration::from_secs(5),
            application_name: format!("clinic-test-{}", uuid::Uuid::new_v4().simple()),
            token_cache_ttl: Duration::from_secs(5),
            token_cache_capacity: 1000,
            jwt_issuer: "clinic-identity".to_owned(),
            signing_keys_refetch: Duration::from_millis(200),
            signing_keys_refresh: Duration::from_secs(300),
            revocation_stale_after: Duration::from_secs(15),
            // Generous: creations reserve their names one at a time centrally, and tests create
            // dozens at once on a loaded 2-core machine.
            identity_timeout: Duration::from_secs(5),
            migration_concurrency: 4,
            migrate_on_start: false,
            shutdown_grace: Duration::ZERO,
            metrics_addr: None,
            // Named after the embedded migrations, so checkouts with other migrations (another
            // branch testing against the same server) never share a template.
            template_database: test_template_database(),
            invitation_ttl: DEFAULT_INVITATION_TTL,
            outbox_sweep_interval: Duration::from_secs(300),
            // Tests that want spares turn them on (and get a prefix of their own).
            spare_databases: 0,
            spare_prefix: "spare_test_".to_owned(),
            spare_check_interval: Duration::from_secs(60),
            feed: FeedConfig::default(),
            audit: AuditConfig::default(),
        }
    }
}

/// The template every server keeps unless `TEMPLATE_DATABASE` names another.
pub const DEFAULT_TEMPLATE_DATABASE: &str = "clinic_template";

/// The template used by tests: named after the embedded migrations, so checkouts with other
/// migrations (another branch testing against the same server) never share one.
pub fn test_template_database() -> String {
    format!("test_clinic_template_{}", crate::tenancy::migrations::fingerprint())
}

/// Checks a template name: the default, or an identifier that no clinic's database can take.
fn template_database(name: &str) -> Result<String, ConfigError> {
    let valid = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ConfigError::new(
            "TEMPLATE_DATABASE",
            "must be lowercase letters, digits and underscores, at most 63 bytes",
        ));
    }
    if name != DEFAULT_TEMPLATE_DATABASE && name.starts_with("clinic_") {
        return Err(ConfigError::new(
            "TEMPLATE_DATABASE",
            "names starting with clinic_ belong to clinics",
        ));
    }
    Ok(name.to_owned())
}

/// Most spares per server: each costs a database's disk (about 7.5 MB empty).
const MAX_SPARE_DATABASES: usize = 100;

fn spare_count(n: usize) -> Result<usize, ConfigError> {
    if n > MAX_SPARE_DATABASES {
        return Err(ConfigError::new("SPARE_DATABASES", "at most 100 per server"));
    }
    Ok(n)
}

/// Longest spare prefix: a spare's name is the prefix and 32 hex digits, at most 63 bytes.
const MAX_SPARE_PREFIX_BYTES: usize = 63 - 32;

/// Checks a spare prefix: an identifier start outside the clinics' `clinic_` namespace, so no
/// clinic's database name can ever equal a spare's.
pub fn spare_prefix(prefix: &str) -> Result<String, ConfigError> {
    let valid = !prefix.is_empty()
        && prefix.len() <= MAX_SPARE_PREFIX_BYTES
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(ConfigError::new(
            "SPARE_DATABASE_PREFIX",
            "must be lowercase letters, digits and underscores, at most 31 bytes",
        ));
    }
    if format!("{prefix}0").starts_with(clinic_shared::slug::DATABASE_PREFIX) {
        return Err(ConfigError::new(
            "SPARE_DATABASE_PREFIX",
            "names starting with clinic_ belong to clinics",
        ));
    }
    Ok(prefix.to_owned())
}

fn positive(name: &str, default: usize) -> Result<usize, ConfigError> {
    match config::parse(name, default)? {
        0 => Err(ConfigError::new(name, "must be at least 1")),
        n => Ok(n),
    }
}

/// Parses `key=url,key=url`.
pub fn parse_servers(raw: &str) -> Result<Vec<TenantServer>, ConfigError> {
    let mut servers: Vec<TenantServer> = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, url) = item
            .split_once('=')
            .ok_or_else(|| ConfigError::new("TENANT_SERVERS", "expected key=postgres-url"))?;
        let key = key.trim();
        if key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::new("TENANT_SERVERS", "keys are letters, digits, _ and -"));
        }
        if servers.iter().any(|s| s.key == key) {
            return Err(ConfigError::new("TENANT_SERVERS", format!("duplicate key {key}")));
        }
        let config = clinic_shared::pg::parse_url(url.trim())
            .map_err(|_| ConfigError::new("TENANT_SERVERS", format!("invalid URL for {key}")))?;
        servers.push(TenantServer { key: key.to_owned(), config });
    }
    if servers.is_empty() {
        return Err(ConfigError::new("TENANT_SERVERS", "at least one server"));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_names_stay_out_of_the_clinics_namespace() {
        assert_eq!(template_database("clinic_template").ok().as_deref(), Some("clinic_template"));
        assert!(template_database("staging_template").is_ok());
        assert!(template_database(&test_template_database()).is_ok());
        for bad in ["clinic_acme", "clinic_template_2", "Template", "", "a-b", &"t".repeat(64)] {
            assert!(template_database(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spare_prefixes_stay_out_of_the_clinics_namespace() {
        for good in ["spare_", "staging_spare_", "s", "clinic", "clinicspare_"] {
            assert!(spare_prefix(good).is_ok(), "{good:?}");
        }
        for bad in ["clinic_", "clinic_spare_", "Spare_", "", "1spare", "a-b", &"s".repeat(32)] {
            assert!(spare_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_server_lists() {
        let s = parse_servers(
            "main=postgres://postgres@127.0.0.1:5432/postgres, b=postgres://x@h:5433/postgres",
        )
        .unwrap();
        assert_eq!(s.iter().map(|s| s.key.as_str()).collect::<Vec<_>>(), ["main", "b"]);
        assert!(parse_servers("").is_err());
        assert!(parse_servers("nokey").is_err());
        assert!(parse_servers("a=postgres://h/x,a=postgres://h/y").is_err());
        assert!(parse_servers("a b=postgres://h/x").is_err());
    }
}
