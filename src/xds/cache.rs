//! Per-proxy versioned snapshots, kept only for proxies with an open
//! stream. Streams watch their proxy's entry and push what changed; an
//! identical snapshot is not even stored, so it wakes nobody.

use super::generator::{ProxyConfig, TypeUrl};
use super::index::ProxyId;
use envoy_types::pb::google::protobuf::Any;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// One resource and its version: a hash of its encoded bytes, so the same
/// content has the same version in every process and after restarts.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub version: String,
    pub body: Any,
}

/// The resources of one type, and a version over all of them.
#[derive(Debug, Clone, Default)]
pub struct TypeSnapshot {
    pub version: String,
    pub resources: BTreeMap<String, Versioned>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    secrets: TypeSnapshot,
    listeners: TypeSnapshot,
    clusters: TypeSnapshot,
    endpoints: TypeSnapshot,
    /// The workload certificate among the secrets, for the insight.
    pub certificate: Option<CertificateTimes>,
}

/// When a proxy's workload certificate was issued and when it expires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CertificateTimes {
    pub issued_at: std::time::SystemTime,
    pub not_after: std::time::SystemTime,
}

fn hash_hex(write: impl FnOnce(&mut std::collections::hash_map::DefaultHasher)) -> String {
    // DefaultHasher::new() uses fixed keys: stable across processes.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    write(&mut h);
    format!("{:016x}", h.finish())
}

impl TypeSnapshot {
    fn new(resources: &[super::generator::XdsResource]) -> Self {
        let resources: BTreeMap<String, Versioned> = resources
            .iter()
            .map(|r| {
                let version = hash_hex(|h| r.body.value.hash(h));
                (
                    r.name.clone(),
                    Versioned {
                        version,
                        body: r.body.clone(),
                    },
                )
            })
            .collect();
        let version = hash_hex(|h| {
            for (name, r) in &resources {
                name.hash(h);
                r.version.hash(h);
            }
        });
        TypeSnapshot { version, resources }
    }
}

impl Snapshot {
    pub fn new(config: &ProxyConfig, certificate: Option<CertificateTimes>) -> Self {
        Snapshot {
            secrets: TypeSnapshot::new(&config.secrets),
            listeners: TypeSnapshot::new(&config.listeners),
            clusters: TypeSnapshot::new(&config.clusters),
            endpoints: TypeSnapshot::new(&config.endpoints),
            certificate,
        }
    }

    /// Equal versions mean equal content: each type's version hashes its
    /// resources' names and versions, which hash their bytes.
    fn same_versions(&self, other: &Snapshot) -> bool {
        TypeUrl::ALL
            .iter()
            .all(|t| self.of_type(*t).version == other.of_type(*t).version)
    }

    pub fn of_type(&self, type_url: TypeUrl) -> &TypeSnapshot {
        match type_url {
            TypeUrl::Secret => &self.secrets,
            TypeUrl::Listener => &self.listeners,
            TypeUrl::Cluster => &self.clusters,
            TypeUrl::ClusterLoadAssignment => &self.endpoints,
        }
    }
}

struct Entry {
    snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    streams: usize,
}

pub struct SnapshotCache {
    entries: Mutex<HashMap<ProxyId, Entry>>,
    /// Tells the reconciler a proxy needs its first snapshot.
    connected: mpsc::UnboundedSender<ProxyId>,
}

/// A stream's view of its proxy's snapshot; unregisters the stream on drop.
pub struct SnapshotWatch {
    pub id: ProxyId,
    pub receiver: watch::Receiver<Option<Arc<Snapshot>>>,
    cache: Arc<SnapshotCache>,
}

impl Drop for SnapshotWatch {
    fn drop(&mut self) {
        let mut entries = self.cache.lock();
        if let Some(entry) = entries.get_mut(&self.id) {
            entry.streams -= 1;
            if entry.streams == 0 {
                entries.remove(&self.id);
            }
        }
    }
}

impl SnapshotCache {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<ProxyId>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Arc::new(SnapshotCache {
                entries: Mutex::new(HashMap::new()),
                connected: tx,
            }),
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ProxyId, Entry>> {
        // Every critical section is a single map operation: a poisoned lock
        // still holds a consistent map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a stream for `id`. The first stream of a proxy asks the
    /// reconciler for its snapshot; later ones see the current one.
    pub fn watch(self: &Arc<Self>, id: ProxyId) -> SnapshotWatch {
        let mut entries = self.lock();
        let entry = entries.entry(id.clone()).or_insert_with(|| Entry {
            snapshot: watch::channel(None).0,
            streams: 0,
        });
        entry.streams += 1;
        let receiver = entry.snapshot.subscribe();
        if entry.streams == 1 {
            let _ = self.connected.send(id.clone());
        }
        SnapshotWatch {
            id,
            receiver,
            cache: self.clone(),
        }
    }

    /// Stores a snapshot for a connected proxy. Returns false (and wakes
    /// nobody) when the proxy has no stream or nothing changed.
    pub fn set(&self, id: &ProxyId, snapshot: Snapshot) -> bool {
        let entries = self.lock();
        let Some(entry) = entries.get(id) else {
            return false;
        };
        entry.snapshot.send_if_modified(|current| {
            if current
                .as_deref()
                .is_some_and(|c| c.same_versions(&snapshot))
            {
                false
            } else {
                *current = Some(Arc::new(snapshot));
                true
            }
        })
    }

    /// What was last sent to a connected proxy (`None` when it has no
    /// stream, or no snapshot yet).
    pub fn snapshot(&self, id: &ProxyId) -> Option<Arc<Snapshot>> {
        self.lock().get(id)?.snapshot.borrow().clone()
    }

    /// How many streams a proxy has open.
    pub fn streams(&self, id: &ProxyId) -> usize {
        self.lock().get(id).map_or(0, |e| e.streams)
    }

    pub fn is_connected(&self, id: &ProxyId) -> bool {
        self.lock().contains_key(id)
    }

    /// Proxies with at least one open stream.
    pub fn connected(&self) -> Vec<ProxyId> {
        self.lock().keys().cloned().collect()
    }
}
