//! Two `kuma-cp` replicas in Kubernetes mode on a real API server, each as
//! a ServiceAccount of its own bound to the chart's RBAC: only the holder
//! of the leader Lease writes (the API server's audit log says who wrote
//! what); killing it hands the lease, and the writing, to the other within
//! the lease duration.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::{KumaCp, eventually};
use control_plane::ControlPlane;
use serde_json::json;
use std::time::Duration;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kuma-system/leases/kuma-cp-leader";

/// A replica running as service account `account` of `kuma-system`, bound
/// to the chart's ClusterRole and Role; its instance id.
fn replica(api: &ControlPlane, account: &str) -> (KumaCp, String) {
    api.kuma_cp_kubeconfig(); // the chart's RBAC
    let token = api.service_account_token("kuma-system", account);
    for (kind, path) in [
        (
            "ClusterRoleBinding",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        ),
        (
            "RoleBinding",
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kuma-system/rolebindings",
        ),
    ] {
        let role = kind.trim_end_matches("Binding");
        api.apply(
            path,
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
                   "metadata": {"name": account},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": "kuma-control-plane"},
                   "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "kuma-system"}]}),
        );
    }
    let kubeconfig = api.kubeconfig_for(account, &token);
    let mut cp = KumaCp::start(&[
        ("KUMA_ENVIRONMENT", "kubernetes"),
        ("KUMA_STORE_TYPE", "kubernetes"),
        ("KUBECONFIG", kubeconfig.to_str().unwrap()),
        ("KUMA_LEADER_ELECTION_LEASE_DURATION_SECONDS", "2"),
    ]);
    let id = instance_id(&mut cp);
    (cp, id)
}

/// The user the API server knows a replica's service account as.
fn user(account: &str) -> String {
    format!("system:serviceaccount:kuma-system:{account}")
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

fn holder(api: &ControlPlane) -> Option<String> {
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
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({}));
    let (mut a, a_id) = replica(api, "replica-a");
    assert!(
        eventually(Duration::from_secs(10), || holder(api).as_deref()
            == Some(a_id.as_str())),
        "the first replica did not take the lease"
    );
    let (b, b_id) = replica(api, "replica-b");

    api.apply(
        &format!("/api/v1/namespaces/{ns}/services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 8080}]}}),
    );
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    api.apply_with_status(&pods, pod("web-1", "10.0.0.1"));
    let dataplane =
        |name: &str| format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes/{name}");
    assert!(eventually(Duration::from_secs(10), || api
        .get(&dataplane("web-1"))
        .is_some()));
    // The follower has seen the leader's Dataplane, which came after the
    // pod it would have acted on: had it written, it would have by now.
    let seen = format!("{}/meshes/default/dataplanes/web-1.{ns}", b.api);
    assert!(
        eventually(Duration::from_secs(10), || common::http("GET", &seen, None)
            .status
            == 200),
        "the follower did not see the leader's Dataplane"
    );
    // The audit log is written as a request completes, a moment after
    // its answer: wait for the line.
    let wrote = |replica: &str| {
        eventually(Duration::from_secs(10), || {
            api.writes_by(&user(replica), "dataplanes") > 0
        })
    };
    assert!(wrote("replica-a"), "the leader's writes were not audited");
    for resource in ["dataplanes", "meshes", "secrets"] {
        assert_eq!(
            api.writes_by(&user("replica-b"), resource),
            0,
            "the follower wrote {resource}"
        );
    }
    assert_eq!(holder(api).as_deref(), Some(a_id.as_str()));

    // The leader dies without a word: the follower takes the lease once it
    // has not been renewed for the lease duration (2 s here).
    a.child.kill().unwrap();
    let _ = a.child.wait();
    assert!(
        eventually(Duration::from_secs(10), || holder(api).as_deref()
            == Some(b_id.as_str())),
        "the follower did not take over"
    );
    api.apply_with_status(&pods, pod("web-2", "10.0.0.2"));
    assert!(
        eventually(Duration::from_secs(10), || api
            .get(&dataplane("web-2"))
            .is_some()),
        "the new leader did not write"
    );
    assert!(
        wrote("replica-b"),
        "the new leader's writes were not audited"
    );
}
