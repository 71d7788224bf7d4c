//! Settings of identity-service, read from environment variables with documented defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clinic_shared::config::{self as env, ConfigError, Mode};
use secrecy::SecretString;

/// Everything identity-service needs to start. Every field has an environment variable; its
/// default is given on the field.
#[derive(Clone)]
pub struct Config {
    /// `IDENTITY_ADDR`, default `127.0.0.1:50051`: where the gRPC server listens.
    pub addr: SocketAddr,
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
    /// `JWT_ISSUER`, default `clinic-identity`: the `iss` claim of access tokens.
    pub jwt_issuer: String,
    /// `ACCESS_TOKEN_TTL_SECS`, default 900 (15 minutes).
    pub access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`, default 2592000 (30 days): idle lifetime of a session.
    pub refresh_token_ttl: Duration,
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
}

/// Mail delivery settings.
#[derive(Clone)]
pub struct MailConfig {
    /// `SMTP_URL`, default unset: e.g. `smtps://user:pass@smtp.example.com`; when set, mail is
    /// sent over SMTP, otherwise written to the outbox directory.
    pub smtp_url: Option<SecretString>,
    /// `MAIL_FROM`, default `Clinic <no-reply@clinic.local>`: the sender address.
    pub from: String,
    /// `MAIL_OUTBOX_DIR`, default `.dev/outbox`: the development mailer writes one file per
    /// message here.
    pub outbox_dir: PathBuf,
}

/// Limits on failed attempts, counted in fixed windows in memory.
#[derive(Clone, Debug)]
pub struct ThrottleConfig {
    /// `THROTTLE_WINDOW_SECS`, default 900: length of a counting window.
    pub window: Duration,
    /// `LOGIN_MAX_FAILURES_PER_ACCOUNT`, default 5: failed logins per email per window.
    pub account_failures: u32,
    /// `LOGIN_MAX_FAILURES_PER_PEER`, default 20: failed logins per peer IP per window.
    pub peer_failures: u32,
    /// `VERIFY_MAX_FAILURES_PER_ACCOUNT`, default 5: wrong codes per email per window.
    pub verify_failures: u32,
    /// `RESEND_MAX_PER_ACCOUNT`, default 5: verification mails per email per window.
    pub resend_per_account: u32,
    /// `THROTTLE_MAX_ENTRIES`, default 100000: bound on tracked keys (memory).
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(900),
            account_failures: 5,
            peer_failures: 20,
            verify_failures: 5,
            resend_per_account: 5,
            max_entries: 100_000,
        }
    }
}

fn secs(name: &str, default: u64) -> Result<Duration, ConfigError> {
    env::parse(name, default).map(Duration::from_secs)
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
        let d = ThrottleConfig::default();
        Ok(Config {
            addr: env::parse("IDENTITY_ADDR", SocketAddr::from(([127, 0, 0, 1], 50051)))?,
            database,
            pool_size: env::parse("DATABASE_POOL_SIZE", 16)?,
            pool_wait: secs("DATABASE_POOL_WAIT_SECS", 5)?,
            mode,
            service_token,
            jwt_private_key_file,
            jwt_issuer: env::string("JWT_ISSUER", "clinic-identity"),
            access_token_ttl: secs("ACCESS_TOKEN_TTL_SECS", 900)?,
            refresh_token_ttl: secs("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            verification_code_ttl: secs("VERIFICATION_CODE_TTL_SECS", 900)?,
            verification_max_attempts: env::parse("VERIFICATION_MAX_ATTEMPTS", 5)?,
            mail: MailConfig {
                smtp_url: env::secret("SMTP_URL"),
                from: env::string("MAIL_FROM", "Clinic <no-reply@clinic.local>"),
                outbox_dir: PathBuf::from(env::string("MAIL_OUTBOX_DIR", ".dev/outbox")),
            },
            throttle: ThrottleConfig {
                window: secs("THROTTLE_WINDOW_SECS", d.window.as_secs())?,
                account_failures: env::parse("LOGIN_MAX_FAILURES_PER_ACCOUNT", d.account_failures)?,
                peer_failures: env::parse("LOGIN_MAX_FAILURES_PER_PEER", d.peer_failures)?,
                verify_failures: env::parse("VERIFY_MAX_FAILURES_PER_ACCOUNT", d.verify_failures)?,
                resend_per_account: env::parse("RESEND_MAX_PER_ACCOUNT", d.resend_per_account)?,
                max_entries: env::parse("THROTTLE_MAX_ENTRIES", d.max_entries)?,
            },
            shutdown_grace: secs("SHUTDOWN_GRACE_SECS", 5)?,
        })
    }

    /// Settings for tests: development mode, `127.0.0.1:0`, service token
    /// `test-service-token`, a generated signing key, an outbox in a fresh temporary directory,
    /// default throttling, no shutdown grace.
    pub fn for_tests(database: tokio_postgres::Config) -> Config {
        let outbox_dir =
            std::env::temp_dir().join(format!("identity-outbox-{}", uuid::Uuid::new_v4().simple()));
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database,
            pool_size: 8,
            pool_wait: Duration::from_secs(10),
            mode: Mode::Development,
            service_token: Some(SecretString::from("test-service-token")),
            jwt_private_key_file: None,
            jwt_issuer: "clinic-identity".to_owned(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            verification_code_ttl: Duration::from_secs(900),
            verification_max_attempts: 5,
            mail: MailConfig {
                smtp_url: None,
                from: "Clinic <no-reply@clinic.local>".to_owned(),
                outbox_dir,
            },
            throttle: ThrottleConfig::default(),
            shutdown_grace: Duration::ZERO,
        }
    }
}
