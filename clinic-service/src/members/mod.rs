//! `MemberService`: a clinic's members (`organization_user` rows) and their profiles, with the
//! visibility rules of the contract.

mod service;

pub use service::MemberHandler;
