//! The directory clinic-service relies on: user lookup, the central register of organizations
//! (name, tenant database, server, status), memberships and pending invitations, and the spare
//! tenant databases kept ready for new organizations.

pub mod audit;
pub mod domain;
pub mod invitations;
pub mod memberships;
pub mod organizations;
pub mod paging;
pub mod spares;
pub mod versions;

pub use domain::{Membership, OrgStatus, Organization, Role};
