//! `MemberService`: a clinic's members (`organization_user` rows) and their profiles, with the
//! visibility rules of the contract; membership by invitation (`invitation.rs`, `joining.rs`).
//!
//! - `grpc`: the handlers (thin edge); `service`: the operations, one transaction each;
//! - `domain`, `update`, `validate`, `fields`: parsed requests and the profile field tables;
//! - `read`, `write`, `view`: SQL and what a caller sees; `admins`: the last-admin guard.
//!
//! Central changes (memberships, invitations) go through the tenant's outbox (`crate::relay`).

pub mod admins;
pub mod domain;
pub mod fields;
mod grpc;
pub mod invitation;
pub mod joining;
pub mod read;
pub mod service;
pub mod update;
pub mod validate;
mod view;
pub mod write;

pub use grpc::MemberHandler;
pub use service::Members;
