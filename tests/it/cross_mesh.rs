//! The cross-mesh gateway, with real Envoys: a proxy of mesh `a` reaches a
//! service of mesh `b` through `b`'s gateway and no other way; mesh `a`
//! must trust mesh `b` for it, and a TrafficPermission of `b` decides which
//! of `a`'s services may come in.

use crate::common;

use common::{
    Dataplane, KumaCp, MTLS, allow, echo_server, echo_works, eventually, free_port, put_dataplane,
    stays_blocked,
};
use serde_json::json;
use std::time::Duration;

#[test]
fn mesh_a_reaches_mesh_b_only_through_its_cross_mesh_gateway() {
    let cp = KumaCp::start(&[]);
    let trusting_b = json!({"mtls": {"enabled": true, "ca": {"builtin": {}}},
                            "crossMesh": {"gateways": [{"mesh": "b"}]}})
    .to_string();
    cp.put("/meshes/a", &trusting_b);
    cp.enable_mtls("b");

    // Mesh b: an echo, `api`, and the gateway `edge` in front of it.
    let (api_port, api_inbound, gateway_port) = (free_port(), free_port(), free_port());
    let _echo = echo_server(api_port);
    put_dataplane(&cp, "b", "api-1", (api_inbound, api_port), "api", &[]);
    cp.put(
        "/meshes/b/dataplanes/edge-1",
        &json!({"networking": {"address": "127.0.0.1",
            "gateway": {"type": "BUILTIN", "tags": {"service": "edge"}}}})
        .to_string(),
    );
    cp.put(
        "/meshes/b/meshgateways/edge",
        &json!({"selectors": [{"match": {"service": "edge"}}],
            "conf": {"listeners": [{"port": gateway_port, "protocol": "TCP", "crossMesh": true}]}})
        .to_string(),
    );
    cp.put(
        "/meshes/b/meshgatewayroutes/edge-to-api",
        &json!({"selectors": [{"match": {"service": "edge"}}],
            "conf": {"tcp": {"rules": [{"backends": [{"destination": {"service": "api"}}]}]}}})
        .to_string(),
    );
    allow(&cp, "b", "edge-to-api", json!({"service": "edge"}), "api");
    let let_web_of_a_in = json!({"rules": [{
        "sources": [{"match": {"service": "web", "kuma.io/mesh": "a"}}],
        "destinations": [{"match": {"service": "edge"}}]}]})
    .to_string();
    cp.put("/meshes/b/traffic-permissions/web-of-a", &let_web_of_a_in);

    // Mesh a: web, with an outbound to b's gateway, and one to `api` as if
    // it were its own mesh's.
    let (through_gateway, direct) = (free_port(), free_port());
    cp.put(
        "/meshes/a/dataplanes/web-1",
        &json!({"networking": {
            "inbound": [{"interface": format!("127.0.0.1:{}:{}", free_port(), free_port()),
                         "tags": {"service": "web"}}],
            "outbound": [{"interface": format!(":{through_gateway}"), "service": "edge", "mesh": "b"},
                         {"interface": format!(":{direct}"), "service": "api"}]}})
        .to_string(),
    );
    let _api = Dataplane::start(&cp, "b", "api-1");
    let edge = Dataplane::start(&cp, "b", "edge-1");
    let web = Dataplane::start(&cp, "a", "web-1");

    assert!(
        eventually(Duration::from_secs(15), || echo_works(through_gateway)),
        "web of mesh a did not reach api of mesh b through the gateway\nweb:\n{}\nedge:\n{}",
        web.log(),
        edge.log()
    );
    // The bytes went through the gateway's cross-mesh listener, which
    // checked web's certificate against mesh a's CA.
    let accepted = |stat: &str| -> u64 {
        edge.admin_get(&format!(
            "/stats?filter=^listener.127.0.0.1_{gateway_port}.{stat}$"
        ))
        .and_then(|s| s.rsplit(": ").next().map(|n| n.trim().parse().unwrap_or(0)))
        .unwrap_or(0)
    };
    assert!(accepted("downstream_cx_total") > 0);
    // There is no other path: mesh a has no `api` of its own.
    assert!(stays_blocked(direct), "web reached api of mesh b directly");

    // Mesh b decides who comes in: without the permission, web is denied
    // at the gateway.
    cp.delete("/meshes/b/traffic-permissions/web-of-a");
    assert!(
        eventually(Duration::from_secs(10), || stays_blocked(through_gateway)),
        "the gateway let web in without a permission"
    );
    let denied = edge
        .admin_get("/stats?filter=rbac.denied")
        .unwrap_or_default();
    assert!(
        denied.contains("denied: ") && !denied.contains("denied: 0"),
        "{denied}"
    );
    cp.put("/meshes/b/traffic-permissions/web-of-a", &let_web_of_a_in);
    assert!(eventually(Duration::from_secs(10), || echo_works(
        through_gateway
    )));

    // Mesh a stops trusting mesh b: no path any more.
    cp.put("/meshes/a", MTLS);
    assert!(
        eventually(Duration::from_secs(10), || stays_blocked(through_gateway)),
        "web still reached mesh b after its mesh stopped trusting b"
    );
}
