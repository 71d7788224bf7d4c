//! clinic-service integration tests: one binary, real PostgreSQL, both services in-process.

mod appointments;
mod e2e;
mod helpers;
mod invitations;
mod logs;
mod members;
mod organizations;
mod outages;
mod privileges;
mod schema_drift;
mod tenancy;
mod tls;
