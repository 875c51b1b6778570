//! The cases every store must pass (the store conformance suite): the
//! memory store and the Postgres store run them in `tests/it`, the
//! kubernetes store against the real test cluster in `tests/k8s/store.rs`.
//! Each case takes a store of its own, empty but for what it writes.

use kuma_core::resources::{
    DataplaneSpec, InboundInterface, MeshSpec, Networking, Resource, ResourceKey, ResourceType,
    Selector, Spec, TrafficPermissionRule, TrafficPermissionSpec,
};
use kuma_core::store::{ChangeEvent, ListQuery, ResourceStore, StoreError};
use std::time::Duration;
use tokio::sync::broadcast;

/// The namespace in the names of mesh-scoped resources: on Kubernetes a
/// name is `name.namespace` (the kubernetes store keeps the object in that
/// namespace), and every store takes such names.
const NAMESPACE: &str = "kuma-system";

/// `base` as the name of a mesh-scoped resource (see [`NAMESPACE`]); the
/// fixtures below name theirs so.
pub fn named(base: &str) -> String {
    format!("{base}.{NAMESPACE}")
}

pub fn mesh(name: &str) -> Resource {
    Resource::new(ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
}

pub fn dataplane(mesh: &str, name: &str, service: &str, port: u16) -> Resource {
    Resource::new(
        ResourceKey::new(ResourceType::Dataplane, mesh, &named(name)),
        Spec::Dataplane(DataplaneSpec {
            networking: Networking {
                address: None,
                gateway: None,
                inbound: vec![InboundInterface {
                    interface: format!("127.0.0.1:{port}:{}", port + 1),
                    tags: [("service".to_string(), service.to_string())].into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        }),
    )
}

pub fn permission(mesh: &str, name: &str) -> Resource {
    let selector = |s: &str| Selector {
        match_tags: [("service".to_string(), s.to_string())].into(),
    };
    Resource::new(
        ResourceKey::new(ResourceType::TrafficPermission, mesh, &named(name)),
        Spec::TrafficPermission(TrafficPermissionSpec {
            rules: vec![TrafficPermissionRule {
                sources: vec![selector("web")],
                destinations: vec![selector("backend")],
            }],
        }),
    )
}

/// The next event, or a panic naming what was awaited.
pub async fn next_event(rx: &mut broadcast::Receiver<ChangeEvent>, what: &str) -> ChangeEvent {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no change event within 10 s for {what}"))
        .expect("feed open")
}

/// One document of every kind users write, in mesh `m`, each as the
/// HTTP API would take it.
const EVERY_KIND: &str = r#"
type: Dataplane
mesh: m
name: web-1.kuma-system
networking:
  inbound: [{interface: '127.0.0.1:1000:1001', tags: {service: web, version: '2'}}]
---
type: TrafficPermission
mesh: m
name: tp.kuma-system
rules: [{sources: [{match: {service: web}}], destinations: [{match: {service: '*'}}]}]
---
type: TrafficLog
mesh: m
name: tl.kuma-system
rules: [{sources: [{match: {service: web}}], destinations: [{match: {service: '*'}}], conf: {backend: file}}]
---
type: TrafficRoute
mesh: m
name: tr.kuma-system
sources: [{match: {service: web}}]
destinations: [{match: {service: backend}}]
conf: [{weight: 90, destination: {service: backend, version: '1'}}, {weight: 10, destination: {service: backend, version: '2'}}]
---
type: TrafficTrace
mesh: m
name: tt.kuma-system
selectors: [{match: {service: '*'}}]
conf: {backend: zipkin}
---
type: ProxyTemplate
mesh: m
name: pt.kuma-system
selectors: [{match: {service: web}}]
imports: [default-proxy]
resources:
- name: extra
  resource: |
    '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: extra
    connectTimeout: 1s
---
type: MeshGateway
mesh: m
name: edge.kuma-system
selectors: [{match: {service: edge}}]
conf: {listeners: [{port: 8080, protocol: TCP, crossMesh: true}]}
---
type: MeshGatewayRoute
mesh: m
name: edge.kuma-system
selectors: [{match: {service: edge}}]
conf: {tcp: {rules: [{backends: [{destination: {service: web}}]}]}}
---
type: AccessRole
name: team-m
rules:
- types: [TrafficPermission]
  mesh: m
  access: [CREATE, DELETE]
---
type: AccessRoleBinding
name: team-m
subjects: [{type: Group, name: team-m}]
roles: [team-m]
---
type: MeshTrafficPermission
mesh: m
name: mtp.kuma-system
spec:
  targetRef: {kind: MeshService, name: web}
  from:
  - targetRef: {kind: MeshSubset, tags: {kuma.io/service: api}}
    default: {action: AllowWithShadowDeny}
---
type: MeshTCPRoute
mesh: m
name: tcp.kuma-system
spec:
  to:
  - targetRef: {kind: MeshService, name: web}
    rules:
    - default:
        backendRefs: [{kind: MeshServiceSubset, name: web, tags: {version: v2}, weight: 10}]
---
type: MeshHTTPRoute
mesh: m
name: http.kuma-system
spec:
  targetRef: {kind: Dataplane, labels: {app: front}}
  to:
  - targetRef: {kind: MeshService, name: web}
    rules:
    - matches: [{path: {type: PathPrefix, value: /v2}, method: GET}]
      default:
        filters: [{type: RequestMirror, requestMirror: {percentage: 50, backendRef: {kind: MeshService, name: shadow}}}]
---
type: MeshTLS
mesh: m
name: tls.kuma-system
spec:
  from:
  - targetRef: {kind: Mesh}
    default: {mode: Permissive, tlsVersion: {min: TLS12, max: TLS13}}
"#;

/// Every kind users write is stored, read back equal, listed and
/// deleted alike.
pub async fn every_kind_round_trips(s: &dyn ResourceStore) {
    let mut m = mesh("m");
    m.spec = Spec::Mesh(
        serde_json::from_value(serde_json::json!({
            "logging": {"backends": [{"name": "file", "file": {"path": "/tmp/log"}}]},
            "tracing": {"defaultBackend": "zipkin", "backends": [{"name": "zipkin", "type": "zipkin",
                "sampling": 10.0, "conf": {"url": "http://zipkin:9411/api/v2/spans"}}]},
            "constraints": {"dataplaneProxy": {"requirements": [{"tags": {"team": "m"}}]}}
        }))
        .unwrap(),
    );
    s.create(m.clone()).await.unwrap();
    assert_eq!(s.get(&m.key).await.unwrap().spec, m.spec, "the mesh");
    let mut kinds = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(EVERY_KIND) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        let resource =
            Resource::from_json(value, kuma_core::resources::Identity::FromDocument).unwrap();
        s.create(resource.clone()).await.unwrap();
        let back = s.get(&resource.key).await.unwrap();
        assert_eq!(back.spec, resource.spec, "{}", resource.key);
        let kind = resource.key.kind;
        let listed = s
            .list(&ListQuery::of(kind, kind.is_mesh_scoped().then_some("m")))
            .await
            .unwrap();
        let expected = if kind == ResourceType::Mesh { 2 } else { 1 };
        assert_eq!(listed.items.len(), expected, "{}", resource.key);
        kinds.push(resource.key.kind);
        s.delete(&resource.key).await.unwrap();
        assert!(matches!(
            s.get(&resource.key).await,
            Err(StoreError::NotFound(_))
        ));
    }
    let every: Vec<ResourceType> = ResourceType::ALL
        .into_iter()
        .filter(|k| k.is_user_managed() && *k != ResourceType::Mesh)
        .collect();
    kinds.sort();
    assert_eq!(kinds, every, "the documents cover every kind users write");
}

pub async fn create_assigns_a_version_and_get_returns_it(s: &dyn ResourceStore) {
    let created = s.create(mesh("m1")).await.unwrap();
    assert!(!created.version.is_unset());
    assert_eq!(s.get(&ResourceKey::mesh("m1")).await.unwrap(), created);
    let dp = s.create(dataplane("m1", "dp", "web", 1000)).await.unwrap();
    assert_eq!(s.get(&dp.key).await.unwrap(), dp);
}

pub async fn names_are_unique_per_mesh_and_kind(s: &dyn ResourceStore) {
    s.create(mesh("a")).await.unwrap();
    s.create(mesh("b")).await.unwrap();
    s.create(dataplane("a", "x", "web", 1000)).await.unwrap();
    let again = s.create(dataplane("a", "x", "web", 2000)).await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "{again:?}"
    );
    // Same name in another mesh, or of another kind, is a different resource.
    s.create(dataplane("b", "x", "web", 1000)).await.unwrap();
    s.create(permission("a", "x")).await.unwrap();
    let stored = s
        .get(&ResourceKey::new(ResourceType::Dataplane, "a", &named("x")))
        .await
        .unwrap();
    assert_eq!(
        stored.spec,
        dataplane("a", "x", "web", 1000).spec,
        "the clash changed nothing"
    );
}

pub async fn resources_need_their_mesh(s: &dyn ResourceStore) {
    let r = s.create(dataplane("nowhere", "dp", "web", 1000)).await;
    assert_eq!(r, Err(StoreError::MeshNotFound("nowhere".into())));
    let page = s
        .list(&ListQuery::of(ResourceType::Dataplane, None))
        .await
        .unwrap();
    assert_eq!(page.total, 0);
}

pub async fn stale_updates_are_refused(s: &dyn ResourceStore) {
    let v1 = s.create(mesh("m")).await.unwrap();
    let mut change = v1.clone();
    change.spec = Spec::Mesh(MeshSpec {
        tracing: Some(Default::default()),
        ..Default::default()
    });
    let v2 = s.update(change.clone()).await.unwrap();
    assert_ne!(v2.version, v1.version);
    // A writer that read the first version loses.
    let stale = s.update(change).await;
    assert_eq!(
        stale,
        Err(StoreError::Conflict {
            key: v1.key.clone(),
            expected: v1.version.clone(),
            actual: v2.version.clone()
        })
    );
    // A version this store never wrote is stale too.
    let mut foreign = v2.clone();
    foreign.version = kuma_core::resources::ResourceVersion::new("not-a-version");
    let unknown = s.update(foreign).await;
    assert!(
        matches!(unknown, Err(StoreError::Conflict { .. })),
        "an unknown version must be refused: {unknown:?}"
    );
    assert_eq!(s.get(&v1.key).await.unwrap(), v2);
    let missing = s.update(mesh("ghost")).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

pub async fn deleting_a_mesh_deletes_what_is_in_it(s: &dyn ResourceStore) {
    s.create(mesh("doomed")).await.unwrap();
    s.create(mesh("kept")).await.unwrap();
    s.create(dataplane("doomed", "dp", "web", 1000))
        .await
        .unwrap();
    s.create(permission("doomed", "tp")).await.unwrap();
    s.create(dataplane("kept", "kept-dp", "web", 1000))
        .await
        .unwrap();
    s.delete(&ResourceKey::mesh("doomed")).await.unwrap();
    for kind in [ResourceType::Dataplane, ResourceType::TrafficPermission] {
        let left = s.list(&ListQuery::of(kind, Some("doomed"))).await.unwrap();
        assert_eq!(left.total, 0, "{kind} left in a deleted mesh");
    }
    assert!(
        s.get(&ResourceKey::new(
            ResourceType::Dataplane,
            "kept",
            &named("kept-dp")
        ))
        .await
        .is_ok()
    );
    // A mesh created again under the same name starts empty.
    s.create(mesh("doomed")).await.unwrap();
    let page = s
        .list(&ListQuery::of(ResourceType::Dataplane, Some("doomed")))
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    let again = s
        .delete(&ResourceKey::new(
            ResourceType::Dataplane,
            "doomed",
            &named("dp"),
        ))
        .await;
    assert!(matches!(again, Err(StoreError::NotFound(_))), "{again:?}");
}

pub async fn lists_page_in_name_order_and_filter_by_tag(s: &dyn ResourceStore) {
    s.create(mesh("m")).await.unwrap();
    s.create(mesh("other")).await.unwrap();
    for i in (0..25).rev() {
        let service = if i % 5 == 0 { "redis" } else { "web" };
        s.create(dataplane("m", &format!("dp-{i:02}"), service, 1000))
            .await
            .unwrap();
    }
    s.create(dataplane("other", "dp-x", "redis", 1000))
        .await
        .unwrap();
    let mut q = ListQuery::of(ResourceType::Dataplane, Some("m"));
    q.offset = 10;
    q.limit = Some(10);
    let page = s.list(&q).await.unwrap();
    assert_eq!(page.total, 25);
    let names: Vec<_> = page.items.iter().map(|r| r.key.name.as_str()).collect();
    let expected: Vec<String> = (10..20).map(|i| named(&format!("dp-{i:02}"))).collect();
    assert_eq!(names, expected);
    q.offset = 30;
    let past = s.list(&q).await.unwrap();
    assert_eq!((past.items.len(), past.total), (0, 25));
    let mut across = ListQuery::of(ResourceType::Dataplane, None);
    across.offset = 24;
    across.limit = Some(10);
    let page = s.list(&across).await.unwrap();
    let keys: Vec<_> = page
        .items
        .iter()
        .map(|r| (r.key.mesh.as_str(), r.key.name.clone()))
        .collect();
    assert_eq!(
        (keys, page.total),
        (vec![("m", named("dp-24")), ("other", named("dp-x"))], 26),
        "across meshes, in (mesh, name) order"
    );
    // A page read after a deletion no longer has it, nor counts it.
    s.delete(&ResourceKey::new(
        ResourceType::Dataplane,
        "m",
        &named("dp-10"),
    ))
    .await
    .unwrap();
    q.offset = 10;
    let page = s.list(&q).await.unwrap();
    assert_eq!(page.total, 24);
    assert_eq!(
        page.items.first().map(|r| r.key.name.clone()),
        Some(named("dp-11"))
    );
    s.create(dataplane("m", "dp-10", "redis", 1000))
        .await
        .unwrap();
    let mut tagged = ListQuery::of(ResourceType::Dataplane, Some("m"));
    tagged.tags = [("service".to_string(), "redis".to_string())].into();
    let page = s.list(&tagged).await.unwrap();
    let names: Vec<_> = page.items.iter().map(|r| r.key.name.clone()).collect();
    let redis: Vec<String> = ["dp-00", "dp-05", "dp-10", "dp-15", "dp-20"]
        .map(named)
        .into();
    assert_eq!(names, redis);
    tagged.mesh = None;
    assert_eq!(s.list(&tagged).await.unwrap().total, 6, "all meshes");
    let mut meshes = ListQuery::of(ResourceType::Mesh, None);
    meshes.offset = 1;
    let page = s.list(&meshes).await.unwrap();
    let names: Vec<_> = page.items.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!((names, page.total), (vec!["other"], 2));
}

pub async fn insights_round_trip(s: &dyn ResourceStore) {
    s.create(mesh("m")).await.unwrap();
    let insight: kuma_core::resources::DataplaneInsightSpec = serde_json::from_value(serde_json::json!({
        "subscriptions": [{"id": "1", "controlPlaneInstanceId": "cp", "connectTime": "2019-10-24T14:04:56.820350Z",
            "status": {"lastUpdateTime": "2019-10-24T14:04:57.832482Z", "total": {"responsesSent": "3"}, "cds": {}, "eds": {}, "lds": {}, "rds": {}}}]
    })).unwrap();
    let key = ResourceKey::new(ResourceType::DataplaneInsight, "m", &named("dp"));
    let created = s
        .create(Resource::new(key.clone(), Spec::DataplaneInsight(insight)))
        .await
        .unwrap();
    let mut read = s.get(&key).await.unwrap();
    assert_eq!(read, created);
    if let Spec::DataplaneInsight(i) = &mut read.spec {
        i.subscriptions[0].status.total.responses_sent = 4;
    }
    let updated = s.update(read).await.unwrap();
    assert_eq!(s.get(&key).await.unwrap(), updated);
}

pub async fn deleting_a_dataplane_deletes_its_insight(s: &dyn ResourceStore) {
    s.create(mesh("m")).await.unwrap();
    let dp = s.create(dataplane("m", "dp", "web", 1000)).await.unwrap();
    let other = s
        .create(dataplane("m", "other", "web", 1001))
        .await
        .unwrap();
    for name in ["dp", "other"] {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, "m", &named(name));
        s.create(Resource::new(
            key,
            Spec::DataplaneInsight(Default::default()),
        ))
        .await
        .unwrap();
    }
    let mut rx = s.subscribe();
    s.delete(&dp.key).await.unwrap();
    let insight = ResourceKey::new(ResourceType::DataplaneInsight, "m", &named("dp"));
    assert!(matches!(
        s.get(&insight).await,
        Err(StoreError::NotFound(_))
    ));
    // The feed may still carry the creations (Postgres notifies
    // asynchronously): only deletions count here, and only the
    // dataplane's is announced (insights never are).
    let deleted = loop {
        let event = next_event(&mut rx, "the dataplane's deletion").await;
        if matches!(event, ChangeEvent::Deleted(_)) {
            break event;
        }
    };
    assert_eq!(deleted, ChangeEvent::Deleted(dp.key));
    // The other dataplane keeps its own.
    let kept = ResourceKey::new(ResourceType::DataplaneInsight, "m", &named("other"));
    assert!(s.get(&kept).await.is_ok());
    assert!(s.get(&other.key).await.is_ok());
}

pub async fn change_feed_reports_every_write(s: &dyn ResourceStore) {
    let mut rx = s.subscribe();
    let m = s.create(mesh("fed")).await.unwrap();
    assert_eq!(
        next_event(&mut rx, "mesh create").await,
        ChangeEvent::Created(m.key.clone())
    );
    let dp = s.create(dataplane("fed", "dp", "web", 1000)).await.unwrap();
    assert_eq!(
        next_event(&mut rx, "dp create").await,
        ChangeEvent::Created(dp.key.clone())
    );
    s.update(dp.clone()).await.unwrap();
    assert_eq!(
        next_event(&mut rx, "dp update").await,
        ChangeEvent::Updated(dp.key.clone())
    );
    s.delete(&m.key).await.unwrap();
    let mut deleted = vec![
        next_event(&mut rx, "cascade delete").await,
        next_event(&mut rx, "mesh delete").await,
    ];
    deleted.sort_by_key(|e| format!("{e:?}"));
    let mut expected = vec![ChangeEvent::Deleted(dp.key), ChangeEvent::Deleted(m.key)];
    expected.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(deleted, expected);
}

/// Insights are written about once a second per connected proxy and
/// nothing follows them: the change feed does not carry them.
pub async fn insights_are_not_announced(s: &dyn ResourceStore) {
    let mut rx = s.subscribe();
    let m = s.create(mesh("m")).await.unwrap();
    let key = ResourceKey::new(ResourceType::DataplaneInsight, "m", &named("dp"));
    let created = s
        .create(Resource::new(
            key.clone(),
            Spec::DataplaneInsight(Default::default()),
        ))
        .await
        .unwrap();
    s.update(created).await.unwrap();
    s.delete(&key).await.unwrap();
    // Announced in order: had the insight's writes been announced,
    // they would come between the two meshes.
    let after = s.create(mesh("after")).await.unwrap();
    assert_eq!(
        next_event(&mut rx, "the mesh").await,
        ChangeEvent::Created(m.key)
    );
    assert_eq!(
        next_event(&mut rx, "the mesh written after the insight").await,
        ChangeEvent::Created(after.key)
    );
}
