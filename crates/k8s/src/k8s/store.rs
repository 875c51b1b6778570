//! The kubernetes store (`KUMA_STORE_TYPE=kubernetes`): Kuma's custom
//! resources, and the control plane's secrets as Kubernetes `Secret`s of
//! the system namespace.
//!
//! One kube-runtime watcher per kind keeps a cache of the valid resources
//! and turns what it sees into the store's change feed (a watch restart or
//! a relist after `410 Gone` is a resync). Reads (the HTTP API, the feed
//! into the index) are served from that cache; writes go to the API
//! server. An object that fails validation never reaches the cache: it is
//! reported on the object (a Kubernetes Event) and in the log, naming the
//! field, and is treated as absent.

use super::crd::{CRDS, KumaCrd, MESH_LABEL};
use crate::resources::{
    Resource, ResourceKey, ResourceType, ResourceVersion, SecretSpec, Spec, ValidationError,
};
use crate::runtime::Leadership;
use crate::store::memory::list_in;
use crate::store::{
    ChangeEvent, ChangeFeed, ListPage, ListQuery, ResourceStore, StoreError, deleted_along,
};
use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// The data key of a secret's bytes.
const SECRET_DATA_KEY: &str = "value";

#[derive(Debug, thiserror::Error)]
pub enum KubernetesStoreError {
    #[error(
        "kubernetes store: cannot load the Kubernetes client configuration (KUBECONFIG or in-cluster): {0}"
    )]
    Config(#[source] kube::Error),
    #[error(
        "kubernetes store: the API server did not list {kind} within {seconds}s; are Kuma's CRDs installed (kumactl install crds | kubectl apply -f -)?"
    )]
    NotSynced { kind: String, seconds: u64 },
}

/// Where a resource lives on the API server.
#[derive(Debug, Clone)]
struct Location {
    name: String,
    namespace: Option<String>,
    uid: Option<String>,
}

#[derive(Default)]
struct Cache {
    resources: BTreeMap<ResourceKey, Resource>,
    locations: HashMap<ResourceKey, Location>,
}

pub struct KubernetesStore {
    client: kube::Client,
    /// Only the leader writes.
    leadership: Leadership,
    system_namespace: String,
    cache: Arc<RwLock<Cache>>,
    changes: ChangeFeed,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubernetesStore {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
    }
}

fn store_err(e: kube::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl KubernetesStore {
    /// Connects with the in-cluster configuration or `KUBECONFIG`, starts a
    /// watcher per kind, and returns once each has listed what exists.
    pub async fn connect(
        client: kube::Client,
        system_namespace: &str,
        leadership: Leadership,
        sync_timeout: Duration,
    ) -> Result<KubernetesStore, KubernetesStoreError> {
        let cache = Arc::new(RwLock::new(Cache::default()));
        let changes = ChangeFeed::default();
        let mut watchers = Vec::new();
        let mut synced = Vec::new();
        for crd in CRDS {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd.api_resource());
            let (tx, rx) = tokio::sync::oneshot::channel();
            synced.push((crd.kind.name().to_string(), rx));
            let system = system_namespace.to_string();
            let convert = move |o: &DynamicObject| crd_resource(&crd, &system, o);
            watchers.push(tokio::spawn(watch_kind(
                api,
                watcher::Config::default(),
                crd.kind,
                convert,
                Reporter {
                    client: client.clone(),
                    crd: Some(crd),
                },
                cache.clone(),
                changes.clone(),
                tx,
            )));
        }
        let secret_kinds: [(ResourceType, &str, SecretConverter); 2] = [
            (ResourceType::Secret, MESH_LABEL, secret_resource),
            (
                ResourceType::GlobalSecret,
                GLOBAL_SECRET_LABEL,
                global_secret_resource,
            ),
        ];
        for (kind, label, convert) in secret_kinds {
            let secrets: Api<Secret> = Api::namespaced(client.clone(), system_namespace);
            let (tx, rx) = tokio::sync::oneshot::channel();
            synced.push((kind.name().to_string(), rx));
            watchers.push(tokio::spawn(watch_kind(
                secrets,
                watcher::Config::default().labels(label),
                kind,
                convert,
                Reporter {
                    client: client.clone(),
                    crd: None,
                },
                cache.clone(),
                changes.clone(),
                tx,
            )));
        }
        let store = KubernetesStore {
            client,
            leadership,
            system_namespace: system_namespace.to_string(),
            cache,
            changes,
            watchers,
        };
        for (kind, rx) in synced {
            if tokio::time::timeout(sync_timeout, rx).await.is_err() {
                return Err(KubernetesStoreError::NotSynced {
                    kind,
                    seconds: sync_timeout.as_secs(),
                });
            }
        }
        Ok(store)
    }

    fn cached(&self) -> std::sync::RwLockReadGuard<'_, Cache> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.system_namespace)
    }

    /// Where a resource of this key lives: a cluster-scoped object, or
    /// `{name}.{namespace}` (the system namespace when the name has no dot).
    fn location(&self, key: &ResourceKey, crd: &KumaCrd) -> Location {
        if let Some(known) = self.cached().locations.get(key) {
            return known.clone();
        }
        if !crd.namespaced {
            return Location {
                name: key.name.clone(),
                namespace: None,
                uid: None,
            };
        }
        let (name, namespace) = match key.name.rsplit_once('.') {
            Some((name, ns)) => (name.to_string(), ns.to_string()),
            None => (key.name.clone(), self.system_namespace.clone()),
        };
        Location {
            name,
            namespace: Some(namespace),
            uid: None,
        }
    }

    fn crd_api(&self, crd: &KumaCrd, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &crd.api_resource()),
            None => Api::all_with(self.client.clone(), &crd.api_resource()),
        }
    }

    fn require_mesh(&self, key: &ResourceKey) -> Result<(), StoreError> {
        if key.kind.is_mesh_scoped()
            && !self
                .cached()
                .resources
                .contains_key(&ResourceKey::mesh(&key.mesh))
        {
            return Err(StoreError::MeshNotFound(key.mesh.clone()));
        }
        Ok(())
    }

    /// The owner of a resource the control plane writes: an insight belongs
    /// to its dataplane, so it goes when the dataplane goes.
    fn owner(&self, key: &ResourceKey) -> Option<OwnerReference> {
        if key.kind != ResourceType::DataplaneInsight {
            return None;
        }
        let dataplane = ResourceKey::new(ResourceType::Dataplane, &key.mesh, &key.name);
        let location = self.cached().locations.get(&dataplane)?.clone();
        Some(OwnerReference {
            api_version: format!("{}/{}", super::crd::GROUP, super::crd::VERSION),
            kind: ResourceType::Dataplane.name().into(),
            name: location.name,
            uid: location.uid?,
            ..Default::default()
        })
    }

    fn require_leader(&self, key: &ResourceKey) -> Result<(), StoreError> {
        if self.leadership.is_leader() {
            Ok(())
        } else {
            Err(StoreError::NotLeader(key.clone()))
        }
    }

    async fn write(&self, resource: &Resource, create: bool) -> Result<Resource, StoreError> {
        let key = &resource.key;
        self.require_leader(key)?;
        if is_secret(key.kind) {
            return self.write_secret(resource, create).await;
        }
        let crd = KumaCrd::of(key.kind).ok_or_else(|| {
            StoreError::Corrupt(format!("{key}: not a kind of the kubernetes store"))
        })?;
        let location = self.location(key, &crd);
        let mut object = super::crd::to_object(
            &crd,
            resource,
            &location.name,
            location.namespace.as_deref(),
        );
        object.metadata.owner_references = self.owner(key).map(|o| vec![o]);
        object
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(MESH_LABEL.into(), key.mesh.clone());
        let api = self.crd_api(&crd, location.namespace.as_deref());
        let written = if create {
            api.create(&PostParams::default(), &object).await
        } else {
            api.replace(&location.name, &PostParams::default(), &object)
                .await
        };
        let written = written.map_err(|e| self.write_error(key, &resource.version, e))?;
        self.written(
            crd_resource(&crd, &self.system_namespace, &written),
            &written.metadata,
            resource,
            create,
        )
    }

    /// Caches what the API server answered to a write, as the watcher will
    /// see it, so that a read after a write finds it, and announces the
    /// write once, whether this or the watcher caches it first (an update
    /// that changed nothing keeps its version on Kubernetes and no watcher
    /// sees it, but it is a write as in every store); answers the stored
    /// resource.
    fn written(
        &self,
        converted: Converted,
        meta: &ObjectMeta,
        asked: &Resource,
        create: bool,
    ) -> Result<Resource, StoreError> {
        let stored = match converted {
            Converted::Valid(r) => *r,
            // Not what this store reads back: the watcher reports it.
            Converted::Invalid(_) | Converted::Ignored => {
                return Ok(Resource {
                    version: ResourceVersion::new(
                        meta.resource_version.clone().unwrap_or_default(),
                    ),
                    ..asked.clone()
                });
            }
        };
        let event = {
            let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
            remember(&mut c, stored.clone(), locate(meta))
        };
        // None: the watcher cached (and announced) this version first, or
        // the update changed nothing, which no watcher sees.
        let unchanged = !create && stored.version == asked.version;
        if let Some(event) =
            event.or_else(|| unchanged.then(|| ChangeEvent::Updated(stored.key.clone())))
        {
            self.changes.announce(event);
        }
        Ok(stored)
    }

    async fn write_secret(
        &self,
        resource: &Resource,
        create: bool,
    ) -> Result<Resource, StoreError> {
        let Spec::Secret(spec) = &resource.spec else {
            return Err(StoreError::Corrupt(format!(
                "{}: not a secret",
                resource.key
            )));
        };
        let key = &resource.key;
        let bytes = spec
            .bytes()
            .map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
        let name = secret_object_name(key);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.system_namespace.clone()),
                labels: Some(
                    [if key.kind == ResourceType::GlobalSecret {
                        (GLOBAL_SECRET_LABEL.to_string(), "true".to_string())
                    } else {
                        (MESH_LABEL.to_string(), key.mesh.clone())
                    }]
                    .into(),
                ),
                resource_version: (!resource.version.is_unset())
                    .then(|| resource.version.to_string()),
                ..Default::default()
            },
            data: Some([(SECRET_DATA_KEY.to_string(), ByteString(bytes))].into()),
            type_: Some("system.kuma.io/secret".into()),
            ..Default::default()
        };
        let written = if create {
            self.secrets().create(&PostParams::default(), &secret).await
        } else {
            self.secrets()
                .replace(&name, &PostParams::default(), &secret)
                .await
        };
        let written = written.map_err(|e| self.write_error(key, &resource.version, e))?;
        self.written(
            secret_with_key(&written, key.clone()),
            &written.metadata,
            resource,
            create,
        )
    }

    /// Deletes one object; gone for reads at once, so that the watcher's
    /// event for it then finds nothing.
    async fn delete_one(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.require_leader(key)?;
        let result = if is_secret(key.kind) {
            self.secrets()
                .delete(&secret_object_name(key), &DeleteParams::default())
                .await
                .map(|_| ())
        } else {
            let crd = KumaCrd::of(key.kind).ok_or_else(|| StoreError::NotFound(key.clone()))?;
            let location = self.location(key, &crd);
            self.crd_api(&crd, location.namespace.as_deref())
                .delete(&location.name, &DeleteParams::default())
                .await
                .map(|_| ())
        };
        // Gone already (an insight the garbage collector deleted along with
        // its dataplane, say): the cache must not keep it either, until
        // the watch says so.
        let missing = matches!(&result, Err(e) if is_status(e, 404));
        if !missing {
            result.map_err(|e| self.write_error(key, &ResourceVersion::default(), e))?;
        }
        let gone = {
            let mut c = self.cache.write().unwrap_or_else(|e| e.into_inner());
            c.locations.remove(key);
            c.resources.remove(key).is_some()
        };
        if gone {
            self.changes.announce(ChangeEvent::Deleted(key.clone()));
        }
        if missing {
            return Err(StoreError::NotFound(key.clone()));
        }
        Ok(())
    }

    fn write_error(
        &self,
        key: &ResourceKey,
        expected: &ResourceVersion,
        e: kube::Error,
    ) -> StoreError {
        if is_status(&e, 409) && expected.is_unset() {
            StoreError::AlreadyExists(key.clone())
        } else if is_status(&e, 409) {
            StoreError::Conflict {
                key: key.clone(),
                expected: expected.clone(),
                actual: self
                    .cached()
                    .resources
                    .get(key)
                    .map(|r| r.version.clone())
                    .unwrap_or_default(),
            }
        } else if is_status(&e, 404) {
            StoreError::NotFound(key.clone())
        } else {
            store_err(e)
        }
    }
}

/// The label of the control plane's global secrets (user token keys and
/// revocations); mesh secrets carry [`MESH_LABEL`] instead.
const GLOBAL_SECRET_LABEL: &str = "kuma.io/global-secret";

/// Kept as Kubernetes `Secret`s of the system namespace.
fn is_secret(kind: ResourceType) -> bool {
    matches!(kind, ResourceType::Secret | ResourceType::GlobalSecret)
}

/// A secret `name` of `mesh` is the Secret `{mesh}.{name}` (mesh names hold
/// no dot); a global secret is the Secret `{name}`, and its names hold no
/// dot either.
fn secret_object_name(key: &ResourceKey) -> String {
    if key.kind == ResourceType::GlobalSecret {
        key.name.clone()
    } else {
        format!("{}.{}", key.mesh, key.name)
    }
}

/// Reads an object of one of Kuma's kinds as the store holds it.
fn crd_resource(crd: &KumaCrd, system_namespace: &str, object: &DynamicObject) -> Converted {
    match super::crd::to_resource(crd, object) {
        Ok(mut r) => {
            // A policy of an application namespace applies to the proxies
            // of that namespace only, as in Kuma.
            if let Some(ns) = object.metadata.namespace.as_deref()
                && ns != system_namespace
            {
                r.spec.limit_to_namespace(ns);
            }
            Converted::Valid(Box::new(r))
        }
        Err(e) => Converted::Invalid(e),
    }
}

fn secret_resource(secret: &Secret) -> Converted {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let Some((mesh, secret_name)) = name.split_once('.') else {
        return Converted::Ignored;
    };
    secret_with_key(
        secret,
        ResourceKey::new(ResourceType::Secret, mesh, secret_name),
    )
}

fn global_secret_resource(secret: &Secret) -> Converted {
    let name = secret.metadata.name.clone().unwrap_or_default();
    secret_with_key(
        secret,
        ResourceKey::new(ResourceType::GlobalSecret, "", &name),
    )
}

fn secret_with_key(secret: &Secret, key: ResourceKey) -> Converted {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(SECRET_DATA_KEY))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let mut resource = Resource::new(key, Spec::Secret(SecretSpec::from_bytes(&bytes)));
    resource.version =
        ResourceVersion::new(secret.metadata.resource_version.clone().unwrap_or_default());
    Converted::Valid(Box::new(resource))
}

/// Reads a Kubernetes Secret as one kind of resource.
type SecretConverter = fn(&Secret) -> Converted;

enum Converted {
    Valid(Box<Resource>),
    Invalid(ValidationError),
    /// Not one of ours.
    Ignored,
}

/// Says where an invalid object was refused: a log line and a Kubernetes
/// Event on the object, both naming it and the fields at fault.
#[derive(Clone)]
struct Reporter {
    client: kube::Client,
    crd: Option<KumaCrd>,
}

impl Reporter {
    async fn invalid(&self, meta: &ObjectMeta, error: &ValidationError) {
        let kind = self.crd.map(|c| c.kind.name()).unwrap_or("Secret");
        let name = meta.name.clone().unwrap_or_default();
        let namespace = meta.namespace.clone();
        tracing::warn!(
            kind,
            name,
            namespace = namespace.as_deref().unwrap_or(""),
            error = %error,
            "invalid object is not used"
        );
        let involved = serde_json::json!({
            "apiVersion": format!("{}/{}", super::crd::GROUP, super::crd::VERSION),
            "kind": kind, "name": name, "namespace": namespace,
            "uid": meta.uid, "resourceVersion": meta.resource_version,
        });
        let message = format!("{kind} {name} is not valid and is not used: {error}");
        super::events::warn(&self.client, involved, "InvalidResource", &message).await;
    }
}

/// Follows one kind until aborted, keeping its part of the cache and
/// announcing changes. `synced` is told after the first complete list.
#[allow(clippy::too_many_arguments)]
async fn watch_kind<K>(
    api: Api<K>,
    config: watcher::Config,
    kind: ResourceType,
    convert: impl Fn(&K) -> Converted + Send + 'static,
    reporter: Reporter,
    cache: Arc<RwLock<Cache>>,
    changes: ChangeFeed,
    synced: tokio::sync::oneshot::Sender<()>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let mut synced = Some(synced);
    let mut listing: Option<Vec<(Resource, Location)>> = None;
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(kind = kind.name(), error = %e, "watch failed; retrying");
                continue;
            }
        };
        match event {
            watcher::Event::Init => listing = Some(Vec::new()),
            watcher::Event::InitApply(object) => match convert(&object) {
                Converted::Valid(r) => {
                    if let Some(l) = listing.as_mut() {
                        l.push((*r, locate(object.meta())));
                    }
                }
                Converted::Invalid(e) => reporter.invalid(object.meta(), &e).await,
                Converted::Ignored => {}
            },
            watcher::Event::InitDone => {
                let fresh = listing.take().unwrap_or_default();
                {
                    let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
                    c.resources.retain(|k, _| k.kind != kind);
                    c.locations.retain(|k, _| k.kind != kind);
                    for (r, location) in fresh {
                        c.locations.insert(r.key.clone(), location);
                        c.resources.insert(r.key.clone(), r);
                    }
                }
                // Whatever was missed while the watch was down is in the
                // list: subscribers reload.
                changes.announce(ChangeEvent::Resync);
                if let Some(tx) = synced.take() {
                    let _ = tx.send(());
                }
            }
            watcher::Event::Apply(object) => {
                let converted = convert(&object);
                let (events, invalid) = {
                    let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
                    match converted {
                        Converted::Valid(r) => {
                            let event = remember(&mut c, *r, locate(object.meta()));
                            (event.into_iter().collect(), None)
                        }
                        // What was valid before and is not now is gone.
                        Converted::Invalid(e) => {
                            (forget(&mut c, kind, object.meta().uid.as_deref()), Some(e))
                        }
                        Converted::Ignored => (Vec::new(), None),
                    }
                };
                for event in events {
                    changes.announce(event);
                }
                if let Some(e) = invalid {
                    reporter.invalid(object.meta(), &e).await;
                }
            }
            watcher::Event::Delete(object) => {
                let events = {
                    let mut c = cache.write().unwrap_or_else(|e| e.into_inner());
                    forget(&mut c, kind, object.meta().uid.as_deref())
                };
                for event in events {
                    changes.announce(event);
                }
            }
        }
    }
}

fn locate(meta: &ObjectMeta) -> Location {
    Location {
        name: meta.name.clone().unwrap_or_default(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
    }
}

/// Caches `resource` at `location`; answers the change, or none when the
/// cache holds this version already (a write of this process, which
/// cached what it wrote, seen again by the watcher).
fn remember(cache: &mut Cache, resource: Resource, location: Location) -> Option<ChangeEvent> {
    let key = resource.key.clone();
    let version = resource.version.clone();
    cache.locations.insert(key.clone(), location);
    match cache.resources.insert(key.clone(), resource) {
        Some(old) if old.version == version => None,
        Some(_) => Some(ChangeEvent::Updated(key)),
        None => Some(ChangeEvent::Created(key)),
    }
}

/// Drops the cached resource of the object with `uid`; answers its deletion.
fn forget(cache: &mut Cache, kind: ResourceType, uid: Option<&str>) -> Vec<ChangeEvent> {
    let Some(uid) = uid else {
        return Vec::new();
    };
    let gone: Vec<ResourceKey> = cache
        .locations
        .iter()
        .filter(|(k, l)| k.kind == kind && l.uid.as_deref() == Some(uid))
        .map(|(k, _)| k.clone())
        .collect();
    for key in &gone {
        cache.resources.remove(key);
        cache.locations.remove(key);
    }
    gone.into_iter().map(ChangeEvent::Deleted).collect()
}
#[async_trait]
impl ResourceStore for KubernetesStore {
    async fn create(&self, resource: Resource) -> Result<Resource, StoreError> {
        self.require_mesh(&resource.key)?;
        if self.cached().resources.contains_key(&resource.key) {
            return Err(StoreError::AlreadyExists(resource.key));
        }
        self.write(
            &Resource {
                version: ResourceVersion::default(),
                ..resource
            },
            true,
        )
        .await
    }

    async fn update(&self, resource: Resource) -> Result<Resource, StoreError> {
        let Some(actual) = self
            .cached()
            .resources
            .get(&resource.key)
            .map(|r| r.version.clone())
        else {
            return Err(StoreError::NotFound(resource.key));
        };
        // Kubernetes' versions are decimal: any other was never written
        // here, and the API server would answer 500 rather than 409.
        if !resource
            .version
            .to_string()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            return Err(StoreError::Conflict {
                key: resource.key,
                expected: resource.version,
                actual,
            });
        }
        self.write(&resource, false).await
    }

    /// Deletes the resource and what goes with it, as in every store
    /// ([`deleted_along`]): at once, rather than when the garbage collector
    /// follows owner references.
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.delete_one(key).await?;
        let along = deleted_along(key, self.cached().resources.keys());
        for key in along {
            match self.delete_one(&key).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.cached()
            .resources
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        Ok(list_in(&self.cached().resources, query))
    }

    fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.changes.subscribe()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        namespaces
            .list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
            .map_err(store_err)
    }
}
