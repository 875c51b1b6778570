//! Real traffic in Kubernetes mode: `kuma-cp` against the in-process API
//! server, two "pods" whose IPs are loopback addresses, each with `kuma-dp`
//! and a real Envoy started the way the injected sidecar starts them (the
//! environment only, the pod's service-account token). Bytes sent to the
//! echo Service's cluster IP go through the client's Envoy and the echo's
//! Envoy to `kuma-tcp-echo`; with mTLS on, the mesh CA lands in a Secret of
//! `kuma-system` and traffic waits for a TrafficPermission.

#![cfg(feature = "kubernetes")]

mod common;
#[path = "kube_api/mod.rs"]
mod kube_api;

use common::{Dataplane, KumaCp, echo_server, echo_works_at, eventually, free_port};
use kube_api::KubeApi;
use serde_json::{Value, json};
use std::time::Duration;

/// Loopback addresses of this test's own: `127.{a}.{b}.{n}`.
struct Addresses(u8, u8);

impl Addresses {
    fn new() -> Self {
        let r: u16 = rand::random();
        Addresses(20 + (r % 200) as u8, (r >> 8) as u8)
    }

    fn ip(&self, n: u8) -> String {
        format!("127.{}.{}.{n}", self.0, self.1)
    }
}

fn namespace() -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "demo", "labels": {"kuma.io/sidecar-injection": "enabled"}}})
}

fn service(name: &str, vip: &str, port: u16, target: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
           "spec": {"selector": {"app": name}, "clusterIP": vip,
                    "ports": [{"port": port, "targetPort": target}]}})
}

/// A running pod with the sidecar injected. `outbound_redirected`: the node
/// redirects its outgoing traffic (so its outbound listeners need not bind
/// the Service addresses); its incoming traffic is not redirected here, so
/// its inbound listener binds the pod's address.
fn pod(name: &str, app: &str, ip: &str, account: &str, outbound_redirected: bool) -> Value {
    let mut annotations = json!({"kuma.io/sidecar-injected": "true"});
    if outbound_redirected {
        annotations["kuma.io/transparent-proxying"] = json!("enabled");
        annotations["kuma.io/transparent-proxying-inbound-port"] = json!("0");
    }
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": {"app": app}, "annotations": annotations},
           "spec": {"serviceAccountName": account, "containers": [{"name": app, "image": app}]},
           "status": {"phase": "Running", "podIP": ip,
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// `kuma-dp` as the sidecar container runs it, with a service-account
/// token file holding `token`.
fn sidecar(cp: &KumaCp, name: &str, token: &str, dir: &std::path::Path) -> Dataplane {
    let token_file = dir.join(format!("{name}-token"));
    std::fs::write(&token_file, token).unwrap();
    Dataplane::launch_sidecar(&[
        ("KUMA_CONTROL_PLANE_URL", &cp.bootstrap),
        ("KUMA_DATAPLANE_MESH", "default"),
        ("KUMA_DATAPLANE_NAME", &format!("{name}.demo")),
        (
            "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
            token_file.to_str().unwrap(),
        ),
    ])
}

#[test]
fn traffic_flows_between_pods_through_both_envoys_and_mtls_waits_for_a_permission() {
    let api = KubeApi::start();
    api.add_token("echo-token", "demo", "echo");
    api.add_token("client-token", "demo", "client");
    let cp = api.kuma_cp(&[]);
    let ips = Addresses::new();
    let (echo_port, echo_vip_port, client_port) = (free_port(), free_port(), free_port());
    let _echo = echo_server(echo_port);
    let echo_vip = ips.ip(3);

    api.apply("/api/v1/namespaces", namespace());
    api.apply(
        "/api/v1/namespaces/demo/services",
        service("echo", &echo_vip, echo_vip_port, echo_port),
    );
    api.apply(
        "/api/v1/namespaces/demo/services",
        service("client", &ips.ip(5), client_port, client_port),
    );
    api.apply(
        "/api/v1/namespaces/demo/pods",
        pod("echo-1", "echo", &ips.ip(2), "echo", true),
    );
    // No redirection for the client here: its outbounds listen on the
    // Service addresses themselves.
    api.apply(
        "/api/v1/namespaces/demo/pods",
        pod("client-1", "client", &ips.ip(4), "client", false),
    );
    for name in ["echo-1", "client-1"] {
        let path = format!("/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/{name}");
        assert!(
            eventually(Duration::from_secs(10), || api.get(&path).is_some()),
            "no Dataplane for {name}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let echo_dp = sidecar(&cp, "echo-1", "echo-token", dir.path());
    let client_dp = sidecar(&cp, "client-1", "client-token", dir.path());
    echo_dp.wait_ready();
    client_dp.wait_ready();
    let target = (echo_vip.as_str(), echo_vip_port);
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "no echo through the Service address; client kuma-dp:\n{}\n{}",
        client_dp.log(),
        client_dp.admin_get("/listeners").unwrap_or_default()
    );
    let cluster = format!("echo_demo_svc_{echo_vip_port}");
    assert_eq!(
        client_dp.endpoints(&cluster),
        [format!("{}:{echo_port}", ips.ip(2))],
        "the client's Envoy reaches the echo pod's Envoy"
    );

    // mTLS on the Mesh CR: the CA lands in a Secret of kuma-system, and
    // traffic is denied until a TrafficPermission allows it.
    api.apply(
        "/apis/kuma.io/v1alpha1/meshes",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "default"},
               "spec": {"mtls": {"enabled": true, "ca": {"builtin": {}}}}}),
    );
    assert!(eventually(Duration::from_secs(10), || api
        .get("/api/v1/namespaces/kuma-system/secrets/default.ca-builtin")
        .is_some()));
    assert!(
        eventually(Duration::from_secs(15), || !echo_works_at(target)),
        "traffic flowed with mTLS on and no permission"
    );
    api.apply(
        "/apis/kuma.io/v1alpha1/namespaces/demo/trafficpermissions",
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
               "metadata": {"name": "client-to-echo"}, "mesh": "default",
               "spec": {"rules": [{
                   "sources": [{"match": {"service": format!("client_demo_svc_{client_port}")}}],
                   "destinations": [{"match": {"service": cluster}}]}]}}),
    );
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "the permission did not open the path"
    );
}

#[test]
fn a_wrong_or_missing_service_account_token_is_refused() {
    let api = KubeApi::start();
    api.add_token("echo-token", "demo", "echo");
    api.add_token("other-token", "demo", "other");
    api.add_token("elsewhere-token", "prod", "echo");
    let cp = api.kuma_cp(&[]);
    let ips = Addresses::new();
    api.apply("/api/v1/namespaces", namespace());
    api.apply(
        "/api/v1/namespaces/demo/services",
        service("echo", &ips.ip(3), free_port(), free_port()),
    );
    api.apply(
        "/api/v1/namespaces/demo/pods",
        pod("echo-1", "echo", &ips.ip(2), "echo", true),
    );
    let path = "/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes/echo-1";
    assert!(eventually(Duration::from_secs(10), || api
        .get(path)
        .is_some()));

    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for (token, refusal) in [
        ("forged", "did not accept the service-account token"),
        (
            "other-token",
            "pod \\\"echo-1.demo\\\" runs as \\\"echo\\\"",
        ),
        ("elsewhere-token", "of namespace \\\"prod\\\""),
        ("", "no service-account token was presented"),
    ] {
        let mut dp = sidecar(&cp, "echo-1", token, dir.path());
        assert!(
            eventually(Duration::from_secs(15), || {
                log.push_str(&cp.log());
                log.contains(refusal)
            }),
            "no refusal saying {refusal:?}; kuma-cp log:\n{log}"
        );
        // The bootstrap server refused it: the sidecar stops with the
        // reason and never starts Envoy, so no stream reaches kuma-cp.
        let status = dp.exit_status();
        let dp_log = dp.log();
        assert!(!status.success(), "kuma-dp exited with {status}: {dp_log}");
        assert!(
            dp_log.contains(&refusal.replace("\\\"", "\"")),
            "kuma-dp does not say {refusal:?}: {dp_log}"
        );
        assert!(dp.admin_get("/ready").is_none(), "an Envoy was started");
        assert_eq!(common::open_streams(&cp.api), 0.0, "a stream was opened");
    }
}
