//! Two `kuma-cp` replicas in Kubernetes mode: only the holder of the leader
//! Lease writes; killing it hands the lease, and the writing, to the other
//! within the lease duration.

#![cfg(feature = "kubernetes")]

mod common;
#[path = "kube_api/mod.rs"]
mod kube_api;

use common::{KumaCp, eventually};
use kube_api::KubeApi;
use serde_json::json;
use std::time::Duration;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases/kuma-cp-leader";
const DATAPLANES: &str = "kuma.io/v1alpha1/dataplanes";

fn replica(api: &KubeApi, token: &str) -> (KumaCp, String) {
    let kubeconfig = api.kubeconfig_for(token);
    let mut cp = api.kuma_cp(&[
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUMA_LEADER_ELECTION_LEASE_DURATION_SECONDS", "2"),
    ]);
    let id = instance_id(&mut cp);
    (cp, id)
}

/// The instance id `kuma-cp` logs when it starts.
fn instance_id(cp: &mut KumaCp) -> String {
    let mut log = String::new();
    let mut found = None;
    eventually(Duration::from_secs(10), || {
        log.push_str(&cp.log());
        found = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["instance_id"].as_str().map(str::to_string));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no instance id logged:\n{log}"))
}

fn holder(api: &KubeApi) -> Option<String> {
    api.get(LEASE)?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

fn pod(name: &str, ip: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"app": "web"},
                        "annotations": {"kuma.io/sidecar-injected": "true"}},
           "spec": {"containers": [{"name": "web", "image": "web"}]},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

#[test]
fn only_the_leader_writes_and_killing_it_hands_over() {
    let api = KubeApi::start();
    let (mut a, a_id) = replica(&api, "replica-a");
    assert!(
        eventually(Duration::from_secs(10), || holder(&api).as_deref()
            == Some(a_id.as_str())),
        "the first replica did not take the lease"
    );
    let (_b, b_id) = replica(&api, "replica-b");

    api.apply(
        "/api/v1/namespaces/demo/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.7",
                        "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    api.apply("/api/v1/namespaces/demo/pods", pod("web-1", "10.0.0.1"));
    let dataplane =
        |name: &str| format!("/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/{name}");
    assert!(eventually(Duration::from_secs(10), || api
        .get(&dataplane("web-1"))
        .is_some()));
    // Give the follower every chance to write too; it must not.
    std::thread::sleep(Duration::from_secs(1));
    assert!(api.writes(DATAPLANES, "replica-a") > 0);
    for collection in [DATAPLANES, "kuma.io/v1alpha1/meshes", "v1/secrets"] {
        assert_eq!(
            api.writes(collection, "replica-b"),
            0,
            "the follower wrote {collection}"
        );
    }
    assert_eq!(holder(&api).as_deref(), Some(a_id.as_str()));

    // The leader dies without a word: the follower takes the lease once it
    // has not been renewed for the lease duration (2 s here).
    a.child.kill().unwrap();
    let _ = a.child.wait();
    assert!(
        eventually(Duration::from_secs(10), || holder(&api).as_deref()
            == Some(b_id.as_str())),
        "the follower did not take over"
    );
    api.apply("/api/v1/namespaces/demo/pods", pod("web-2", "10.0.0.2"));
    assert!(
        eventually(Duration::from_secs(10), || api
            .get(&dataplane("web-2"))
            .is_some()),
        "the new leader did not write"
    );
    assert!(api.writes(DATAPLANES, "replica-b") > 0);
}
