//! `MemberService`: a clinic's members (`organization_user` rows) and their profiles, with the
//! visibility rules of the contract.

pub mod domain;
pub mod read;
mod service;
pub mod update;
pub mod validate;
mod view;
pub mod write;

pub use service::MemberHandler;
