//! Real `kubectl` (1.35) and real Helm 4 against the test API server: the
//! commands of the Kubernetes user journey, run as processes, each checked
//! by what the server then holds. This checks the fixture itself with
//! clients that know the real wire format: discovery, OpenAPI, protobuf
//! bodies, the three patch types, watches, delete options.

#![cfg(feature = "kubernetes")]

mod common;
mod kube_api;

use common::KubeClients;
use kube_api::KubeApi;
use serde_json::Value;

fn setup() -> (KubeApi, KubeClients) {
    let api = KubeApi::start();
    let clients = KubeClients::new(api.kubeconfig_path());
    (api, clients)
}

#[test]
fn kubectl_creates_labels_reads_and_deletes_a_namespace() {
    let (api, k) = setup();
    // `create namespace` sends protobuf.
    assert!(
        k.kubectl(&["create", "namespace", "demo"])
            .contains("namespace/demo created")
    );
    k.kubectl(&[
        "label",
        "namespace",
        "demo",
        "kuma.io/sidecar-injection=enabled",
    ]);
    let yaml = k.kubectl(&["get", "ns", "demo", "-o", "yaml"]);
    let object: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        object["metadata"]["labels"]["kuma.io/sidecar-injection"],
        "enabled"
    );
    assert_eq!(object["status"]["phase"], "Active");
    assert!(api.get("/api/v1/namespaces/demo").is_some());
    k.kubectl_with(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: demo}\n",
    );
    // Deleting a namespace deletes what is in it.
    k.kubectl(&["delete", "namespace", "demo"]);
    assert!(api.get("/api/v1/namespaces/demo").is_none());
    assert!(api.get("/api/v1/namespaces/demo/configmaps/c").is_none());
}

#[test]
fn kubectl_get_watch_prints_changes_as_they_happen() {
    let (api, k) = setup();
    k.kubectl(&["create", "namespace", "demo"]);
    let kubeconfig = api.kubeconfig_path().to_path_buf();
    let watcher = std::thread::spawn(move || {
        let k = KubeClients::new(&kubeconfig);
        k.try_kubectl(&[
            "get",
            "pods",
            "-n",
            "demo",
            "-w",
            "--output-watch-events",
            "--request-timeout=4s",
        ])
        .stdout
    });
    std::thread::sleep(std::time::Duration::from_millis(1500));
    k.kubectl(&[
        "run",
        "client",
        "-n",
        "demo",
        "--image=busybox",
        "--restart=Never",
    ]);
    k.kubectl(&["delete", "pod", "client", "-n", "demo", "--wait=false"]);
    let seen = watcher.join().unwrap();
    assert!(seen.contains("ADDED") && seen.contains("client"), "{seen}");
    assert!(seen.contains("DELETED"), "{seen}");
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: echo
  namespace: demo
  labels: {team: mesh}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      containers:
      - name: echo
        image: kuma/kuma-tcp-echo:1
        env: [{name: A, value: a}, {name: B, value: b}]
        ports: [{containerPort: 7000}]
      - name: helper
        image: busybox
";

fn deployment(api: &KubeApi) -> Value {
    api.get("/apis/apps/v1/namespaces/demo/deployments/echo")
        .expect("the Deployment")
}

#[test]
fn kubectl_apply_updates_with_strategic_merge_and_server_side_apply() {
    let (api, k) = setup();
    k.kubectl(&["create", "namespace", "demo"]);
    k.kubectl_with(&["apply", "-f", "-"], DEPLOYMENT);
    // Changed in place: an env var dropped, the image bumped, the helper
    // container removed; kubectl sends a strategic merge patch keyed by
    // container and env names.
    let changed = DEPLOYMENT
        .replace("kuma-tcp-echo:1", "kuma-tcp-echo:2")
        .replace(", {name: B, value: b}", "")
        .replace("      - name: helper\n        image: busybox\n", "");
    assert!(
        k.kubectl_with(&["apply", "-f", "-"], &changed)
            .contains("deployment.apps/echo configured")
    );
    let spec = &deployment(&api)["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["image"], "kuma/kuma-tcp-echo:2");
    assert_eq!(
        containers[0]["env"],
        serde_json::json!([{"name": "A", "value": "a"}])
    );
    assert_eq!(containers[0]["ports"][0]["containerPort"], 7000);

    // Server-side apply by another manager; then that manager stops
    // applying the label, and it goes.
    k.kubectl_with(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        &changed.replace("labels: {team: mesh}", "labels: {team: mesh, tier: edge}"),
    );
    assert_eq!(deployment(&api)["metadata"]["labels"]["tier"], "edge");
    k.kubectl_with(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        &changed,
    );
    let labels = &deployment(&api)["metadata"]["labels"];
    assert!(labels.get("tier").is_none(), "{labels}");
    assert_eq!(labels["team"], "mesh");
}

#[test]
fn what_the_fixture_cannot_decode_is_refused_not_stored() {
    let (api, k) = setup();
    k.kubectl(&["create", "namespace", "demo"]);
    // A ConfigMap created this way is a protobuf body the fixture does not
    // decode: refused with 415 and a reason, nothing stored.
    let ran = k.try_kubectl(&[
        "create",
        "configmap",
        "c",
        "-n",
        "demo",
        "--from-literal=a=b",
    ]);
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("protobuf v1 ConfigMap") && ran.stderr.contains("send it as JSON"),
        "{}",
        ran.stderr
    );
    assert!(api.get("/api/v1/namespaces/demo/configmaps/c").is_none());
    // The same object as JSON is taken.
    k.kubectl_with(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: demo}\ndata: {a: b}\n",
    );
    assert_eq!(
        api.get("/api/v1/namespaces/demo/configmaps/c").unwrap()["data"]["a"],
        "b"
    );
}

fn chart_objects(api: &KubeApi) -> Vec<String> {
    let mut names = Vec::new();
    for path in [
        "/apis/apps/v1/namespaces/kuma-system/deployments",
        "/api/v1/namespaces/kuma-system/services",
        "/api/v1/namespaces/kuma-system/serviceaccounts",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    ] {
        for object in api.list(path) {
            names.push(format!(
                "{}/{}",
                object["kind"].as_str().unwrap(),
                object["metadata"]["name"].as_str().unwrap()
            ));
        }
    }
    names.sort();
    names
}

#[test]
fn helm_installs_upgrades_and_uninstalls_the_chart() {
    let (api, k) = setup();
    let installed = k.chart("install", &[]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert_eq!(
        chart_objects(&api),
        [
            "ClusterRole/kuma-control-plane",
            "ClusterRole/kuma-policy-editor",
            "ClusterRole/kuma-policy-viewer",
            "Deployment/kuma-control-plane",
            "MutatingWebhookConfiguration/kuma-injector",
            "Service/kuma-control-plane",
            "ServiceAccount/kuma-control-plane",
            "ValidatingWebhookConfiguration/kuma-validator",
        ]
    );
    assert_eq!(
        api.count("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        kuma::k8s::crd::CRDS.len()
    );
    assert!(k.helm(&["list", "-n", "kuma-system"]).contains("deployed"));

    k.chart("upgrade", &["injector.separate=true"]);
    assert!(chart_objects(&api).contains(&"Deployment/kuma-injector".to_string()));
    let cp = api
        .get("/apis/apps/v1/namespaces/kuma-system/deployments/kuma-control-plane")
        .unwrap();
    let env = cp["spec"]["template"]["spec"]["containers"][0]["env"].to_string();
    assert!(!env.contains("KUMA_INJECTOR_ENABLED"), "{env}");

    k.chart("upgrade", &["injector.separate=false"]);
    assert!(!chart_objects(&api).contains(&"Deployment/kuma-injector".to_string()));
    let history = k.helm(&["history", "kuma", "-n", "kuma-system"]);
    assert_eq!(history.matches("superseded").count(), 2, "{history}");

    k.helm(&["uninstall", "kuma", "-n", "kuma-system"]);
    assert_eq!(chart_objects(&api), Vec::<String>::new());
    assert!(
        api.list("/api/v1/namespaces/kuma-system/secrets")
            .is_empty()
    );
    // Helm leaves CRDs installed.
    assert_eq!(
        api.count("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        kuma::k8s::crd::CRDS.len()
    );
}

#[test]
fn unknown_fields_are_refused_as_kubectl_asks_and_secrets_keep_data() {
    let (api, k) = setup();
    k.kubectl(&["create", "namespace", "demo"]);
    let typo = DEPLOYMENT.replace("replicas: 2", "replica: 2");
    let ran = k.try_kubectl_with(&["apply", "-f", "-"], &typo);
    assert!(!ran.ok);
    assert!(
        ran.stderr
            .contains("strict decoding error: unknown field \"spec.replica\""),
        "{}",
        ran.stderr
    );
    assert!(
        api.get("/apis/apps/v1/namespaces/demo/deployments/echo")
            .is_none()
    );
    // A wrong type is refused whatever the client asks.
    let ran = k.try_kubectl_with(
        &["apply", "--validate=false", "-f", "-"],
        &DEPLOYMENT.replace("replicas: 2", "replicas: two"),
    );
    assert!(
        !ran.ok && ran.stderr.contains("cannot be handled as a Deployment"),
        "{}",
        ran.stderr
    );
    // stringData is stored as data, as a real server does.
    k.kubectl_with(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: demo}\nstringData: {token: abc}\n",
    );
    let secret = api.get("/api/v1/namespaces/demo/secrets/s").unwrap();
    assert_eq!(secret["data"]["token"], "YWJj");
    assert!(secret.get("stringData").is_none(), "{secret}");
}
