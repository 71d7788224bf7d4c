//! Building and running the server: bind first (port 0 allowed), then serve until a signal or
//! the shutdown handle fires.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use clinic_api::identity::v1::{
    auth_service_server::{self, AuthServiceServer},
    directory_service_server::{self, DirectoryServiceServer},
    token_service_server::{self, TokenServiceServer},
};
use clinic_shared::{
    auth::RequireServiceToken,
    config::Mode,
    server::{self, ShutdownHandle},
};
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::{
    accounts::{password::Passwords, verification::CodeKey},
    config::Config,
    db,
    error::Error,
    grpc::{auth::AuthApi, directory::DirectoryApi, token::TokenApi},
    mail,
    state::AppState,
    throttle::Throttle,
    tokens::jwt::{self, AccessTokens},
};

/// The services whose health is reported.
static SERVICE_NAMES: [&str; 3] = [
    auth_service_server::SERVICE_NAME,
    token_service_server::SERVICE_NAME,
    directory_service_server::SERVICE_NAME,
];

/// A bound, ready-to-run identity-service.
pub struct Application {
    listener: TcpListener,
    address: SocketAddr,
    state: Arc<AppState>,
    shutdown: ShutdownHandle,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Application {
    /// Connects, migrates, loads keys and binds.
    pub async fn build(config: Config) -> Result<Application, Error> {
        let pool = db::prepare(&config).await?;
        let key = match (&config.jwt_private_key_file, config.mode) {
            (Some(path), _) => jwt::load_key(path)?,
            (None, Mode::Development) => {
                tracing::warn!("development mode: signing access tokens with a generated key");
                jwt::generate_key()
            }
            (None, Mode::Production) => {
                return Err(Error::internal("JWT_PRIVATE_KEY_FILE is required in production"));
            }
        };
        if config.service_token.is_none() {
            tracing::warn!("SERVICE_TOKEN unset: internal RPCs will be refused");
        }
        let access_tokens =
            AccessTokens::new(&key, config.jwt_issuer.clone(), config.access_token_ttl)?;
        let code_key = CodeKey::derive(key.as_bytes());
        let passwords =
            tokio::task::spawn_blocking(Passwords::new).await.map_err(Error::internal)??;
        let mailer = mail::from_config(&config.mail)?;
        let (listener, address) = server::bind(config.addr).await?;
        let (shutdown, fired) = ShutdownHandle::new();
        let state = AppState {
            db: pool,
            throttle: Throttle::new(config.throttle.clone()),
            config,
            passwords,
            access_tokens,
            code_key,
            mailer,
            background: Default::default(),
        };
        Ok(Application {
            listener,
            address,
            state: Arc::new(state),
            shutdown,
            stopped: Box::pin(fired),
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A handle that stops the server like SIGTERM would.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until SIGINT/SIGTERM or the shutdown handle; then drains.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        let state = self.state;
        let (health, health_service) = tonic_health::server::health_reporter();
        let (reflection_v1, reflection_v1alpha) =
            server::reflection(&SERVICE_NAMES).map_err(Error::internal)?;
        let guard = RequireServiceToken::new(state.config.service_token.clone());
        let router = server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(AuthServiceServer::new(AuthApi::new(state.clone())))
            .add_service(InterceptedService::new(
                TokenServiceServer::new(TokenApi::new(state.clone())),
                guard.clone(),
            ))
            .add_service(InterceptedService::new(
                DirectoryServiceServer::new(DirectoryApi::new(state.clone())),
                guard,
            ));
        let stopped = self.stopped;
        let shutdown = async move {
            tokio::select! {
                _ = server::os_shutdown_signal() => {}
                _ = stopped => {}
            }
        };
        tracing::info!(address = %self.address, "identity-service serving");
        server::serve(
            router,
            self.listener,
            health,
            &SERVICE_NAMES,
            state.config.shutdown_grace,
            shutdown,
        )
        .await?;
        state.join_background(Duration::from_secs(10)).await;
        state.db.close();
        tracing::info!("identity-service stopped");
        Ok(())
    }
}
