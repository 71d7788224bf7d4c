//! clinic-service integration tests: one binary, real PostgreSQL, both services in-process.

// A test may panic on a row it did not expect: that is a failed test, not a dropped call.
#![allow(clippy::disallowed_methods)]

mod appointments;
mod audit;
mod e2e;
mod helpers;
mod invitations;
mod logs;
mod member_races;
mod members;
mod membership_sync;
mod metrics;
mod misconfiguration;
mod organizations;
mod outages;
mod privileges;
mod schedules;
mod schema_drift;
mod schema_markers;
mod spares;
mod tenancy;
mod tls;
mod tokens;
mod watch;
