//! The in-memory store: the default, nothing to set up, lost on exit.

use super::{
    ChangeEvent, ChangeFeed, ListPage, ListQuery, ResourceStore, StoreError, deleted_along,
};
use crate::resources::{Resource, ResourceKey, ResourceVersion, Spec};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::RwLock;
use tokio::sync::broadcast;

/// All resources in one ordered map, keyed by (kind, mesh, name), so a list
/// is a range scan already in the order the API pages in.
pub struct MemoryStore {
    resources: RwLock<BTreeMap<ResourceKey, Resource>>,
    changes: ChangeFeed,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            resources: RwLock::new(BTreeMap::new()),
            changes: ChangeFeed::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<ResourceKey, Resource>> {
        // A panic while holding the lock cannot leave the map half-written
        // (every mutation is one insert or remove), so poisoning is ignored.
        self.resources.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ResourceKey, Resource>> {
        self.resources.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn matches(query: &ListQuery, r: &Resource) -> bool {
    query.tags.is_empty() || matches!(&r.spec, Spec::Dataplane(dp) if dp.matches_tags(&query.tags))
}

/// A list query over resources kept in key order: a range scan, already in
/// the order the API pages in. Shared with the kubernetes store's cache.
pub fn list_in(map: &BTreeMap<ResourceKey, Resource>, query: &ListQuery) -> ListPage {
    let start = ResourceKey {
        kind: query.kind,
        mesh: query.mesh.clone().unwrap_or_default(),
        name: String::new(),
    };
    match &query.mesh {
        Some(mesh) => {
            // Every key of `mesh` sorts before `mesh` followed by NUL, and
            // no other mesh's key does: the range holds the mesh's
            // resources alone, with no comparison per key.
            let end = ResourceKey {
                kind: query.kind,
                mesh: format!("{mesh}\0"),
                name: String::new(),
            };
            page_of(map.range(start..end), query)
        }
        None => page_of(
            map.range(start..).take_while(|(k, _)| k.kind == query.kind),
            query,
        ),
    }
}

/// The page `query` asks for out of `entries`, and how many match in all.
fn page_of<'a>(
    entries: impl Iterator<Item = (&'a ResourceKey, &'a Resource)>,
    query: &ListQuery,
) -> ListPage {
    let mut page = ListPage::default();
    for (_, r) in entries.filter(|(_, r)| matches(query, r)) {
        if page.total >= query.offset && query.limit.is_none_or(|l| page.items.len() < l) {
            page.items.push(r.clone());
        }
        page.total += 1;
    }
    page
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn create(&self, mut resource: Resource) -> Result<Resource, StoreError> {
        {
            let mut map = self.write();
            if resource.key.kind.is_mesh_scoped()
                && !map.contains_key(&ResourceKey::mesh(&resource.key.mesh))
            {
                return Err(StoreError::MeshNotFound(resource.key.mesh.clone()));
            }
            if map.contains_key(&resource.key) {
                return Err(StoreError::AlreadyExists(resource.key.clone()));
            }
            resource.version = ResourceVersion::new("1");
            map.insert(resource.key.clone(), resource.clone());
        }
        self.changes
            .announce(ChangeEvent::Created(resource.key.clone()));
        Ok(resource)
    }

    async fn update(&self, mut resource: Resource) -> Result<Resource, StoreError> {
        {
            let mut map = self.write();
            let stored = map
                .get_mut(&resource.key)
                .ok_or_else(|| StoreError::NotFound(resource.key.clone()))?;
            if stored.version != resource.version {
                return Err(StoreError::Conflict {
                    key: resource.key.clone(),
                    expected: resource.version.clone(),
                    actual: stored.version.clone(),
                });
            }
            // This store writes its versions as counters.
            let previous: u64 = stored.version.as_str().parse().unwrap_or(0);
            resource.version = ResourceVersion::new((previous + 1).to_string());
            *stored = resource.clone();
        }
        self.changes
            .announce(ChangeEvent::Updated(resource.key.clone()));
        Ok(resource)
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let removed: Vec<ResourceKey> = {
            let mut map = self.write();
            if map.remove(key).is_none() {
                return Err(StoreError::NotFound(key.clone()));
            }
            let mut removed: Vec<ResourceKey> = deleted_along(key, map.keys())
                .into_iter()
                .filter(|k| map.remove(k).is_some())
                .collect();
            removed.push(key.clone());
            removed
        };
        for k in removed {
            self.changes.announce(ChangeEvent::Deleted(k));
        }
        Ok(())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.read()
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        Ok(list_in(&self.read(), query))
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
