//! Authentication: every `clinic.v1` call's bearer token is verified here with the keys
//! identity-service publishes, and its session checked against the revocations it streams
//! (`keys`, `revocations`), falling back to asking identity-service while that stream is not in
//! sync; a tower layer puts [`Claims`] into the request extensions. The few calls that need to
//! know who the user is ([`Person`]) ask identity-service.

mod cache;
mod keys;
mod layer;
mod revocations;

pub use cache::TokenCache;
pub use keys::SigningKeys;
pub use layer::{AuthLayer, AuthService, TokenValidator};
pub use revocations::Revocations;

use chrono::{DateTime, Utc};
use tonic::{Code, Status};
use uuid::Uuid;

use crate::{error::Error, identity::IdentityClient};

/// Who is calling, as the verified access token says: ids only (the token carries no personal
/// data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The central user.
    pub user_id: Uuid,
    /// The session the token belongs to.
    pub session_id: Uuid,
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

/// The caller's account as identity-service knows it now, for the rare calls that need more
/// than ids (creating a clinic needs a verified email; invitations are matched by email).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// The central user.
    pub user_id: Uuid,
    /// The email address.
    pub email: String,
    /// The display name.
    pub name: String,
    /// Whether the email address is verified.
    pub email_verified: bool,
}

impl Person {
    /// Asks identity-service (`ValidateToken` with the request's own bearer token, which also
    /// re-checks the session) who the caller of `request`, authenticated as `claims`, is.
    pub async fn fetch<T>(
        identity: &IdentityClient,
        request: &tonic::Request<T>,
        claims: &Claims,
    ) -> Result<Person, Error> {
        let token = clinic_shared::auth::bearer_token(request.metadata())
            .map_err(|_| Error::Unauthenticated("missing credentials".into()))?;
        let answer = match identity.validate_token(token).await {
            Ok(answer) => answer,
            Err(status)
                if status.code() == Code::Unauthenticated
                    && !clinic_shared::auth::is_service_credential_rejected(&status) =>
            {
                return Err(Error::Unauthenticated("invalid or expired access token".into()));
            }
            Err(status) => return Err(crate::identity::map_status(status)),
        };
        if answer.user_id != claims.user_id.to_string() {
            return Err(Error::Internal("ValidateToken answered for another user".into()));
        }
        Ok(Person {
            user_id: claims.user_id,
            email: answer.email,
            name: answer.name,
            email_verified: answer.email_verified,
        })
    }
}
