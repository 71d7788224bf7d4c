//! The tower layer that authenticates `clinic.v1` calls. Fails closed: no token, a bad token,
//! a revoked session, or — while the revocation stream is not in sync — identity-service
//! unreachable all stop the call before any handler runs. Reflection and health (other paths)
//! pass through.
//!
//! In steady state a call costs no identity-service call: the token's signature is verified
//! here with the published keys (the verified claims are cached by token digest for
//! `TOKEN_CACHE_TTL_SECS`), and its session is looked up in the revocations followed from
//! `WatchRevocations`. While that stream is not in sync (starting, down, resyncing), every call
//! is validated by `ValidateToken` as well, uncached.

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
    keys::{Rejected, SigningKeys},
    revocations::Revocations,
};
use crate::{
    identity::{IdentityClient, is_outage},
    metrics::{RemoteValidation, ServiceMetrics, Verification},
};

/// Paths under this prefix need a valid bearer token.
const PROTECTED_PREFIX: &str = "/clinic.v1.";

fn invalid() -> Status {
    Status::unauthenticated("invalid or expired access token")
}

/// Validates bearer tokens: locally, and with identity-service while revocations are not in sync.
pub struct TokenValidator {
    identity: IdentityClient,
    keys: SigningKeys,
    revocations: Arc<Revocations>,
    cache: TokenCache,
    metrics: ServiceMetrics,
}

impl TokenValidator {
    /// A validator verifying with `keys`, checking `revocations`, remembering verified claims in
    /// `cache`, and asking `identity` while the revocations are not in sync; outcomes are
    /// counted in `metrics`.
    pub fn new(
        identity: IdentityClient,
        keys: SigningKeys,
        revocations: Arc<Revocations>,
        cache: TokenCache,
        metrics: ServiceMetrics,
    ) -> Self {
        Self { identity, keys, revocations, cache, metrics }
    }

    /// The verifying keys (fetched at start by the caller).
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// The claims of the request's bearer token, or UNAUTHENTICATED / UNAVAILABLE.
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Claims, Status> {
        let (outcome, result) = self.check(headers).await;
        self.metrics.token_verified(outcome);
        result
    }

    /// [`Self::authenticate`] and how the token fared locally.
    async fn check(&self, headers: &http::HeaderMap) -> (Verification, Result<Claims, Status>) {
        let token = match bearer(headers) {
            Ok(token) => token,
            Err(status) => return (Verification::Missing, Err(status)),
        };
        let key = token_key(token);
        let now = Utc::now();
        let generation = self.keys.generation();
        let (outcome, claims) = match self.cache.get(&key, Instant::now(), generation) {
            Some(claims) if claims.expires_at > now => (Verification::Cached, claims),
            _ => {
                let (claims, trusted_until) = match self.keys.verify(token, now).await {
                    Ok(claims) => claims,
                    Err(Rejected::Invalid) => return (Verification::Invalid, Err(invalid())),
                    Err(Rejected::KeysUnavailable) => {
                        let status =
                            Status::unavailable("identity-service is unavailable, retry later");
                        return (Verification::KeysUnavailable, Err(status));
                    }
                };
                let left = (trusted_until - now).to_std().unwrap_or_default();
                let generation = self.keys.generation();
                self.cache.insert(key, claims.clone(), Instant::now(), left, generation);
                (Verification::Verified, claims)
            }
        };
        if self.revocations.is_revoked(&claims.session_id) {
            return (Verification::Revoked, Err(invalid()));
        }
        if self.revocations.in_sync(Instant::now()) {
            return (outcome, Ok(claims));
        }
        // Not in sync: a revocation may not have reached us. Ask, every call.
        let remote = self.validate_remotely(token, &claims).await;
        let answered = match &remote {
            Ok(()) => RemoteValidation::Valid,
            Err(status) if status.code() == Code::Unauthenticated => RemoteValidation::Invalid,
            Err(_) => RemoteValidation::Unavailable,
        };
        self.metrics.token_validated_remotely(answered);
        (outcome, remote.map(|()| claims))
    }

    /// `ValidateToken` for a token verified locally: its session must be live.
    async fn validate_remotely(&self, token: &str, claims: &Claims) -> Result<(), Status> {
        let answer = match self.identity.validate_token(token).await {
            Ok(answer) => answer,
            // Not the caller's fault: its token may be fine. Never tell it to throw it away.
            Err(status) if crate::identity::is_misconfigured(&status) => {
                return Err(Status::unavailable("token validation failed, retry later"));
            }
            Err(status) if status.code() == Code::Unauthenticated => return Err(invalid()),
            Err(status) if is_outage(&status) => {
                tracing::warn!(code = ?status.code(), "identity-service unreachable");
                return Err(Status::unavailable("identity-service is unavailable, retry later"));
            }
            Err(status) => {
                tracing::error!(code = ?status.code(), message = status.message(), "ValidateToken failed");
                return Err(Status::unavailable("token validation failed, retry later"));
            }
        };
        if answer.session_id != claims.session_id.to_string()
            || answer.user_id != claims.user_id.to_string()
        {
            tracing::error!("ValidateToken answered for another session than the token names");
            return Err(Status::unavailable("token validation failed, retry later"));
        }
        Ok(())
    }
}

/// The bearer token, parsed by the shared helper both services use.
fn bearer(headers: &http::HeaderMap) -> Result<&str, Status> {
    clinic_shared::auth::bearer_token_in_headers(headers)
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
                Err(status) => {
                    if status.code() == Code::Unauthenticated {
                        // Its tenant is whatever the caller claims: the service log, not a trail.
                        let peer = request
                            .extensions()
                            .get::<tonic::transport::server::TcpConnectInfo>()
                            .and_then(|i| i.remote_addr());
                        crate::audit::rejected::unauthenticated(
                            request.uri().path(),
                            peer,
                            status.code(),
                        );
                    }
                    Ok(status.into_http())
                }
            }
        })
    }
}
