//! `kuma-cp run`: opens the store, makes sure the `default` mesh exists,
//! binds every server's port up front (so a taken port ends the start
//! before anything serves), then serves until SIGTERM or SIGINT.

mod health;
mod listen;

pub use listen::Bound;

use crate::api::{self, ApiContext};
use crate::bootstrap::{self, BootstrapContext};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::resources::{MeshSpec, Resource, ResourceKey, Spec};
use crate::security::token_server::{self, TokenContext};
use crate::store::{SharedStore, StoreError, memory::MemoryStore};
use crate::xds::ads::AdsServer;
use crate::xds::cache::SnapshotCache;
use crate::xds::reconciler::Reconciler;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum CpError {
    #[error("{0}")]
    Listen(String),
    #[error("{0}")]
    Store(String),
    #[error(
        "store type \"{0}\" is not available in this build (enable the cargo feature that provides it)"
    )]
    UnsupportedStore(String),
}

/// Opens the store the configuration names.
pub async fn open_store(config: &Config) -> Result<SharedStore, CpError> {
    match config.store.store_type.as_str() {
        "memory" => Ok(Arc::new(MemoryStore::new())),
        #[cfg(feature = "universal")]
        "postgres" => crate::store::postgres::PostgresStore::connect(&config.store.postgres)
            .await
            .map(|s| Arc::new(s) as SharedStore)
            .map_err(|e| CpError::Store(e.to_string())),
        other => Err(CpError::UnsupportedStore(other.to_string())),
    }
}

/// Creates the `default` mesh unless it exists or the setting
/// `defaults.skipMeshCreation` says not to.
async fn ensure_default_mesh(config: &Config, store: &SharedStore) -> Result<(), CpError> {
    if config.defaults.skip_mesh_creation {
        return Ok(());
    }
    let mesh = Resource::new(
        ResourceKey::mesh("default"),
        Spec::Mesh(MeshSpec::default()),
    );
    match store.create(mesh).await {
        Ok(_) => {
            tracing::info!("created the default mesh");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(CpError::Store(format!(
            "cannot create the default mesh: {e}"
        ))),
    }
}

/// A signal every server watches; it flips once, to stop.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Completes when shutdown was asked for (or its sender is gone).
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the servers are still starting is not lost (nor fatal).
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
                    _ = int.recv() => tracing::info!("SIGINT received, stopping"),
                }
            }
            _ => {
                // Without signal handlers the process still stops on ^C.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

fn token_context(config: &Config, store: &SharedStore) -> TokenContext {
    TokenContext {
        store: store.clone(),
        default_validity: Duration::from_secs(config.dataplane_token_server.token_validity_seconds),
    }
}

/// The public HTTPS token server's socket and TLS, when it is enabled. Its
/// port defaults to the local server's.
async fn public_token_server(
    config: &Config,
    local_port: u16,
) -> Result<Option<(tokio::net::TcpListener, rustls::ServerConfig)>, CpError> {
    let public = &config.dataplane_token_server.public;
    if !public.enabled {
        return Ok(None);
    }
    let tls = token_server::public_tls(public).map_err(CpError::Listen)?;
    let interface = &public.interface;
    let port = if public.port == 0 {
        local_port
    } else {
        public.port
    };
    let bound = listen::bind_on(
        "dataplane token (public HTTPS)",
        "dataplaneTokenServer.public.port",
        interface,
        port,
    )
    .await?;
    Ok(Some((bound.listener, tls)))
}

/// Runs the control plane until `stop` completes.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CpError> {
    let store = open_store(&config).await?;
    ensure_default_mesh(&config, &store).await?;

    let api_listener = listen::bind("HTTP API", "apiServer.port", config.api_server.port).await?;
    let health_listener = listen::bind(
        "health",
        "xdsServer.diagnosticsPort",
        config.xds_server.diagnostics_port,
    )
    .await?;

    let xds_listener =
        listen::bind("xDS", "xdsServer.grpcPort", config.xds_server.grpc_port).await?;
    let sds_listener =
        listen::bind("SDS", "sdsServer.grpcPort", config.sds_server.grpc_port).await?;
    let bootstrap_listener = listen::bind(
        "bootstrap",
        "bootstrapServer.port",
        config.bootstrap_server.port,
    )
    .await?;

    let (stop_tx, shutdown) = Shutdown::new();
    let token_listener = listen::bind_on(
        "dataplane token",
        "dataplaneTokenServer.local.port",
        "127.0.0.1",
        config.dataplane_token_server.local.port,
    )
    .await?;
    let public_token_server = public_token_server(&config, token_listener.address.port()).await?;
    let instance_id = uuid::Uuid::new_v4().to_string();
    let metrics = Arc::new(Metrics::new());
    let (cache, connected) = SnapshotCache::new();
    let insight_writers = Arc::new(());
    tracing::info!(
        instance_id,
        environment = config.environment,
        store = config.store.store_type,
        "kuma-cp started"
    );
    let api = api::router(
        ApiContext {
            store: store.clone(),
            read_only: config.api_read_only(),
            default_page_size: config.api_server.default_page_size,
            max_page_size: config.api_server.max_page_size,
            instance_id: instance_id.clone(),
            hostname: config.general.advertised_hostname.clone(),
            token_server_local: format!("http://127.0.0.1:{}", token_listener.address.port()),
            token_server_public: public_token_server.as_ref().and_then(|(l, _)| {
                let port = l.local_addr().ok()?.port();
                Some(format!(
                    "https://{}:{port}",
                    config.general.advertised_hostname
                ))
            }),
            metrics: metrics.clone(),
        },
        config.api_server.max_request_body_bytes,
    );
    let bootstrap = bootstrap::router(BootstrapContext {
        store: store.clone(),
        xds_host: config.general.advertised_hostname.clone(),
        xds_port: xds_listener.address.port(),
        api_type: config.bootstrap_server.xds_api_type.clone(),
    });
    let ads = AdsServer {
        cache: cache.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        instance_id,
        shutdown: shutdown.clone(),
        insight_writers: insight_writers.clone(),
        require_token: config.dp_server.auth.auth_type == "dpToken",
        insight_flush_interval: Duration::from_millis(config.xds_server.insight_flush_interval_ms),
    };
    let (ads_service, sds_service) = ads.into_services();
    let reconciler = Reconciler {
        store: store.clone(),
        cache,
        metrics,
        debounce: Duration::from_millis(config.xds_server.debounce_ms),
        cert_validity: Duration::from_secs(config.sds_server.cert_validity_seconds),
        cert_renewal_margin: Duration::from_secs(config.sds_server.cert_renewal_margin_seconds),
    };

    let servers = vec![
        tokio::spawn(api_listener.serve(api, shutdown.clone())),
        tokio::spawn(health_listener.serve(health::router(store.clone()), shutdown.clone())),
        tokio::spawn(bootstrap_listener.serve(bootstrap, shutdown.clone())),
        tokio::spawn(token_listener.serve(
            token_server::router(token_context(&config, &store)),
            shutdown.clone(),
        )),
        tokio::spawn(xds_listener.serve_grpc(ads_service, shutdown.clone())),
        tokio::spawn(sds_listener.serve_grpc(sds_service, shutdown.clone())),
        tokio::spawn(reconciler.run(connected, shutdown.clone())),
    ];
    let mut servers = servers;
    if let Some((listener, tls)) = public_token_server {
        let router = token_server::router(token_context(&config, &store));
        servers.push(tokio::spawn(token_server::serve_tls(
            listener,
            tls,
            router,
            shutdown.clone().wait(),
        )));
    }
    stop.await;
    let _ = stop_tx.send(true);
    // Requests in flight get a grace period; then the process exits anyway.
    let drained =
        tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(servers)).await;
    if drained.is_err() {
        tracing::warn!("servers did not finish within 10s of the stop signal");
    }
    crate::xds::ads::wait_for_insight_writers(&insight_writers, Duration::from_secs(5)).await;
    tracing::info!("kuma-cp stopped");
    Ok(())
}
