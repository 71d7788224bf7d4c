//! The directory clinic-service relies on: user lookup, the central register of organizations
//! (name, tenant database, server, status) and memberships.

pub mod domain;
pub mod memberships;
pub mod organizations;
pub mod paging;

pub use domain::{Membership, OrgStatus, Organization, Role};
