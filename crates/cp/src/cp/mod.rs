//! `kuma-cp run`: opens the store, builds the parts every component
//! shares, binds every component of the mode (so a taken port ends the
//! start before anything serves), then serves until SIGTERM or SIGINT.

mod component;
mod components;
pub mod config;
#[cfg(feature = "kubernetes")]
mod kubernetes;
mod leader_jobs;
mod opened;
mod shared;

use crate::api::https::ApiTlsError;
use crate::api::token_server::PublicTlsError;
use crate::runtime::{self, ListenError};
use crate::security::control_plane_tls::ControlPlaneTlsError;
use crate::store::StoreError;
use component::{Component, Task, Tasks};
use components::api::{ApiServer, Surroundings};
use components::bootstrap::Bootstrap;
use components::control_plane_cert::CertRenewal;
use components::gui::GuiRedirect;
use components::health::Health;
use components::token_server::TokenServers;
use components::xds::Xds;
use config::{Config, StoreType};
use leader_jobs::LeaderJob;
use shared::{Opening, Shared};
use std::time::Duration;

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
    #[error("cannot create the default mesh: {0}")]
    DefaultMesh(#[source] StoreError),
    #[error("the public dataplane token server: {0}")]
    PublicTokenServer(#[from] PublicTlsError),
    #[error("the HTTPS API: {0}")]
    ApiHttps(#[from] ApiTlsError),
    #[error(transparent)]
    ControlPlaneTls(#[from] ControlPlaneTlsError),
    #[cfg(not(feature = "kubernetes"))]
    #[error("dpServer.auth.type serviceAccountToken needs the cargo feature \"kubernetes\"")]
    NoServiceAccountAuth,
    #[error(
        "store type \"{0:?}\" is not available in this build (enable the cargo feature that provides it)"
    )]
    UnsupportedStore(StoreType),
}

/// Runs the control plane until `stop` completes.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), CpError> {
    let (shared, opening) = Shared::open(&config).await?;
    let components = components(&config, &shared, opening).await?;
    tracing::info!(
        instance_id = shared.instance_id,
        environment = ?config.environment,
        store = ?config.store.store_type,
        "kuma-cp started"
    );
    let tasks: Vec<_> = components
        .into_iter()
        .flat_map(|component| {
            tracing::debug!(component = component.name(), "starting");
            component.start(shared.shutdown.clone())
        })
        .map(tokio::spawn)
        .collect();
    stop.await;
    drain(&shared, tasks).await;
    tracing::info!("kuma-cp stopped");
    Ok(())
}

/// The components of the mode the configuration chooses, bound in the
/// order their neighbours need (the API names the token servers'
/// addresses, the bootstrap the ADS port).
async fn components(
    config: &Config,
    shared: &Shared,
    opening: Opening,
) -> Result<Vec<Box<dyn Component>>, CpError> {
    let api_settings = &config.api_server;
    let tokens = TokenServers::bind(
        &config.dataplane_token_server,
        api_settings.authn.localhost_is_admin,
        shared,
    )
    .await?;
    let around = Surroundings {
        read_only: config.api_read_only(),
        hostname: &config.general.advertised_hostname,
        token_servers: &tokens,
        dataplane_token_validity: Duration::from_secs(
            config.dataplane_token_server.token_validity_seconds,
        ),
    };
    let api = ApiServer::bind(api_settings, &around, shared).await?;
    let gui = GuiRedirect::bind(&config.gui_server, &api_settings.https, api.port()).await?;
    let health = Health::bind(config.xds_server.diagnostics_port, shared.store.clone()).await?;
    let xds = Xds::bind(
        &config.xds_server,
        &config.sds_server,
        opening.connected,
        shared,
    )
    .await?;
    let bootstrap = Bootstrap::bind(
        &config.bootstrap_server,
        config.xds_host(),
        xds.ads_port(),
        shared,
    )
    .await?;
    let mut all: Vec<Box<dyn Component>> = vec![
        Box::new(api),
        Box::new(health),
        Box::new(bootstrap),
        Box::new(tokens),
        Box::new(xds),
        Box::new(Tasks {
            name: "store",
            tasks: opening.store_tasks,
        }),
        Box::new(memory_release(&shared.shutdown)),
    ];
    all.extend(gui.map(|g| Box::new(g) as Box<dyn Component>));
    if let Some(cert) = &shared.control_plane_cert {
        all.push(Box::new(CertRenewal(cert.clone())));
    }
    #[cfg(feature = "kubernetes")]
    if let Some(injector) = components::injector::InjectorServer::bind(
        &config.injector,
        &config.system_namespace,
        shared,
    )
    .await?
    {
        all.push(Box::new(injector));
    }
    all.extend(leader_jobs(config, shared, opening.default_mesh_settled));
    Ok(all)
}

/// What the leader does once: the `default` mesh unless settled at start,
/// the bootstrap admin token when configured.
fn leader_jobs(config: &Config, shared: &Shared, mesh_settled: bool) -> Vec<Box<dyn Component>> {
    let mut jobs: Vec<Box<dyn Component>> = Vec::new();
    if !mesh_settled {
        jobs.push(Box::new(LeaderJob::default_mesh(
            shared.store.clone(),
            shared.leadership.clone(),
        )));
    }
    if config.api_server.authn.tokens.bootstrap_admin_token {
        jobs.push(Box::new(LeaderJob::admin_token(
            shared.store.clone(),
            shared.leadership.clone(),
        )));
    }
    jobs
}

/// Pushing configuration frees most of what it allocates: hand it back to
/// the system once a burst is over.
fn memory_release(shutdown: &runtime::CancellationToken) -> Tasks {
    let task: Task = Box::pin(runtime::memory::release_after_bursts(
        Duration::from_secs(1),
        shutdown.clone(),
    ));
    Tasks {
        name: "memory_release",
        tasks: vec![task],
    }
}

/// Stops every task: requests in flight get a grace period, then the
/// process exits anyway; the insight writers' last writes leave each
/// stream's subscription marked disconnected.
async fn drain(shared: &Shared, tasks: Vec<tokio::task::JoinHandle<()>>) {
    shared.shutdown.cancel();
    let drained =
        tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(tasks)).await;
    if drained.is_err() {
        tracing::warn!("servers did not finish within 10s of the stop signal");
    }
    shared.insight_writers.close();
    if tokio::time::timeout(Duration::from_secs(5), shared.insight_writers.wait())
        .await
        .is_err()
    {
        tracing::warn!("insight writers did not finish within 5s");
    }
}
