//! Building and running the server: bind both listeners first (port 0 allowed), then serve until
//! a signal or the shutdown handle fires.
//!
//! The public listener serves `AuthService` (the one port to publish); the internal listener
//! serves `TokenService` and `DirectoryService` to clinic-service behind the service credential.
//! Both serve health and reflection, each advertising only its own services.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clinic_api::identity::v1::{
    auth_service_server::{self, AuthServiceServer},
    directory_service_server::{self, DirectoryServiceServer},
    token_service_server::{self, TokenServiceServer},
};
use clinic_shared::{
    auth::RequireServiceCredential,
    config::Mode,
    metrics::{self, grpc::GrpcMetrics},
    server::{self, Listener, ShutdownHandle},
};
use prometheus::Registry;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;

use crate::{
    accounts::{password::Passwords, verification::CodeKey},
    config::Config,
    db,
    error::Error,
    grpc::{auth::AuthApi, directory::DirectoryApi, token::TokenApi},
    janitor, mail,
    state::AppState,
    throttle::Throttle,
    tokens::{
        jwt::{self, AccessTokens},
        keyring::{self, KeyRing},
        refresh::SuccessorKey,
    },
};

/// The services of the public listener.
static PUBLIC_SERVICES: [&str; 1] = [auth_service_server::SERVICE_NAME];

/// The services of the internal listener.
static INTERNAL_SERVICES: [&str; 2] =
    [token_service_server::SERVICE_NAME, directory_service_server::SERVICE_NAME];

/// A bound, ready-to-run identity-service.
pub struct Application {
    public: (Listener, SocketAddr),
    internal: (Listener, SocketAddr),
    /// The metrics listener, when `METRICS_ADDR` is set.
    metrics: Option<(TcpListener, SocketAddr)>,
    registry: Registry,
    grpc_metrics: GrpcMetrics,
    state: Arc<AppState>,
    shutdown: ShutdownHandle,
}

impl Application {
    /// Connects, migrates, loads keys and binds both listeners.
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
        if config.revocation_retention < config.access_token_ttl {
            return Err(Error::internal(
                "REVOCATION_RETENTION_SECS must be at least ACCESS_TOKEN_TTL_SECS",
            ));
        }
        // Secrets derived from a key that outlives rotations (see TOKEN_SECRETS_KEY_FILE).
        let secrets_seed = match &config.token_secrets_key_file {
            Some(path) => jwt::load_key(path)?.to_bytes(),
            None => key.to_bytes(),
        };
        let code_key = CodeKey::derive(&secrets_seed);
        let successor_key = SuccessorKey::derive(&secrets_seed);
        let verify_only = config
            .jwt_verify_keys
            .iter()
            .map(keyring::load_public)
            .collect::<Result<Vec<_>, _>>()?;
        let ring = KeyRing::new(key, verify_only);
        tracing::info!(
            signing_kid = ring.signing_kid(),
            keys = ring.keys.len(),
            "access-token keys loaded"
        );
        let access_tokens =
            AccessTokens::new(ring, config.jwt_issuer.clone(), config.access_token_ttl)?;
        let (workers, queue, priority) =
            (config.hash_workers, config.hash_queue, config.hash_worker_priority);
        let passwords =
            tokio::task::spawn_blocking(move || Passwords::new(workers, queue, priority))
                .await
                .map_err(Error::internal)??;
        let mailer = mail::from_config(&config.mail)?;
        // The internal listener may also require client certificates (mutual TLS).
        let internal_tls = match (&config.tls, &config.internal_client_ca) {
            (Some(tls), Some(ca)) => Some(tls.clone().with_client_ca(ca)),
            (tls, _) => tls.clone(),
        };
        let (listener, public_address) = server::bind(config.addr).await?;
        let public = Listener::new(listener, config.tls.as_ref()).map_err(Error::internal)?;
        let (listener, internal_address) = server::bind(config.internal_addr).await?;
        let internal = Listener::new(listener, internal_tls.as_ref()).map_err(Error::internal)?;
        let (public, internal) = ((public, public_address), (internal, internal_address));
        let metrics = match config.metrics_addr {
            Some(addr) => Some(metrics::endpoint::bind(addr).await?),
            None => None,
        };
        let registry = Registry::new();
        let grpc_metrics = GrpcMetrics::register(&registry).map_err(Error::internal)?;
        let throttle = Throttle::new(config.throttle.clone())
            .with_metrics(&registry)
            .map_err(Error::internal)?;
        let (shutdown, _) = ShutdownHandle::new();
        let state = AppState {
            revoked: tokio::sync::watch::Sender::new(()),
            shutdown: shutdown.clone(),
            db: pool,
            throttle,
            config,
            passwords,
            access_tokens,
            code_key,
            successor_key,
            mailer,
            background: Default::default(),
        };
        Ok(Application {
            public,
            internal,
            metrics,
            registry,
            grpc_metrics,
            state: Arc::new(state),
            shutdown,
        })
    }

    /// The public listener's address (`AuthService`).
    pub fn address(&self) -> SocketAddr {
        self.public.1
    }

    /// The internal listener's address (`TokenService`, `DirectoryService`).
    pub fn internal_address(&self) -> SocketAddr {
        self.internal.1
    }

    /// The metrics listener's address (`/metrics`), when `METRICS_ADDR` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A handle that stops the server like SIGTERM would.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until SIGINT/SIGTERM or the shutdown handle; then drains both listeners.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        let state = self.state;
        let limits = &state.config.limits;
        let grace = state.config.shutdown_grace;
        let handle = self.shutdown.clone();
        let signals = tokio::spawn({
            let fired = handle.fired();
            async move {
                tokio::select! {
                    _ = server::os_shutdown_signal() => handle.shutdown(),
                    _ = fired => {}
                }
            }
        });
        let janitor = tokio::spawn(janitor::run(state.clone(), self.shutdown.fired()));
        let metrics_address = self.metrics.as_ref().map(|(_, addr)| *addr);
        let scrapes = self.metrics.map(|(listener, _)| {
            tokio::spawn(metrics::endpoint::serve(listener, self.registry, self.shutdown.fired()))
        });

        let (health, health_service) = tonic_health::server::health_reporter();
        let (reflection_v1, reflection_v1alpha) =
            server::reflection(&PUBLIC_SERVICES).map_err(Error::internal)?;
        let auth = AuthServiceServer::new(AuthApi::new(state.clone()))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(limits.max_response_bytes);
        let public = server::builder(limits, self.grpc_metrics.layer(&PUBLIC_SERVICES))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(auth);
        let public = server::serve(
            public,
            self.public.0,
            health,
            &PUBLIC_SERVICES,
            grace,
            self.shutdown.fired(),
        );

        let (internal_health, internal_health_service) = tonic_health::server::health_reporter();
        let (reflection_v1, reflection_v1alpha) =
            server::reflection(&INTERNAL_SERVICES).map_err(Error::internal)?;
        let guard = RequireServiceCredential::new(
            state.config.service_token.clone(),
            state.config.internal_client_names.clone(),
        );
        let tokens = TokenServiceServer::new(TokenApi::new(state.clone()))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(limits.max_response_bytes);
        let directory = DirectoryServiceServer::new(DirectoryApi::new(state.clone()))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(limits.max_response_bytes);
        let internal = server::builder(limits, self.grpc_metrics.layer(&INTERNAL_SERVICES))
            .add_service(internal_health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(InterceptedService::new(tokens, guard.clone()))
            .add_service(InterceptedService::new(directory, guard));
        let internal = server::serve(
            internal,
            self.internal.0,
            internal_health,
            &INTERNAL_SERVICES,
            grace,
            self.shutdown.fired(),
        );

        tracing::info!(
            public = %self.public.1,
            internal = %self.internal.1,
            metrics = ?metrics_address,
            "identity-service serving"
        );
        let served = tokio::try_join!(public, internal);
        // Either listener failing stops the other too.
        self.shutdown.shutdown();
        signals.abort();
        let _ = janitor.await;
        if let Some(scrapes) = scrapes {
            let _ = scrapes.await;
        }
        state.join_background(Duration::from_secs(10)).await;
        state.db.close();
        served?;
        tracing::info!("identity-service stopped");
        Ok(())
    }
}
