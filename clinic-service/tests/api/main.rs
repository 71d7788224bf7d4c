//! clinic-service integration tests: one binary, real PostgreSQL, both services in-process.

mod appointments;
mod e2e;
mod helpers;
mod invitations;
mod logs;
mod member_races;
mod members;
mod membership_sync;
mod misconfiguration;
mod organizations;
mod privileges;
mod tenancy;
mod tls;
