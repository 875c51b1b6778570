//! Real traffic in Kubernetes mode: `kuma-cp` against a real API server
//! (as the chart's ServiceAccount), two pods whose IPs are loopback
//! addresses, each with `kuma-dp` and a real Envoy started the way the
//! injected sidecar starts them (the environment only, a service-account
//! token the API server issued). Bytes sent to the echo Service's cluster
//! IP (put on the loopback interface, where the client's outbound listens)
//! go through the client's Envoy and the echo's Envoy to `kuma-tcp-echo`;
//! with mTLS on, the mesh CA lands in a Secret of `kuma-system` and traffic
//! waits for a TrafficPermission; MeshTrafficPermissions then take over,
//! the application namespace's over the system's. Tokens the API server does not vouch for,
//! or for another pod's account or namespace, are refused. Needs root.

use kuma_test_support as common;
use kuma_test_support::cluster::control_plane;

use common::{Dataplane, KumaCp, echo_server, echo_works_at, eventually, free_port, run_ok};
use control_plane::ControlPlane;
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

/// A Service; answers its cluster IP, which the API server allocates.
fn service(api: &ControlPlane, ns: &str, name: &str, port: u16, target: u16) -> String {
    let created = api.apply(
        &format!("/api/v1/namespaces/{ns}/services"),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name},
                        "ports": [{"name": "main", "port": port, "targetPort": target}]}}),
    );
    created["spec"]["clusterIP"]
        .as_str()
        .expect("a cluster IP")
        .to_string()
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

/// `kuma-dp` as the sidecar container of pod `name` (of namespace `ns`)
/// runs it, with a service-account token file holding `token`.
fn sidecar(cp: &KumaCp, (ns, name): (&str, &str), token: &str, dir: &std::path::Path) -> Dataplane {
    let token_file = dir.join(format!("{name}-token"));
    std::fs::write(&token_file, token).unwrap();
    Dataplane::launch_sidecar(&[
        ("KUMA_CONTROL_PLANE_URL", &cp.bootstrap),
        (
            "KUMA_CONTROL_PLANE_CA_CERT_FILE",
            cp.ca_file.as_ref().unwrap().to_str().unwrap(),
        ),
        ("KUMA_DATAPLANE_MESH", "default"),
        ("KUMA_DATAPLANE_NAME", &format!("{name}.{ns}")),
        (
            "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
            token_file.to_str().unwrap(),
        ),
    ])
}

#[test]
fn traffic_flows_between_pods_through_both_envoys_and_mtls_waits_for_a_permission() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    let echo_token = api.service_account_token(&ns, "echo");
    let client_token = api.service_account_token(&ns, "client");
    let cp = api.kuma_cp(&[]);
    let ips = Addresses::new();
    let (echo_port, echo_vip_port, client_port) = (free_port(), free_port(), free_port());
    let _echo = echo_server(echo_port);

    let echo_vip = service(api, &ns, "echo", echo_vip_port, echo_port);
    // The client's outbound listens on the echo Service's address.
    run_ok(
        "ip",
        &["addr", "add", &format!("{echo_vip}/32"), "dev", "lo"],
    );
    api.at_exit(&format!("ip addr del {echo_vip}/32 dev lo"));
    service(api, &ns, "client", client_port, client_port);
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    api.apply_with_status(&pods, pod("echo-1", "echo", &ips.ip(2), "echo", true));
    // No redirection for the client here: its outbounds listen on the
    // Service addresses themselves.
    api.apply_with_status(
        &pods,
        pod("client-1", "client", &ips.ip(4), "client", false),
    );
    for name in ["echo-1", "client-1"] {
        let path = format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes/{name}");
        assert!(
            eventually(Duration::from_secs(10), || api.get(&path).is_some()),
            "no Dataplane for {name}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let echo_dp = sidecar(&cp, (&ns, "echo-1"), &echo_token, dir.path());
    let client_dp = sidecar(&cp, (&ns, "client-1"), &client_token, dir.path());
    echo_dp.wait_ready();
    client_dp.wait_ready();
    let target = (echo_vip.as_str(), echo_vip_port);
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "no echo through the Service address; client kuma-dp:\n{}\n{}",
        client_dp.log(),
        client_dp.admin_get("/listeners").unwrap_or_default()
    );
    let cluster = format!("echo_{ns}_svc_{echo_vip_port}");
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
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/trafficpermissions"),
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "TrafficPermission",
               "metadata": {"name": "client-to-echo"}, "mesh": "default",
               "spec": {"rules": [{
                   "sources": [{"match": {"service": format!("client_{ns}_svc_{client_port}")}}],
                   "destinations": [{"match": {"service": cluster}}]}]}}),
    );
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "the permission did not open the path"
    );

    // Today's policies, as Kuma's Kubernetes docs write them: one in the
    // system namespace allows every client mesh-wide (and retires the
    // TrafficPermission); one in the application's namespace denies this
    // client and wins there; removed, the mesh-wide one applies again.
    let mtp = |ns: &str, name: &str, action: &str, from: Value| {
        api.apply(
            &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/meshtrafficpermissions"),
            json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrafficPermission",
                   "metadata": {"name": name, "labels": {"kuma.io/mesh": "default"}},
                   "spec": {"targetRef": {"kind": "MeshService", "name": cluster},
                            "from": [{"targetRef": from, "default": {"action": action}}]}}),
        );
    };
    mtp("kuma-system", "allow-all", "Allow", json!({"kind": "Mesh"}));
    api.delete(&format!(
        "/apis/kuma.io/v1alpha1/namespaces/{ns}/trafficpermissions/client-to-echo"
    ));
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "the mesh-wide MeshTrafficPermission allows"
    );
    mtp(
        &ns,
        "no-client",
        "Deny",
        json!({"kind": "MeshService", "name": format!("client_{ns}_svc_{client_port}")}),
    );
    assert!(
        eventually(Duration::from_secs(15), || !echo_works_at(target)),
        "the application namespace's deny did not win over the system namespace's allow"
    );
    api.delete(&format!(
        "/apis/kuma.io/v1alpha1/namespaces/{ns}/meshtrafficpermissions/no-client"
    ));
    assert!(
        eventually(Duration::from_secs(15), || echo_works_at(target)),
        "with the namespace's deny gone, the mesh-wide allow applies again"
    );

    // Kuma 2.12's forms: the echo named as a Service object (its port by
    // name, the namespace the policy's), the client by its SPIFFE id.
    api.apply(
        &format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/meshtrafficpermissions"),
        json!({"apiVersion": "kuma.io/v1alpha1", "kind": "MeshTrafficPermission",
               "metadata": {"name": "no-client-by-id", "labels": {"kuma.io/mesh": "default"}},
               "spec": {"targetRef": {"kind": "MeshService", "name": "echo", "sectionName": "main"},
                        "rules": [{"default": {"deny": [{"spiffeID": {"type": "Exact",
                            "value": format!("spiffe://default/client_{ns}_svc_{client_port}")}}]}}]}}),
    );
    assert!(
        eventually(Duration::from_secs(15), || !echo_works_at(target)),
        "a deny by SPIFFE id on the echo Service's port named main did not apply"
    );
    api.delete(&format!(
        "/apis/kuma.io/v1alpha1/namespaces/{ns}/meshtrafficpermissions/no-client-by-id"
    ));
    assert!(eventually(Duration::from_secs(15), || echo_works_at(
        target
    )));
    api.delete("/apis/kuma.io/v1alpha1/namespaces/kuma-system/meshtrafficpermissions/allow-all");
}

#[test]
fn a_wrong_or_missing_service_account_token_is_refused() {
    let api = ControlPlane::shared();
    let _only = api.exclusive();
    let ns = api.namespace("demo", json!({"kuma.io/sidecar-injection": "enabled"}));
    let prod = api.namespace("prod", json!({}));
    api.service_account_token(&ns, "echo");
    let other = api.service_account_token(&ns, "other");
    let elsewhere = api.service_account_token(&prod, "echo");
    let cp = api.kuma_cp(&[]);
    let ips = Addresses::new();
    service(api, &ns, "echo", free_port(), free_port());
    api.apply_with_status(
        &format!("/api/v1/namespaces/{ns}/pods"),
        pod("echo-1", "echo", &ips.ip(2), "echo", true),
    );
    let path = format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes/echo-1");
    assert!(eventually(Duration::from_secs(10), || api
        .get(&path)
        .is_some()));

    let dir = tempfile::tempdir().unwrap();
    let mut log = String::new();
    for (token, refusal) in [
        (
            "forged".to_string(),
            "did not accept the service-account token".to_string(),
        ),
        (
            other,
            format!("pod \\\"echo-1.{ns}\\\" runs as \\\"echo\\\""),
        ),
        (elsewhere, format!("of namespace \\\"{prod}\\\"")),
        (
            String::new(),
            "no service-account token was presented".to_string(),
        ),
    ] {
        let mut dp = sidecar(&cp, (&ns, "echo-1"), &token, dir.path());
        assert!(
            eventually(Duration::from_secs(15), || {
                log.push_str(&cp.log());
                log.contains(&refusal)
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
