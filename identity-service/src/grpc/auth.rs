//! `identity.v1.AuthService`: the public account API.

use std::sync::Arc;

use chrono::Utc;
use clinic_api::identity::v1::{self as pb, auth_service_server::AuthService};
use tonic::{Request, Response, Status};

use super::convert::{all3, both};
use crate::{
    accounts::{
        Email, Password, UserName, password_change,
        registration::{self, NewAccount},
    },
    error::Error,
    peer::{self, Peer},
    sessions::{
        login::{self, Credentials},
        rotation,
    },
    state::AppState,
    tokens::validate::{Principal, authenticate},
};

/// The AuthService implementation.
pub struct AuthApi {
    state: Arc<AppState>,
}

impl AuthApi {
    /// Serves from `state`.
    pub fn new(state: Arc<AppState>) -> Self {
        Self { state }
    }

    /// The client as abuse limits count it (see [`peer::client_address`]).
    fn peer<T>(&self, request: &Request<T>) -> Option<Peer> {
        let direct = request.remote_addr().map(|a| a.ip());
        peer::client_address(direct, request.metadata(), &self.state.config.trusted_proxies)
            .map(Peer::of)
    }

    async fn caller<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let token = clinic_shared::auth::bearer_token(request.metadata())?;
        let principal = authenticate(&self.state, token, Utc::now()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(principal.user.id));
        Ok(principal)
    }
}

impl TryFrom<pb::RegisterRequest> for NewAccount {
    type Error = Error;

    fn try_from(m: pb::RegisterRequest) -> Result<Self, Error> {
        let (email, name, password) = all3(
            Email::parse("email", &m.email),
            UserName::parse("name", &m.name),
            Password::parse("password", m.password),
        )?;
        Ok(NewAccount { email, name, password })
    }
}

impl TryFrom<pb::LoginRequest> for Credentials {
    type Error = Error;

    fn try_from(m: pb::LoginRequest) -> Result<Self, Error> {
        let (email, password) =
            both(Email::parse("email", &m.email), Password::bounded("password", m.password))?;
        Ok(Credentials { email, password })
    }
}

fn refresh_token(raw: &str) -> Result<&str, Error> {
    if raw.is_empty() || raw.len() > 512 {
        return Err(Error::invalid("refresh_token", "must be a refresh token from Login"));
    }
    Ok(raw)
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = self.peer(&request);
        let new = NewAccount::try_from(request.into_inner())?;
        let done = registration::register(&self.state, new, peer, Utc::now()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(done.user.id));
        Ok(Response::new(pb::RegisterResponse {
            user: Some(done.user.into()),
            verification_code: done.dev_code.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_email(
        &self,
        request: Request<pb::VerifyEmailRequest>,
    ) -> Result<Response<pb::VerifyEmailResponse>, Status> {
        let m = request.into_inner();
        let code = if m.code.trim().is_empty() || m.code.len() > 32 {
            Err(Error::invalid("code", "must be the code from the email"))
        } else {
            Ok(m.code.trim())
        };
        let (email, code) = both(Email::parse("email", &m.email), code)?;
        let user = registration::verify_email(&self.state, email, code, Utc::now()).await?;
        Ok(Response::new(pb::VerifyEmailResponse { user: Some(user.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn resend_verification_code(
        &self,
        request: Request<pb::ResendVerificationCodeRequest>,
    ) -> Result<Response<pb::ResendVerificationCodeResponse>, Status> {
        let peer = self.peer(&request);
        let email = Email::parse("email", &request.into_inner().email)?;
        registration::resend(&self.state, email, peer, Utc::now()).await?;
        Ok(Response::new(pb::ResendVerificationCodeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let peer = self.peer(&request);
        let credentials = Credentials::try_from(request.into_inner())?;
        let (tokens, user) = login::login(&self.state, credentials, peer, Utc::now()).await?;
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        Ok(Response::new(pb::LoginResponse {
            tokens: Some(tokens.into()),
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let m = request.into_inner();
        let pair =
            rotation::refresh(&self.state, refresh_token(&m.refresh_token)?, Utc::now()).await?;
        Ok(Response::new(pb::RefreshTokenResponse { tokens: Some(pair.into()) }))
    }

    #[tracing::instrument(skip_all)]
    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let m = request.into_inner();
        rotation::logout(&self.state, refresh_token(&m.refresh_token)?, Utc::now()).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn get_current_user(
        &self,
        request: Request<pb::GetCurrentUserRequest>,
    ) -> Result<Response<pb::GetCurrentUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        Ok(Response::new(pb::GetCurrentUserResponse { user: Some(caller.user.into()) }))
    }

    #[tracing::instrument(skip_all, fields(user_id = tracing::field::Empty))]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Result<Response<pb::ChangePasswordResponse>, Status> {
        let caller = self.caller(&request).await?;
        let m = request.into_inner();
        let (current, new) = both(
            Password::bounded("current_password", m.current_password),
            Password::parse("new_password", m.new_password),
        )?;
        let revoked =
            password_change::change_password(&self.state, &caller, current, new, Utc::now())
                .await?;
        Ok(Response::new(pb::ChangePasswordResponse {
            revoked_sessions: i32::try_from(revoked).unwrap_or(i32::MAX),
        }))
    }
}
