//! clinic-service's own series, beside the gRPC ones (`clinic_shared::metrics::grpc`):
//!
//! | series | labels | what |
//! | --- | --- | --- |
//! | `clinic_db_connection_budget` | | `DB_CONNECTION_BUDGET` |
//! | `clinic_db_connections_in_use` | | budget permits held (tenant and maintenance connections) |
//! | `clinic_db_connections_waiting` | | callers waiting for a permit |
//! | `clinic_tenant_pools_open` | | tenant pools open |
//! | `clinic_tenant_connections_evicted_total` | | idle connections closed to free the budget |
//! | `clinic_token_verifications_total` | `outcome` | bearer tokens checked by the auth layer |
//! | `clinic_token_remote_validations_total` | `outcome` | `ValidateToken` fallbacks (not in sync) |
//! | `clinic_revocation_stream_lag_seconds` | | time since `WatchRevocations` last proved it was caught up |
//! | `clinic_revocation_stream_in_sync` | | 1 while locally verified tokens are trusted |
//! | `clinic_provisioning_seconds` | `from_spare` | `CreateOrganization`'s provisioning, when it succeeds |
//! | `clinic_migration_seconds` | `target`, `outcome` | one database's migration run |
//! | `clinic_audit_events_written_total` | | audit events stored |
//! | `clinic_audit_events_buffered` | | read events waiting to be written |
//!
//! Every label value is a word chosen here. The scrape-time gauges are registered by
//! [`register`] from the running objects; the rest live in [`ServiceMetrics`], which is created
//! once per [`crate::Application`] and handed to what counts.

use std::{sync::Arc, time::Instant};

use clinic_shared::metrics::{self as shared, MetricsError};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, PullingGauge, Registry,
};

use crate::{auth::Revocations, tenancy::Pools};

/// Buckets of provisioning and migration durations, in seconds.
const SLOW_BUCKETS: [f64; 12] =
    [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// How a bearer token fared in the auth layer (`clinic_token_verifications_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Its verified claims were cached.
    Cached,
    /// Its signature was verified with the published keys.
    Verified,
    /// No bearer token, or a malformed one.
    Missing,
    /// A bad signature, a wrong issuer, expired.
    Invalid,
    /// Its session is known to be revoked.
    Revoked,
    /// The keys to verify it could not be fetched.
    KeysUnavailable,
}

impl Verification {
    const ALL: [Self; 6] = [
        Self::Cached,
        Self::Verified,
        Self::Missing,
        Self::Invalid,
        Self::Revoked,
        Self::KeysUnavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Cached => "cached",
            Self::Verified => "verified",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Revoked => "revoked",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// What a `ValidateToken` fallback answered (`clinic_token_remote_validations_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteValidation {
    /// The session is live.
    Valid,
    /// identity-service refused the token.
    Invalid,
    /// identity-service could not be asked, or answered nonsense.
    Unavailable,
}

impl RemoteValidation {
    const ALL: [Self; 3] = [Self::Valid, Self::Invalid, Self::Unavailable];

    fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Invalid => "invalid",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Which database a migration ran on (`clinic_migration_seconds{target}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationTarget {
    /// A clinic's database.
    Tenant,
    /// A server's template.
    Template,
    /// A spare database.
    Spare,
}

impl MigrationTarget {
    const ALL: [Self; 3] = [Self::Tenant, Self::Template, Self::Spare];

    fn label(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Template => "template",
            Self::Spare => "spare",
        }
    }
}

fn ok_label(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// The counters and histograms of one running clinic-service. Cheap to clone.
#[derive(Clone)]
pub struct ServiceMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    evictions: IntCounter,
    verifications: IntCounterVec,
    remote_validations: IntCounterVec,
    provisioning: HistogramVec,
    migrations: HistogramVec,
    audit_written: IntCounter,
    audit_buffered: IntGauge,
}

impl ServiceMetrics {
    /// Every series, not registered yet (see [`register`]).
    pub fn new() -> Result<Self, MetricsError> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help);
        let counters = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(SLOW_BUCKETS.to_vec()), labels)
        };
        let metrics = Self {
            inner: Arc::new(Inner {
                evictions: counter(
                    "clinic_tenant_connections_evicted_total",
                    "Idle connections closed to free the connection budget.",
                )?,
                verifications: counters(
                    "clinic_token_verifications_total",
                    "Bearer tokens checked by the auth layer, by outcome.",
                    "outcome",
                )?,
                remote_validations: counters(
                    "clinic_token_remote_validations_total",
                    "ValidateToken calls made while revocations were not in sync, by outcome.",
                    "outcome",
                )?,
                provisioning: histogram(
                    "clinic_provisioning_seconds",
                    "Time CreateOrganization took to provision a clinic, when it succeeded.",
                    &["from_spare"],
                )?,
                migrations: histogram(
                    "clinic_migration_seconds",
                    "Time one database's migration run took.",
                    &["target", "outcome"],
                )?,
                audit_written: counter(
                    "clinic_audit_events_written_total",
                    "Audit events stored in tenant databases.",
                )?,
                audit_buffered: IntGauge::new(
                    "clinic_audit_events_buffered",
                    "Audit events of reads waiting to be written.",
                )?,
            }),
        };
        metrics.start_at_zero();
        Ok(metrics)
    }

    /// Every series of a fixed label set exists from the start, at 0, so a scrape shows what
    /// can happen, not only what did.
    fn start_at_zero(&self) {
        let m = &self.inner;
        for outcome in Verification::ALL {
            m.verifications.with_label_values(&[outcome.label()]);
        }
        for outcome in RemoteValidation::ALL {
            m.remote_validations.with_label_values(&[outcome.label()]);
        }
        for from_spare in [true, false] {
            m.provisioning.with_label_values(&[&from_spare.to_string()]);
        }
        for target in MigrationTarget::ALL {
            for ok in [true, false] {
                m.migrations.with_label_values(&[target.label(), ok_label(ok)]);
            }
        }
    }

    /// `count` idle connections were closed to free budget permits.
    pub fn connections_evicted(&self, count: usize) {
        self.inner.evictions.inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// A bearer token was checked.
    pub fn token_verified(&self, outcome: Verification) {
        self.inner.verifications.with_label_values(&[outcome.label()]).inc();
    }

    /// A `ValidateToken` fallback answered.
    pub fn token_validated_remotely(&self, outcome: RemoteValidation) {
        self.inner.remote_validations.with_label_values(&[outcome.label()]).inc();
    }

    /// A clinic was provisioned in the time since `started`.
    pub fn provisioned(&self, from_spare: bool, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.inner.provisioning.with_label_values(&[&from_spare.to_string()]).observe(seconds);
    }

    /// A migration run on `target` ended (`ok` or not) in the time since `started`.
    pub fn migrated(&self, target: MigrationTarget, ok: bool, started: Instant) {
        let seconds = started.elapsed().as_secs_f64();
        self.inner.migrations.with_label_values(&[target.label(), ok_label(ok)]).observe(seconds);
    }

    /// One audit event was stored.
    pub fn audit_event_written(&self) {
        self.inner.audit_written.inc();
    }

    /// `count` audit events of reads and refusals are buffered, waiting to be written (set by
    /// the audit buffer at each flush).
    pub fn set_audit_events_buffered(&self, count: usize) {
        self.inner.audit_buffered.set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

/// Registers `metrics`, and the gauges read at scrape time from `pools` and `revocations`, in
/// `registry`.
pub fn register(
    registry: &Registry,
    metrics: &ServiceMetrics,
    pools: &Pools,
    revocations: &Arc<Revocations>,
) -> Result<(), MetricsError> {
    let m = &metrics.inner;
    shared::register(registry, &m.evictions)?;
    shared::register(registry, &m.verifications)?;
    shared::register(registry, &m.remote_validations)?;
    shared::register(registry, &m.provisioning)?;
    shared::register(registry, &m.migrations)?;
    shared::register(registry, &m.audit_written)?;
    shared::register(registry, &m.audit_buffered)?;
    let gauge = |name: &str, help: &str, read: Box<dyn Fn() -> f64 + Send + Sync>| {
        shared::register(registry, &PullingGauge::new(name, help, read)?)
    };
    let budget = pools.budget() as f64;
    gauge("clinic_db_connection_budget", "DB_CONNECTION_BUDGET.", Box::new(move || budget))?;
    let p = pools.clone();
    gauge(
        "clinic_db_connections_in_use",
        "Connection budget permits held by open connections.",
        Box::new(move || p.in_use() as f64),
    )?;
    let p = pools.clone();
    gauge(
        "clinic_db_connections_waiting",
        "Callers waiting for a connection budget permit.",
        Box::new(move || p.waiting() as f64),
    )?;
    let p = pools.clone();
    gauge(
        "clinic_tenant_pools_open",
        "Tenant connection pools open.",
        Box::new(move || p.open_pools() as f64),
    )?;
    let r = revocations.clone();
    gauge(
        "clinic_revocation_stream_lag_seconds",
        "Seconds since WatchRevocations last proved it was caught up (a heartbeat).",
        Box::new(move || r.lag(Instant::now()).as_secs_f64()),
    )?;
    let r = revocations.clone();
    gauge(
        "clinic_revocation_stream_in_sync",
        "1 while the revocation stream is in sync (tokens verified locally), else 0.",
        Box::new(move || if r.in_sync(Instant::now()) { 1.0 } else { 0.0 }),
    )?;
    Ok(())
}
