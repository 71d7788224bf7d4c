//! `OrganizationService`: creating clinics (see `tenancy::provisioning`) and the caller's view
//! of the clinics they belong to.

mod service;

pub use service::OrganizationHandler;
