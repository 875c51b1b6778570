//! The reconciler: applies index events as they arrive and rebuilds the
//! snapshots of exactly the connected proxies they affect. Bursts are
//! coalesced: after the first event it waits `debounce` for more (still
//! applying them, so readers of the index are never behind), then rebuilds
//! each affected proxy once.

use super::cache::{SharedSets, Snapshot, SnapshotCache};
use super::generator::{self, Outbounds, ProxyTls};
use super::identity::Identities;
use super::index::{Affected, IndexEvent, IndexHandle, ProxyId, ResourceIndex};
use super::mtls_rollout::Rollout;
use crate::metrics::Metrics;
use crate::runtime::CancellationToken;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a mesh switching mTLS looks whether its proxies have applied
/// the current step.
const ROLLOUT_CHECK: Duration = Duration::from_millis(100);

pub struct Reconciler {
    pub index: IndexHandle,
    pub cache: Arc<SnapshotCache>,
    pub metrics: Arc<Metrics>,
    pub debounce: Duration,
    /// Workload certificate lifetime and renewal margin.
    pub cert_validity: Duration,
    pub cert_renewal_margin: Duration,
}

/// What the reconciler keeps between rebuilds so that what proxies share
/// is computed and stored once.
#[derive(Default)]
struct Shared {
    /// Identical lists of resources, one allocation each.
    sets: SharedSets,
    /// Each mesh's outbound memo.
    outbounds: HashMap<String, Outbounds>,
    /// Where each mesh is in switching mTLS on or off.
    rollout: Rollout,
}

/// What piled up during one debounce window.
#[derive(Default)]
struct Batch {
    affected: Affected,
    /// Proxies that connected, or whose certificate is due for renewal.
    connected: HashSet<ProxyId>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.affected.is_empty() && self.connected.is_empty()
    }
}

impl Reconciler {
    /// Runs until shutdown, or until the feed of `events` ends.
    pub async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<IndexEvent>,
        mut connected: mpsc::UnboundedReceiver<ProxyId>,
        shutdown: CancellationToken,
    ) {
        let mut identities = Identities::new(self.cert_validity, self.cert_renewal_margin);
        let mut shared = Shared::default();
        let mut renewals = tokio::time::interval(identities.renewal_check_interval());
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Polled only while a mesh switches mTLS (see `mtls_rollout`).
        let mut rollout_check = tokio::time::interval(ROLLOUT_CHECK);
        rollout_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut batch = Batch::default();
        loop {
            if !batch.is_empty() {
                let deadline = tokio::time::Instant::now() + self.debounce;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(deadline) => break,
                        Some(event) = events.recv() => batch.affected.merge(self.index.apply(event)),
                        Some(id) = connected.recv() => { batch.connected.insert(id); }
                    }
                }
                self.rebuild_batch(&mut identities, &mut shared, std::mem::take(&mut batch));
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.recv() => match event {
                    Some(event) => batch.affected.merge(self.index.apply(event)),
                    None => return,
                },
                Some(id) = connected.recv() => { batch.connected.insert(id); }
                _ = rollout_check.tick(), if shared.rollout.in_progress(&self.index.read()) => {
                    let moved = shared.rollout.advance(&self.index.read(), &self.cache);
                    batch.affected.meshes.extend(moved);
                }
                _ = renewals.tick(), if !identities.none_issued() => {
                    // Certificates of proxies that left are dropped here, at
                    // the renewal pace, not on every change. Without any
                    // (no mesh uses mTLS) there is nothing to look at: an
                    // idle control plane does not walk its proxies.
                    let connected: HashSet<ProxyId> = self.cache.connected().into_iter().collect();
                    identities.retain_connected(&connected);
                    batch.connected.extend(identities.due_for_renewal());
                }
            }
        }
    }

    fn rebuild_batch(&self, identities: &mut Identities, shared: &mut Shared, batch: Batch) {
        let index = self.index.read();
        let rollout = &mut shared.rollout;
        identities.sync_cas(&index, |m| {
            rollout.phase(&m.name, m.spec.mtls_enabled()).is_some()
        });
        shared
            .outbounds
            .retain(|mesh, _| index.mesh(mesh).is_some());
        let Batch {
            affected,
            connected,
        } = batch;
        // A mesh-wide change or a reset looks at every connected proxy;
        // otherwise only at the few the batch names, so a dataplane change
        // in a mesh of 10,000 proxies costs what it affects, not 10,000.
        let targets: BTreeSet<ProxyId> = if affected.is_wide() {
            self.cache
                .connected()
                .into_iter()
                .filter(|id| connected.contains(id) || affected.contains(id))
                .collect()
        } else {
            affected
                .proxies
                .into_iter()
                .chain(connected)
                .filter(|id| self.cache.is_connected(id))
                .collect()
        };
        let mut rebuilt = 0usize;
        for id in &targets {
            let span = tracing::debug_span!("rebuild", mesh = %id.mesh, dataplane = %id.name);
            rebuilt += span.in_scope(|| self.rebuild(&index, identities, shared, id)) as usize;
        }
        tracing::debug!(targets = targets.len(), rebuilt, "xDS snapshots rebuilt");
    }

    /// Regenerates one proxy; returns whether its snapshot changed. A proxy
    /// of an mTLS mesh without an identity yet keeps what it has.
    fn rebuild(
        &self,
        index: &ResourceIndex,
        identities: &mut Identities,
        shared: &mut Shared,
        id: &ProxyId,
    ) -> bool {
        let (Some(dataplane), Some(mesh)) = (index.dataplane(id), index.mesh(&id.mesh)) else {
            return false;
        };
        let started = Instant::now();
        let phase = shared.rollout.phase(&id.mesh, mesh.spec.mtls_enabled());
        let identity = match phase {
            Some(_) => match identities.of(id, dataplane, mesh) {
                Some(identity) => Some(identity),
                None => return false,
            },
            None => None,
        };
        // The CAs of the meshes linked by cross-mesh gateways, for this
        // mesh's gateways and the proxies that use another's.
        let peer_cas: Vec<(String, String)> = mesh
            .cross_mesh()
            .linked()
            .filter_map(|m| Some((m.to_string(), identities.ca_pem(m)?.to_string())))
            .collect();
        let tls = identity.as_ref().zip(phase).map(|(i, phase)| ProxyTls {
            phase,
            identity: &i.identity,
            mesh_ca: &i.mesh_ca,
            peer_cas: &peer_cas,
        });
        let outbounds = shared.outbounds.entry(id.mesh.clone()).or_default();
        let config = generator::generate_sharing(dataplane, mesh, tls, outbounds);
        self.metrics
            .generation_seconds
            .observe(started.elapsed().as_secs_f64());
        let certificate = identity.as_ref().map(|i| i.certificate);
        self.cache
            .set(id, Snapshot::new(config, certificate, &mut shared.sets))
    }
}
