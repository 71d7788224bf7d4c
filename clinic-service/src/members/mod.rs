//! `MemberService`: a clinic's members (`organization_user` rows) and their profiles, with the
//! visibility rules of the contract; membership by invitation (`invitation.rs`, `joining.rs`).

pub mod domain;
pub mod invitation;
pub mod joining;
pub mod read;
mod service;
pub mod update;
pub mod validate;
mod view;
pub mod write;

pub use service::MemberHandler;
