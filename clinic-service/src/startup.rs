//! Building and running the server: bind first (port 0 allowed), then serve until a signal or
//! a [`ShutdownHandle`] stops it.

use std::{net::SocketAddr, sync::Arc};

use clinic_api::clinic::v1::{
    appointment_service_server::AppointmentServiceServer, audit_service_server::AuditServiceServer,
    member_service_server::MemberServiceServer,
    organization_service_server::OrganizationServiceServer,
    schedule_service_server::ScheduleServiceServer,
};
use clinic_shared::{
    metrics::{self as shared_metrics, grpc::GrpcMetrics},
    server::{self, Layers, Listener, ShutdownHandle},
};
use prometheus::Registry;
use tokio::net::TcpListener;
use tonic::transport::server::Router;
use tower::layer::util::Stack;

use crate::{
    appointments::AppointmentHandler,
    audit::{Audit, AuditTasks, grpc::AuditHandler},
    auth::{AuthLayer, Revocations, SigningKeys, TokenCache, TokenValidator},
    config::Config,
    error::Error,
    feed::{self, Feed},
    identity::IdentityClient,
    members::{MemberHandler, Members},
    metrics::{self, ServiceMetrics},
    organizations::OrganizationHandler,
    relay::Relay,
    schedules::ScheduleHandler,
    tenancy::{TenantAccess, migrations, spares},
};

/// Services reported by health (besides the server as a whole).
const SERVICES: &[&str] = &[
    "clinic.v1.OrganizationService",
    "clinic.v1.MemberService",
    "clinic.v1.AppointmentService",
    "clinic.v1.ScheduleService",
    "clinic.v1.AuditService",
];

/// A bound, ready-to-run clinic-service.
pub struct Application {
    address: SocketAddr,
    listener: Listener,
    router: Router<Stack<AuthLayer, Layers>>,
    /// The metrics listener, when `METRICS_ADDR` is set, and what it serves.
    metrics: Option<(TcpListener, SocketAddr)>,
    registry: Registry,
    health: tonic_health::server::HealthReporter,
    access: TenantAccess,
    relay: Relay,
    validator: Arc<TokenValidator>,
    revocations: Arc<Revocations>,
    feed: Feed,
    audit: AuditTasks,
    config: Config,
    shutdown: ShutdownHandle,
    stopped: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// Builds the shared state every service uses (its metrics registered nowhere; see
/// [`Application::build`]).
pub fn tenant_access(config: &Config) -> Result<TenantAccess, Error> {
    let metrics = ServiceMetrics::new().map_err(|e| Error::internal("metrics", e))?;
    tenant_access_with(config, metrics)
}

fn tenant_access_with(config: &Config, metrics: ServiceMetrics) -> Result<TenantAccess, Error> {
    let identity = IdentityClient::new(
        &config.identity_url,
        config.identity_tls.as_ref(),
        config.service_token.as_ref(),
        config.identity_timeout,
    )
    .map_err(Error::Internal)?;
    Ok(TenantAccess::new(config, identity, metrics))
}

impl Application {
    /// Binds `config.addr` and wires every service.
    pub async fn build(config: Config) -> Result<Self, Error> {
        if !config.audit.record_reads && config.mode == clinic_shared::config::Mode::Production {
            return Err(Error::Internal(
                "the audit trail cannot be turned off in production".into(),
            ));
        }
        let metrics_error = |e| Error::internal("metrics", e);
        let service_metrics = ServiceMetrics::new().map_err(metrics_error)?;
        let access = tenant_access_with(&config, service_metrics.clone())?;
        let identity = access.identity().clone();
        let keys =
            SigningKeys::new(identity.clone(), &config.jwt_issuer, config.signing_keys_refetch);
        let revocations = Arc::new(Revocations::new(config.revocation_stale_after));
        let validator = Arc::new(TokenValidator::new(
            identity,
            keys,
            revocations.clone(),
            TokenCache::new(config.token_cache_ttl, config.token_cache_capacity),
            service_metrics.clone(),
        ));
        let registry = Registry::new();
        let grpc_metrics = GrpcMetrics::register(&registry).map_err(metrics_error)?;
        metrics::register(&registry, &service_metrics, access.pools(), &revocations)
            .map_err(metrics_error)?;
        let (health, health_service) = tonic_health::server::health_reporter();
        let (reflection_v1, reflection_v1alpha) =
            server::reflection(SERVICES).map_err(|e| Error::internal("reflection", e))?;
        let limits = &config.limits;
        let (audit, audit_tasks) = Audit::new(&config.audit, access.metrics().clone());
        let organizations =
            OrganizationServiceServer::new(OrganizationHandler::new(access.clone(), audit.clone()))
                .max_decoding_message_size(limits.max_request_bytes)
                .max_encoding_message_size(limits.max_response_bytes);
        let relay = Relay::new(access.clone(), config.outbox_sweep_interval);
        let handler = Members { relay: relay.clone(), invitation_ttl: config.invitation_ttl };
        let members =
            MemberServiceServer::new(MemberHandler::new(access.clone(), handler, audit.clone()))
                .max_decoding_message_size(limits.max_request_bytes)
                .max_encoding_message_size(limits.max_response_bytes);
        let feed = Feed::new(access.clone(), validator.clone(), config.feed.clone());
        let appointments = AppointmentServiceServer::new(AppointmentHandler::new(
            access.clone(),
            feed.clone(),
            audit.clone(),
        ))
        .max_decoding_message_size(limits.max_request_bytes)
        .max_encoding_message_size(limits.max_response_bytes);
        let schedules =
            ScheduleServiceServer::new(ScheduleHandler::new(access.clone(), audit.clone()))
                .max_decoding_message_size(limits.max_request_bytes)
                .max_encoding_message_size(limits.max_response_bytes);
        let audit_trail = AuditServiceServer::new(AuditHandler::new(access.clone(), audit))
            .max_decoding_message_size(limits.max_request_bytes)
            .max_encoding_message_size(limits.max_response_bytes);
        // Requests beyond the limit are shed before their token is even checked.
        let router = server::builder(limits, grpc_metrics.layer(SERVICES))
            .layer(AuthLayer::new(validator.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(organizations)
            .add_service(members)
            .add_service(appointments)
            .add_service(schedules)
            .add_service(audit_trail);
        let (listener, address) =
            server::bind(config.addr).await.map_err(|e| Error::internal("bind", e))?;
        let listener = Listener::new(listener, config.tls.as_ref())
            .map_err(|e| Error::internal("TLS_CERT_FILE", e))?;
        let metrics = match config.metrics_addr {
            Some(addr) => Some(
                shared_metrics::endpoint::bind(addr)
                    .await
                    .map_err(|e| Error::internal("bind METRICS_ADDR", e))?,
            ),
            None => None,
        };
        let (shutdown, stopped) = ShutdownHandle::new();
        Ok(Self {
            address,
            listener,
            router,
            metrics,
            registry,
            health,
            access,
            relay,
            validator,
            revocations,
            feed,
            audit: audit_tasks,
            config,
            shutdown,
            stopped: Box::pin(stopped),
        })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The metrics listener's address (`/metrics`), when `METRICS_ADDR` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The registry `/metrics` serves.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A handle that stops the server gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The tenant access (for tests and tools).
    pub fn tenant_access(&self) -> TenantAccess {
        self.access.clone()
    }

    /// Serves until SIGINT/SIGTERM or the shutdown handle fires; migrates every tenant first
    /// when `MIGRATE_ON_START` is set.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        // Scrapes are answered from the start, start-up migrations included.
        let scrapes = self.metrics.map(|(listener, _)| {
            tokio::spawn(shared_metrics::endpoint::serve(
                listener,
                self.registry,
                self.shutdown.fired(),
            ))
        });
        if self.config.migrate_on_start {
            let migrated =
                migrations::migrate_all(&self.access, self.config.migration_concurrency).await;
            let results = match migrated {
                Ok(results) => results,
                Err(e) => {
                    // Not serving after all: the scrapes end too.
                    self.shutdown.shutdown();
                    return Err(e);
                }
            };
            let failed = results.iter().filter(|r| r.result.is_err()).count();
            tracing::info!(tenants = results.len(), failed, "start-up migrations done");
        }
        let stopped = self.stopped;
        let feed = self.feed.clone();
        let signal = async move {
            tokio::select! {
                _ = stopped => {},
                _ = server::os_shutdown_signal() => {},
            }
            // Watch streams never end on their own: end them now (UNAVAILABLE, so clients
            // reconnect elsewhere), or draining would wait for them forever.
            feed.shut_down();
        };
        // The audit trail's writer and sealer: stopped after the server has drained, so they
        // write, seal and checkpoint every event of the calls it answered.
        let (stop_audit, audit_stopped) = tokio::sync::oneshot::channel::<()>();
        let audit = tokio::spawn(self.audit.run(self.access.clone(), async move {
            let _ = audit_stopped.await;
        }));
        // The relay's background task runs while the server does and is joined after it.
        let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
        let relay = tokio::spawn(self.relay.run(async move {
            let _ = relay_stopped.await;
        }));
        // The keys that verify tokens, fetched now (again later when a token names a new one),
        // and the revocations followed while the server runs.
        let (validator, every) = (self.validator.clone(), self.config.signing_keys_refresh);
        let refresher = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                let _ = validator.keys().refetch().await;
            }
        });
        let (stop_follower, follower_stopped) = tokio::sync::oneshot::channel::<()>();
        let (revocations, identity) = (self.revocations.clone(), self.access.identity().clone());
        let follower = tokio::spawn(async move {
            revocations
                .follow(identity, async move {
                    let _ = follower_stopped.await;
                })
                .await;
        });
        // So does the spares' replenisher.
        let (stop_spares, spares_stopped) = tokio::sync::oneshot::channel::<()>();
        let replenisher = tokio::spawn(spares::run(
            self.access.clone(),
            self.config.spare_check_interval,
            async move {
                let _ = spares_stopped.await;
            },
        ));
        // And the feed's janitor.
        let (stop_janitor, janitor_stopped) = tokio::sync::oneshot::channel::<()>();
        let janitor = tokio::spawn(feed::janitor::run(
            self.access.clone(),
            self.config.feed.retention,
            self.config.feed.prune_every,
            async move {
                let _ = janitor_stopped.await;
            },
        ));
        let served = server::serve(
            self.router,
            self.listener,
            self.health,
            SERVICES,
            self.config.shutdown_grace,
            signal,
        )
        .await;
        let _ = stop_audit.send(());
        let _ = stop_relay.send(());
        let _ = stop_follower.send(());
        let _ = stop_spares.send(());
        let _ = stop_janitor.send(());
        self.feed.shut_down();
        let _ = audit.await;
        let _ = relay.await;
        let _ = follower.await;
        let _ = replenisher.await;
        let _ = janitor.await;
        refresher.abort();
        // The scrapes end with the shutdown handle; a signal stops the server without it.
        self.shutdown.shutdown();
        if let Some(scrapes) = scrapes {
            let _ = scrapes.await;
        }
        served.map_err(|e| Error::internal("serve", e))
    }
}
