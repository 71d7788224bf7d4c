//! The audit trail's settings, read from the environment with documented defaults.

use std::time::Duration;

use clinic_shared::config::{self, ConfigError};

/// How audit events are buffered, sealed and checkpointed.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `AUDIT_BUFFER_EVENTS` (default 4096): read and refusal events held in memory, not yet
    /// committed to their tenant, at most. A call that would exceed it fails (RESOURCE_EXHAUSTED)
    /// instead of going unrecorded. The most a crash can lose.
    pub buffer_events: usize,
    /// `AUDIT_FLUSH_MS` (default 200): buffered events are written at least this often (and as
    /// soon as `AUDIT_BATCH_EVENTS` are waiting).
    pub flush_every: Duration,
    /// `AUDIT_BATCH_EVENTS` (default 256): a flush starts once this many events wait.
    pub batch_events: usize,
    /// `AUDIT_SEAL_MS` (default 1000): tenants with new events are sealed this often.
    pub seal_every: Duration,
    /// `AUDIT_CHECKPOINT_SECS` (default 60): each tenant's latest seal is checkpointed with
    /// identity-service this often (and at shutdown).
    pub checkpoint_every: Duration,
    /// Whether reads and refusals are recorded (always, except in the benchmark's baseline: no
    /// setting turns it off, and `Application::build` refuses it off in production mode).
    /// Writes are recorded either way.
    pub record_reads: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            buffer_events: 4096,
            flush_every: Duration::from_millis(200),
            batch_events: 256,
            seal_every: Duration::from_millis(1000),
            checkpoint_every: Duration::from_secs(60),
            record_reads: true,
        }
    }
}

impl AuditConfig {
    /// Reads the settings; zero is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match config::parse(name, default)? {
                0 => Err(ConfigError::new(name, "must be at least 1")),
                n => Ok(n),
            }
        };
        let count = |name: &str, default: usize| -> Result<usize, ConfigError> {
            usize::try_from(positive(name, default as u64)?)
                .map_err(|_| ConfigError::new(name, "too large"))
        };
        Ok(Self {
            buffer_events: count("AUDIT_BUFFER_EVENTS", d.buffer_events)?,
            flush_every: Duration::from_millis(positive("AUDIT_FLUSH_MS", 200)?),
            batch_events: count("AUDIT_BATCH_EVENTS", d.batch_events)?,
            seal_every: Duration::from_millis(positive("AUDIT_SEAL_MS", 1000)?),
            checkpoint_every: Duration::from_secs(positive(
                "AUDIT_CHECKPOINT_SECS",
                d.checkpoint_every.as_secs(),
            )?),
            record_reads: true,
        })
    }
}
