//! Authentication: every `clinic.v1` call's bearer token is validated by identity-service (with a
//! short cache) in a tower layer that puts [`Claims`] into the request extensions.

mod cache;
mod layer;

pub use cache::TokenCache;
pub use layer::{AuthLayer, AuthService, TokenValidator};

use chrono::{DateTime, Utc};
use tonic::Status;
use uuid::Uuid;

/// Who is calling, as identity-service vouched for the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The central user.
    pub user_id: Uuid,
    /// The session the token belongs to.
    pub session_id: String,
    /// The user's email address.
    pub email: String,
    /// The user's display name.
    pub name: String,
    /// Whether the email address is verified.
    pub email_verified: bool,
    /// When the token stops being accepted.
    pub expires_at: DateTime<Utc>,
}

impl Claims {
    /// The claims the auth layer attached to `request`. Fails closed: a handler reached without
    /// them (a routing mistake) answers UNAUTHENTICATED.
    pub fn from_request<T>(request: &tonic::Request<T>) -> Result<Claims, Status> {
        request
            .extensions()
            .get::<Claims>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("missing credentials"))
    }
}
