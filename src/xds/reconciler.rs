//! The reconciler: keeps the index in step with the store's change feed
//! and rebuilds the snapshots of exactly the connected proxies a change
//! affects. Bursts of changes are coalesced: after the first event it waits
//! `debounce` for more, then reads each changed resource once.

use super::cache::{Snapshot, SnapshotCache};
use super::generator::{self, ProxyTls};
use super::identity::Identities;
use super::index::{Affected, ProxyId, ResourceIndex};
use crate::cp::Shutdown;
use crate::metrics::Metrics;
use crate::resources::{ResourceKey, ResourceType, Spec};
use crate::store::{ChangeEvent, ListQuery, SharedStore, StoreError};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

pub struct Reconciler {
    pub store: SharedStore,
    pub cache: Arc<SnapshotCache>,
    pub metrics: Arc<Metrics>,
    pub debounce: Duration,
    /// Workload certificate lifetime and renewal margin.
    pub cert_validity: Duration,
    pub cert_renewal_margin: Duration,
}

/// What piled up during one debounce window.
#[derive(Default)]
struct Batch {
    /// Resources to read again (created or updated) or to drop (deleted).
    changed: HashMap<ResourceKey, bool>,
    resync: bool,
    /// Proxies that connected, or whose certificate is due for renewal.
    connected: HashSet<ProxyId>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.changed.is_empty() && !self.resync && self.connected.is_empty()
    }

    fn add(&mut self, event: Result<ChangeEvent, broadcast::error::RecvError>) {
        match event {
            Ok(ChangeEvent::Created(k)) | Ok(ChangeEvent::Updated(k)) => {
                if is_relevant(k.kind) {
                    self.changed.insert(k, true);
                }
            }
            Ok(ChangeEvent::Deleted(k)) => {
                if is_relevant(k.kind) {
                    self.changed.insert(k, false);
                }
            }
            // Lagged: events were dropped, so what is known may be stale.
            Ok(ChangeEvent::Resync) | Err(_) => self.resync = true,
        }
    }
}

/// Kinds that shape generated configuration.
fn is_relevant(kind: ResourceType) -> bool {
    !matches!(kind, ResourceType::DataplaneInsight | ResourceType::Secret)
}

impl Reconciler {
    /// Runs until shutdown.
    pub async fn run(self, mut connected: mpsc::UnboundedReceiver<ProxyId>, shutdown: Shutdown) {
        let mut changes = self.store.subscribe();
        let mut index = ResourceIndex::default();
        let mut identities = Identities::new(self.cert_validity, self.cert_renewal_margin);
        let mut renewals = tokio::time::interval(identities.renewal_check_interval());
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Batch {
            resync: true,
            ..Default::default()
        };
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            if !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + self.debounce;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        event = changes.recv() => batch.add(event),
                        Some(id) = connected.recv() => { batch.connected.insert(id); }
                    }
                }
                let retry = self
                    .apply(&mut index, &mut identities, std::mem::take(&mut batch))
                    .await;
                if retry {
                    // The store is unavailable: try a full reload shortly.
                    batch.resync = true;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                continue;
            }
            tokio::select! {
                _ = &mut stop => return,
                event = changes.recv() => batch.add(event),
                Some(id) = connected.recv() => { batch.connected.insert(id); }
                _ = renewals.tick() => {
                    // Certificates of proxies that left are dropped here, at
                    // the renewal pace, not on every change.
                    let connected: HashSet<ProxyId> = self.cache.connected().into_iter().collect();
                    identities.retain_connected(&connected);
                    batch.connected.extend(identities.due_for_renewal());
                }
            }
        }
    }

    /// Applies a batch; returns true when the store could not be read.
    async fn apply(
        &self,
        index: &mut ResourceIndex,
        identities: &mut Identities,
        batch: Batch,
    ) -> bool {
        let mut affected = Affected::default();
        let all_connected = batch.resync;
        if batch.resync {
            match load(self.store.as_ref()).await {
                Ok(fresh) => *index = fresh,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot load resources for xDS; retrying");
                    return true;
                }
            }
        } else {
            for (key, exists) in batch.changed {
                match self.refresh(index, &key, exists).await {
                    Ok(a) => affected.merge(a),
                    Err(e) => {
                        tracing::warn!(resource = %key, error = %e, "cannot read a changed resource; reloading everything");
                        return true;
                    }
                }
            }
        }
        if let Err(e) = identities.sync_cas(self.store.as_ref(), index).await {
            tracing::warn!(error = %e, "cannot load a mesh CA; retrying");
            return true;
        }
        // A mesh-wide change or a resync looks at every connected proxy;
        // otherwise only at the few the batch names, so a dataplane change
        // in a mesh of 10,000 proxies costs what it affects, not 10,000.
        let targets: BTreeSet<ProxyId> = if all_connected || !affected.meshes.is_empty() {
            self.cache
                .connected()
                .into_iter()
                .filter(|id| all_connected || batch.connected.contains(id) || affected.contains(id))
                .collect()
        } else {
            affected
                .proxies
                .into_iter()
                .chain(batch.connected)
                .filter(|id| self.cache.is_connected(id))
                .collect()
        };
        let mut rebuilt = 0usize;
        for id in &targets {
            rebuilt += self.rebuild(index, identities, id) as usize;
        }
        tracing::debug!(rebuilt, "xDS snapshots rebuilt");
        false
    }

    /// Regenerates one proxy; returns whether its snapshot changed. A proxy
    /// of an mTLS mesh without an identity yet keeps what it has.
    fn rebuild(&self, index: &ResourceIndex, identities: &mut Identities, id: &ProxyId) -> bool {
        let (Some(dataplane), Some(mesh)) = (index.dataplane(id), index.mesh(&id.mesh)) else {
            return false;
        };
        let started = Instant::now();
        let identity = if mesh.spec.mtls_enabled() {
            match identities.of(id, dataplane, mesh) {
                Some(identity) => Some(identity),
                None => return false,
            }
        } else {
            None
        };
        let tls = identity.as_ref().map(|i| ProxyTls {
            ca_pem: &i.ca_pem,
            cert_pem: &i.cert.cert_pem,
            key_pem: &i.cert.key_pem,
        });
        let config = generator::generate(dataplane, mesh, tls);
        self.metrics
            .generation_seconds
            .observe(started.elapsed().as_secs_f64());
        self.cache.set(id, Snapshot::new(&config))
    }

    async fn refresh(
        &self,
        index: &mut ResourceIndex,
        key: &ResourceKey,
        exists: bool,
    ) -> Result<Affected, StoreError> {
        let current = if exists {
            match self.store.get(key).await {
                Ok(r) => Some(r),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        Ok(match (key.kind, current.map(|r| r.spec)) {
            (ResourceType::Mesh, Some(Spec::Mesh(spec))) => index.upsert_mesh(&key.name, spec),
            (ResourceType::Mesh, _) => index.remove_mesh(&key.name),
            (ResourceType::Dataplane, Some(Spec::Dataplane(spec))) => {
                index.upsert_dataplane(&key.mesh, &key.name, spec)
            }
            (ResourceType::Dataplane, _) => {
                self.forget_insight(&key.mesh, &key.name).await;
                index.remove_dataplane(&key.mesh, &key.name)
            }
            (ResourceType::TrafficPermission, Some(Spec::TrafficPermission(spec))) => {
                index.set_permission(&key.mesh, &key.name, Some(spec))
            }
            (ResourceType::TrafficPermission, _) => {
                index.set_permission(&key.mesh, &key.name, None)
            }
            _ => index.policy_changed(&key.mesh),
        })
    }

    /// A deleted dataplane takes its insight along.
    async fn forget_insight(&self, mesh: &str, name: &str) {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, mesh, name);
        match self.store.delete(&key).await {
            Ok(()) | Err(StoreError::NotFound(_)) | Err(StoreError::MeshNotFound(_)) => {}
            Err(e) => tracing::warn!(resource = %key, error = %e, "cannot delete the insight"),
        }
    }
}

/// Reads every mesh and dataplane into a fresh index.
async fn load(store: &dyn crate::store::ResourceStore) -> Result<ResourceIndex, StoreError> {
    let mut index = ResourceIndex::default();
    for mesh in store
        .list(&ListQuery::of(ResourceType::Mesh, None))
        .await?
        .items
    {
        if let Spec::Mesh(spec) = mesh.spec {
            index.upsert_mesh(&mesh.key.name, spec);
        }
    }
    for dp in store
        .list(&ListQuery::of(ResourceType::Dataplane, None))
        .await?
        .items
    {
        if let Spec::Dataplane(spec) = dp.spec {
            index.upsert_dataplane(&dp.key.mesh, &dp.key.name, spec);
        }
    }
    for tp in store
        .list(&ListQuery::of(ResourceType::TrafficPermission, None))
        .await?
        .items
    {
        if let Spec::TrafficPermission(spec) = tp.spec {
            index.set_permission(&tp.key.mesh, &tp.key.name, Some(spec));
        }
    }
    Ok(index)
}
