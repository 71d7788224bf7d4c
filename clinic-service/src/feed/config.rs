//! The feed's settings, read from the environment with documented defaults.

use std::time::Duration;

use clinic_shared::config::{self, ConfigError};

/// How the appointment feed (`WatchAppointments`) runs.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// `WATCH_HEARTBEAT_SECS` (default 10): a stream gets a heartbeat this often, and the
    /// caller's access (session, membership, role) is checked again as often.
    pub heartbeat: Duration,
    /// `WATCH_POLL_MS` (default 1000): each watched clinic's log is read at least this often
    /// (changes made by this process wake its readers at once; this catches other replicas').
    pub poll: Duration,
    /// `WATCH_RETENTION_SECS` (default 604800, 7 days): how long changes are kept; a resume
    /// token older than that gets OUT_OF_RANGE.
    pub retention: Duration,
    /// `WATCH_PRUNE_SECS` (default 3600): how often the janitor prunes every clinic's log.
    pub prune_every: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(10),
            poll: Duration::from_millis(1000),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_every: Duration::from_secs(3600),
        }
    }
}

impl FeedConfig {
    /// Reads the settings; zero is an error.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let positive = |name: &str, default: u64| -> Result<u64, ConfigError> {
            match config::parse(name, default)? {
                0 => Err(ConfigError::new(name, "must be at least 1")),
                n => Ok(n),
            }
        };
        Ok(Self {
            heartbeat: Duration::from_secs(positive(
                "WATCH_HEARTBEAT_SECS",
                d.heartbeat.as_secs(),
            )?),
            poll: Duration::from_millis(positive("WATCH_POLL_MS", 1000)?),
            retention: Duration::from_secs(positive(
                "WATCH_RETENTION_SECS",
                d.retention.as_secs(),
            )?),
            prune_every: Duration::from_secs(positive("WATCH_PRUNE_SECS", 3600)?),
        })
    }
}
