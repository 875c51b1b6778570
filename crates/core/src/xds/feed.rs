//! The Universal feed: turns a store's change feed into [`IndexEvent`]s.
//! A created or updated resource is read once and applied, a deleted key
//! removed, and the start or a resync (missed notifications) becomes a
//! reset to everything the store holds.
//!
//! Bursts are read in one go: every change already waiting is collected and
//! each key read once, however often it changed meanwhile.

use super::index::IndexEvent;
use crate::resources::{ResourceKey, ResourceType};
use crate::runtime::CancellationToken;
use crate::store::{ChangeEvent, ListQuery, ResourceStore, SharedStore, StoreError};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

/// Kinds the index keeps. Insights are written by the control plane and
/// read by the API only.
/// Runs until shutdown, or until nobody listens to `events`.
pub async fn universal(
    store: SharedStore,
    events: mpsc::UnboundedSender<IndexEvent>,
    shutdown: CancellationToken,
) {
    // Subscribed before the first list, so nothing written in between is lost.
    let mut changes = store.subscribe();
    let mut resync = true;
    loop {
        if resync {
            match load_all(store.as_ref()).await {
                Ok(resources) => {
                    if events.send(IndexEvent::Reset(resources)).is_err() {
                        return;
                    }
                    resync = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list resources for the index; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            }
        }
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            change = changes.recv() => change,
        };
        // Key -> whether it still exists, as the latest notification says.
        let mut pending: BTreeMap<ResourceKey, bool> = BTreeMap::new();
        let mut next = Some(first);
        while let Some(change) = next.take() {
            match change {
                Ok(ChangeEvent::Created(key) | ChangeEvent::Updated(key)) => {
                    if key.kind.shapes_proxies() {
                        pending.insert(key, true);
                    }
                }
                Ok(ChangeEvent::Deleted(key)) => {
                    if key.kind.shapes_proxies() {
                        pending.insert(key, false);
                    }
                }
                Ok(ChangeEvent::Resync) => resync = true,
                // A full reload is a cost worth seeing in the log: a burst of
                // writes (insights of many new streams) can cause it.
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "the change feed fell behind; reloading everything");
                    resync = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
            next = match changes.try_recv() {
                Ok(change) => Some(Ok(change)),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    Some(Err(broadcast::error::RecvError::Lagged(n)))
                }
                Err(_) => None,
            };
        }
        if resync {
            continue;
        }
        for (key, exists) in pending {
            let event = if exists {
                match store.get(&key).await {
                    Ok(resource) => IndexEvent::Apply(resource),
                    // Deleted again since: its deletion is on its way too.
                    Err(StoreError::NotFound(_)) => IndexEvent::Delete(key),
                    Err(e) => {
                        tracing::warn!(resource = %key, error = %e, "cannot read a changed resource; reloading everything");
                        resync = true;
                        break;
                    }
                }
            } else {
                IndexEvent::Delete(key)
            };
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

/// Everything the index keeps, meshes first.
async fn load_all(
    store: &dyn ResourceStore,
) -> Result<Vec<crate::resources::Resource>, StoreError> {
    let mut all = Vec::new();
    for kind in ResourceType::ALL.into_iter().filter(|k| k.shapes_proxies()) {
        all.extend(store.list(&ListQuery::of(kind, None)).await?.items);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{MeshSpec, Resource, Spec};
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;

    fn mesh(name: &str) -> Resource {
        Resource::new(ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
    }

    #[tokio::test]
    async fn the_feed_starts_with_a_reset_then_follows_the_store() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store.create(mesh("before")).await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        tokio::spawn(universal(store.clone(), tx, shutdown.clone()));
        match rx.recv().await.unwrap() {
            IndexEvent::Reset(all) => {
                assert_eq!(all.len(), 1);
                assert_eq!(all[0].key.name, "before");
            }
            other => panic!("expected a reset first, got {other:?}"),
        }
        store.create(mesh("after")).await.unwrap();
        match rx.recv().await.unwrap() {
            IndexEvent::Apply(r) => assert_eq!(r.key.name, "after"),
            other => panic!("expected the new mesh, got {other:?}"),
        }
        store.delete(&ResourceKey::mesh("after")).await.unwrap();
        match rx.recv().await.unwrap() {
            IndexEvent::Delete(key) => assert_eq!(key.name, "after"),
            other => panic!("expected the deletion, got {other:?}"),
        }
        shutdown.cancel();
    }
}
