//! `identity.v1.TokenService`: internal access-token validation, the public keys that verify
//! access tokens, and the stream of revoked sessions.

use std::sync::Arc;

use chrono::Utc;
use clinic_api::identity::v1::{self as pb, token_service_server::TokenService};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{convert::timestamp, watch};
use crate::{error::Error, state::AppState, tokens::validate::authenticate};

/// The TokenService implementation (behind the service-token interceptor).
pub struct TokenApi {
    state: Arc<AppState>,
}

impl TokenApi {
    /// Serves from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl TokenService for TokenApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let m = request.into_inner();
        if m.access_token.is_empty() {
            return Err(Error::invalid("access_token", "is required").into());
        }
        let p = authenticate(&self.state, &m.access_token, Utc::now()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(p.user.id));
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: p.user.id.to_string(),
            email: p.user.email,
            name: p.user.name,
            email_verified: p.user.is_verified,
            session_id: p.session_id.to_string(),
            expire_time: Some(timestamp(p.expires_at)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        let keys = self
            .state
            .access_tokens
            .published_keys(Utc::now())
            .map(|k| pb::SigningKey {
                kid: k.kid.clone(),
                algorithm: "EdDSA".to_owned(),
                public_key: k.key.as_bytes().to_vec(),
                verify_until: k.verify_until.map(timestamp),
            })
            .collect();
        Ok(Response::new(pb::ListSigningKeysResponse { keys }))
    }

    type WatchRevocationsStream = ReceiverStream<Result<pb::WatchRevocationsResponse, Status>>;

    #[tracing::instrument(skip_all)]
    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        let position = watch::start(&self.state, &request.into_inner().resume_token).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(watch::run(self.state.clone(), position, tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
