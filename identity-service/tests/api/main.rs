//! Integration tests: each starts identity-service on its own database.

mod directory;
mod emails;
mod helpers;
mod invitations;
mod login;
mod organizations;
mod passwords;
mod registration;
mod replicas;
mod rows;
mod service_auth;
mod sessions;
mod startup;
mod throttling;
