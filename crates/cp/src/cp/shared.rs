//! What every component of the control plane shares: the store and this
//! replica's leadership over it, the index and snapshot cache that
//! connect the store to the proxies, the certificate of the servers
//! proxies talk to, how their streams authenticate, and the shutdown
//! signal.

use super::CpError;
use super::config::{Config, StoreType};
use super::leader_jobs::ensure_default_mesh;
use super::opened::Opened;
use crate::metrics::Metrics;
use crate::resources::outside_mesh::OutsideMesh;
use crate::runtime::{CancellationToken, Leadership, TaskTracker, Transport};
use crate::security::control_plane_tls::ControlPlaneCert;
use crate::store::{SharedStore, memory::MemoryStore};
use crate::xds::auth::{DataplaneAuth, StreamAuth};
use crate::xds::cache::SnapshotCache;
use crate::xds::index::{IndexHandle, ProxyId};
use crate::xds::settings::DpAuthType;
use std::sync::Arc;

pub struct Shared {
    pub store: SharedStore,
    /// Whether this replica may write: always, but for Kubernetes replicas
    /// that are not the elected leader.
    pub leadership: Leadership,
    pub index: IndexHandle,
    pub cache: Arc<SnapshotCache>,
    pub metrics: Arc<Metrics>,
    pub instance_id: String,
    /// Kubernetes: pods that should be in a mesh and have no sidecar.
    pub outside_mesh: OutsideMesh,
    /// The certificate of ADS, SDS, the bootstrap and the token server;
    /// none when they speak plain text (`dpServer.insecurePlaintext`).
    pub control_plane_cert: Option<Arc<ControlPlaneCert>>,
    /// What ADS, SDS and the bootstrap speak: TLS with that certificate,
    /// or plain text.
    pub proxy_transport: Transport,
    /// What the local token server speaks: TLS, and plain text too, since
    /// it listens on loopback only, where `kumactl` asks it over plain
    /// HTTP.
    pub token_transport: Transport,
    /// What ADS and SDS streams (and bootstrap requests) must present.
    pub auth: Arc<DataplaneAuth>,
    /// The insight writers, which finish after the streams that feed them.
    pub insight_writers: TaskTracker,
    pub shutdown: CancellationToken,
    /// Kubernetes: the API server client.
    #[cfg(feature = "kubernetes")]
    pub kube: Option<kube::Client>,
}

/// Opens the store the configuration names.
#[cfg_attr(not(feature = "kubernetes"), allow(unused_variables))]
async fn open_store(
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
            super::kubernetes::open(config, instance_id, outside_mesh, shutdown).await
        }
        #[allow(unreachable_patterns)]
        other => Err(CpError::UnsupportedStore(other)),
    }
}

/// The certificate of the servers proxies talk to; none when
/// `dpServer.insecurePlaintext` says to serve them in plain text, which is
/// logged as the risk it is.
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

/// What the servers proxies talk to speak, and the local token server:
/// one TLS acceptor with the control plane's certificate, or plain text.
fn transports(cert: Option<&Arc<ControlPlaneCert>>) -> Result<(Transport, Transport), CpError> {
    Ok(match cert {
        Some(cert) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()?));
            (
                Transport::Tls(acceptor.clone()),
                Transport::TlsOrPlain(acceptor),
            )
        }
        None => (Transport::Plain, Transport::Plain),
    })
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
                client: kube_client(opened.kube.as_ref()).await?,
            }))
        }
        #[cfg(not(feature = "kubernetes"))]
        DpAuthType::ServiceAccountToken => return Err(CpError::NoServiceAccountAuth),
    })
}

/// The API server client: the store's, or (a Kubernetes feature on
/// another store) one from the in-cluster configuration or `KUBECONFIG`.
#[cfg(feature = "kubernetes")]
pub async fn kube_client(store_client: Option<&kube::Client>) -> Result<kube::Client, CpError> {
    match store_client {
        Some(client) => Ok(client.clone()),
        None => Ok(kube::Client::try_default()
            .await
            .map_err(crate::k8s::store::KubernetesStoreError::Config)?),
    }
}

/// What [`Shared::open`] found besides the shared parts.
pub struct Opening {
    /// The streams' connections, which only the reconciler follows.
    pub connected: tokio::sync::mpsc::UnboundedReceiver<ProxyId>,
    /// The store's own background work.
    pub store_tasks: Vec<super::component::Task>,
    /// Whether the `default` mesh is settled (exists, or is not wanted);
    /// decided once, before the servers start: leadership may come in
    /// between, and then neither way would create the mesh.
    pub default_mesh_settled: bool,
}

impl Shared {
    /// Opens the store and builds what the components share.
    pub async fn open(config: &Config) -> Result<(Shared, Opening), CpError> {
        let shutdown = CancellationToken::new();
        let instance_id = uuid::Uuid::new_v4().to_string();
        let outside_mesh = OutsideMesh::default();
        let opened = open_store(config, &instance_id, &outside_mesh, &shutdown).await?;
        let default_mesh_settled = opened.leadership.is_leader()
            && ensure_default_mesh(config.defaults.skip_mesh_creation, &opened.store).await?;
        let control_plane_cert = control_plane_cert(config, &config.xds_host())?;
        let index = IndexHandle::default();
        let auth = Arc::new(DataplaneAuth {
            kind: stream_auth(config, &opened).await?,
            index: index.clone(),
        });
        let (proxy_transport, token_transport) = transports(control_plane_cert.as_ref())?;
        let (cache, connected) = SnapshotCache::new();
        let shared = Shared {
            store: opened.store,
            leadership: opened.leadership,
            index,
            cache,
            metrics: Arc::new(Metrics::new()),
            instance_id,
            outside_mesh,
            control_plane_cert,
            proxy_transport,
            token_transport,
            auth,
            insight_writers: TaskTracker::new(),
            shutdown,
            #[cfg(feature = "kubernetes")]
            kube: opened.kube,
        };
        let opening = Opening {
            connected,
            store_tasks: opened.tasks,
            default_mesh_settled,
        };
        Ok((shared, opening))
    }

    /// The API server client (see [`kube_client`]).
    #[cfg(feature = "kubernetes")]
    pub async fn kube_client(&self) -> Result<kube::Client, CpError> {
        kube_client(self.kube.as_ref()).await
    }
}
