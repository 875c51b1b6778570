//! Stores: where resources live, behind one trait with optimistic
//! concurrency and a change feed.
//!
//! - [`memory::MemoryStore`]: the default, nothing to set up, lost on exit.
//! - `postgres::PostgresStore` (crate `kuma-store-postgres`): durable, shared by
//!   several `kuma-cp` instances, whose change feeds all see every write
//!   through `LISTEN/NOTIFY`.
//!
//! Every store keeps the same rules, pinned by the conformance suite
//! (`tests/support/src/store_cases.rs`, run against every store): names
//! are unique per kind and mesh (on Kubernetes, per namespace); a
//! mesh-scoped resource needs its mesh; deleting a mesh deletes what is in
//! it, a dataplane its insight ([`deleted_along`]); an update carrying a
//! stale version is refused.

pub mod memory;
pub mod migrations;

use crate::resources::{Resource, ResourceKey, ResourceType, ResourceVersion, Spec, tags::Tags};
use async_trait::async_trait;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What a store deletes along with `deleted`: a mesh every resource in
/// it, among the `stored` keys; a dataplane its insight (whether stored or
/// not: `stored` is then not read). Postgres says the same in SQL: a
/// foreign key that cascades from the mesh, and one statement deleting a
/// dataplane and its insight.
pub fn deleted_along<'a>(
    deleted: &ResourceKey,
    stored: impl Iterator<Item = &'a ResourceKey>,
) -> Vec<ResourceKey> {
    match deleted.kind {
        ResourceType::Mesh => stored
            .filter(|k| k.kind.is_mesh_scoped() && k.mesh == deleted.name)
            .cloned()
            .collect(),
        ResourceType::Dataplane => vec![ResourceKey::new(
            ResourceType::DataplaneInsight,
            &deleted.mesh,
            &deleted.name,
        )],
        _ => Vec::new(),
    }
}

/// What the rest of the control plane hears about the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    Created(ResourceKey),
    Updated(ResourceKey),
    Deleted(ResourceKey),
    /// Events may have been missed (a subscriber lagged, or the connection
    /// to the database was lost); subscribers should reload what they keep.
    Resync,
}

/// A store's change feed, which every subscriber hears. It carries every
/// change but those of the kinds that are not announced
/// ([`ResourceType::is_announced`]); each store announces through it, so
/// the rule holds in one place.
#[derive(Clone)]
pub struct ChangeFeed(broadcast::Sender<ChangeEvent>);

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed(broadcast::channel(CHANGE_FEED_CAPACITY).0)
    }
}

impl ChangeFeed {
    /// Tells every subscriber (none is fine) of `change`, unless its kind
    /// is not announced.
    pub fn announce(&self, change: ChangeEvent) {
        let announced = match &change {
            ChangeEvent::Created(key) | ChangeEvent::Updated(key) | ChangeEvent::Deleted(key) => {
                key.kind.is_announced()
            }
            ChangeEvent::Resync => true,
        };
        if announced {
            let _ = self.0.send(change);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.0.subscribe()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    #[error(
        "{key} was changed concurrently: the update was based on version {expected}, the stored version is {actual}"
    )]
    Conflict {
        key: ResourceKey,
        expected: ResourceVersion,
        actual: ResourceVersion,
    },
    #[error("mesh \"{0}\" does not exist")]
    MeshNotFound(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store holds data it cannot read: {0}")]
    Corrupt(String),
    /// Several control planes share the store and another one writes now.
    #[error("{0} was not written: this control plane is not the leader")]
    NotLeader(ResourceKey),
}

/// Which resources to list. Results are ordered by mesh, then name.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub kind: ResourceType,
    /// Only this mesh; every mesh when `None`.
    pub mesh: Option<String>,
    /// Dataplanes only: some inbound must carry all of these tags.
    pub tags: Tags,
    pub offset: usize,
    /// At most this many items; all when `None`.
    pub limit: Option<usize>,
}

impl ListQuery {
    pub fn of(kind: ResourceType, mesh: Option<&str>) -> Self {
        ListQuery {
            kind,
            mesh: mesh.map(str::to_string),
            tags: Tags::new(),
            offset: 0,
            limit: None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub items: Vec<Resource>,
    /// How many resources match in all, across pages.
    pub total: usize,
}

/// Size of every store's change-feed buffer; a subscriber further behind
/// than this gets [`ChangeEvent::Resync`].
const CHANGE_FEED_CAPACITY: usize = 16 * 1024;

#[async_trait]
pub trait ResourceStore: Send + Sync + 'static {
    /// Stores a new resource at a first version.
    async fn create(&self, resource: Resource) -> Result<Resource, StoreError>;
    /// Replaces a resource; `resource.version` must be the stored version,
    /// and the stored copy gets the next one.
    async fn update(&self, resource: Resource) -> Result<Resource, StoreError>;
    /// Deletes a resource; a mesh takes everything in it along, and a
    /// dataplane its insight.
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError>;
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError>;
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError>;
    /// Every change from now on, from this process or (Postgres) another,
    /// but those of dataplane insights ([`ChangeFeed`]).
    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent>;
    /// Answers whether the store can serve requests now.
    async fn ping(&self) -> Result<(), StoreError>;
}

pub type SharedStore = Arc<dyn ResourceStore>;

/// Creates the resource, or updates it from whatever version is stored.
/// Returns the stored copy and whether it was created.
pub async fn upsert(
    store: &dyn ResourceStore,
    mut resource: Resource,
) -> Result<(Resource, bool), StoreError> {
    match store.get(&resource.key).await {
        Ok(existing) => {
            resource.version = existing.version;
            Ok((store.update(resource).await?, false))
        }
        Err(StoreError::NotFound(_)) => Ok((store.create(resource).await?, true)),
        Err(e) => Err(e),
    }
}

/// Read-modify-write with optimistic concurrency: reads the resource (None
/// when missing), asks `change` for its new spec (None: leave it as it is),
/// and writes that, starting over when another writer got there first.
/// Answers the resource as stored afterwards (None when it was missing and
/// left so).
pub async fn modify<E: From<StoreError>>(
    store: &dyn ResourceStore,
    key: &ResourceKey,
    mut change: impl FnMut(Option<&Resource>) -> Result<Option<Spec>, E>,
) -> Result<Option<Resource>, E> {
    const ATTEMPTS: usize = 5;
    let mut lost_race = None;
    for _ in 0..ATTEMPTS {
        let existing = match store.get(key).await {
            Ok(r) => Some(r),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(spec) = change(existing.as_ref())? else {
            return Ok(existing);
        };
        let written = match existing {
            Some(mut r) => {
                r.spec = spec;
                store.update(r).await
            }
            None => store.create(Resource::new(key.clone(), spec)).await,
        };
        match written {
            Ok(stored) => return Ok(Some(stored)),
            Err(e @ (StoreError::Conflict { .. } | StoreError::AlreadyExists(_))) => {
                lost_race = Some(e)
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(lost_race
        .unwrap_or_else(|| StoreError::Unavailable(format!("{key} keeps changing")))
        .into())
}

/// Answers `MeshNotFound` unless the mesh exists.
pub async fn require_mesh(store: &dyn ResourceStore, mesh: &str) -> Result<(), StoreError> {
    match store.get(&ResourceKey::mesh(mesh)).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound(_)) => Err(StoreError::MeshNotFound(mesh.to_string())),
        Err(e) => Err(e),
    }
}
