//! An in-process Kubernetes API server for the tests: no kube-apiserver can
//! run on these machines, so this speaks the real REST + watch wire format
//! over HTTP (JSON) and kube-rs's real client, watcher and reflector, real
//! `kubectl` and real Helm run against it unchanged, through a real
//! kubeconfig file (`tests/k8s_clients.rs` runs the clients).
//!
//! What it does: `/version`; discovery (`/api`, `/apis`, group/version
//! resource lists with short names and categories); OpenAPI v3 documents
//! that tell clients the server takes `fieldValidation` (unknown fields of
//! built-in kinds are dropped, or refused when asked, see `fields`); list with `resourceVersion`,
//! `labelSelector`, `limit`/`continue`; `?watch=true` streams (ADDED,
//! MODIFIED, DELETED, BOOKMARK, and an ERROR event with `410 Gone` for a
//! resourceVersion older than its history); get, create, replace, delete
//! (with `DeleteOptions`: orphaning, preconditions, dry run) with 404 and
//! 409 (a stale resourceVersion on replace); JSON merge, JSON, strategic
//! merge and server-side apply patches (see `patch`); protobuf bodies of
//! the kinds kubectl and Helm send that way (see `protobuf`), any other
//! refused with 415; the `status` subresource; cluster IPs for Services;
//! garbage collection through owner references and of a deleted
//! namespace's contents; `TokenReview` from tokens the test registers;
//! `Lease`s as plain objects. Tests reach into it to create objects, break
//! watches and forget history. No production code knows it exists.
//!
//! Mutating admission webhooks are called on create (see `admission`).
//!
//! Left out, and answered as a real server answers what it does not
//! serve (404 for an unknown kind or route, 415 for a body it cannot
//! read): Table output (clients print names and ages), validating
//! webhooks, admission on update, and conflicts between server-side apply field managers (applied as if
//! forced).

#![allow(dead_code)] // each test binary uses its own subset
// An error here is the HTTP answer itself, sent as it is.
#![allow(clippy::result_large_err)]

mod admission;
mod fields;
mod patch;
mod protobuf;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// A kind the fixture serves.
struct Kind {
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    /// What `kubectl get` also accepts (`ns`, `svc`, ...), as the real
    /// server's discovery lists them.
    short_names: &'static [&'static str],
}

const fn kind(
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Kind {
    Kind {
        gv,
        plural,
        kind,
        namespaced,
        short_names,
    }
}

/// Kinds served. Kuma's are served whether or not their CRDs were applied.
const KINDS: &[Kind] = &[
    kind("v1", "namespaces", "Namespace", false, &["ns"]),
    kind("v1", "pods", "Pod", true, &["po"]),
    kind("v1", "services", "Service", true, &["svc"]),
    kind("v1", "secrets", "Secret", true, &[]),
    kind("v1", "configmaps", "ConfigMap", true, &["cm"]),
    kind("v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
    kind("v1", "events", "Event", true, &["ev"]),
    kind("events.k8s.io/v1", "events", "Event", true, &["ev"]),
    kind("apps/v1", "deployments", "Deployment", true, &["deploy"]),
    kind("coordination.k8s.io/v1", "leases", "Lease", true, &[]),
    kind(
        "authentication.k8s.io/v1",
        "tokenreviews",
        "TokenReview",
        false,
        &[],
    ),
    kind(
        "rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
    ),
    kind(
        "rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    kind("rbac.authorization.k8s.io/v1", "roles", "Role", true, &[]),
    kind(
        "rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
    ),
    kind(
        "admissionregistration.k8s.io/v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        &[],
    ),
    kind(
        "admissionregistration.k8s.io/v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        &[],
    ),
    kind(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    ),
    kind("kuma.io/v1alpha1", "meshes", "Mesh", false, &[]),
    kind("kuma.io/v1alpha1", "dataplanes", "Dataplane", true, &[]),
    kind(
        "kuma.io/v1alpha1",
        "dataplaneinsights",
        "DataplaneInsight",
        true,
        &[],
    ),
    kind(
        "kuma.io/v1alpha1",
        "trafficpermissions",
        "TrafficPermission",
        true,
        &[],
    ),
    kind("kuma.io/v1alpha1", "trafficlogs", "TrafficLog", true, &[]),
    kind(
        "kuma.io/v1alpha1",
        "trafficroutes",
        "TrafficRoute",
        true,
        &[],
    ),
    kind(
        "kuma.io/v1alpha1",
        "traffictraces",
        "TrafficTrace",
        true,
        &[],
    ),
    kind(
        "kuma.io/v1alpha1",
        "proxytemplates",
        "ProxyTemplate",
        true,
        &[],
    ),
    kind("kuma.io/v1alpha1", "meshgateways", "MeshGateway", true, &[]),
    kind(
        "kuma.io/v1alpha1",
        "meshgatewayroutes",
        "MeshGatewayRoute",
        true,
        &[],
    ),
    kind("kuma.io/v1alpha1", "accessroles", "AccessRole", false, &[]),
    kind(
        "kuma.io/v1alpha1",
        "accessrolebindings",
        "AccessRoleBinding",
        false,
        &[],
    ),
];

/// How many events the watch history keeps before a watch from an older
/// resourceVersion gets `410 Gone`.
const HISTORY: usize = 100_000;

/// `group/version/plural`, the identity of a collection.
type Collection = String;

#[derive(Clone, Debug)]
struct Event {
    rv: u64,
    collection: Collection,
    namespace: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    rv: u64,
    /// (collection, namespace, name) -> object.
    objects: BTreeMap<(Collection, String, String), Value>,
    history: std::collections::VecDeque<Event>,
    /// Watches from a resourceVersion below this get 410.
    oldest: u64,
    /// Service-account tokens: token -> (namespace, service account).
    tokens: HashMap<String, (String, String)>,
    /// Requests per verb and collection, for tests that count writes.
    writes: HashMap<String, usize>,
    /// Container output files, by (namespace, pod, container).
    logs: HashMap<(String, String, String), PathBuf>,
    /// Cluster IPs handed out.
    cluster_ips: u32,
    /// Server-side apply: the configuration each field manager last
    /// applied to each object, so that what it stops applying is removed.
    applied: HashMap<((Collection, String, String), String), Value>,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<Event>,
    /// Bumped to end every open watch.
    epoch: watch::Sender<u64>,
}

/// The running fixture. Dropping it stops the server.
pub struct KubeApi {
    pub url: String,
    pub kubeconfig: PathBuf,
    shared: Arc<Shared>,
    app: Router,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    (code, axum::Json(body)).into_response()
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn kind_of(gv: &str, plural: &str) -> Option<(&'static str, bool)> {
    KINDS
        .iter()
        .find(|k| k.gv == gv && k.plural == plural)
        .map(|k| (k.kind, k.namespaced))
}

fn labels_match(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let labels = &object["metadata"]["labels"];
        match term.split_once('=') {
            Some((k, v)) => labels[k.trim_end_matches('=')].as_str() == Some(v),
            None => match term.strip_prefix('!') {
                Some(k) => labels.get(k).is_none(),
                None => labels.get(term).is_some(),
            },
        }
    })
}

/// What a request path names.
struct Target {
    gv: String,
    plural: String,
    kind: &'static str,
    namespaced: bool,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Result<Target, Response>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("v1".to_string(), rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, status_subresource) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => {
            return Some(Err(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            )));
        }
    };
    let Some((kind, namespaced)) = kind_of(&gv, plural) else {
        return Some(Err(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the server could not find the requested resource {gv}/{plural}"),
        )));
    };
    Some(Ok(Target {
        gv,
        plural: plural.to_string(),
        kind,
        namespaced,
        namespace,
        name,
        status: status_subresource,
    }))
}

impl Target {
    fn collection(&self) -> Collection {
        format!("{}/{}", self.gv, self.plural)
    }

    fn key(&self, name: &str) -> (Collection, String, String) {
        (
            self.collection(),
            self.namespace.clone().unwrap_or_default(),
            name.to_string(),
        )
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a change: new resourceVersion on the object, history, watchers.
    fn record(
        &self,
        store: &mut Store,
        collection: &str,
        namespace: &str,
        kind: &'static str,
        object: &mut Value,
    ) {
        store.rv += 1;
        let rv = store.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let event = Event {
            rv,
            collection: collection.to_string(),
            namespace: namespace.to_string(),
            kind,
            object: object.clone(),
        };
        store.history.push_back(event.clone());
        while store.history.len() > HISTORY {
            if let Some(e) = store.history.pop_front() {
                store.oldest = e.rv;
            }
        }
        let _ = self.events.send(event);
    }

    fn put_object(
        &self,
        store: &mut Store,
        key: (Collection, String, String),
        mut object: Value,
        kind: &'static str,
    ) -> Value {
        let event_kind = if store.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(store, &key.0, &key.1, event_kind, &mut object);
        let _ = kind;
        store.objects.insert(key, object.clone());
        object
    }

    /// Removes an object and, when `cascade`, what it owns (garbage
    /// collection through owner references).
    fn remove_object(
        &self,
        store: &mut Store,
        key: &(Collection, String, String),
        cascade: bool,
    ) -> Option<Value> {
        let mut object = store.objects.remove(key)?;
        store.applied.retain(|(k, _), _| k != key);
        self.record(store, &key.0, &key.1, "DELETED", &mut object);
        // The namespace controller's work, done at once: a deleted
        // Namespace takes everything in it.
        if key.0 == "v1/namespaces" {
            let inside: Vec<_> = store
                .objects
                .keys()
                .filter(|(_, ns, _)| *ns == key.2)
                .cloned()
                .collect();
            for k in inside {
                self.remove_object(store, &k, true);
            }
        }
        let uid = object["metadata"]["uid"].as_str().unwrap_or("").to_string();
        if cascade && !uid.is_empty() {
            let owned: Vec<_> = store
                .objects
                .iter()
                .filter(|(_, o)| {
                    o["metadata"]["ownerReferences"]
                        .as_array()
                        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid.as_str()))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in owned {
                self.remove_object(store, &k, true);
            }
        }
        Some(object)
    }
}

fn new_object(target: &Target, mut object: Value, name: &str) -> Value {
    let (api_version, kind) = (target.gv.clone(), target.kind);
    object["apiVersion"] = json!(api_version);
    object["kind"] = json!(kind);
    let meta = &mut object["metadata"];
    meta["name"] = json!(name);
    if let Some(ns) = &target.namespace {
        meta["namespace"] = json!(ns);
    }
    meta["uid"] = json!(uuid::Uuid::new_v4().to_string());
    meta["creationTimestamp"] = json!(now());
    meta["generation"] = json!(1);
    object
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    if let ["api", "v1", "namespaces", ns, "pods", pod, "log"] = path
        .trim_matches('/')
        .split('/')
        .collect::<Vec<_>>()
        .as_slice()
    {
        return pod_log(&shared, ns, pod, &uri);
    }
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    match path.as_str() {
        // The Kubernetes version the fixture stands for (k8s-openapi's).
        "/version" => {
            return axum::Json(json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0",
                "gitCommit": "fixture", "gitTreeState": "clean",
                "buildDate": "2025-04-23T00:00:00Z", "goVersion": "go1.24.2",
                "compiler": "gc", "platform": "linux/amd64",
            }))
            .into_response();
        }
        "/api" => {
            return axum::Json(json!({"kind": "APIVersions", "versions": ["v1"]})).into_response();
        }
        "/openapi/v3" => return axum::Json(openapi_root()).into_response(),
        _ if path.starts_with("/openapi/v3/") => {
            return match openapi_group_version(&path["/openapi/v3/".len()..]) {
                Some(doc) => axum::Json(doc).into_response(),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("no route {path}"),
                ),
            };
        }
        "/apis" => {
            let mut groups: Vec<&str> = KINDS
                .iter()
                .map(|k| k.gv)
                .filter(|g| g.contains('/'))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|gv| {
                    let (g, v) = gv.split_once('/').unwrap_or((gv, ""));
                    json!({"name": g, "versions": [{"groupVersion": gv, "version": v}],
                           "preferredVersion": {"groupVersion": gv, "version": v}})
                })
                .collect();
            return axum::Json(
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
            .into_response();
        }
        _ => {}
    }
    let gv_only = path.trim_matches('/').split('/').collect::<Vec<_>>();
    let discovery_gv = match gv_only.as_slice() {
        ["api", "v1"] => Some("v1".to_string()),
        ["apis", g, v] => Some(format!("{g}/{v}")),
        _ => None,
    };
    if let Some(gv) = discovery_gv {
        let resources: Vec<Value> = KINDS
            .iter()
            .filter(|k| k.gv == gv)
            .map(|k| {
                json!({"name": k.plural, "singularName": k.kind.to_ascii_lowercase(), "namespaced": k.namespaced,
                       "kind": k.kind, "shortNames": k.short_names, "categories": categories(k),
                       "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
            })
            .collect();
        return axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})).into_response();
    }
    let target = match parse_path(&path) {
        Some(Ok(t)) => t,
        Some(Err(r)) => return r,
        None => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("no route {path}"),
            );
        }
    };
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body =
        if content_type.starts_with("application/vnd.kubernetes.protobuf") && !body.is_empty() {
            match protobuf::to_json(&body) {
                Ok(object) => Bytes::from(object.to_string()),
                Err(message) => {
                    return status(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        "UnsupportedMediaType",
                        format!("the server cannot take {message}"),
                    );
                }
            }
        } else {
            body
        };
    {
        let client = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("")
            .to_string();
        let mut store = shared.lock();
        *store
            .writes
            .entry(format!("{} {} {client}", method, target.collection()))
            .or_default() += 1;
    }
    match (method, &target.name) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch_stream(shared, target, query)
        }
        (Method::GET, None) => list(&shared, &target, &query),
        (Method::GET, Some(name)) => {
            let store = shared.lock();
            match store.objects.get(&target.key(name)) {
                Some(o) => axum::Json(o.clone()).into_response(),
                None => not_found(&target, name),
            }
        }
        (Method::POST, None) => {
            let mut object = match parse_body(&body) {
                Ok(o) => o,
                Err(r) => return r,
            };
            if let Some(ns) = &target.namespace {
                object["metadata"]["namespace"] = json!(ns);
            }
            match admission::mutate(&shared, &target, object).await {
                Ok(object) => create(&shared, &target, object, strict(&query)),
                Err(refused) => refused,
            }
        }
        (Method::PUT, Some(name)) => replace(&shared, &target, name, &body, strict(&query)),
        (Method::PATCH, Some(name)) => patch(&shared, &target, name, &body, &content_type, &query),
        (Method::DELETE, Some(name)) => delete(&shared, &target, name, &body),
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{m} {path}"),
        ),
    }
}

/// The categories discovery lists a kind under (`kubectl get all`,
/// `kubectl get kuma`), as the real server and Kuma's CRDs do.
fn categories(k: &Kind) -> &'static [&'static str] {
    match (k.gv, k.plural) {
        ("v1", "pods" | "services") | ("apps/v1", "deployments") => &["all"],
        ("kuma.io/v1alpha1", _) => &["kuma"],
        _ => &[],
    }
}

/// The API path prefix of a group/version: `api/v1`, `apis/apps/v1`.
fn gv_path(gv: &str) -> String {
    if gv.contains('/') {
        format!("apis/{gv}")
    } else {
        format!("api/{gv}")
    }
}

/// `/openapi/v3`: where each group/version's document is. Clients read
/// it to learn whether the server validates fields (`fieldValidation`).
fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for k in KINDS {
        let prefix = gv_path(k.gv);
        paths.insert(
            prefix.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{prefix}?hash=fixture")}),
        );
    }
    json!({"paths": paths})
}

/// One group/version's OpenAPI v3 document: its object paths with their
/// PATCH operations, which tell clients (by the operation's
/// `x-kubernetes-group-version-kind` and its `fieldValidation` parameter)
/// that the server takes `fieldValidation`. It carries no schemas: the
/// fixture checks the fields of built-in kinds itself (see `fields`), and
/// clients fall back to their compiled-in types for strategic merge
/// patches, as they do for a server without schemas.
fn openapi_group_version(prefix: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for k in KINDS.iter().filter(|k| gv_path(k.gv) == prefix) {
        let (group, version) = k.gv.split_once('/').unwrap_or(("", k.gv));
        let namespace = if k.namespaced {
            "namespaces/{namespace}/"
        } else {
            ""
        };
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        paths.insert(
            format!("/{prefix}/{namespace}{}/{{name}}", k.plural),
            json!({"patch": {
                "operationId": format!("patch{}", k.kind),
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"), query("force")],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": k.kind},
            }}),
        );
    }
    (!paths.is_empty()).then(|| {
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
               "paths": paths, "components": {"schemas": {}}})
    })
}

/// `pods/{name}/log`: the output of a container (`?container=`, else the
/// pod's first; `?tailLines=`), as the kubelet that runs it recorded it.
fn pod_log(shared: &Shared, namespace: &str, pod: &str, uri: &Uri) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let store = shared.lock();
    let Some(object) = store.objects.get(&(
        "v1/pods".to_string(),
        namespace.to_string(),
        pod.to_string(),
    )) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("pods \"{pod}\" not found"),
        );
    };
    let container = query.get("container").cloned().unwrap_or_else(|| {
        object["spec"]["containers"][0]["name"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    match store
        .logs
        .get(&(namespace.to_string(), pod.to_string(), container.clone()))
    {
        Some(file) => {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            match query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
                Some(n) => {
                    let lines: Vec<&str> = text.lines().collect();
                    let mut tail = lines[lines.len().saturating_sub(n)..].join("\n");
                    tail.push('\n');
                    tail.into_response()
                }
                None => text.into_response(),
            }
        }
        None => status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        ),
    }
}

fn not_found(target: &Target, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} \"{name}\" not found", target.plural),
    )
}

/// A delete, with the `DeleteOptions` clients send: `propagationPolicy:
/// Orphan` (or `orphanDependents`) leaves what the object owns,
/// `preconditions` must match, `dryRun` changes nothing.
fn delete(shared: &Shared, target: &Target, name: &str, body: &Bytes) -> Response {
    let options = if body.is_empty() {
        json!({})
    } else {
        match parse_body(body) {
            Ok(o) => o,
            Err(r) => return r,
        }
    };
    let mut store = shared.lock();
    let key = target.key(name);
    let Some(existing) = store.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    for field in ["uid", "resourceVersion"] {
        if let Some(expected) = options["preconditions"][field].as_str()
            && Some(expected) != existing["metadata"][field].as_str()
        {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Precondition failed: {field} in precondition: {expected}, {field} in object meta: {}",
                    existing["metadata"][field].as_str().unwrap_or("")
                ),
            );
        }
    }
    if options["dryRun"].as_array().is_some_and(|d| !d.is_empty()) {
        return axum::Json(existing).into_response();
    }
    let orphan = options["propagationPolicy"] == "Orphan" || options["orphanDependents"] == true;
    match shared.remove_object(&mut store, &key, !orphan) {
        Some(o) => axum::Json(o).into_response(),
        None => not_found(target, name),
    }
}

/// What the real server fills in on create that clients read back: a
/// Service's cluster IP (from 10.96.0.0/12, unless the Service is
/// headless or names one) and a Namespace's phase.
fn defaults(store: &mut Store, object: &mut Value) {
    match object["kind"].as_str() {
        Some("Service") => {
            let ip = &object["spec"]["clusterIP"];
            if ip.is_null() || ip == "" {
                store.cluster_ips += 1;
                let n = 10 + store.cluster_ips;
                object["spec"]["clusterIP"] = json!(format!("10.96.{}.{}", n / 256, n % 256));
            }
            if object["spec"]["type"].is_null() {
                object["spec"]["type"] = json!("ClusterIP");
            }
        }
        Some("Namespace") => object["status"] = json!({"phase": "Active"}),
        _ => {}
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    // A server-side apply body is YAML; kube sends JSON, which is YAML too.
    serde_yaml_ng::from_slice(body).map_err(|e| {
        status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("cannot parse the body: {e}"),
        )
    })
}

fn list(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
    let store = shared.lock();
    let collection = target.collection();
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after = query.get("continue").cloned().unwrap_or_default();
    let mut items = Vec::new();
    let mut next = None;
    for ((c, ns, name), object) in &store.objects {
        if *c != collection
            || target.namespace.as_ref().is_some_and(|n| n != ns)
            || !labels_match(object, &selector)
        {
            continue;
        }
        let position = format!("{ns}/{name}");
        if !after.is_empty() && position <= after {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|o: &Value| {
                format!(
                    "{}/{}",
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                )
            });
            break;
        }
        items.push(object.clone());
    }
    let mut metadata = json!({"resourceVersion": store.rv.to_string()});
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    axum::Json(json!({
        "kind": format!("{}List", target.kind), "apiVersion": target.gv,
        "metadata": metadata, "items": items,
    }))
    .into_response()
}

/// Whether the client asked unknown fields to be refused (kubectl and Helm
/// do); otherwise they are dropped, as by a real server.
fn strict(query: &HashMap<String, String>) -> bool {
    query.get("fieldValidation").is_some_and(|v| v == "Strict")
}

/// The object as the server keeps it (see `fields`), or a 400 as a real
/// server words it.
fn decoded(target: &Target, object: Value, strict: bool) -> Result<Value, Response> {
    fields::decode(&target.gv, target.kind, object, strict).map_err(|e| {
        let version = target.gv.rsplit('/').next().unwrap_or("");
        status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}",
                kind = target.kind
            ),
        )
    })
}

fn create(shared: &Shared, target: &Target, object: Value, strict: bool) -> Response {
    if target.kind == "TokenReview" {
        let token = object["spec"]["token"].as_str().unwrap_or("");
        let store = shared.lock();
        let status_field = match store.tokens.get(token) {
            Some((ns, sa)) => json!({"authenticated": true, "user": {
                "username": format!("system:serviceaccount:{ns}:{sa}"),
                "uid": format!("{ns}-{sa}"),
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}")]}}),
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        let mut review = object.clone();
        review["status"] = status_field;
        return (StatusCode::CREATED, axum::Json(review)).into_response();
    }
    let name = match object["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match object["metadata"]["generateName"].as_str() {
            Some(prefix) => format!(
                "{prefix}{}",
                &uuid::Uuid::new_v4().simple().to_string()[..5]
            ),
            None => {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "metadata.name: Required value".into(),
                );
            }
        },
    };
    let mut store = shared.lock();
    let key = target.key(&name);
    if store.objects.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", target.plural),
        );
    }
    let mut object = new_object(target, object, &name);
    defaults(&mut store, &mut object);
    let object = match decoded(target, object, strict) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let stored = shared.put_object(&mut store, key, object, target.kind);
    (StatusCode::CREATED, axum::Json(stored)).into_response()
}

fn replace(shared: &Shared, target: &Target, name: &str, body: &Bytes, strict: bool) -> Response {
    let object = match parse_body(body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut store = shared.lock();
    let key = target.key(name);
    let Some(existing) = store.objects.get(&key).cloned() else {
        return not_found(target, name);
    };
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
        && Some(rv) != existing["metadata"]["resourceVersion"].as_str()
    {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                target.plural
            ),
        );
    }
    let updated = if target.status {
        let mut updated = existing.clone();
        updated["status"] = object["status"].clone();
        updated
    } else {
        let mut updated = object;
        // Identity and bookkeeping stay the server's.
        for field in ["uid", "creationTimestamp", "name", "namespace"] {
            updated["metadata"][field] = existing["metadata"][field].clone();
        }
        updated["apiVersion"] = existing["apiVersion"].clone();
        updated["kind"] = existing["kind"].clone();
        if existing.get("status").is_some() && updated.get("status").is_none() {
            updated["status"] = existing["status"].clone();
        }
        updated
    };
    let updated = match decoded(target, updated, strict) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let stored = shared.put_object(&mut store, key, updated, target.kind);
    axum::Json(stored).into_response()
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    body: &Bytes,
    content_type: &str,
    query: &HashMap<String, String>,
) -> Response {
    let body = match parse_body(body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    let custom = target.gv.starts_with("kuma.io/");
    let invalid = |message: String| status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message);
    let mut store = shared.lock();
    let key = target.key(name);
    let manager = query.get("fieldManager").cloned().unwrap_or_default();
    let applied_key = (key.clone(), manager);
    let existing = store.objects.get(&key).cloned();
    // A status patch changes the status only.
    let scope = |mut object: Value, patched: Value| {
        if target.status {
            object["status"] = patched["status"].clone();
            object
        } else {
            patched
        }
    };
    let object = match (media_type, existing) {
        ("application/apply-patch+yaml", existing) => {
            let previous = store.applied.get(&applied_key).cloned();
            let object = match existing {
                Some(existing) => {
                    let mut patched = existing.clone();
                    patch::apply(&mut patched, previous.as_ref(), &body);
                    scope(existing, patched)
                }
                None => {
                    let mut object = new_object(target, body.clone(), name);
                    defaults(&mut store, &mut object);
                    object
                }
            };
            store.applied.insert(applied_key, body);
            object
        }
        (_, None) => return not_found(target, name),
        ("application/merge-patch+json", Some(existing)) => {
            let mut patched = existing.clone();
            patch::merge(&mut patched, &body);
            scope(existing, patched)
        }
        ("application/strategic-merge-patch+json", Some(_)) if custom => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (strategic merge patches are not supported for {})",
                    target.plural
                ),
            );
        }
        ("application/strategic-merge-patch+json", Some(existing)) => {
            let mut patched = existing.clone();
            if let Err(e) = patch::strategic(&mut patched, &body) {
                return invalid(format!("strategic merge patch: {e}"));
            }
            scope(existing, patched)
        }
        ("application/json-patch+json", Some(existing)) => {
            let operations: json_patch::Patch = match serde_json::from_value(body) {
                Ok(p) => p,
                Err(e) => return invalid(format!("json patch: {e}")),
            };
            let mut patched = existing.clone();
            if let Err(e) = json_patch::patch(&mut patched, &operations) {
                return invalid(format!("json patch: {e}"));
            }
            scope(existing, patched)
        }
        (other, Some(_)) => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (not {other})"
                ),
            );
        }
    };
    let object = match decoded(target, object, strict(query)) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let stored = shared.put_object(&mut store, key, object, target.kind);
    axum::Json(stored).into_response()
}

/// A watch: history after the given resourceVersion (or every object when
/// none), then live events; bookmarks every second when asked; ends at
/// `timeoutSeconds` or when the test breaks watches.
fn watch_stream(shared: Arc<Shared>, target: Target, query: HashMap<String, String>) -> Response {
    let collection = target.collection();
    let namespace = target.namespace.clone();
    let selector = query.get("labelSelector").cloned().unwrap_or_default();
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0);
    let wanted = move |e: &Event| {
        e.collection == collection
            && namespace.as_ref().is_none_or(|n| *n == e.namespace)
            && labels_match(&e.object, &selector)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1024);
    let mut live = shared.events.subscribe();
    let mut epoch = shared.epoch.subscribe();
    let (backlog, current_rv) = {
        let store = shared.lock();
        let backlog: Result<Vec<Event>, ()> = match from {
            Some(rv) if rv < store.oldest => Err(()),
            Some(rv) => Ok(store
                .history
                .iter()
                .filter(|e| e.rv > rv && wanted(e))
                .cloned()
                .collect()),
            None => Ok(store
                .objects
                .iter()
                .filter(|((c, ns, _), _)| {
                    *c == target.collection() && target.namespace.as_ref().is_none_or(|n| n == ns)
                })
                .map(|((c, ns, _), o)| Event {
                    rv: store.rv,
                    collection: c.clone(),
                    namespace: ns.clone(),
                    kind: "ADDED",
                    object: o.clone(),
                })
                .filter(|e| wanted(e))
                .collect()),
        };
        (backlog, store.rv)
    };
    let line = |kind: &str, object: &Value| {
        let mut text = json!({"type": kind, "object": object}).to_string();
        text.push('\n');
        Ok(Bytes::from(text))
    };
    let kind = target.kind;
    let gv = target.gv.clone();
    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(()) => {
                let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "too old resource version", "reason": "Expired", "code": 410});
                let _ = tx.send(line("ERROR", &gone)).await;
                return;
            }
        };
        let mut last = current_rv;
        for e in backlog {
            last = last.max(e.rv);
            if tx.send(line(e.kind, &e.object)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = epoch.changed() => return,
                _ = ticker.tick(), if bookmarks => {
                    let mark = json!({"apiVersion": gv, "kind": kind, "metadata": {"resourceVersion": last.to_string()}});
                    if tx.send(line("BOOKMARK", &mark)).await.is_err() { return; }
                }
                event = live.recv() => match event {
                    Ok(e) if e.rv > last && wanted(&e) => {
                        last = e.rv;
                        if tx.send(line(e.kind, &e.object)).await.is_err() { return; }
                    }
                    Ok(e) => last = last.max(e.rv),
                    // Fell behind: end the watch, the client resumes from
                    // its last resourceVersion.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn kubeconfig_text(url: &str, token: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fixture\n  cluster:\n    server: {url}\nusers:\n- name: fixture\n  user:\n    token: {token}\ncontexts:\n- name: fixture\n  context:\n    cluster: fixture\n    user: fixture\n    namespace: default\ncurrent-context: fixture\n"
    )
}

impl KubeApi {
    /// Starts the server on a free port and writes a kubeconfig for it.
    pub fn start() -> KubeApi {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            events: broadcast::channel(HISTORY).0,
            epoch: watch::channel(0).0,
        });
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let served = app.clone();
        runtime.spawn(async move {
            let _ = axum::serve(listener, served).await;
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("http://127.0.0.1:{port}");
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&url, "fixture-admin")).expect("kubeconfig");
        KubeApi {
            url,
            kubeconfig,
            shared,
            _dir: dir,
            app,
            _runtime: runtime,
        }
    }

    /// Also serves the API over HTTPS on `ip:443`, as pods reach a real
    /// API server (`KUBERNETES_SERVICE_HOST`); answers the address and the
    /// CA certificate (PEM) clients verify it with.
    pub fn serve_https(&self, ip: std::net::IpAddr) -> (std::net::SocketAddr, String) {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        params.subject_alt_names = vec![rcgen::SanType::IpAddress(ip)];
        let cert = params.self_signed(&key).expect("a certificate");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::try_from(key.serialize_der()).expect("the key"),
        )
        .expect("a TLS configuration");
        let listener = self
            ._runtime
            .block_on(tokio::net::TcpListener::bind((ip, 443)))
            .expect("bind the HTTPS port");
        let address = listener.local_addr().expect("address");
        let app = self.app.clone();
        self._runtime.spawn(kuma::runtime::serve_tls(
            "kube-api",
            listener,
            tls,
            app,
            kuma::runtime::CancellationToken::new(),
        ));
        (address, cert.pem())
    }

    /// Where a container's output is, for `kubectl logs`.
    pub fn set_log(&self, namespace: &str, pod: &str, container: &str, file: &Path) {
        self.shared.lock().logs.insert(
            (namespace.into(), pod.into(), container.into()),
            file.to_path_buf(),
        );
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    fn target(api_path: &str) -> Target {
        match parse_path(api_path) {
            Some(Ok(t)) => t,
            _ => panic!("not an object path of the fixture: {api_path}"),
        }
    }

    /// Creates or replaces the object at `path` (a collection path; the
    /// name comes from the object) as a client's apply would.
    pub fn apply(&self, collection_path: &str, object: Value) -> Value {
        let target = Self::target(collection_path);
        let name = object["metadata"]["name"]
            .as_str()
            .expect("metadata.name")
            .to_string();
        let mut store = self.shared.lock();
        let key = target.key(&name);
        let object = match store.objects.get(&key).cloned() {
            Some(mut existing) => {
                for field in ["spec", "status", "data", "mesh", "subsets"] {
                    if let Some(v) = object.get(field) {
                        existing[field] = v.clone();
                    }
                }
                if let Some(labels) = object["metadata"].get("labels") {
                    existing["metadata"]["labels"] = labels.clone();
                }
                if let Some(annotations) = object["metadata"].get("annotations") {
                    existing["metadata"]["annotations"] = annotations.clone();
                }
                existing
            }
            None => new_object(&target, object, &name),
        };
        self.shared.put_object(&mut store, key, object, target.kind)
    }

    pub fn get(&self, object_path: &str) -> Option<Value> {
        let target = Self::target(object_path);
        let name = target.name.clone().expect("an object path");
        self.shared.lock().objects.get(&target.key(&name)).cloned()
    }

    /// Every object of a collection path (all namespaces unless the path
    /// names one).
    pub fn list(&self, collection_path: &str) -> Vec<Value> {
        let target = Self::target(collection_path);
        let collection = target.collection();
        self.shared
            .lock()
            .objects
            .iter()
            .filter(|((c, ns, _), _)| {
                *c == collection && target.namespace.as_ref().is_none_or(|n| n == ns)
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// How many objects a collection path holds.
    pub fn count(&self, collection_path: &str) -> usize {
        let target = Self::target(collection_path);
        let collection = target.collection();
        self.shared
            .lock()
            .objects
            .keys()
            .filter(|(c, ns, _)| {
                *c == collection && target.namespace.as_ref().is_none_or(|n| n == ns)
            })
            .count()
    }

    pub fn delete(&self, object_path: &str) -> bool {
        let target = Self::target(object_path);
        let name = target.name.clone().expect("an object path");
        let mut store = self.shared.lock();
        self.shared
            .remove_object(&mut store, &target.key(&name), true)
            .is_some()
    }

    /// `kuma-cp` in Kubernetes mode against this server, with `extra`
    /// settings (a `KUBECONFIG` among them replaces this server's default
    /// one).
    pub fn kuma_cp(&self, extra: &[(&str, &str)]) -> super::common::KumaCp {
        let kubeconfig = self.kubeconfig.to_str().expect("a UTF-8 path");
        let mut env = vec![
            ("KUMA_ENVIRONMENT", "kubernetes"),
            ("KUMA_STORE_TYPE", "kubernetes"),
            ("KUBECONFIG", kubeconfig),
        ];
        env.extend_from_slice(extra);
        super::common::KumaCp::start(&env)
    }

    /// A service-account token that TokenReview will vouch for.
    pub fn add_token(&self, token: &str, namespace: &str, service_account: &str) {
        self.shared
            .lock()
            .tokens
            .insert(token.into(), (namespace.into(), service_account.into()));
    }

    /// Ends every open watch stream, as a restarting API server would.
    pub fn break_watches(&self) {
        self.shared.epoch.send_modify(|e| *e += 1);
    }

    /// Forgets the watch history: a watch resuming from any earlier
    /// resourceVersion gets `410 Gone` and must list again.
    pub fn expire_history(&self) {
        let mut store = self.shared.lock();
        store.history.clear();
        store.oldest = store.rv + 1;
    }

    /// How many requests of `verb` (GET, POST, PUT, PATCH, DELETE) reached
    /// `group/version/plural` (e.g. `kuma.io/v1alpha1/dataplanes`) from the
    /// client whose kubeconfig holds `token`.
    pub fn requests(&self, verb: &str, collection: &str, token: &str) -> usize {
        self.shared
            .lock()
            .writes
            .get(&format!("{verb} {collection} {token}"))
            .copied()
            .unwrap_or(0)
    }

    /// Writes (POST, PUT, PATCH, DELETE) of `collection` by `token`.
    pub fn writes(&self, collection: &str, token: &str) -> usize {
        ["POST", "PUT", "PATCH", "DELETE"]
            .iter()
            .map(|verb| self.requests(verb, collection, token))
            .sum()
    }

    /// Another kubeconfig for this server, whose client presents `token`;
    /// the server tells the clients apart by it.
    pub fn kubeconfig_for(&self, token: &str) -> PathBuf {
        let path = self._dir.path().join(format!("kubeconfig-{token}"));
        std::fs::write(&path, kubeconfig_text(&self.url, token)).expect("kubeconfig");
        path
    }
}
