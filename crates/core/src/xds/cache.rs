//! Per-proxy versioned snapshots, kept only for proxies with an open
//! stream. Streams watch their proxy's entry and push what changed; an
//! identical snapshot is not even stored, so it wakes nobody.

use super::generator::{ProxyConfig, TypeUrl, XdsResource};
use super::index::ProxyId;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Poll, Waker};
use tokio::sync::mpsc;

/// The resources of one type, sorted by name, and a version over all of
/// them. Identical lists are one allocation (see [`SharedSets`]): the
/// clusters of 10,000 proxies that see the same services are one list.
#[derive(Debug, Clone)]
pub struct TypeSnapshot {
    /// Spelled with [`hex`] on the wire; kept as the number, which needs
    /// no allocation per proxy and type.
    pub version: u64,
    pub resources: Arc<[XdsResource]>,
}

impl Default for TypeSnapshot {
    fn default() -> Self {
        TypeSnapshot {
            version: list_version(&[]),
            resources: Arc::from(Vec::new()),
        }
    }
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

/// A resource version as sent on the wire.
pub fn hex(version: u64) -> String {
    format!("{version:016x}")
}

/// Each resource's version hashes its name and bytes, so the list's
/// version needs only theirs.
fn list_version(resources: &[XdsResource]) -> u64 {
    // DefaultHasher::new() uses fixed keys: stable across processes.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in resources {
        r.version.hash(&mut h);
    }
    h.finish()
}

/// Interns lists of resources: a list equal to one some snapshot already
/// holds is that list, not a copy. Entries die with the last snapshot or
/// stream holding them.
#[derive(Default)]
pub struct SharedSets {
    sets: HashMap<u64, Weak<[XdsResource]>>,
    /// Entries after the last sweep of dead ones.
    swept_to: usize,
}

impl SharedSets {
    /// `resources` as a shared list sorted by name, and its version.
    pub fn intern(&mut self, mut resources: Vec<XdsResource>) -> TypeSnapshot {
        if !resources.is_sorted_by(|a, b| a.name <= b.name) {
            resources.sort_by(|a, b| a.name.cmp(&b.name));
        }
        let version = list_version(&resources);
        let equal = |set: &Arc<[XdsResource]>| {
            set.len() == resources.len()
                && set
                    .iter()
                    .zip(&resources)
                    .all(|(a, b)| a.version == b.version)
        };
        let resources = match self.sets.get(&version).and_then(Weak::upgrade) {
            Some(set) if equal(&set) => set,
            _ => {
                let set: Arc<[XdsResource]> = Arc::from(resources);
                self.sets.insert(version, Arc::downgrade(&set));
                if self.sets.len() > 2 * self.swept_to + 1024 {
                    self.sets.retain(|_, set| set.strong_count() > 0);
                    self.swept_to = self.sets.len();
                }
                set
            }
        };
        TypeSnapshot { version, resources }
    }

    /// How many distinct lists are alive.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.sets.values().filter(|s| s.strong_count() > 0).count()
    }
}

impl Snapshot {
    pub fn new(
        config: ProxyConfig,
        certificate: Option<CertificateTimes>,
        sets: &mut SharedSets,
    ) -> Self {
        Snapshot {
            secrets: sets.intern(config.secrets),
            listeners: sets.intern(config.listeners),
            clusters: sets.intern(config.clusters),
            endpoints: sets.intern(config.endpoints),
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
    latest: Arc<Latest>,
    streams: usize,
}

/// A proxy's latest snapshot, and the streams waiting for the next one.
/// tokio's `watch` channel would do, at 344 bytes per proxy (it spreads
/// its waiters over eight notifiers for the sake of many receivers); a
/// proxy has one stream, two for a moment while it reconnects.
#[derive(Default)]
struct Latest(Mutex<LatestState>);

#[derive(Default)]
struct LatestState {
    snapshot: Option<Arc<Snapshot>>,
    /// Moves with every snapshot stored.
    version: u64,
    waiting: Vec<Waker>,
    /// The listener and cluster versions the proxy's ADS stream says it
    /// has applied (ACKed, or had already), 0 before any.
    applied: [u64; 2],
}

/// The types whose application a mesh-wide change waits for (see
/// [`SnapshotCache::applied`]): what shapes connections.
const APPLIED_TYPES: [TypeUrl; 2] = [TypeUrl::Listener, TypeUrl::Cluster];

impl Latest {
    fn lock(&self) -> MutexGuard<'_, LatestState> {
        // Every critical section is a few assignments.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct SnapshotCache {
    entries: Mutex<HashMap<ProxyId, Entry>>,
    /// Tells the reconciler a proxy needs its first snapshot.
    connected: mpsc::UnboundedSender<ProxyId>,
}

/// A stream's view of its proxy's snapshot; unregisters the stream on drop.
pub struct SnapshotWatch {
    pub id: ProxyId,
    latest: Arc<Latest>,
    /// The version [`SnapshotWatch::changed`] last saw.
    seen: u64,
    /// What [`SnapshotWatch::applied`] last recorded: a stream reports
    /// after every request, the lock is taken only when this moves.
    reported: [u64; 2],
    cache: Arc<SnapshotCache>,
}

impl SnapshotWatch {
    /// Records that the proxy has applied `version` of `type_url`.
    pub fn applied(&mut self, type_url: TypeUrl, version: u64) {
        if let Some(i) = APPLIED_TYPES.iter().position(|t| *t == type_url)
            && self.reported[i] != version
        {
            self.reported[i] = version;
            self.latest.lock().applied[i] = version;
        }
    }

    /// The proxy's current snapshot, if it has one yet.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.latest.lock().snapshot.clone()
    }

    /// Waits for a snapshot stored after the one this watch last saw
    /// (or after it was opened).
    pub async fn changed(&mut self) {
        std::future::poll_fn(|cx| {
            let mut state = self.latest.lock();
            if state.version != self.seen {
                self.seen = state.version;
                return Poll::Ready(());
            }
            if !state.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                state.waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
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
            latest: Arc::default(),
            streams: 0,
        });
        entry.streams += 1;
        if entry.streams == 1 {
            let _ = self.connected.send(id.clone());
        }
        let latest = entry.latest.clone();
        let seen = latest.lock().version;
        SnapshotWatch {
            id,
            latest,
            seen,
            reported: [0; 2],
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
        let mut state = entry.latest.lock();
        if state
            .snapshot
            .as_deref()
            .is_some_and(|c| c.same_versions(&snapshot))
        {
            return false;
        }
        let previous = state.snapshot.replace(Arc::new(snapshot));
        state.version += 1;
        // Drained in place: the list keeps its room for the next wait.
        state.waiting.drain(..).for_each(Waker::wake);
        drop(state);
        drop(entries);
        // The last reference to lists no other snapshot shares is let go
        // outside the locks.
        drop(previous);
        true
    }

    /// What was last sent to a connected proxy (`None` when it has no
    /// stream, or no snapshot yet).
    pub fn snapshot(&self, id: &ProxyId) -> Option<Arc<Snapshot>> {
        self.lock().get(id)?.latest.lock().snapshot.clone()
    }

    /// Whether a connected proxy has applied the listeners and clusters of
    /// its latest snapshot; `None` when it is not connected or has none.
    pub fn applied(&self, id: &ProxyId) -> Option<bool> {
        let entries = self.lock();
        let state = entries.get(id)?.latest.lock();
        let snapshot = state.snapshot.as_ref()?;
        Some(
            APPLIED_TYPES
                .iter()
                .zip(state.applied)
                .all(|(t, applied)| snapshot.of_type(*t).version == applied),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, content: u8) -> XdsResource {
        XdsResource::of_byte(name, content)
    }

    #[test]
    fn equal_lists_are_one_list_sorted_by_name() {
        let mut sets = SharedSets::default();
        let one = sets.intern(vec![resource("b", 1), resource("a", 1)]);
        let two = sets.intern(vec![resource("a", 1), resource("b", 1)]);
        assert!(Arc::ptr_eq(&one.resources, &two.resources));
        assert_eq!(one.version, two.version);
        let b = one.resources.iter().find(|r| r.name == "b");
        assert_eq!(b.map(|r| r.version), Some(resource("b", 1).version));
        let names: Vec<&str> = one.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let other = sets.intern(vec![resource("a", 1), resource("b", 2)]);
        assert!(!Arc::ptr_eq(&one.resources, &other.resources));
        assert_ne!(one.version, other.version);
        assert_eq!(sets.live(), 2);
        drop((one, two));
        assert_eq!(sets.live(), 1, "a list no snapshot holds is let go");
    }

    fn snapshot(content: u8) -> Snapshot {
        let config = ProxyConfig {
            clusters: vec![resource("c", content)],
            ..Default::default()
        };
        Snapshot::new(config, None, &mut SharedSets::default())
    }

    #[tokio::test]
    async fn every_stream_of_a_proxy_wakes_for_a_new_snapshot_and_not_for_the_same_one() {
        let (cache, mut connected) = SnapshotCache::new();
        let id = ProxyId::new("default", "web-1");
        let mut first = cache.watch(id.clone());
        assert_eq!(connected.recv().await.as_ref(), Some(&id), "asked for");
        let mut second = cache.watch(id.clone());
        assert!(connected.try_recv().is_err(), "asked for once");
        let waiting = tokio::spawn(async move {
            first.changed().await;
            first
        });
        tokio::task::yield_now().await;
        assert!(cache.set(&id, snapshot(1)));
        let first = waiting.await.expect("woken");
        second.changed().await;
        let version = |w: &SnapshotWatch| w.current().map(|s| s.clusters.version);
        assert_eq!(version(&first), Some(snapshot(1).clusters.version));
        assert_eq!(version(&first), version(&second));
        assert!(
            !cache.set(&id, snapshot(1)),
            "the same snapshot is not stored"
        );
        let again = tokio::time::timeout(std::time::Duration::from_millis(50), second.changed());
        assert!(again.await.is_err(), "nor does it wake anyone");
        drop((first, second));
        assert!(!cache.is_connected(&id), "gone with its last stream");
        assert!(!cache.set(&id, snapshot(2)));
    }
}
