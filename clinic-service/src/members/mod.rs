//! `MemberService`: a clinic's members (`organization_user` rows) and their profiles, with the
//! visibility rules of the contract.

pub mod domain;
pub mod queries;
mod service;
pub mod update;
mod view;

pub use service::MemberHandler;
