//! Pods become Dataplanes, with `kuma-cp` in Kubernetes mode against a
//! real API server, as the chart's ServiceAccount: a pod with the sidecar
//! and a Service selecting it gets its Dataplane; Service and readiness
//! changes follow; it goes with the pod. Pod status is written through the
//! status subresource, as a kubelet writes it.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::{eventually, kumactl, kumactl_config};
use control_plane::ControlPlane;
use serde_json::{Value, json};
use std::time::Duration;

fn pods(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods")
}

fn services(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services")
}

fn dataplane_path(ns: &str) -> String {
    format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes/echo-1")
}

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
        "spec": {"selector": {"app": "echo"},
                 "ports": [{"port": 80, "targetPort": target_port}]}
    })
}

fn inbound(api: &ControlPlane, ns: &str) -> Option<Value> {
    api.get(&dataplane_path(ns))
        .map(|d| d["spec"]["networking"]["inbound"][0].clone())
}

#[test]
fn a_pod_with_the_sidecar_and_a_service_becomes_a_dataplane_that_follows_it() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    let cp = api.kuma_cp(&[]);
    let (pods, services) = (pods(&ns), services(&ns));
    let cluster_ip = api.apply(&services, service(json!("tcp-echo")))["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string();
    let created = api.apply_with_status(&pods, pod("echo-1", "10.0.0.2", true, "Running"));
    // A pod without the sidecar in this labelled namespace (created before
    // the injector was up) gets no Dataplane; it is reported instead.
    let mut plain = pod("plain", "10.0.0.9", true, "Running");
    plain["metadata"]["annotations"] = json!({});
    api.apply_with_status(&pods, plain);
    let reported = || {
        api.list(&format!("/api/v1/namespaces/{ns}/events"))
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
            .contains(&format!("echo-1.{ns}"))),
        "no Dataplane for echo-1 in kumactl get dataplanes: {:?}\non the API server: {:?}\nleader lease: {:?}\nkuma-cp log:\n{}",
        {
            let run = list();
            (run.code, run.stdout, run.stderr)
        },
        api.get(&dataplane_path(&ns)),
        api.list("/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases"),
        cp.log()
    );
    let listed = list();
    assert!(
        listed.stdout.contains(&format!("echo-1.{ns}")) && !listed.stdout.contains("plain"),
        "kumactl get dataplanes lists the Dataplanes made from pods:\n{}",
        listed.stdout
    );
    let inspect = kumactl(&config, &["inspect", "dataplanes"], None);
    assert!(
        inspect
            .stdout
            .contains(&format!("pod {ns}/plain is outside the mesh"))
            && inspect
                .stdout
                .contains(&format!("kubectl -n {ns} delete pod plain")),
        "{}",
        inspect.stdout
    );

    assert!(eventually(Duration::from_secs(10), || api
        .get(&dataplane_path(&ns))
        .is_some()));
    let dataplane = api.get(&dataplane_path(&ns)).unwrap();
    assert_eq!(dataplane["mesh"], "default");
    assert_eq!(
        dataplane["metadata"]["ownerReferences"][0]["uid"], created["metadata"]["uid"],
        "owned by its pod"
    );
    assert_eq!(
        inbound(api, &ns).unwrap(),
        json!({"interface": "10.0.0.2:7000:7000",
               "tags": {"app": "echo", "version": "v1", "service": format!("echo_{ns}_svc_80"), "protocol": "tcp",
                        "k8s.kuma.io/namespace": ns},
               "health": {"ready": true},
               "serviceVip": format!("{cluster_ip}:80")})
    );
    assert!(
        api.get(&format!(
            "/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes/plain"
        ))
        .is_none()
    );

    // The Service's target port changes: so does the inbound.
    api.apply(&services, service(json!(7001)));
    assert!(eventually(Duration::from_secs(10), || inbound(api, &ns)
        .is_some_and(|i| i["interface"] == "10.0.0.2:7001:7001")));

    // The pod stops being ready: its inbound says so.
    api.apply_with_status(&pods, pod("echo-1", "10.0.0.2", false, "Running"));
    assert!(eventually(Duration::from_secs(10), || inbound(api, &ns)
        .is_some_and(|i| i["health"]["ready"] == false)));

    // It completes: no Dataplane.
    api.apply_with_status(&pods, pod("echo-1", "10.0.0.2", false, "Succeeded"));
    assert!(eventually(Duration::from_secs(10), || api
        .get(&dataplane_path(&ns))
        .is_none()));

    // A new one of the same name (a completed pod never runs again), then
    // deleted: its Dataplane goes with it, through the garbage collector.
    assert!(api.delete(&format!("{pods}/echo-1")));
    assert!(eventually(Duration::from_secs(10), || api
        .get(&format!("{pods}/echo-1"))
        .is_none()));
    api.apply_with_status(&pods, pod("echo-1", "10.0.0.3", true, "Running"));
    assert!(eventually(Duration::from_secs(10), || inbound(api, &ns)
        .is_some_and(|i| i["interface"] == "10.0.0.3:7001:7001")));
    assert!(api.delete(&format!("{pods}/echo-1")));
    assert!(eventually(Duration::from_secs(30), || api
        .get(&dataplane_path(&ns))
        .is_none()));
}

#[test]
fn a_mesh_admits_the_pods_of_its_namespaces_only() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let _cp = api.kuma_cp(&[]);
    let (team_a, demo) = (
        api.namespace("team-a", json!({})),
        api.namespace("demo", json!({})),
    );
    api.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh",
               "metadata": {"name": "team-a"},
               "spec": {"constraints": {"dataplaneProxy": {"requirements": [
                   {"tags": {"k8s.kuma.io/namespace": team_a}}]}}}}),
    );
    for ns in [&team_a, &demo] {
        api.apply(&services(ns), service(json!("tcp-echo")));
        let mut p = pod("echo-1", "10.0.0.2", true, "Running");
        p["metadata"]["annotations"]["kuma.io/mesh"] = json!("team-a");
        api.apply_with_status(&pods(ns), p);
    }
    // The pod of team-a's namespace joins; the one of demo, which names the
    // same mesh, does not, and its Event says why.
    assert!(eventually(Duration::from_secs(15), || api
        .get(&dataplane_path(&team_a))
        .is_some()));
    let refusal = || {
        api.list(&format!("/api/v1/namespaces/{demo}/events"))
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
            && message.contains(&format!("k8s.kuma.io/namespace={team_a}")),
        "{message}"
    );
    assert!(
        api.get(&dataplane_path(&demo)).is_none(),
        "the refused pod has no Dataplane"
    );
}

#[test]
fn a_deleted_namespace_takes_its_dataplanes_and_kuma_cp_stays_calm() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("doomed", json!({}));
    let cp = api.kuma_cp(&[]);
    api.apply(&services(&ns), service(json!("tcp-echo")));
    api.apply_with_status(&pods(&ns), pod("echo-1", "10.0.0.2", true, "Running"));
    assert!(eventually(Duration::from_secs(15), || api
        .get(&dataplane_path(&ns))
        .is_some()));
    // What kuma-cp logged so far is read (and put aside) here.
    let _ = cp.log();

    assert!(api.delete(&format!("/api/v1/namespaces/{ns}")));
    assert!(
        eventually(Duration::from_secs(60), || api
            .get(&format!("/api/v1/namespaces/{ns}"))
            .is_none()),
        "the namespace was not removed:\n{}",
        api.logs()
    );
    assert!(api.get(&dataplane_path(&ns)).is_none());
    // Its pod's Dataplane went with it: nothing for kuma-cp to warn about
    // (no failed write, no retry), let alone an error.
    let after = cp.log();
    let alarming: Vec<&str> = after
        .lines()
        .filter(|l| l.contains("\"level\":\"ERROR\"") || l.contains("\"level\":\"WARN\""))
        .collect();
    assert!(alarming.is_empty(), "kuma-cp was alarmed: {alarming:#?}");
}
