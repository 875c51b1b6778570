//! Kubernetes mode's part of `kuma-cp run`: the API server client, the
//! leader election, the kubernetes store, and the pod controller (which
//! writes only while this replica leads).

use super::CpError;
use super::config::Config;
use super::opened::Opened;
use crate::k8s::store::{KubernetesStore, KubernetesStoreError};
use crate::k8s::{leader, pods};
use crate::resources::outside_mesh::OutsideMesh;
use crate::runtime::CancellationToken;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long the watchers may take to list what exists at start.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn open(
    config: &Config,
    instance_id: &str,
    outside_mesh: &OutsideMesh,
    shutdown: &CancellationToken,
) -> Result<Opened, CpError> {
    let client = kube::Client::try_default()
        .await
        .map_err(KubernetesStoreError::Config)?;
    let (leadership, election) = leader::campaign(
        client.clone(),
        &config.system_namespace,
        instance_id.to_string(),
        Duration::from_secs(config.leader_election.lease_duration_seconds),
        shutdown.clone(),
    );
    let store = KubernetesStore::connect(
        client.clone(),
        &config.system_namespace,
        leadership.clone(),
        SYNC_TIMEOUT,
    )
    .await?;
    let controller = Box::pin(
        pods::run(
            client.clone(),
            leadership.clone(),
            outside_mesh.clone(),
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("pods_to_dataplanes")),
    );
    Ok(Opened {
        store: Arc::new(store),
        leadership,
        // The election runs already; its task ends with the shutdown.
        tasks: vec![
            Box::pin(async move {
                let _ = election.await;
            }),
            controller,
        ],
        kube: Some(client),
    })
}
