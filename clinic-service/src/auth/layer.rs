//! The tower layer that authenticates `clinic.v1` calls. Fails closed: no token, a token
//! identity-service rejects, or identity-service unreachable all stop the call before any
//! handler runs. Reflection and health (other paths) pass through.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use chrono::Utc;
use tonic::{Code, Status, body::Body};
use tower::{Layer, Service};

use super::{
    Claims,
    cache::{TokenCache, token_key},
};
use crate::identity::{IdentityClient, is_outage};

/// Paths under this prefix need a valid bearer token.
const PROTECTED_PREFIX: &str = "/clinic.v1.";

/// Validates bearer tokens with identity-service, through the cache.
pub struct TokenValidator {
    identity: IdentityClient,
    cache: TokenCache,
}

impl TokenValidator {
    /// A validator asking `identity` and remembering answers in `cache`.
    pub fn new(identity: IdentityClient, cache: TokenCache) -> Self {
        Self { identity, cache }
    }

    /// The claims of the request's bearer token, or UNAUTHENTICATED / UNAVAILABLE.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Claims, Status> {
        let token = bearer(headers)?;
        let key = token_key(&token);
        if let Some(claims) = self.cache.get(&key, Instant::now()) {
            return Ok(claims);
        }
        let answer = match self.identity.validate_token(&token).await {
            Ok(answer) => answer,
            // Not the caller's fault: its token may be fine. Never tell it to throw it away.
            Err(status) if crate::identity::is_misconfigured(&status) => {
                return Err(Status::unavailable("token validation failed, retry later"));
            }
            Err(status) if status.code() == Code::Unauthenticated => {
                return Err(Status::unauthenticated("invalid or expired access token"));
            }
            Err(status) if is_outage(&status) => {
                tracing::warn!(code = ?status.code(), "identity-service unreachable");
                return Err(Status::unavailable("identity-service is unavailable, retry later"));
            }
            Err(status) => {
                tracing::error!(code = ?status.code(), message = status.message(), "ValidateToken failed");
                return Err(Status::unavailable("token validation failed, retry later"));
            }
        };
        let claims = claims_from(answer)?;
        let left = (claims.expires_at - Utc::now()).to_std().unwrap_or_default();
        self.cache.insert(key, claims.clone(), Instant::now(), left);
        Ok(claims)
    }
}

/// The bearer token, parsed by the shared helper both services use.
fn bearer(headers: &http::HeaderMap) -> Result<String, Status> {
    let metadata = tonic::metadata::MetadataMap::from_headers(headers.clone());
    clinic_shared::auth::bearer_token(&metadata).map(str::to_owned)
}

fn claims_from(answer: clinic_api::identity::v1::ValidateTokenResponse) -> Result<Claims, Status> {
    let bad = || Status::unavailable("token validation returned a malformed answer");
    let user_id = answer.user_id.parse().map_err(|_| bad())?;
    let expires_at =
        answer.expire_time.and_then(|t| clinic_shared::time::from_timestamp(&t)).ok_or_else(bad)?;
    Ok(Claims {
        user_id,
        session_id: answer.session_id,
        email: answer.email,
        name: answer.name,
        email_verified: answer.email_verified,
        expires_at,
    })
}

/// Adds [`AuthService`] around the server's routes.
#[derive(Clone)]
pub struct AuthLayer {
    validator: Arc<TokenValidator>,
}

impl AuthLayer {
    /// A layer using `validator`.
    pub fn new(validator: Arc<TokenValidator>) -> Self {
        Self { validator }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, validator: self.validator.clone() }
    }
}

/// Authenticates protected calls, then hands them to the inner service with [`Claims`].
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    validator: Arc<TokenValidator>,
}

type BoxFuture<T, E> = Pin<Box<dyn std::future::Future<Output = Result<T, E>> + Send>>;

impl<S, B> Service<http::Request<B>> for AuthService<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !request.uri().path().starts_with(PROTECTED_PREFIX) {
            return Box::pin(self.inner.call(request));
        }
        // The ready service goes with this call; the clone waits for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let validator = self.validator.clone();
        Box::pin(async move {
            match validator.authenticate(request.headers()).await {
                Ok(claims) => {
                    request.extensions_mut().insert(claims);
                    inner.call(request).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}
