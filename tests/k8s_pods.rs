//! Pods become Dataplanes, with `kuma-cp` in Kubernetes mode against the
//! in-process API server: a pod with the sidecar and a Service selecting it
//! gets its Dataplane; Service and readiness changes follow; it goes with
//! the pod.

#![cfg(feature = "kubernetes")]

mod common;
#[path = "kube_api/mod.rs"]
mod kube_api;

use common::{eventually, kumactl, kumactl_config};
use kube_api::KubeApi;
use serde_json::{Value, json};
use std::time::Duration;

const PODS: &str = "/api/v1/namespaces/demo/pods";
const SERVICES: &str = "/api/v1/namespaces/demo/services";
const DATAPLANE: &str = "/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/echo-1";

fn pod(name: &str, ip: &str, ready: bool, phase: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "echo", "version": "v1"},
                     "annotations": {"kuma.io/sidecar-injected": "true"}},
        "spec": {"containers": [{"name": "echo", "image": "kuma-tcp-echo",
                                 "ports": [{"name": "tcp-echo", "containerPort": 7000}]}]},
        "status": {"phase": phase, "podIP": ip,
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn service(target_port: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "echo"},
        "spec": {"selector": {"app": "echo"}, "clusterIP": "10.96.0.5",
                 "ports": [{"port": 80, "targetPort": target_port}]}
    })
}

fn inbound(api: &KubeApi) -> Option<Value> {
    api.get(DATAPLANE)
        .map(|d| d["spec"]["networking"]["inbound"][0].clone())
}

#[test]
fn a_pod_with_the_sidecar_and_a_service_becomes_a_dataplane_that_follows_it() {
    let api = KubeApi::start();
    let cp = api.kuma_cp(&[]);
    api.apply(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "demo", "labels": {"kuma.io/sidecar-injection": "enabled"}}}),
    );
    api.apply(SERVICES, service(json!("tcp-echo")));
    let created = api.apply(PODS, pod("echo-1", "10.0.0.2", true, "Running"));
    // A pod without the sidecar in this labelled namespace (created before
    // the injector was up) gets no Dataplane; it is reported instead.
    let mut plain = pod("plain", "10.0.0.9", true, "Running");
    plain["metadata"]["annotations"] = json!({});
    api.apply(PODS, plain);
    let reported = || {
        api.list("/api/v1/namespaces/demo/events")
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "plain" && e["reason"] == "SidecarMissing")
    };
    assert!(eventually(Duration::from_secs(10), || reported().is_some()));
    let message = reported().unwrap()["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("restart"), "{message}");
    let (_dir, config) = kumactl_config(&cp);
    // The Dataplane is written (and seen by the API's cache) a moment after
    // the Event: wait for it rather than race it.
    let list = || kumactl(&config, &["get", "dataplanes"], None);
    assert!(
        eventually(Duration::from_secs(30), || list()
            .stdout
            .contains("echo-1.demo")),
        "no Dataplane for echo-1 in kumactl get dataplanes: {:?}\non the API server: {:?}\nleader lease: {:?}\nkuma-cp log:\n{}",
        {
            let run = list();
            (run.code, run.stdout, run.stderr)
        },
        api.get(DATAPLANE),
        api.list("/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases"),
        cp.log()
    );
    let listed = list();
    assert!(
        listed.stdout.contains("echo-1.demo") && !listed.stdout.contains("plain"),
        "kumactl get dataplanes lists the Dataplanes made from pods:\n{}",
        listed.stdout
    );
    let inspect = kumactl(&config, &["inspect", "dataplanes"], None);
    assert!(
        inspect
            .stdout
            .contains("pod demo/plain is outside the mesh")
            && inspect.stdout.contains("kubectl -n demo delete pod plain"),
        "{}",
        inspect.stdout
    );

    assert!(eventually(Duration::from_secs(10), || api
        .get(DATAPLANE)
        .is_some()));
    let dataplane = api.get(DATAPLANE).unwrap();
    assert_eq!(dataplane["mesh"], "default");
    assert_eq!(
        dataplane["metadata"]["ownerReferences"][0]["uid"], created["metadata"]["uid"],
        "owned by its pod"
    );
    assert_eq!(
        inbound(&api).unwrap(),
        json!({"interface": "10.0.0.2:7000:7000",
               "tags": {"app": "echo", "version": "v1", "service": "echo_demo_svc_80", "protocol": "tcp",
                        "k8s.kuma.io/namespace": "demo"},
               "health": {"ready": true},
               "serviceVip": "10.96.0.5:80"})
    );
    assert!(
        api.get("/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/plain")
            .is_none()
    );

    // The Service's target port changes: so does the inbound.
    api.apply(SERVICES, service(json!(7001)));
    assert!(eventually(Duration::from_secs(10), || inbound(&api)
        .is_some_and(|i| i["interface"] == "10.0.0.2:7001:7001")));

    // The pod stops being ready: its inbound says so.
    api.apply(PODS, pod("echo-1", "10.0.0.2", false, "Running"));
    assert!(eventually(Duration::from_secs(10), || inbound(&api)
        .is_some_and(|i| i["health"]["ready"] == false)));

    // It completes: no Dataplane.
    api.apply(PODS, pod("echo-1", "10.0.0.2", false, "Succeeded"));
    assert!(eventually(Duration::from_secs(10), || api
        .get(DATAPLANE)
        .is_none()));

    // A new one, then deleted: its Dataplane goes with it.
    api.apply(PODS, pod("echo-1", "10.0.0.3", true, "Running"));
    assert!(eventually(Duration::from_secs(10), || inbound(&api)
        .is_some_and(|i| i["interface"] == "10.0.0.3:7001:7001")));
    assert!(api.delete(&format!("{PODS}/echo-1")));
    assert!(eventually(Duration::from_secs(10), || api
        .get(DATAPLANE)
        .is_none()));
}

#[test]
fn a_mesh_admits_the_pods_of_its_namespaces_only() {
    let api = KubeApi::start();
    let _cp = api.kuma_cp(&[]);
    api.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
               "metadata": {"name": "team-a"},
               "spec": {"constraints": {"dataplaneProxy": {"requirements": [
                   {"tags": {"k8s.kuma.io/namespace": "team-a"}}]}}}}),
    );
    for ns in ["team-a", "demo"] {
        api.apply(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
        api.apply(
            &format!("/api/v1/namespaces/{ns}/services"),
            service(json!("tcp-echo")),
        );
        let mut p = pod("echo-1", "10.0.0.2", true, "Running");
        p["metadata"]["annotations"]["kuma.io/mesh"] = json!("team-a");
        api.apply(&format!("/api/v1/namespaces/{ns}/pods"), p);
    }
    // The pod of team-a's namespace joins; the one of demo, which names the
    // same mesh, does not, and its Event says why.
    assert!(eventually(Duration::from_secs(15), || api
        .get("/apis/kuma.io/v1alpha1/namespaces/team-a/dataplanes/echo-1")
        .is_some()));
    let refusal = || {
        api.list("/api/v1/namespaces/demo/events")
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "echo-1" && e["reason"] == "MeshRefusedPod")
    };
    assert!(eventually(Duration::from_secs(15), || refusal().is_some()));
    let message = refusal().unwrap()["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.contains("mesh \"team-a\" admits only")
            && message.contains("k8s.kuma.io/namespace=team-a"),
        "{message}"
    );
    assert!(
        api.get(DATAPLANE).is_none(),
        "the refused pod has no Dataplane"
    );
}
