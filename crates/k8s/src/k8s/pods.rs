//! Pods become Dataplanes. Every running pod that carries the sidecar
//! (annotation `kuma.io/sidecar-injected: "true"`) gets a `Dataplane` in its
//! namespace, named after it and owned by it (Kubernetes deletes it with
//! the pod):
//!
//! - one inbound per port of every `Service` selecting the pod, interface
//!   `{podIP}:{targetPort}:{targetPort}`, tags = the pod's labels +
//!   `service: {service}_{namespace}_svc_{port}` + `protocol` (the port's
//!   `appProtocol`, else the Service annotation
//!   `{port}.service.kuma.io/protocol`, else `tcp`), and the Service's
//!   cluster IP and port as the inbound's `serviceVip`;
//! - `health.ready: false` on every inbound while the pod (or its sidecar)
//!   is not ready, or is terminating, so its endpoints are not used;
//! - `transparentProxying`: the pod reaches every service of its mesh at the
//!   Service address. The outbounds are not written into each Dataplane (as
//!   Kuma does) but derived by the generator from the index: with 10,000
//!   pods, a Service change then rewrites only the Dataplanes of the pods
//!   it selects, not all 10,000.
//!
//! The mesh is the pod's `kuma.io/mesh` annotation, else its namespace's,
//! else `default`. A pod that succeeded, failed or has no IP has no
//! Dataplane; neither has a pod no Service selects (logged), nor one its
//! mesh does not admit (`Mesh.constraints`; an Event on the pod says why).
//! Every inbound carries the tag `k8s.kuma.io/namespace`, so a mesh can
//! admit the pods of chosen namespaces only.

use super::crd::{DEFAULT_MESH, KumaCrd, MESH_LABEL};
use crate::resources::outside_mesh::{OutsideMesh, PodWithoutSidecar};
use crate::resources::{
    DataplaneSpec, InboundHealth, InboundInterface, NAMESPACE_TAG, Networking, ResourceType,
    TransparentProxying,
};
use crate::runtime::{CancellationToken, Leadership};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

pub const SIDECAR_INJECTED: &str = "kuma.io/sidecar-injected";
/// On a namespace (label) or a pod (annotation): `enabled` or `disabled`.
pub const SIDECAR_INJECTION: &str = "kuma.io/sidecar-injection";
pub const TRANSPARENT_PROXYING: &str = "kuma.io/transparent-proxying";
pub const INBOUND_REDIRECT_PORT: &str = "kuma.io/transparent-proxying-inbound-port";
pub const OUTBOUND_REDIRECT_PORT: &str = "kuma.io/transparent-proxying-outbound-port";

/// How long a pod whose Dataplane could not be written waits for the
/// next try.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// Dataplane writes in flight at once. One at a time, each waiting for the
/// API server's answer, kept Dataplanes 4 s behind the last ready pod of a
/// 1,000-pod rollout (66 writes a second against a real API server).
const CONCURRENT_WRITES: usize = 32;

/// Every pod is looked at again this often, changed or not, so that a
/// missed event heals: only differences are written, so a pass over
/// unchanged pods costs no API call.
const RESYNC: Duration = Duration::from_secs(10);

/// What a change asks to look at again.
enum Touch {
    Pod { namespace: String, name: String },
    Namespace(String),
    Everything,
}

/// The desired Dataplane of a pod: its mesh and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub mesh: String,
    pub spec: DataplaneSpec,
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Whether the pod ran to its end (a Job's pod, an evicted one).
fn has_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The mesh a pod joins: its `kuma.io/mesh` annotation, else its
/// namespace's, else `default`. The injector and the controller both ask.
pub fn pod_mesh(pod_annotation: Option<&str>, namespace_annotation: Option<&str>) -> String {
    pod_annotation
        .or(namespace_annotation)
        .unwrap_or(DEFAULT_MESH)
        .to_string()
}

/// Why a pod has no Dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoDataplane {
    /// It has no sidecar.
    NotInjected,
    /// It succeeded or failed.
    Finished,
    /// It has no IP yet.
    NoAddress,
    /// No Service selects it, so it serves nothing.
    NoService,
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The container port a Service's `targetPort` names.
fn target_port(pod: &Pod, port: &k8s_openapi::api::core::v1::ServicePort) -> Option<u16> {
    let port_number = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    u16::try_from(port_number).ok().filter(|p| *p != 0)
}

/// The Dataplane a pod should have, given the Services of its namespace and
/// the namespace itself; or why it should have none.
pub fn desired(
    pod: &Pod,
    services: &[Arc<Service>],
    namespace: Option<&Namespace>,
) -> Result<Desired, NoDataplane> {
    if annotation(&pod.metadata, SIDECAR_INJECTED) != Some("true") {
        return Err(NoDataplane::NotInjected);
    }
    if has_finished(pod) {
        return Err(NoDataplane::Finished);
    }
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
        .ok_or(NoDataplane::NoAddress)?;
    let pod_namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mesh = pod_mesh(
        annotation(&pod.metadata, MESH_LABEL),
        namespace.and_then(|ns| annotation(&ns.metadata, MESH_LABEL)),
    );
    let labels: BTreeMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        // Labels whose value is no valid tag (tags are stricter) are left out.
        .filter(|(k, v)| {
            let tag = [(k.clone(), v.clone())].into();
            crate::resources::tags::validate_tags("", &tag, false).is_empty()
        })
        .collect();
    let health = Some(InboundHealth {
        ready: is_ready(pod),
    });
    let mut inbound: Vec<InboundInterface> = Vec::new();
    let mut sorted: Vec<&Arc<Service>> = services.iter().filter(|s| selects(s, pod)).collect();
    sorted.sort_by_key(|s| s.metadata.name.clone());
    for service in sorted {
        let name = service.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &service.spec else { continue };
        let vip = spec
            .cluster_ip
            .as_deref()
            .filter(|ip| !ip.is_empty() && *ip != "None");
        for port in spec.ports.iter().flatten() {
            let Some(target) = target_port(pod, port) else {
                continue;
            };
            let interface = format!("{ip}:{target}:{target}");
            // Two Services on one container port: the first one names it.
            if inbound.iter().any(|i| i.interface == interface) {
                continue;
            }
            let protocol = port
                .app_protocol
                .clone()
                .or_else(|| {
                    annotation(
                        &service.metadata,
                        &format!("{}.service.kuma.io/protocol", port.port),
                    )
                    .map(str::to_string)
                })
                .unwrap_or_else(|| "tcp".into());
            let mut tags = labels.clone();
            tags.insert(
                "service".into(),
                format!("{name}_{pod_namespace}_svc_{}", port.port),
            );
            tags.insert("protocol".into(), protocol);
            tags.insert(NAMESPACE_TAG.into(), pod_namespace.clone());
            inbound.push(InboundInterface {
                interface,
                tags,
                name: port.name.clone(),
                health: health.clone(),
                service_vip: vip.map(|v| format!("{v}:{}", port.port)),
            });
        }
    }
    if inbound.is_empty() {
        return Err(NoDataplane::NoService);
    }
    let port = |key: &str, default: u16| {
        annotation(&pod.metadata, key)
            .and_then(|p| p.parse().ok())
            .unwrap_or(default)
    };
    let transparent = if annotation(&pod.metadata, TRANSPARENT_PROXYING) == Some("enabled") {
        TransparentProxying {
            redirect_port_inbound: port(INBOUND_REDIRECT_PORT, TransparentProxying::INBOUND_PORT),
            redirect_port_outbound: port(
                OUTBOUND_REDIRECT_PORT,
                TransparentProxying::OUTBOUND_PORT,
            ),
        }
    } else {
        TransparentProxying::default()
    };
    Ok(Desired {
        mesh,
        spec: DataplaneSpec {
            networking: Networking {
                address: None,
                gateway: None,
                inbound,
                outbound: Vec::new(),
                transparent_proxying: Some(transparent),
            },
        },
    })
}

/// Follows pods, Services, namespaces and Dataplanes until shutdown,
/// keeping every pod's Dataplane as [`desired`] says while `leadership`
/// says this replica writes, and `outside` listing the pods without sidecar.
pub async fn run(
    client: kube::Client,
    mut leadership: Leadership,
    outside: OutsideMesh,
    shutdown: CancellationToken,
) {
    let (Some(dataplane_crd), Some(mesh_crd)) = (
        KumaCrd::of(ResourceType::Dataplane),
        KumaCrd::of(ResourceType::Mesh),
    ) else {
        return;
    };
    let (pods, pods_writer) = reflector::store::<Pod>();
    let (services, services_writer) = reflector::store::<Service>();
    let (namespaces, namespaces_writer) = reflector::store::<Namespace>();
    let dataplanes_writer =
        reflector::store::Writer::<DynamicObject>::new(dataplane_crd.api_resource());
    let dataplanes = dataplanes_writer.as_reader();
    let meshes_writer = reflector::store::Writer::<DynamicObject>::new(mesh_crd.api_resource());
    let meshes = meshes_writer.as_reader();

    let pod_of = |meta: &kube::api::ObjectMeta| Touch::Pod {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    };
    let pod_events = follow(pods_writer, Api::<Pod>::all(client.clone()), move |p| {
        pod_of(&p.metadata)
    });
    let service_events = follow(services_writer, Api::<Service>::all(client.clone()), |s| {
        Touch::Namespace(s.metadata.namespace.clone().unwrap_or_default())
    });
    let namespace_events = follow(
        namespaces_writer,
        Api::<Namespace>::all(client.clone()),
        |n| Touch::Namespace(n.metadata.name.clone().unwrap_or_default()),
    );
    // Someone else changed or deleted a Dataplane: put it back.
    let dataplane_events = follow(
        dataplanes_writer,
        Api::<DynamicObject>::all_with(client.clone(), &dataplane_crd.api_resource()),
        move |d| pod_of(&d.metadata),
    );
    // A mesh's constraints decide which pods join it.
    let mesh_events = follow(
        meshes_writer,
        Api::<DynamicObject>::all_with(client.clone(), &mesh_crd.api_resource()),
        |_| Touch::Everything,
    );
    // Pods whose Dataplane could not be written, to look at again.
    let (retry, retries) = tokio::sync::mpsc::unbounded_channel::<Touch>();
    let retry_events = tokio_stream::wrappers::UnboundedReceiverStream::new(retries)
        .map(Some)
        .boxed();
    let resync = futures::stream::unfold((), |()| async {
        tokio::time::sleep(RESYNC).await;
        Some((Some(Touch::Everything), ()))
    })
    .boxed();
    let mut touches = futures::stream::select_all([
        pod_events,
        service_events,
        namespace_events,
        dataplane_events,
        mesh_events,
        retry_events,
        resync,
    ])
    .filter_map(|t| async move { t })
    .boxed();

    let mut stores = Stores {
        pods,
        services,
        namespaces,
        dataplanes,
        meshes,
        crd: dataplane_crd,
        mesh_crd,
        client,
        outside,
        reported: BTreeSet::new(),
        refused: BTreeSet::new(),
        leading: leadership.is_leader(),
    };
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            // A new leader looks at everything: the old one may have left
            // work undone.
            _ = leadership.changed() => {
                stores.leading = leadership.is_leader();
                Touch::Everything
            }
            t = touches.next() => match t { Some(t) => t, None => return },
        };
        // Coalesce a burst: a new Service touches many pods at once.
        let mut batch = vec![first];
        let deadline = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                t = touches.next() => match t { Some(t) => batch.push(t), None => break },
            }
        }
        let services = stores.services_by_namespace();
        let mut writes = Vec::new();
        for (namespace, name) in stores.pods_touched(batch) {
            let in_namespace = services.get(&namespace).map(Vec::as_slice).unwrap_or(&[]);
            writes.extend(stores.reconcile(&namespace, &name, in_namespace).await);
        }
        // The writes of a batch are of different pods: sent together.
        let mut done = futures::stream::iter(writes.into_iter().map(DataplaneWrite::send))
            .buffer_unordered(CONCURRENT_WRITES);
        while let Some(failed) = done.next().await {
            if let Some((namespace, name)) = failed {
                let retry = retry.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RETRY_DELAY).await;
                    let _ = retry.send(Touch::Pod { namespace, name });
                });
            }
        }
    }
}

/// Follows one kind into its reflector store; every change says what to
/// look at again, and a (re)list means everything.
fn follow<K>(
    writer: reflector::store::Writer<K>,
    api: Api<K>,
    touch: impl Fn(&K) -> Touch + Send + 'static,
) -> futures::stream::BoxStream<'static, Option<Touch>>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .map(move |e| match e {
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => Some(touch(&o)),
            Ok(watcher::Event::InitDone) => Some(Touch::Everything),
            _ => None,
        })
        .boxed()
}

struct Stores {
    pods: Store<Pod>,
    services: Store<Service>,
    namespaces: Store<Namespace>,
    dataplanes: Store<DynamicObject>,
    meshes: Store<DynamicObject>,
    crd: KumaCrd,
    mesh_crd: KumaCrd,
    client: kube::Client,
    outside: OutsideMesh,
    /// Pods (by uid) already given an Event for their missing sidecar.
    reported: BTreeSet<String>,
    /// Pods (uid, reason) already given an Event for their mesh refusing them.
    refused: BTreeSet<(String, String)>,
    /// Whether this replica writes.
    leading: bool,
}

impl Stores {
    /// The pods (and Dataplanes whose pod may be gone) a batch names.
    fn pods_touched(&self, batch: Vec<Touch>) -> BTreeSet<(String, String)> {
        let mut namespaces = BTreeSet::new();
        let mut out = BTreeSet::new();
        let mut everything = false;
        for t in batch {
            match t {
                Touch::Pod { namespace, name } => {
                    out.insert((namespace, name));
                }
                Touch::Namespace(ns) => {
                    namespaces.insert(ns);
                }
                Touch::Everything => everything = true,
            }
        }
        let key = |meta: &kube::api::ObjectMeta| {
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        for pod in self.pods.state() {
            if everything || namespaces.contains(pod.metadata.namespace.as_deref().unwrap_or("")) {
                out.insert(key(&pod.metadata));
            }
        }
        if everything {
            out.extend(self.dataplanes.state().iter().map(|d| key(&d.metadata)));
        }
        out
    }

    /// `want`, unless its mesh does not admit it: then no Dataplane, and an
    /// Event on the pod, once per reason.
    async fn admitted(&mut self, want: Desired, pod: &Pod) -> Option<Desired> {
        let mesh = self
            .meshes
            .get(&ObjectRef::new_with(
                &want.mesh,
                self.mesh_crd.api_resource(),
            ))
            .and_then(|o| super::crd::to_resource(&self.mesh_crd, &o).ok());
        let Some(crate::resources::Spec::Mesh(spec)) = mesh.map(|m| m.spec) else {
            return Some(want);
        };
        let Err(why) = spec.admits(&want.mesh, &want.spec) else {
            return Some(want);
        };
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let reason = format!(
            "pod {namespace}/{name} has no Dataplane: {why}; its kuma.io/mesh names mesh \"{}\"",
            want.mesh
        );
        if self.refused.insert((uid.clone(), reason.clone())) {
            tracing::warn!(namespace, pod = name, "{reason}");
            let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": name,
                                  "namespace": namespace, "uid": uid});
            super::events::warn(&self.client, involved, "MeshRefusedPod", &reason).await;
        }
        None
    }

    /// Lists (or forgets) a pod of a namespace labelled for injection that
    /// has no sidecar, and records an Event on it once.
    async fn check_sidecar(&mut self, pod: Option<&Pod>, namespace: &str, name: &str) {
        let ns = self.namespaces.get(&ObjectRef::new(namespace));
        let injecting = ns.as_ref().is_some_and(|ns| {
            ns.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SIDECAR_INJECTION))
                .is_some_and(|v| v == "enabled")
        });
        let missing = pod.filter(|pod| {
            injecting
                && annotation(&pod.metadata, SIDECAR_INJECTED) != Some("true")
                && annotation(&pod.metadata, SIDECAR_INJECTION) != Some("disabled")
                && pod.metadata.deletion_timestamp.is_none()
                && !has_finished(pod)
        });
        let Some(pod) = missing else {
            self.outside.remove(namespace, name);
            return;
        };
        let mesh = pod_mesh(
            annotation(&pod.metadata, MESH_LABEL),
            ns.as_ref()
                .and_then(|ns| annotation(&ns.metadata, MESH_LABEL)),
        );
        let reason = format!(
            "pod {namespace}/{name} is outside the mesh: its namespace is labelled {SIDECAR_INJECTION}=enabled but the pod has no kuma-sidecar (it was probably created before the injector was up); restart it, e.g. kubectl -n {namespace} delete pod {name}"
        );
        self.outside.set(PodWithoutSidecar {
            mesh,
            namespace: namespace.into(),
            pod: name.into(),
            reason: reason.clone(),
        });
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if self.leading && self.reported.insert(uid.clone()) {
            tracing::warn!(namespace, pod = name, "{reason}");
            let involved = json!({"apiVersion": "v1", "kind": "Pod", "name": name,
                                  "namespace": namespace, "uid": uid});
            super::events::warn(&self.client, involved, "SidecarMissing", &reason).await;
        }
    }

    /// Every Service, by namespace: read once per batch rather than once
    /// per pod.
    fn services_by_namespace(&self) -> HashMap<String, Vec<Arc<Service>>> {
        let mut by_namespace: HashMap<String, Vec<Arc<Service>>> = HashMap::new();
        for service in self.services.state() {
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            by_namespace.entry(namespace).or_default().push(service);
        }
        by_namespace
    }

    /// What brings one pod's Dataplane in line: a write, or none when it
    /// is as it should be (or this replica does not lead).
    async fn reconcile(
        &mut self,
        namespace: &str,
        name: &str,
        services: &[Arc<Service>],
    ) -> Option<DataplaneWrite> {
        let pod = self.pods.get(&ObjectRef::new(name).within(namespace));
        self.check_sidecar(pod.as_deref(), namespace, name).await;
        if !self.leading {
            return None;
        }
        let ns = self.namespaces.get(&ObjectRef::new(namespace));
        // A namespace being deleted takes its Dataplanes with it; the API
        // server refuses new objects in it, so nothing is written there.
        if ns
            .as_ref()
            .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
        {
            return None;
        }
        let existing = self
            .dataplanes
            .get(&ObjectRef::new_with(name, self.crd.api_resource()).within(namespace));
        let owned = |d: &DynamicObject, uid: Option<&str>| {
            d.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Pod" && o.name == name && uid.is_none_or(|u| o.uid == u))
        };
        let want = match pod
            .as_deref()
            .map(|pod| desired(pod, services, ns.as_deref()))
        {
            Some(Ok(want)) => Some(want),
            Some(Err(NoDataplane::NoService)) => {
                tracing::warn!(
                    namespace,
                    pod = name,
                    "no Service selects the pod: it gets no Dataplane until one does"
                );
                None
            }
            Some(Err(_)) | None => None,
        };
        let want = match (want, pod.as_deref()) {
            (Some(want), Some(pod)) => self.admitted(want, pod).await,
            _ => None,
        };
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), namespace, &self.crd.api_resource());
        let pod_uid = pod.as_ref().and_then(|p| p.metadata.uid.clone());
        let write = |change| DataplaneWrite {
            api,
            namespace: namespace.to_string(),
            name: name.to_string(),
            change,
        };
        match (want, existing) {
            (None, Some(d)) if owned(&d, None) => {
                tracing::info!(
                    namespace,
                    dataplane = name,
                    "deleting the Dataplane of a pod that no longer qualifies"
                );
                Some(write(Change::Delete))
            }
            (None, _) => None,
            (Some(want), existing) => {
                let pod = pod?;
                let mut object = self.object(&want, &pod, name, namespace);
                match existing {
                    Some(d)
                        if d.data.get("mesh") == object.data.get("mesh")
                            && d.data.get("spec") == object.data.get("spec")
                            && owned(&d, pod_uid.as_deref()) =>
                    {
                        None
                    }
                    Some(d) => {
                        object.metadata.resource_version = d.metadata.resource_version.clone();
                        Some(write(Change::Replace(object)))
                    }
                    None => Some(write(Change::Create(object))),
                }
            }
        }
    }

    fn object(&self, want: &Desired, pod: &Pod, name: &str, namespace: &str) -> DynamicObject {
        let mut object = DynamicObject::new(name, &self.crd.api_resource()).within(namespace);
        object.metadata.labels = Some([(MESH_LABEL.to_string(), want.mesh.clone())].into());
        object.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: name.into(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        object.data = json!({
            "mesh": want.mesh,
            "spec": serde_json::to_value(&want.spec).unwrap_or(Value::Null),
        });
        object
    }
}

/// How a pod's Dataplane changes.
enum Change {
    Create(DynamicObject),
    Replace(DynamicObject),
    Delete,
}

/// One write of one pod's Dataplane, decided from the caches and sent
/// beside the other writes of its batch.
struct DataplaneWrite {
    api: Api<DynamicObject>,
    namespace: String,
    name: String,
    change: Change,
}

impl DataplaneWrite {
    /// Sends the write; answers the pod (namespace, name) when it failed
    /// and is worth trying again.
    async fn send(self) -> Option<(String, String)> {
        let DataplaneWrite {
            api,
            namespace,
            name,
            change,
        } = self;
        let result = match &change {
            Change::Create(object) => api.create(&PostParams::default(), object).await.map(|_| ()),
            Change::Replace(object) => api
                .replace(&name, &PostParams::default(), object)
                .await
                .map(|_| ()),
            Change::Delete => api
                .delete(&name, &DeleteParams::default())
                .await
                .map(|_| ()),
        };
        match result {
            Ok(()) => None,
            // Already gone: its namespace (or someone) deleted it first.
            Err(kube::Error::Api(e)) if e.code == 404 && matches!(change, Change::Delete) => None,
            // Its namespace is being deleted, the pod with it: nothing
            // more to write there, and no reason for alarm.
            Err(kube::Error::Api(e)) if namespace_terminating(&e) => {
                tracing::debug!(
                    namespace,
                    dataplane = name,
                    "the namespace is being deleted: its pod's Dataplane is not written"
                );
                None
            }
            Err(e) => {
                // A conflict (a cache a step behind), a race with the pod's
                // deletion, an API error: tried again shortly, rather than
                // left until something else about the pod changes.
                tracing::warn!(namespace, dataplane = name, error = %e, "cannot write the pod's Dataplane; trying again in {RETRY_DELAY:?}");
                Some((namespace, name))
            }
        }
    }
}

/// Whether the API server refused a write because the object's namespace
/// is being deleted.
fn namespace_terminating(status: &kube::core::Status) -> bool {
    status.code == 403
        && status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

#[cfg(test)]
mod tests {
    //! [`desired`] against golden files: each `testdata/pods/<case>.yaml`
    //! holds a pod, the Services of its namespace and (optionally) the
    //! namespace; `<case>.golden.yaml` the Dataplane it should have (its
    //! mesh and spec), or why it has none. `UPDATE_GOLDEN=1` rewrites them.
    use super::*;

    fn inputs(text: &str) -> (Pod, Vec<Arc<Service>>, Option<Namespace>) {
        let (mut pod, mut services, mut namespace) = (None, Vec::new(), None);
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value = serde_yaml_ng::Value::deserialize(document).expect("a YAML document");
            match value["kind"].as_str() {
                Some("Pod") => pod = Some(serde_yaml_ng::from_value(value).expect("a Pod")),
                Some("Service") => services.push(Arc::new(
                    serde_yaml_ng::from_value(value).expect("a Service"),
                )),
                Some("Namespace") => {
                    namespace = Some(serde_yaml_ng::from_value(value).expect("a Namespace"))
                }
                other => panic!("unexpected kind {other:?}"),
            }
        }
        (pod.expect("a Pod in every case"), services, namespace)
    }

    fn rendered(answer: Result<Desired, NoDataplane>) -> String {
        match answer {
            Ok(Desired { mesh, spec }) => {
                let document = serde_json::json!({"mesh": mesh, "spec": spec});
                serde_yaml_ng::to_string(&document).expect("YAML")
            }
            Err(why) => format!("no Dataplane: {why:?}\n"),
        }
    }

    use serde::Deserialize;

    #[test]
    fn pods_become_the_dataplanes_of_the_golden_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/k8s/testdata/pods");
        let mut cases: Vec<_> = std::fs::read_dir(&dir)
            .expect("the cases")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.to_string_lossy().ends_with(".golden.yaml"))
            .collect();
        cases.sort();
        assert!(cases.len() >= 8, "cases missing in {}", dir.display());
        let mut stale = Vec::new();
        for case in cases {
            let (pod, services, namespace) = inputs(&std::fs::read_to_string(&case).unwrap());
            let actual = rendered(desired(&pod, &services, namespace.as_ref()));
            let golden = case.with_extension("golden.yaml");
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&golden, &actual).unwrap();
            }
            if std::fs::read_to_string(&golden).unwrap_or_default() != actual {
                stale.push(format!("{}:\n{actual}", golden.display()));
            }
        }
        assert!(
            stale.is_empty(),
            "differs (rerun with UPDATE_GOLDEN=1 and review the diff):\n{}",
            stale.join("\n")
        );
    }
}
