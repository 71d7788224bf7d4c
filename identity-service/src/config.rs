//! Settings of identity-service, read from environment variables with documented defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clinic_shared::{
    config::{self as env, ConfigError, Mode},
    limits::Limits,
    pg::PgTls,
    tls::{ServerTls, settings as tls},
};
use secrecy::SecretString;

use crate::{
    accounts::password::HashPriority, peer::TrustedProxies, tokens::keyring::VerifyKeyFile,
};

/// Everything identity-service needs to start. Every field has an environment variable; its
/// default is given on the field.
#[derive(Clone)]
pub struct Config {
    /// `IDENTITY_ADDR`, default `127.0.0.1:50051`: the public listener (`AuthService`, health,
    /// reflection), the one to publish.
    pub addr: SocketAddr,
    /// `IDENTITY_INTERNAL_ADDR`, default `127.0.0.1:50061`: the internal listener
    /// (`TokenService`, `DirectoryService`, health, reflection) for clinic-service only; never
    /// publish it.
    pub internal_addr: SocketAddr,
    /// `TLS_CERT_FILE` + `TLS_KEY_FILE` (re-read when they change): both listeners serve TLS.
    /// Required in production unless `TLS_DISABLED=true` (TLS ends in front of the service).
    pub tls: Option<ServerTls>,
    /// `TLS_CLIENT_CA_FILE`, default unset: the internal listener then requires client
    /// certificates issued by this CA (mutual TLS); needs `TLS_CERT_FILE`.
    pub internal_client_ca: Option<PathBuf>,
    /// `INTERNAL_CLIENT_NAMES`, default `clinic-service`: comma-separated certificate names (DNS
    /// SAN, or CN without one) accepted as the service credential on the internal listener,
    /// instead of `SERVICE_TOKEN`.
    pub internal_client_names: Vec<String>,
    /// `DATABASE_CA_FILE`, default unset: CA for a database URL with `sslmode=require` (the
    /// server certificate and host name are verified; without a CA such a URL is refused).
    pub database_tls: PgTls,
    /// Server limits (`MAX_CONCURRENT_REQUESTS`, `MAX_CONCURRENT_STREAMS`,
    /// `REQUEST_TIMEOUT_SECS`, `MAX_REQUEST_BYTES`): see [`Limits`].
    pub limits: Limits,
    /// `TRUSTED_PROXIES`, default none: comma-separated addresses or CIDR ranges of reverse
    /// proxies whose `x-forwarded-for` is believed when counting attempts per client.
    pub trusted_proxies: TrustedProxies,
    /// `HASH_WORKERS`, default all cores but one (at least 1): password hashes running at once.
    pub hash_workers: usize,
    /// `HASH_WORKER_NICE`, default 10 (a nice value 0 to 19, or `idle`): how the hashing
    /// threads give way, so on a shared machine the latency-sensitive work (reads, token checks,
    /// PostgreSQL) goes first and a login flood slows logins rather than everything else. See
    /// [`HashPriority`]; 0 leaves them at normal priority.
    pub hash_worker_priority: HashPriority,
    /// `HASH_QUEUE`, default 8: requests waiting for a hashing worker; beyond that
    /// RESOURCE_EXHAUSTED at once.
    pub hash_queue: usize,
    /// `UNVERIFIED_ACCOUNT_TTL_SECS`, default 604800 (7 days): accounts not verified by then are
    /// deleted, freeing their email and name.
    pub unverified_account_ttl: Duration,
    /// `MAX_CLINICS_PER_USER`, default 10: organizations one user may create.
    pub max_clinics_per_user: u32,
    /// `JANITOR_INTERVAL_SECS`, default 60: how often what ended is swept (see `janitor`).
    pub janitor_interval: Duration,
    /// `IDENTITY_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/clinic_db`: the
    /// central database; created at start-up when missing.
    pub database: tokio_postgres::Config,
    /// `DATABASE_POOL_SIZE`, default 16: most connections to the central database.
    pub pool_size: usize,
    /// `DATABASE_POOL_WAIT_SECS`, default 5: longest wait for a connection before UNAVAILABLE.
    pub pool_wait: Duration,
    /// `APP_MODE`, default `production`: `development` returns verification codes in responses
    /// and generates a signing key when none is configured.
    pub mode: Mode,
    /// `SERVICE_TOKEN`: shared secret internal callers send as `x-service-token`. Development
    /// default `dev-service-token`; in production, unset means internal RPCs are refused.
    pub service_token: Option<SecretString>,
    /// `JWT_PRIVATE_KEY_FILE`: PKCS#8 PEM Ed25519 key signing access tokens. Required in
    /// production; generated at start-up in development when unset.
    pub jwt_private_key_file: Option<PathBuf>,
    /// `JWT_VERIFY_KEYS`, default none: comma-separated PEM files of further keys that verify
    /// access tokens (never sign), each `path` (a key about to sign, published ahead) or
    /// `path@<RFC 3339 time>` (a former signing key, verifying until then). Public (SPKI) or
    /// private (PKCS#8) Ed25519 PEM. See the README's rotation procedure.
    pub jwt_verify_keys: Vec<VerifyKeyFile>,
    /// `TOKEN_SECRETS_KEY_FILE`, default the signing key: the PKCS#8 Ed25519 key whose seed the
    /// verification-code and refresh-successor secrets are derived from. Set it to the current
    /// key file before the first rotation, and keep it, so rotating the signing key does not
    /// change them (pending codes keep working, replicas agree).
    pub token_secrets_key_file: Option<PathBuf>,
    /// `REVOCATION_RETENTION_SECS`, default 3600, at least `ACCESS_TOKEN_TTL_SECS`: how long
    /// revoked sessions stay in the log `WatchRevocations` serves.
    pub revocation_retention: Duration,
    /// `REVOCATION_POLL_MS`, default 200: how often a `WatchRevocations` stream looks for
    /// revocations committed by other replicas (its own replica's wake it at once).
    pub revocation_poll: Duration,
    /// `REVOCATION_HEARTBEAT_SECS`, default 5: heartbeat interval of `WatchRevocations`.
    pub revocation_heartbeat: Duration,
    /// `JWT_ISSUER`, default `clinic-identity`: the `iss` claim of access tokens.
    pub jwt_issuer: String,
    /// `ACCESS_TOKEN_TTL_SECS`, default 900 (15 minutes).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`, default 2592000 (30 days): idle lifetime of a session.
    pub refresh_token_ttl: Duration,
    /// `SESSION_MAX_LIFETIME_SECS`, default 7776000 (90 days), at least 1: absolute lifetime of
    /// a session from its login, however often it is refreshed; a refresh after it revokes it.
    pub session_max_lifetime: Duration,
    /// `REFRESH_REUSE_GRACE_SECS`, default 10 (0 switches it off): a refresh token presented
    /// again this soon after it was rotated gets the same successor (two tabs, a retry after a
    /// lost answer) while that successor is unspent, instead of revoking the session.
    pub refresh_reuse_grace: Duration,
    /// `VERIFICATION_CODE_TTL_SECS`, default 900 (15 minutes).
    pub verification_code_ttl: Duration,
    /// `VERIFICATION_MAX_ATTEMPTS`, default 5: wrong guesses before a code is burnt.
    pub verification_max_attempts: i32,
    /// Where mail goes.
    pub mail: MailConfig,
    /// Brute-force limits.
    pub throttle: ThrottleConfig,
    /// `SHUTDOWN_GRACE_SECS`, default 5: time between NOT_SERVING and draining on shutdown.
    pub shutdown_grace: Duration,
    /// `METRICS_ADDR`, default unset (no metrics listener): where Prometheus scrapes
    /// `/metrics`; a bare port means loopback (`9100` is `127.0.0.1:9100`).
    pub metrics_addr: Option<SocketAddr>,
}

/// Mail delivery settings.
#[derive(Clone)]
pub struct MailConfig {
    /// `SMTP_URL`, default unset: e.g. `smtps://user:pass@smtp.example.com`; when set, mail is
    /// sent over SMTP, otherwise written to the outbox directory. Required in production.
    pub smtp_url: Option<SecretString>,
    /// `MAIL_FROM`, default `Clinic <no-reply@clinic.local>`: the sender address.
    pub from: String,
    /// `MAIL_OUTBOX_DIR`, default `.dev/outbox`: the development mailer writes one file per
    /// message here.
    pub outbox_dir: PathBuf,
}

/// Abuse limits, counted in fixed windows in the central database (shared by every replica).
/// None can be switched off: every limit and the window must be at least 1.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// `THROTTLE_WINDOW_SECS`, default 900: length of a counting window.
    pub window: Duration,
    /// `LOGIN_MAX_FAILURES_PER_ACCOUNT`, default 5: login attempts per email per window (a
    /// success clears the count).
    pub account_failures: u32,
    /// `LOGIN_MAX_FAILURES_PER_PEER`, default 20: failed logins per client per window.
    pub peer_failures: u32,
    /// `VERIFY_MAX_FAILURES_PER_ACCOUNT`, default 5: wrong codes per email per window.
    pub verify_failures: u32,
    /// `RESEND_MAX_PER_ACCOUNT`, default 5: verification mails per email per window.
    pub resend_per_account: u32,
    /// `RESEND_MAX_PER_PEER`, default 20: ResendVerificationCode calls per client per window.
    pub resend_per_peer: u32,
    /// `REGISTER_MAX_PER_PEER`, default 10: registrations per client per window.
    pub register_per_peer: u32,
    /// `CREATE_ORGANIZATION_MAX_PER_USER`, default 5: clinics one user may create per window.
    pub create_organization_per_user: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(900),
            account_failures: 5,
            peer_failures: 20,
            verify_failures: 5,
            resend_per_account: 5,
            resend_per_peer: 20,
            register_per_peer: 10,
            create_organization_per_user: 5,
        }
    }
}

fn secs(name: &str, default: u64) -> Result<Duration, ConfigError> {
    env::parse(name, default).map(Duration::from_secs)
}

/// A duration that must not be zero.
fn at_least_one_sec(name: &str, default: u64) -> Result<Duration, ConfigError> {
    match secs(name, default)? {
        d if d.is_zero() => Err(ConfigError::new(name, "must be at least 1")),
        d => Ok(d),
    }
}

/// A limit that cannot be switched off: 0 is a start-up error, not "unlimited".
fn limit(name: &str, default: u32) -> Result<u32, ConfigError> {
    match env::parse(name, default)? {
        0 => Err(ConfigError::new(name, "must be at least 1 (limits cannot be switched off)")),
        n => Ok(n),
    }
}

/// The hashing threads' default: below everything else by weight, never starved (`idle` yields
/// more under a flood, but on a saturated machine leaves logins almost no CPU).
const DEFAULT_HASH_WORKER_PRIORITY: HashPriority = HashPriority::Nice(10);

/// All cores but one, so reads keep a core while passwords are hashed.
fn default_hash_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

impl Config {
    /// Reads every setting from the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mode = env::mode()?;
        let database_url =
            env::string("IDENTITY_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clinic_db");
        let database = clinic_shared::pg::parse_url(&database_url)
            .map_err(|e| ConfigError::new("IDENTITY_DATABASE_URL", e.to_string()))?;
        let service_token = env::secret("SERVICE_TOKEN").or_else(|| {
            (mode == Mode::Development).then(|| SecretString::from("dev-service-token"))
        });
        let jwt_private_key_file = env::var("JWT_PRIVATE_KEY_FILE").map(PathBuf::from);
        if mode == Mode::Production && jwt_private_key_file.is_none() {
            return Err(ConfigError::new("JWT_PRIVATE_KEY_FILE", "required in production mode"));
        }
        let jwt_verify_keys = env::string("JWT_VERIFY_KEYS", "")
            .split(',')
            .filter(|e| !e.trim().is_empty())
            .map(|e| e.parse().map_err(|m| ConfigError::new("JWT_VERIFY_KEYS", m)))
            .collect::<Result<Vec<VerifyKeyFile>, _>>()?;
        let access_token_ttl = at_least_one_sec("ACCESS_TOKEN_TTL_SECS", 900)?;
        let revocation_retention = secs("REVOCATION_RETENTION_SECS", 3600)?;
        if revocation_retention < access_token_ttl {
            return Err(ConfigError::new(
                "REVOCATION_RETENTION_SECS",
                "must be at least ACCESS_TOKEN_TTL_SECS (followers must see every revoked \
                 session whose tokens are still valid)",
            ));
        }
        let revocation_poll = Duration::from_millis(env::parse("REVOCATION_POLL_MS", 200)?);
        if revocation_poll.is_zero() {
            return Err(ConfigError::new("REVOCATION_POLL_MS", "must be at least 1"));
        }
        let d = ThrottleConfig::default();
        let window = at_least_one_sec("THROTTLE_WINDOW_SECS", d.window.as_secs())?;
        let hash_workers = env::parse("HASH_WORKERS", default_hash_workers())?;
        if hash_workers == 0 {
            return Err(ConfigError::new("HASH_WORKERS", "must be at least 1"));
        }
        let hash_worker_priority = env::parse("HASH_WORKER_NICE", DEFAULT_HASH_WORKER_PRIORITY)?;
        let server_tls = tls::server_from_env(mode)?;
        let smtp_url = env::secret("SMTP_URL");
        if mode == Mode::Production && smtp_url.is_none() {
            return Err(ConfigError::new(
                "SMTP_URL",
                "required in production mode (without it mail goes to a local outbox)",
            ));
        }
        let internal_client_ca = tls::path("TLS_CLIENT_CA_FILE");
        if internal_client_ca.is_some() && server_tls.is_none() {
            return Err(ConfigError::new(
                "TLS_CLIENT_CA_FILE",
                "needs TLS_CERT_FILE and TLS_KEY_FILE",
            ));
        }
        Ok(Config {
            addr: env::parse("IDENTITY_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            tls: server_tls,
            internal_client_ca,
            internal_client_names: env::string("INTERNAL_CLIENT_NAMES", "clinic-service")
                .split(',')
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
                .collect(),
            database_tls: tls::database_from_env()?,
            internal_addr: env::parse(
                "IDENTITY_INTERNAL_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 50061)),
            )?,
            limits: Limits::from_env()?,
            trusted_proxies: env::parse("TRUSTED_PROXIES", TrustedProxies::default())?,
            hash_workers,
            hash_worker_priority,
            hash_queue: env::parse("HASH_QUEUE", 8)?,
            unverified_account_ttl: secs("UNVERIFIED_ACCOUNT_TTL_SECS", 7 * 24 * 3600)?,
            max_clinics_per_user: limit("MAX_CLINICS_PER_USER", 10)?,
            janitor_interval: secs("JANITOR_INTERVAL_SECS", 60)?.max(Duration::from_secs(1)),
            database,
            pool_size: env::parse("DATABASE_POOL_SIZE", 16)?,
            pool_wait: secs("DATABASE_POOL_WAIT_SECS", 5)?,
            mode,
            service_token,
            jwt_private_key_file,
            jwt_verify_keys,
            token_secrets_key_file: env::var("TOKEN_SECRETS_KEY_FILE").map(PathBuf::from),
            revocation_retention,
            revocation_poll,
            revocation_heartbeat: at_least_one_sec("REVOCATION_HEARTBEAT_SECS", 5)?,
            jwt_issuer: env::string("JWT_ISSUER", "clinic-identity"),
            access_token_ttl,
            refresh_token_ttl: secs("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            session_max_lifetime: at_least_one_sec("SESSION_MAX_LIFETIME_SECS", 90 * 24 * 3600)?,
            refresh_reuse_grace: secs("REFRESH_REUSE_GRACE_SECS", 10)?,
            verification_code_ttl: secs("VERIFICATION_CODE_TTL_SECS", 900)?,
            verification_max_attempts: env::parse("VERIFICATION_MAX_ATTEMPTS", 5)?,
            mail: MailConfig {
                smtp_url,
                from: env::string("MAIL_FROM", "Clinic <no-reply@clinic.local>"),
                outbox_dir: PathBuf::from(env::string("MAIL_OUTBOX_DIR", ".dev/outbox")),
            },
            throttle: ThrottleConfig {
                window,
                account_failures: limit("LOGIN_MAX_FAILURES_PER_ACCOUNT", d.account_failures)?,
                peer_failures: limit("LOGIN_MAX_FAILURES_PER_PEER", d.peer_failures)?,
                verify_failures: limit("VERIFY_MAX_FAILURES_PER_ACCOUNT", d.verify_failures)?,
                resend_per_account: limit("RESEND_MAX_PER_ACCOUNT", d.resend_per_account)?,
                resend_per_peer: limit("RESEND_MAX_PER_PEER", d.resend_per_peer)?,
                register_per_peer: limit("REGISTER_MAX_PER_PEER", d.register_per_peer)?,
                create_organization_per_user: limit(
                    "CREATE_ORGANIZATION_MAX_PER_USER",
                    d.create_organization_per_user,
                )?,
            },
            shutdown_grace: secs("SHUTDOWN_GRACE_SECS", 5)?,
            metrics_addr: clinic_shared::metrics::addr_from_env()?,
        })
    }

    /// Settings for tests: development mode, `127.0.0.1:0` for both listeners, service token
    /// `test-service-token`, a generated signing key, an outbox in a fresh temporary directory,
    /// default throttling except for creating clinics (tests create many), no shutdown grace, no
    /// metrics listener.
    pub fn for_tests(database: tokio_postgres::Config) -> Config {
        let outbox_dir =
            std::env::temp_dir().join(format!("identity-outbox-{}", uuid::Uuid::new_v4().simple()));
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            internal_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            internal_client_ca: None,
            internal_client_names: vec!["clinic-service".to_owned()],
            database_tls: PgTls::none(),
            limits: Limits::default(),
            trusted_proxies: TrustedProxies::default(),
            hash_workers: default_hash_workers(),
            hash_worker_priority: DEFAULT_HASH_WORKER_PRIORITY,
            hash_queue: 8,
            unverified_account_ttl: Duration::from_secs(7 * 24 * 3600),
            max_clinics_per_user: 1000,
            janitor_interval: Duration::from_secs(60),
            database,
            pool_size: 8,
            pool_wait: Duration::from_secs(10),
            mode: Mode::Development,
            service_token: Some(SecretString::from("test-service-token")),
            jwt_private_key_file: None,
            jwt_verify_keys: Vec::new(),
            token_secrets_key_file: None,
            revocation_retention: Duration::from_secs(3600),
            revocation_poll: Duration::from_millis(200),
            revocation_heartbeat: Duration::from_secs(5),
            jwt_issuer: "clinic-identity".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            session_max_lifetime: Duration::from_secs(90 * 24 * 3600),
            refresh_reuse_grace: Duration::from_secs(10),
            verification_code_ttl: Duration::from_secs(900),
            verification_max_attempts: 5,
            mail: MailConfig {
                smtp_url: None,
                from: "Clinic <no-reply@clinic.local>".to_owned(),
                outbox_dir,
            },
            // Tests create many clinics per user; the quota tests set their own limits.
            throttle: ThrottleConfig { create_organization_per_user: 1000, ..Default::default() },
            shutdown_grace: Duration::ZERO,
            metrics_addr: None,
        }
    }
}
