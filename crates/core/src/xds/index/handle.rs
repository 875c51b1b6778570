//! The shared index: one writer (the reconciler, applying events as they
//! arrive) and many readers (ADS handshakes, the bootstrap server, the CA
//! provisioner), who can also wait for something to appear in it.

use super::{Affected, IndexEvent, ResourceIndex};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;
use tokio::sync::watch;

/// How long a proxy's first request waits for its dataplane (or its mesh's
/// token key) to reach the index: it may have been registered a moment ago
/// and still be on its way from the store or the API server.
pub const REGISTRATION_GRACE: Duration = Duration::from_secs(2);

/// A cheap, cloneable handle on the index. Locks are held only while
/// applying one event or reading, never across an `.await`.
#[derive(Clone)]
pub struct IndexHandle {
    index: Arc<RwLock<ResourceIndex>>,
    /// Counts applied events, so readers can wait for the next one.
    applied: Arc<watch::Sender<u64>>,
}

impl Default for IndexHandle {
    fn default() -> Self {
        IndexHandle {
            index: Arc::default(),
            applied: Arc::new(watch::channel(0).0),
        }
    }
}

impl IndexHandle {
    /// Reads the index. A panic elsewhere while it was written cannot
    /// leave it half-applied in a way readers would mind, so poisoning is
    /// ignored.
    pub fn read(&self) -> RwLockReadGuard<'_, ResourceIndex> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies one event and wakes whoever waits for a change.
    pub fn apply(&self, event: IndexEvent) -> Affected {
        let affected = self
            .index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .apply(event);
        self.applied.send_modify(|n| *n = n.wrapping_add(1));
        affected
    }

    /// Notified after every applied event.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Answers `found` of the index as soon as it answers something, waiting
    /// up to `limit` for events to bring it. A dataplane that was just
    /// registered, or a key that was just created, may still be on its way
    /// from the store or the API server when its proxy asks for it.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        found: impl Fn(&ResourceIndex) -> Option<T>,
    ) -> Option<T> {
        let mut changes = self.changes();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            changes.mark_unchanged();
            if let Some(value) = found(&self.read()) {
                return Some(value);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{MeshSpec, Resource, ResourceKey, Spec};

    fn mesh(name: &str) -> IndexEvent {
        IndexEvent::Apply(Resource::new(
            ResourceKey::mesh(name),
            Spec::Mesh(MeshSpec::default()),
        ))
    }

    #[tokio::test]
    async fn a_reader_waits_for_what_is_on_its_way() {
        let handle = IndexHandle::default();
        let writer = handle.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.apply(mesh("other"));
            writer.apply(mesh("late"));
        });
        let found = handle
            .wait_for(Duration::from_secs(5), |i| {
                i.mesh("late").map(|m| m.name.clone())
            })
            .await;
        assert_eq!(found.as_deref(), Some("late"));
        let missing = handle
            .wait_for(Duration::from_millis(50), |i| i.mesh("never").map(|_| ()))
            .await;
        assert!(missing.is_none());
    }
}
