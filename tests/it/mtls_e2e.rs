//! mTLS with real Envoy: each mesh its own CA, every connection denied
//! unless a TrafficPermission allows it, permissions applied live,
//! certificates renewed under traffic.

use crate::common;

use common::{
    Dataplane, KumaCp, allow, echo_roundtrip, echo_server, echo_works, eventually, free_port,
    put_dataplane, put_proxy, stays_blocked,
};
use std::time::Duration;

/// How long a change may take to reach traffic. It is a wait, not a goal
/// (the benchmarks measure convergence): with the whole suite sharing two
/// cores, a pair of fresh Envoys has been seen to need more than 5 s for
/// their first certificates.
const SETTLE: Duration = Duration::from_secs(15);

/// An echo behind one dataplane and a client dataplane (with `client_tags`
/// beyond `service: client`) in `mesh`; returns them and the outbound port.
struct EchoPair {
    echo: Dataplane,
    client: Dataplane,
    outbound: u16,
    echo_inbound: u16,
    _server: common::Process,
}

fn echo_pair(cp: &KumaCp, mesh: &str, client_version: &str) -> EchoPair {
    let (port, echo_inbound, outbound) = (free_port(), free_port(), free_port());
    let server = echo_server(port);
    put_dataplane(cp, mesh, "echo-1", (echo_inbound, port), "echo", &[]);
    let client = serde_json::json!({
        "type": "Dataplane", "mesh": mesh, "name": "client-1",
        "networking": {
            "inbound": [{"interface": format!("127.0.0.1:{}:{}", free_port(), free_port()),
                         "tags": {"service": "client", "version": client_version}}],
            "outbound": [{"interface": format!(":{outbound}"), "service": "echo"}]
        }
    });
    cp.put(
        &format!("/meshes/{mesh}/dataplanes/client-1"),
        &client.to_string(),
    );
    EchoPair {
        echo: Dataplane::start(cp, mesh, "echo-1"),
        client: Dataplane::start(cp, mesh, "client-1"),
        outbound,
        echo_inbound,
        _server: server,
    }
}

/// The entry of Envoy's `/certs` with the workload's certificate and its
/// mesh CA. Envoy lists its entries in no set order, and the xDS
/// cluster's (the control plane's CA, no chain) is among them.
fn workload_certificates(certs: &str) -> serde_json::Value {
    let certs: serde_json::Value = serde_json::from_str(certs).unwrap_or_default();
    certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["cert_chain"][0].is_object())
        .cloned()
        .unwrap_or_default()
}

/// The TrafficPermission `client-to-echo` of mesh `default`.
fn allow_client_to_echo(cp: &KumaCp) {
    allow(
        cp,
        "default",
        "client-to-echo",
        serde_json::json!({"service": "client"}),
        "echo",
    );
}

#[test]
fn traffic_needs_a_permission_which_applies_live() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    let pids = (pair.echo.process.0.id(), pair.client.process.0.id());
    assert!(
        stays_blocked(pair.outbound),
        "traffic flowed with mTLS on and no permission"
    );

    allow_client_to_echo(&cp);
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "the permission did not open the path"
    );
    let payload: Vec<u8> = (0..100_000).map(|i| (i % 251) as u8).collect();
    let back = echo_roundtrip(pair.outbound, &payload).unwrap();
    assert!(
        back == payload,
        "{} of {} bytes came back intact",
        back.len(),
        payload.len()
    );

    cp.delete("/meshes/default/traffic-permissions/client-to-echo");
    assert!(
        eventually(SETTLE, || !echo_works(pair.outbound)),
        "deleting the permission did not close the path"
    );
    assert_eq!(
        (pair.echo.process.0.id(), pair.client.process.0.id()),
        pids,
        "no restart"
    );

    // The certificates are SPIFFE SVIDs of the mesh.
    let certs = pair.client.admin_get("/certs").unwrap();
    assert!(certs.contains("spiffe://default/client"), "{certs}");
    assert!(certs.contains("kuma://version/1"), "{certs}");
}

#[test]
fn permissions_select_on_service_and_on_other_tags() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");

    allow(
        &cp,
        "default",
        "web-to-echo",
        serde_json::json!({"service": "web"}),
        "echo",
    );
    allow(
        &cp,
        "default",
        "client-v2",
        serde_json::json!({"service": "client", "version": "2"}),
        "echo",
    );
    allow(
        &cp,
        "default",
        "client-to-db",
        serde_json::json!({"service": "client"}),
        "db",
    );
    assert!(
        stays_blocked(pair.outbound),
        "a permission for another service, version or destination opened the path"
    );

    allow(
        &cp,
        "default",
        "client-v1",
        serde_json::json!({"service": "client", "version": "1"}),
        "echo",
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "version 1 is allowed"
    );
    cp.delete("/meshes/default/traffic-permissions/client-v1");
    assert!(eventually(SETTLE, || !echo_works(pair.outbound)));
    allow(
        &cp,
        "default",
        "anyone",
        serde_json::json!({"service": "*"}),
        "echo",
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "`*` allows any service"
    );
}

/// Puts the MeshTrafficPermission `name` of mesh `default`, guarding the
/// echo, with these `from` items, as Kuma's Universal YAML writes it.
fn put_mesh_traffic_permission(cp: &KumaCp, name: &str, from: serde_json::Value) {
    let policy = serde_json::json!({
        "type": "MeshTrafficPermission", "mesh": "default", "name": name,
        "spec": {"targetRef": {"kind": "MeshService", "name": "echo"}, "from": from}
    });
    cp.put(
        &format!("/meshes/default/meshtrafficpermissions/{name}"),
        &policy.to_string(),
    );
}

/// How many connections the echo's inbound RBAC counted as shadow-denied.
fn shadow_denied(echo: &Dataplane) -> u64 {
    let stats = echo
        .admin_get("/stats?filter=shadow_denied")
        .unwrap_or_default();
    stats
        .lines()
        .filter_map(|l| l.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
        .sum()
}

#[test]
fn mesh_traffic_permissions_allow_deny_and_shadow_deny_by_identity() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    allow_client_to_echo(&cp);
    assert!(eventually(SETTLE, || echo_works(pair.outbound)));

    // The first MeshTrafficPermission retires the TrafficPermissions: the
    // mesh denies, and only version 2 of the client is allowed.
    put_mesh_traffic_permission(
        &cp,
        "echo-clients",
        serde_json::json!([
            {"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}},
            {"targetRef": {"kind": "MeshServiceSubset", "name": "client",
                           "tags": {"version": "2"}},
             "default": {"action": "Allow"}}
        ]),
    );
    assert!(
        eventually(SETTLE, || !echo_works(pair.outbound)),
        "client version 1 still reaches the echo: the legacy permission was consulted"
    );
    assert!(stays_blocked(pair.outbound));

    // Version 1 let through in shadow mode: allowed, and counted as Envoy
    // would count it denied. Both policies target the echo service, so
    // the name that sorts first has the last word, as in Kuma.
    put_mesh_traffic_permission(
        &cp,
        "allow-v1-in-shadow",
        serde_json::json!([
            {"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "client", "version": "1"}},
             "default": {"action": "AllowWithShadowDeny"}}
        ]),
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "AllowWithShadowDeny did not let the client through"
    );
    assert!(
        eventually(SETTLE, || shadow_denied(&pair.echo) > 0),
        "no shadow denial counted: {}",
        pair.echo
            .admin_get("/stats?filter=rbac")
            .unwrap_or_default()
    );

    // Gone: the mesh-wide deny applies again; then an Allow for the
    // client's service opens it for good.
    cp.delete("/meshes/default/meshtrafficpermissions/allow-v1-in-shadow");
    assert!(eventually(SETTLE, || !echo_works(pair.outbound)));
    put_mesh_traffic_permission(
        &cp,
        "echo-clients",
        serde_json::json!([
            {"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}},
            {"targetRef": {"kind": "MeshService", "name": "client"}, "default": {"action": "Allow"}}
        ]),
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "the client's service is allowed"
    );
    // The last one removed brings the TrafficPermission back.
    cp.delete("/meshes/default/meshtrafficpermissions/echo-clients");
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "with no MeshTrafficPermission left, the TrafficPermission applies again"
    );
}

/// Puts the MeshTrafficPermission `name` of mesh `default` in the `rules`
/// form (clients by SPIFFE id), for the proxies `target_ref` selects.
fn put_identity_permission(
    cp: &KumaCp,
    name: &str,
    target_ref: serde_json::Value,
    conf: serde_json::Value,
) {
    let policy = serde_json::json!({
        "type": "MeshTrafficPermission", "mesh": "default", "name": name,
        "spec": {"targetRef": target_ref, "rules": [{"default": conf}]}
    });
    cp.put(
        &format!("/meshes/default/meshtrafficpermissions/{name}"),
        &policy.to_string(),
    );
}

#[test]
fn mesh_traffic_permission_rules_match_spiffe_ids_and_any_deny_wins() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    // Every identity of the mesh, by prefix, mesh-wide.
    put_identity_permission(
        &cp,
        "mesh-identities",
        serde_json::json!({"kind": "Mesh"}),
        serde_json::json!({"allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]}),
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "an allow by SPIFFE id prefix did not let the client in"
    );

    // A deny of the client's exact id on the echo's inbound (by its port)
    // wins over the broader allow, and a `from`-form Allow for the whole
    // mesh is not consulted beside the rules form.
    put_identity_permission(
        &cp,
        "deny-client-on-echo",
        serde_json::json!({"kind": "Dataplane", "labels": {"kuma.io/service": "echo"},
                           "sectionName": pair.echo_inbound.to_string()}),
        serde_json::json!({"deny": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/client"}}]}),
    );
    put_mesh_traffic_permission(
        &cp,
        "allow-all-from",
        serde_json::json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]),
    );
    assert!(
        eventually(SETTLE, || !echo_works(pair.outbound)),
        "the client still reaches the echo despite a deny of its SPIFFE id"
    );
    assert!(stays_blocked(pair.outbound));

    // The deny turned shadow: let through, counted as denied.
    put_identity_permission(
        &cp,
        "deny-client-on-echo",
        serde_json::json!({"kind": "Dataplane", "labels": {"kuma.io/service": "echo"}}),
        serde_json::json!({"allowWithShadowDeny": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/client"}}]}),
    );
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "allowWithShadowDeny did not let the client through"
    );
    assert!(
        eventually(SETTLE, || shadow_denied(&pair.echo) > 0),
        "no shadow denial counted"
    );

    // With no rule left, the `from` form decides again.
    cp.delete("/meshes/default/meshtrafficpermissions/deny-client-on-echo");
    cp.delete("/meshes/default/meshtrafficpermissions/mesh-identities");
    put_mesh_traffic_permission(
        &cp,
        "allow-all-from",
        serde_json::json!([{"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}}]),
    );
    assert!(eventually(SETTLE, || !echo_works(pair.outbound)));
}

#[test]
fn proxies_of_meshes_with_different_cas_cannot_handshake() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    cp.enable_mtls("b");
    let a = echo_pair(&cp, "default", "1");
    allow(
        &cp,
        "default",
        "all",
        serde_json::json!({"service": "*"}),
        "echo",
    );
    assert!(eventually(SETTLE, || echo_works(a.outbound)));

    // Mesh b claims an "echo" at the very address of mesh a's echo proxy,
    // and allows everything: only the CAs stand between them.
    put_dataplane(
        &cp,
        "b",
        "impostor-echo",
        (a.echo_inbound, free_port()),
        "echo",
        &[],
    );
    let outbound_b = free_port();
    put_proxy(&cp, "b", "client-b", "client", &[(outbound_b, "echo")]);
    allow(&cp, "b", "all", serde_json::json!({"service": "*"}), "*");
    let client_b = Dataplane::start(&cp, "b", "client-b");
    assert!(eventually(SETTLE, || client_b.endpoints("echo")
        == vec![format!("127.0.0.1:{}", a.echo_inbound)]));
    assert!(
        stays_blocked(outbound_b),
        "a proxy of mesh b talked to a proxy of mesh a"
    );
    let stats = client_b
        .admin_get("/stats?filter=echo.*ssl")
        .unwrap_or_default();
    assert!(
        stats.contains("ssl.fail_verify") || stats.contains("ssl.connection_error"),
        "{stats}"
    );
    // Each mesh has its own root.
    let ca_a = a.client.admin_get("/certs").unwrap();
    let ca_b = client_b.admin_get("/certs").unwrap();
    let serial = |certs: &str| -> String {
        workload_certificates(certs)["ca_cert"][0]["serial_number"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_ne!(serial(&ca_a), serial(&ca_b));
}

#[test]
fn traffic_keeps_flowing_across_certificate_renewals() {
    let cp = KumaCp::start(&[
        ("KUMA_SDS_SERVER_CERT_VALIDITY_SECONDS", "60"),
        ("KUMA_SDS_SERVER_CERT_RENEWAL_MARGIN_SECONDS", "52"),
    ]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    allow(
        &cp,
        "default",
        "all",
        serde_json::json!({"service": "*"}),
        "*",
    );
    assert!(eventually(SETTLE, || echo_works(pair.outbound)));
    let serial = || -> String {
        workload_certificates(&pair.client.admin_get("/certs").unwrap_or_default())["cert_chain"][0]
            ["serial_number"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut serials = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    while serials.len() < 4 && started.elapsed() < Duration::from_secs(60) {
        serials.insert(serial());
        assert!(
            echo_works(pair.outbound),
            "traffic stopped at {:?} after {} certificates",
            started.elapsed(),
            serials.len()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        serials.len() >= 4,
        "only {} certificates in 60 s",
        serials.len()
    );
}

#[test]
fn switching_mtls_on_in_a_live_mesh_denies_then_a_permission_allows() {
    let cp = KumaCp::start(&[]);
    let pair = echo_pair(&cp, "default", "1");
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "plain traffic first"
    );
    cp.enable_mtls("default");
    assert!(
        eventually(SETTLE, || !echo_works(pair.outbound)),
        "mTLS on, no permission: denied"
    );
    allow_client_to_echo(&cp);
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "the permission opened the path"
    );
    let stats = pair
        .echo
        .admin_get("/stats?filter=rbac")
        .unwrap_or_default();
    assert!(stats.contains("rbac.allowed"), "{stats}");
    // Back to plain: traffic flows without permissions.
    cp.delete("/meshes/default/traffic-permissions/client-to-echo");
    cp.put("/meshes/default", "{}");
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "mTLS off again"
    );
}

/// What a client looping over new connections saw: how many round trips
/// failed (with the first failure), and the longest one took.
#[derive(Debug, Default)]
struct LoopReport {
    ok: usize,
    failed: usize,
    first_failure: Option<String>,
    longest: Duration,
}

/// Opens a new connection to `port` every 20 ms until `stop`, each
/// sending a line and waiting (at most 5 s) for it to come back.
fn client_loop(
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<LoopReport> {
    std::thread::spawn(move || {
        let mut report = LoopReport::default();
        let mut i = 0u64;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            i += 1;
            let payload = format!("ping {i}\n").into_bytes();
            let started = std::time::Instant::now();
            let outcome = echo_roundtrip(port, &payload);
            report.longest = report.longest.max(started.elapsed());
            match outcome {
                Ok(back) if back == payload => report.ok += 1,
                other => {
                    report.failed += 1;
                    report.first_failure.get_or_insert_with(|| {
                        format!("round trip {i} after {:?}: {other:?}", started.elapsed())
                    });
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        report
    })
}

/// Whether the echo's inbound takes mTLS only (no plain-text chain).
fn echo_is_strict(pair: &EchoPair) -> bool {
    let listeners = pair
        .echo
        .admin_get("/config_dump?resource=dynamic_listeners")
        .unwrap_or_default();
    listeners.contains("envoy.transport_sockets.tls") && !listeners.contains("raw_buffer")
}

/// A client keeps opening connections while mTLS is switched on, then
/// off: the control plane moves the mesh step by step (inbounds take
/// both, outbounds speak TLS, inbounds take TLS only; and back), so not
/// one round trip fails and none waits.
#[test]
fn switching_mtls_on_and_off_under_traffic_fails_no_connection() {
    let cp = KumaCp::start(&[]);
    let pair = echo_pair(&cp, "default", "1");
    allow_client_to_echo(&cp);
    assert!(eventually(SETTLE, || echo_works(pair.outbound)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = client_loop(pair.outbound, stop.clone());
    std::thread::sleep(Duration::from_millis(500));

    cp.enable_mtls("default");
    assert!(
        eventually(Duration::from_secs(30), || echo_is_strict(&pair)),
        "the mesh never reached strict mTLS; control plane log:\n{}",
        cp.log()
    );
    assert!(eventually(SETTLE, || pair
        .client
        .admin_get("/certs")
        .unwrap_or_default()
        .contains("spiffe://default/client")));
    std::thread::sleep(Duration::from_millis(500));

    cp.put("/meshes/default", "{}");
    assert!(
        eventually(Duration::from_secs(30), || !pair
            .echo
            .admin_get("/config_dump?resource=dynamic_listeners")
            .unwrap_or_default()
            .contains("envoy.transport_sockets.tls")),
        "the mesh never got back to plain text"
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = client.join().unwrap();
    let log = cp.log();
    assert!(
        log.contains("mTLS switch: next step"),
        "the switch did not go step by step:\n{log}"
    );
    assert!(
        report.failed == 0 && report.longest < Duration::from_secs(2),
        "{report:?}"
    );
    assert!(report.ok > 50, "{report:?}");
    println!("across the switch: {report:?}");
}

/// A round trip of a line long enough for Envoy's TLS inspector to tell
/// plain text from a TLS record header (5 bytes) before the client's EOF.
fn plain_echo_works(port: u16) -> bool {
    let line = b"hello in plain text\n";
    echo_roundtrip(port, line).is_ok_and(|back| back == line)
}

/// MeshTLS Permissive: the echo's inbound takes a plain-text client (one
/// outside the mesh, straight to its port) beside the mesh's mTLS client;
/// back to Strict, the plain-text one is refused and mTLS still works.
#[test]
fn a_permissive_mesh_tls_takes_plain_text_and_mtls_on_one_port() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    allow_client_to_echo(&cp);
    assert!(eventually(SETTLE, || echo_works(pair.outbound)));
    assert!(
        !plain_echo_works(pair.echo_inbound),
        "strict mTLS took a plain-text client"
    );
    let permissive = serde_json::json!({
        "type": "MeshTLS", "mesh": "default", "name": "echo-permissive",
        "spec": {
            "targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": "echo"}},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Permissive"}}]
        }
    });
    cp.put(
        "/meshes/default/meshtlses/echo-permissive",
        &permissive.to_string(),
    );
    assert!(
        eventually(SETTLE, || plain_echo_works(pair.echo_inbound)),
        "the permissive inbound refused plain text"
    );
    // Two bytes, too few to tell TLS from plain text, and no more until
    // the answer: taken as plain text after the inspector's second.
    let started = std::time::Instant::now();
    assert_eq!(echo_roundtrip(pair.echo_inbound, b"hi").unwrap(), b"hi");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(echo_works(pair.outbound), "mTLS through the same port");
    cp.delete("/meshes/default/meshtlses/echo-permissive");
    assert!(
        eventually(SETTLE, || !plain_echo_works(pair.echo_inbound)),
        "back to strict, plain text is still taken"
    );
    assert!(echo_works(pair.outbound));
}

#[test]
fn deleting_a_mesh_leaves_another_meshs_traffic_untouched() {
    use std::io::{Read, Write};
    let cp = KumaCp::start(&[]);
    let mut pairs = Vec::new();
    for mesh in ["a", "b"] {
        cp.enable_mtls(mesh);
        let pair = echo_pair(&cp, mesh, "1");
        allow(
            &cp,
            mesh,
            "all",
            serde_json::json!({"service": "*"}),
            "echo",
        );
        assert!(eventually(SETTLE, || echo_works(pair.outbound)));
        pairs.push(pair);
    }
    let b = &pairs[1];
    let mut open = std::net::TcpStream::connect(("127.0.0.1", b.outbound)).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut roundtrip = |payload: &[u8]| {
        open.write_all(payload).unwrap();
        let mut back = vec![0; payload.len()];
        open.read_exact(&mut back).map(|_| back)
    };
    assert_eq!(roundtrip(b"before").unwrap(), b"before");
    let updates = |dp: &Dataplane| {
        [
            "cluster_manager.cds.update_success",
            "listener_manager.lds.update_success",
        ]
        .map(|stat| {
            dp.admin_get(&format!("/stats?filter=^{stat}$"))
                .unwrap_or_default()
        })
    };
    let pushed = (updates(&b.client), updates(&b.echo));

    cp.delete("/meshes/a");
    let gone = common::http(
        "GET",
        &format!("{}/meshes/a/dataplanes/echo-1", cp.api),
        None,
    );
    assert_eq!(gone.status, 404, "{}", gone.body);
    // A later change in mesh b, which reaches its client as endpoints
    // only: once it has arrived, so has anything the deletion of mesh a
    // would have pushed to mesh b before it. Then it is undone.
    put_proxy(&cp, "b", "echo-2", "echo", &[]);
    assert!(
        eventually(SETTLE, || b.client.endpoints("echo").len() == 2),
        "mesh b's client did not get the later change"
    );
    cp.delete("/meshes/b/dataplanes/echo-2");
    assert!(
        eventually(SETTLE, || b.client.endpoints("echo").len() == 1),
        "mesh b's client did not get the later change undone"
    );
    assert_eq!(
        roundtrip(b"after").unwrap(),
        b"after",
        "the open connection"
    );
    for _ in 0..20 {
        assert!(echo_works(b.outbound), "a new connection in mesh b");
    }
    assert_eq!(
        (updates(&b.client), updates(&b.echo)),
        pushed,
        "mesh b's proxies were pushed nothing"
    );
}

/// `tcpdump` on the loopback interface, capturing the given ports until
/// stopped; what it captured is the raw bytes of a pcap file.
struct Capture {
    process: common::Process,
    file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    fn start(ports: &[u16]) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("channel.pcap");
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let log = dir.path().join("tcpdump.log");
        let child = std::process::Command::new("tcpdump")
            .args(["-i", "lo", "-s", "0", "-U", "-w"])
            .arg(&file)
            .arg(&filter)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("tcpdump (make deps installs it)");
        assert!(
            eventually(Duration::from_secs(10), || std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("listening on lo")),
            "tcpdump did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Capture {
            process: common::Process(child),
            file,
            _dir: dir,
        }
    }

    fn stop(mut self) -> Vec<u8> {
        self.process.terminate();
        std::fs::read(&self.file).unwrap()
    }
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// Which secrets of a session between two proxies and the control plane
/// (bootstrap, ADS with mTLS on, SDS) the loopback capture of it shows.
fn secrets_on_the_wire(env: &[(&str, &str)]) -> Vec<&'static str> {
    let cp = KumaCp::start(env);
    let capture = Capture::start(&[port_of(&cp.bootstrap), port_of(&cp.xds), port_of(&cp.sds)]);
    cp.enable_mtls("default");
    let pair = echo_pair(&cp, "default", "1");
    allow_client_to_echo(&cp);
    // Traffic over mTLS: both proxies have their keys.
    assert!(
        eventually(SETTLE, || echo_works(pair.outbound)),
        "no mTLS traffic"
    );
    let token = std::fs::read_to_string(pair.client.config_dir().join("token")).unwrap();
    let bytes = capture.stop();
    assert!(bytes.len() > 10_000, "the capture holds the session");
    let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let mut seen = Vec::new();
    for (what, needle) in [
        ("the dataplane token", token.trim().as_bytes()),
        ("a PEM block", b"-----BEGIN".as_slice()),
        ("a private key", b"PRIVATE KEY".as_slice()),
    ] {
        if found(needle) {
            seen.push(what);
        }
    }
    seen
}

/// Tokens and workload keys cross the wire encrypted: a capture of a whole
/// session holds none of them. With plain text switched on (both sides),
/// the same capture finds all three, so the check can fail.
#[test]
fn no_token_or_key_crosses_the_channel_in_clear() {
    assert_eq!(secrets_on_the_wire(&[]), Vec::<&str>::new());
    assert_eq!(
        secrets_on_the_wire(&[("KUMA_DP_SERVER_INSECURE_PLAINTEXT", "true")]),
        ["the dataplane token", "a PEM block", "a private key"]
    );
}
