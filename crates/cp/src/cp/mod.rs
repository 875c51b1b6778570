//! `kuma-cp run`: opens the store, makes sure the `default` mesh exists,
//! binds every server's port up front (so a taken port ends the start
//! before anything serves), then serves until SIGTERM or SIGINT.

mod health;
#[cfg(feature = "kubernetes")]
mod kubernetes;

use crate::api::token_server::{self, PublicTlsError, TokenContext};
use crate::api::{self, ApiContext};
use crate::bootstrap::{self, BootstrapContext};
use crate::config::{Config, DpAuthType, StoreType};
use crate::metrics::Metrics;
use crate::resources::outside_mesh::OutsideMesh;
use crate::resources::{MeshSpec, Resource, ResourceKey, Spec};
use crate::runtime::{self, CancellationToken, Leadership, ListenError, TaskTracker, Transport};
use crate::security::control_plane_tls::ControlPlaneCert;
use crate::store::{SharedStore, StoreError, memory::MemoryStore};
use crate::xds::ads::AdsServer;
use crate::xds::auth::{DataplaneAuth, StreamAuth};
use crate::xds::cache::SnapshotCache;
use crate::xds::index::IndexHandle;
use crate::xds::insights::InsightWriter;
use crate::xds::reconciler::Reconciler;
use crate::xds::{ca_provisioner, feed};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum CpError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[cfg(feature = "universal")]
    #[error(transparent)]
    Postgres(#[from] crate::store::postgres::PostgresSetupError),
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kubernetes(#[from] crate::k8s::store::KubernetesStoreError),
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Injector(#[from] crate::injector::InjectorError),
    #[cfg(not(feature = "kubernetes"))]
    #[error("KUMA_INJECTOR_ENABLED needs the cargo feature \"kubernetes\"")]
    NoInjector,
    #[error("cannot create the default mesh: {0}")]
    DefaultMesh(#[source] StoreError),
    #[error("the public dataplane token server: {0}")]
    PublicTokenServer(#[from] PublicTlsError),
    #[error("the HTTPS API: {0}")]
    ApiHttps(#[from] api::https::ApiTlsError),
    #[error(transparent)]
    ControlPlaneTls(#[from] crate::security::control_plane_tls::ControlPlaneTlsError),
    #[cfg(not(feature = "kubernetes"))]
    #[error("dpServer.auth.type serviceAccountToken needs the cargo feature \"kubernetes\"")]
    NoServiceAccountAuth,
    #[error(
        "store type \"{0:?}\" is not available in this build (enable the cargo feature that provides it)"
    )]
    UnsupportedStore(StoreType),
}

/// The store, whether this control plane may write to it, and the
/// background work that keeps both.
pub struct Opened {
    pub store: SharedStore,
    pub leadership: Leadership,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Kubernetes mode: the API server client.
    #[cfg(feature = "kubernetes")]
    pub kube: Option<kube::Client>,
}

impl Opened {
    /// The API server client: the store's, or (a Kubernetes feature on
    /// another store) one from the in-cluster configuration or `KUBECONFIG`.
    #[cfg(feature = "kubernetes")]
    async fn kube_client(&self) -> Result<kube::Client, CpError> {
        match &self.kube {
            Some(client) => Ok(client.clone()),
            None => Ok(kube::Client::try_default()
                .await
                .map_err(crate::k8s::store::KubernetesStoreError::Config)?),
        }
    }

    fn single_writer(store: SharedStore) -> Opened {
        Opened {
            store,
            leadership: Leadership::always(),
            tasks: Vec::new(),
            #[cfg(feature = "kubernetes")]
            kube: None,
        }
    }
}

/// Opens the store the configuration names.
#[cfg_attr(not(feature = "kubernetes"), allow(unused_variables))]
pub async fn open_store(
    config: &Config,
    instance_id: &str,
    outside_mesh: &OutsideMesh,
    shutdown: &CancellationToken,
) -> Result<Opened, CpError> {
    match config.store.store_type {
        StoreType::Memory => Ok(Opened::single_writer(Arc::new(MemoryStore::new()))),
        #[cfg(feature = "universal")]
        StoreType::Postgres => {
            let store =
                crate::store::postgres::PostgresStore::connect(&config.store.postgres).await?;
            // Postgres replicas all write: every write is a
            // compare-and-swap in the database.
            Ok(Opened::single_writer(Arc::new(store)))
        }
        #[cfg(feature = "kubernetes")]
        StoreType::Kubernetes => {
            kubernetes::open(config, instance_id, outside_mesh, shutdown).await
        }
        #[allow(unreachable_patterns)]
        other => Err(CpError::UnsupportedStore(other)),
    }
}

/// Creates the `default` mesh unless it exists or the setting
/// `defaults.skipMeshCreation` says not to; with several replicas, the
/// leader does. Answers whether that is settled: false when the store
/// refused because this replica no longer leads.
async fn ensure_default_mesh(config: &Config, store: &SharedStore) -> Result<bool, CpError> {
    if config.defaults.skip_mesh_creation {
        return Ok(true);
    }
    let mesh = Resource::new(
        ResourceKey::mesh("default"),
        Spec::Mesh(MeshSpec::default()),
    );
    match store.create(mesh).await {
        Ok(_) => {
            tracing::info!("created the default mesh");
            Ok(true)
        }
        Err(StoreError::AlreadyExists(_)) => Ok(true),
        Err(StoreError::NotLeader(_)) => Ok(false),
        Err(e) => Err(CpError::DefaultMesh(e)),
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
) -> Result<Option<(runtime::Bound, rustls::ServerConfig)>, CpError> {
    let public = &config.dataplane_token_server.public;
    if !public.enabled {
        return Ok(None);
    }
    let tls = token_server::public_tls(public)?;
    let port = if public.port == 0 {
        local_port
    } else {
        public.port
    };
    let bound = runtime::bind_on(
        "dataplane token (public HTTPS)",
        "dataplaneTokenServer.public.port",
        &public.interface,
        port,
    )
    .await?;
    Ok(Some((bound, tls)))
}

/// What ADS and SDS streams must present.
#[cfg_attr(not(feature = "kubernetes"), allow(unused_variables))]
async fn stream_auth(config: &Config, opened: &Opened) -> Result<StreamAuth, CpError> {
    Ok(match config.dp_auth() {
        DpAuthType::None => StreamAuth::None,
        DpAuthType::DpToken | DpAuthType::Auto => StreamAuth::DataplaneToken,
        #[cfg(feature = "kubernetes")]
        DpAuthType::ServiceAccountToken => {
            StreamAuth::Verified(Box::new(crate::k8s::identity::ServiceAccountVerifier {
                client: opened.kube_client().await?,
            }))
        }
        #[cfg(not(feature = "kubernetes"))]
        DpAuthType::ServiceAccountToken => return Err(CpError::NoServiceAccountAuth),
    })
}

/// The sidecar injector, when `kuma-cp` serves it too
/// (`KUMA_INJECTOR_ENABLED`), bound and ready.
#[cfg(feature = "kubernetes")]
async fn injector(
    config: &Config,
    opened: &Opened,
    control_plane_cert: Option<&Arc<ControlPlaneCert>>,
) -> Result<
    Option<(
        crate::injector::Injector,
        (runtime::Bound, rustls::ServerConfig),
    )>,
    CpError,
> {
    if !config.injector.enabled {
        return Ok(None);
    }
    let bound = crate::injector::bind(&config.injector).await?;
    let mut injector_config = config.injector.clone();
    // Sidecars verify this control plane with its own CA unless told
    // another.
    if injector_config.control_plane.ca_cert_file.is_empty()
        && let Some(file) = control_plane_cert.and_then(|c| c.ca_file())
    {
        injector_config.control_plane.ca_cert_file = file.display().to_string();
    }
    let injector = crate::injector::Injector {
        config: injector_config,
        client: opened.kube_client().await?,
        system_namespace: config.system_namespace.clone(),
    };
    Ok(Some((injector, bound)))
}

/// Without the `kubernetes` feature there is no injector to serve.
#[cfg(not(feature = "kubernetes"))]
async fn injector(
    config: &Config,
    _opened: &Opened,
    _control_plane_cert: Option<&Arc<ControlPlaneCert>>,
) -> Result<(), CpError> {
    if config.injector.enabled {
        return Err(CpError::NoInjector);
    }
    Ok(())
}

/// A replica that is not the leader yet creates the default mesh once it is.
/// Runs `job` whenever this replica leads, until it reports done (`true`);
/// `false` (leadership lost meanwhile) or an error try again.
async fn when_leading<F, Fut, E>(
    mut leadership: Leadership,
    shutdown: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = leadership.acquired() => {}
        }
        match job().await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The bootstrap admin token ([`crate::security::users::ensure_admin_token`]).
async fn ensure_admin_token(
    store: &SharedStore,
) -> Result<bool, crate::security::users::UserTokenError> {
    match crate::security::users::ensure_admin_token(store.as_ref()).await {
        Ok(()) => Ok(true),
        Err(crate::security::users::UserTokenError::Store(StoreError::NotLeader(_))) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The certificate of the servers proxies talk to (ADS, SDS, bootstrap,
/// the local token server); none when `dpServer.insecurePlaintext` says
/// to serve them in plain text, which is logged as the risk it is.
fn control_plane_cert(
    config: &Config,
    xds_host: &str,
) -> Result<Option<Arc<ControlPlaneCert>>, CpError> {
    if config.dp_server.insecure_plaintext {
        tracing::warn!(
            "KUMA_DP_SERVER_INSECURE_PLAINTEXT is set: ADS, SDS, the bootstrap and the token server speak PLAIN TEXT, so every dataplane token and workload private key crosses the network readable by anyone on it; for local development only"
        );
        return Ok(None);
    }
    Ok(Some(ControlPlaneCert::load(&config.general, &[xds_host])?))
}

/// Runs the control plane until `stop` completes.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CpError> {
    let shutdown = CancellationToken::new();
    let instance_id = uuid::Uuid::new_v4().to_string();
    let outside_mesh = OutsideMesh::default();
    let opened = open_store(&config, &instance_id, &outside_mesh, &shutdown).await?;
    let store = opened.store.clone();
    // Decided once: leadership may come between here and the servers'
    // start, and then neither way would create the mesh.
    let settled = opened.leadership.is_leader() && ensure_default_mesh(&config, &store).await?;

    let xds_host = match config.bootstrap_server.params.xds_host.as_str() {
        "" => config.general.advertised_hostname.clone(),
        host => host.to_string(),
    };
    let control_plane_cert = control_plane_cert(&config, &xds_host)?;
    let api_listener = runtime::bind("HTTP API", "apiServer.port", config.api_server.port).await?;
    let health_listener = runtime::bind(
        "health",
        "xdsServer.diagnosticsPort",
        config.xds_server.diagnostics_port,
    )
    .await?;
    let xds_listener =
        runtime::bind("xDS", "xdsServer.grpcPort", config.xds_server.grpc_port).await?;
    let sds_listener =
        runtime::bind("SDS", "sdsServer.grpcPort", config.sds_server.grpc_port).await?;
    let bootstrap_listener = runtime::bind(
        "bootstrap",
        "bootstrapServer.port",
        config.bootstrap_server.port,
    )
    .await?;
    let token_listener = runtime::bind_on(
        "dataplane token",
        "dataplaneTokenServer.local.port",
        "127.0.0.1",
        config.dataplane_token_server.local.port,
    )
    .await?;
    let public_token_server = public_token_server(&config, token_listener.address.port()).await?;
    let https_api = if config.api_server.https.enabled {
        let tls = api::https::tls_config(
            &config.api_server,
            control_plane_cert.as_ref(),
            &config.general.advertised_hostname,
        )?;
        let bound = runtime::bind_on(
            "HTTP API (HTTPS)",
            "apiServer.https.port",
            &config.api_server.https.interface,
            config.api_server.https.port,
        )
        .await?;
        Some((bound, tls))
    } else {
        None
    };
    let https_has_gui_port = config.api_server.https.enabled
        && config.api_server.https.port == config.gui_server.port
        && config.gui_server.port != 0;
    let gui_listener = if https_has_gui_port {
        tracing::info!(
            port = config.gui_server.port,
            "the HTTPS API has guiServer.port and serves /gui/ there"
        );
        None
    } else {
        Some(runtime::bind("GUI redirect", "guiServer.port", config.gui_server.port).await?)
    };
    let authenticator = |certificates_are_admin| {
        Arc::new(api::authn::Authenticator {
            store: store.clone(),
            localhost_is_admin: config.api_server.authn.localhost_is_admin,
            certificates_are_admin,
        })
    };
    #[cfg(feature = "kubernetes")]
    let injector = injector(&config, &opened, control_plane_cert.as_ref()).await?;
    #[cfg(not(feature = "kubernetes"))]
    injector(&config, &opened, control_plane_cert.as_ref()).await?;

    let metrics = Arc::new(Metrics::new());
    let (cache, connected) = SnapshotCache::new();
    let index = IndexHandle::default();
    let insight_writers = TaskTracker::new();
    tracing::info!(
        instance_id,
        environment = ?config.environment,
        store = ?config.store.store_type,
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
            token_server_public: public_token_server.as_ref().map(|(bound, _)| {
                format!(
                    "https://{}:{}",
                    config.general.advertised_hostname,
                    bound.address.port()
                )
            }),
            metrics: metrics.clone(),
            outside_mesh,
            proxies: api::explain::Proxies {
                index: index.clone(),
                cache: cache.clone(),
            },
            authenticator: authenticator(false),
            dataplane_token_validity: Duration::from_secs(
                config.dataplane_token_server.token_validity_seconds,
            ),
            control_plane_ca: match &control_plane_cert {
                Some(cert) => cert.ca_pem().map(str::to_string).ok_or_else(|| {
                    "this control plane serves the certificate of KUMA_GENERAL_TLS_CERT_FILE: give kuma-dp the CA that signed it".to_string()
                }),
                None => Err("this control plane serves proxies in plain text (KUMA_DP_SERVER_INSECURE_PLAINTEXT): there is no CA to verify it with".to_string()),
            },
        },
        &api::Limits {
            max_body_bytes: config.api_server.max_request_body_bytes,
            max_concurrent_requests: config.api_server.max_concurrent_requests,
            request_timeout: std::time::Duration::from_millis(config.api_server.request_timeout_ms),
        },
    );
    let auth = Arc::new(DataplaneAuth {
        kind: stream_auth(&config, &opened).await?,
        index: index.clone(),
    });
    let bootstrap = bootstrap::router(BootstrapContext {
        index: index.clone(),
        auth: auth.clone(),
        xds_host,
        xds_tls: control_plane_cert.is_some(),
        xds_port: match config.bootstrap_server.params.xds_port {
            0 => xds_listener.address.port(),
            port => port,
        },
        api_type: config.bootstrap_server.xds_api_type,
    });
    // Pushing configuration frees most of what it allocates: hand it back
    // to the system once a burst is over.
    tokio::spawn(runtime::memory::release_after_bursts(
        Duration::from_secs(1),
        shutdown.clone(),
    ));
    let ads = AdsServer {
        cache: cache.clone(),
        index: index.clone(),
        insights: InsightWriter::start(
            store.clone(),
            Duration::from_millis(config.xds_server.insight_flush_interval_ms),
            shutdown.clone(),
            &insight_writers,
        ),
        metrics: metrics.clone(),
        instance_id,
        shutdown: shutdown.clone(),
        auth,
    };
    let (ads_service, sds_service) = ads.into_services();
    let reconciler = Reconciler {
        index: index.clone(),
        cache,
        metrics,
        debounce: Duration::from_millis(config.xds_server.debounce_ms),
        cert_validity: Duration::from_secs(config.sds_server.cert_validity_seconds),
        cert_renewal_margin: Duration::from_secs(config.sds_server.cert_renewal_margin_seconds),
    };
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();

    // What the servers proxies talk to speak (see control_plane_cert).
    let (proxies, token_local) = match &control_plane_cert {
        Some(cert) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()?));
            (
                Transport::Tls(acceptor.clone()),
                Transport::TlsOrPlain(acceptor),
            )
        }
        None => (Transport::Plain, Transport::Plain),
    };
    let mut servers = Vec::new();
    if let Some(cert) = &control_plane_cert {
        servers.push(tokio::spawn(cert.clone().keep_current(shutdown.clone())));
    }
    if let Some((bound, tls)) = https_api {
        servers.push(tokio::spawn(bound.serve_tls(
            tls,
            api.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(bound) = gui_listener {
        let to = api::gui::redirect_router(api_listener.address.port());
        servers.push(tokio::spawn(bound.serve(to, shutdown.clone())));
    }
    servers.extend([
        tokio::spawn(api_listener.serve(api, shutdown.clone())),
        tokio::spawn(health_listener.serve(health::router(store.clone()), shutdown.clone())),
        tokio::spawn(bootstrap_listener.serve_over(proxies.clone(), bootstrap, shutdown.clone())),
        tokio::spawn(token_listener.serve_over(
            token_local,
            token_server::router(token_context(&config, &store), authenticator(false)),
            shutdown.clone(),
        )),
        tokio::spawn(xds_listener.serve_grpc(ads_service, proxies.clone(), shutdown.clone())),
        tokio::spawn(sds_listener.serve_grpc(sds_service, proxies, shutdown.clone())),
        tokio::spawn(
            feed::universal(store.clone(), events_tx, shutdown.clone())
                .instrument(tracing::info_span!("feed")),
        ),
        tokio::spawn(
            reconciler
                .run(events, connected, shutdown.clone())
                .instrument(tracing::info_span!("reconciler")),
        ),
        tokio::spawn(
            ca_provisioner::run(
                store.clone(),
                index,
                opened.leadership.clone(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("ca_provisioner")),
        ),
    ]);
    if !settled {
        let (config, store) = (config.clone(), store.clone());
        servers.push(tokio::spawn(when_leading(
            opened.leadership.clone(),
            shutdown.clone(),
            move || {
                let (config, store) = (config.clone(), store.clone());
                async move { ensure_default_mesh(&config, &store).await }
            },
        )));
    }
    if config.api_server.authn.tokens.bootstrap_admin_token {
        let store = store.clone();
        servers.push(tokio::spawn(when_leading(
            opened.leadership.clone(),
            shutdown.clone(),
            move || {
                let store = store.clone();
                async move { ensure_admin_token(&store).await }
            },
        )));
    }
    servers.extend(opened.tasks);
    #[cfg(feature = "kubernetes")]
    if let Some((injector, bound)) = injector {
        servers.push(tokio::spawn(crate::injector::serve(
            injector,
            bound,
            shutdown.clone(),
        )));
    }
    if let Some((bound, tls)) = public_token_server {
        // Its client certificates are the admin's, as in Kuma.
        let router = token_server::router(token_context(&config, &store), authenticator(true));
        servers.push(tokio::spawn(bound.serve_tls(tls, router, shutdown.clone())));
    }
    stop.await;
    shutdown.cancel();
    // Requests in flight get a grace period; then the process exits anyway.
    let drained =
        tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(servers)).await;
    if drained.is_err() {
        tracing::warn!("servers did not finish within 10s of the stop signal");
    }
    // The insight writer's last writes leave each stream's subscription
    // marked disconnected.
    insight_writers.close();
    if tokio::time::timeout(Duration::from_secs(5), insight_writers.wait())
        .await
        .is_err()
    {
        tracing::warn!("insight writers did not finish within 5s");
    }
    tracing::info!("kuma-cp stopped");
    Ok(())
}
