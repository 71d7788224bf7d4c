//! Integration tests: each starts identity-service on its own database.

mod directory;
mod helpers;
mod invitations;
mod login;
mod organizations;
mod outages;
mod passwords;
mod registration;
mod replicas;
mod service_auth;
mod sessions;
mod startup;
mod throttling;
