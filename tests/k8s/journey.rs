//! The Kubernetes user journey end to end, every step a command a user
//! types (`examples/kubernetes/journey.sh`, the same script `make
//! kind-e2e` runs): real Helm installs the chart into a real Kubernetes
//! control plane, real kubectl creates and labels a namespace and applies
//! the demo; the controller-manager makes the pods, the scheduler binds
//! them and the test's small kubelet (`tests/support/src/cluster`) runs them (kuma-cp
//! from the chart's Deployment, under the chart's ServiceAccount and RBAC;
//! the demo's echo and client with the sidecars the injector added through
//! the API server's admission) in network namespaces of their own, so
//! bytes from the client really cross both Envoys. Needs root.

use kuma_test_support as common;
use kuma_test_support::cluster;

use cluster::{Cluster, ControlPlane};
use common::{KubeClients, eventually};
use serde_json::Value;
use std::time::Duration;

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

fn pods(api: &ControlPlane, namespace: &str) -> Vec<Value> {
    api.list(&format!("/api/v1/namespaces/{namespace}/pods"))
}

fn name(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Every container's output, for a failure message.
fn logs(api: &ControlPlane, cluster: &Cluster) -> String {
    let mut text = String::new();
    for ns in ["kuma-system", "demo"] {
        for pod in pods(api, ns) {
            let spec = &pod["spec"];
            for list in ["initContainers", "containers"] {
                for c in spec[list].as_array().cloned().unwrap_or_default() {
                    let container = c["name"].as_str().unwrap_or("");
                    let log = cluster.log(ns, &name(&pod), container);
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    text.push_str(&format!(
                        "--- {ns}/{} {container} (ready: {})\n{}\n",
                        name(&pod),
                        ready(&pod),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
            }
        }
    }
    text
}

#[test]
fn install_label_deploy_and_the_mesh_carries_traffic_under_mtls() {
    let cluster = Cluster::shared();
    let api = cluster.cp;
    let _only = api.exclusive();
    let k = KubeClients::new(&api.admin_kubeconfig);
    let step = |name: &str, env: &[(&str, &str)]| {
        let ran = k.journey(name, env);
        assert!(ran.ok, "journey.sh {name}:\n{}{}", ran.stdout, ran.stderr);
        ran.stdout
    };

    step("install", &[]);
    assert!(
        eventually(Duration::from_secs(60), || pods(api, "kuma-system")
            .iter()
            .any(ready)),
        "the control plane's pod is not ready:\n{}",
        logs(api, cluster)
    );

    step("demo", &[]);
    assert!(
        eventually(Duration::from_secs(90), || {
            let demo = pods(api, "demo");
            demo.len() == 2 && demo.iter().all(ready)
        }),
        "the demo's pods are not ready:\n{}",
        logs(api, cluster)
    );
    let echo = pods(api, "demo")
        .into_iter()
        .find(|p| name(p).starts_with("echo-"))
        .expect("the echo Deployment's pod");
    assert!(
        echo["spec"]["initContainers"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "kuma-sidecar")),
        "the echo pod got its sidecar: {echo}"
    );
    let dataplane_path = format!(
        "/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/{}",
        name(&echo)
    );
    assert!(
        eventually(Duration::from_secs(30), || api
            .get(&dataplane_path)
            .is_some()),
        "no Dataplane for the echo pod:\n{}",
        logs(api, cluster)
    );
    let owner = &api.get(&dataplane_path).unwrap()["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Pod"), Some(name(&echo).as_str()))
    );

    let replies = || k.journey("replies", &[]).stdout;
    assert!(
        eventually(Duration::from_secs(30), || replies()
            .contains("reply: hello mesh")),
        "the client's bytes did not come back through both Envoys:\n{}",
        logs(api, cluster)
    );

    // The sidecar verified the control plane's certificate, as the
    // Service's name, with the CA the injector gave it.
    let sidecar = cluster.log("demo", &name(&echo), "kuma-sidecar");
    assert!(
        sidecar.contains("verifying the control plane with the CA of KUMA_CONTROL_PLANE_CA_CERT")
            && sidecar.contains("https://kuma-control-plane.kuma-system.svc:5682"),
        "{sidecar}"
    );

    step("mtls", &[]);
    assert!(
        eventually(Duration::from_secs(30), || {
            let last = replies();
            last.contains("no reply") || last.contains("no connection")
        }),
        "traffic still flows with mTLS on and no TrafficPermission:\n{}",
        logs(api, cluster)
    );
    step("permit", &[]);
    assert!(
        eventually(Duration::from_secs(30), || replies()
            .contains("reply: hello mesh")),
        "the TrafficPermission did not let the client through:\n{}",
        logs(api, cluster)
    );

    let cp = pods(api, "kuma-system")
        .into_iter()
        .find(|p| name(p).starts_with("kuma-control-plane-"))
        .expect("the control plane's pod");
    let api_url = format!("http://{}:5681", cp["status"]["podIP"].as_str().unwrap());
    let listed = step("dataplanes", &[("KUMA_API_URL", &api_url)]);
    assert!(
        listed.contains(&format!("{}.demo", name(&echo))) && listed.contains("client.demo"),
        "{listed}"
    );

    k.kubectl(&["delete", "pod", &name(&echo), "-n", "demo"]);
    assert!(
        eventually(Duration::from_secs(30), || api
            .get(&dataplane_path)
            .is_none()),
        "the deleted pod's Dataplane stayed"
    );

    step("uninstall", &[]);
    for collection in [
        "/apis/apps/v1/namespaces/kuma-system/deployments",
        "/api/v1/namespaces/kuma-system/services",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations",
    ] {
        assert_eq!(
            api.count(collection),
            0,
            "{collection} after helm uninstall"
        );
    }
    assert!(
        api.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/kuma-control-plane")
            .is_none(),
        "the chart's ClusterRole after helm uninstall"
    );
    assert!(
        eventually(Duration::from_secs(10), || pods(api, "kuma-system")
            .is_empty()),
        "the control plane's pod outlived its Deployment"
    );
    // As Helm does, the CRDs stay, and with them what the control plane
    // wrote (README: "What helm uninstall leaves").
    assert_eq!(
        api.count("/apis/apiextensions.k8s.io/v1/customresourcedefinitions"),
        kuma::k8s::crd::CRDS.len()
    );
    assert!(api.get("/apis/kuma.io/v1alpha1/meshes/default").is_some());
    assert!(
        api.get("/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases/kuma-cp-leader")
            .is_some()
    );
    let secrets: Vec<String> = api
        .list("/api/v1/namespaces/kuma-system/secrets")
        .iter()
        .map(name)
        .collect();
    // The mesh's own, and the control plane's user token key and admin
    // token.
    let global = [
        kuma::security::users::ADMIN_TOKEN_SECRET,
        kuma::security::users::SIGNING_KEY_SECRET,
    ];
    assert!(
        secrets.iter().any(|s| s.starts_with("default."))
            && secrets
                .iter()
                .all(|s| s.starts_with("default.") || global.contains(&s.as_str())),
        "only the mesh's and the control plane's own Secrets stay: {secrets:?}"
    );
    assert!(api.get("/api/v1/namespaces/kuma-system").is_some());
}
