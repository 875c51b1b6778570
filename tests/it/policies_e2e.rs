//! Policies acting on real Envoy: TrafficRoute splits connections,
//! TrafficTrace reports spans to a collector, ProxyTemplate adds and
//! replaces raw resources, TrafficLog's tcp backend receives lines;
//! MeshTCPRoute and MeshHTTPRoute route, split, rewrite and mirror.

use crate::common;

use common::{
    Dataplane, KumaCp, eventually, free_port, put_dataplane, put_proxy, put_tagged_dataplane,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP server that answers every connection with `name` and closes it.
fn naming_server(name: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let _ = conn.write_all(name.as_bytes());
        }
    });
    port
}

/// Who answered a new connection to `port` ("" when none did).
fn who_answers(port: u16) -> String {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    answer
}

fn put_route(cp: &KumaCp, weights: (u32, u32)) {
    cp.put(
        "/meshes/default/traffic-routes/canary",
        &serde_json::json!({"type": "TrafficRoute", "mesh": "default", "name": "canary",
            "sources": [{"match": {"service": "client"}}],
            "destinations": [{"match": {"service": "backend"}}],
            "conf": [
                {"weight": weights.0, "destination": {"service": "backend", "version": "1"}},
                {"weight": weights.1, "destination": {"service": "backend", "version": "2"}}]})
        .to_string(),
    );
}

/// 90/10 between two versions: 1,000 connections land within a few
/// percent of the split. 0/100: once Envoy has the change, every new
/// connection goes to version 2.
#[test]
fn a_traffic_route_splits_connections_by_weight_and_a_change_moves_new_ones() {
    let cp = KumaCp::start(&[]);
    let _backends = backend_versions(
        &cp,
        [naming_server("v1"), naming_server("v2")],
        serde_json::json!({}),
    );
    let (outbound, client) = backend_client(&cp);
    put_route(&cp, (90, 10));
    let routed = || {
        client
            .admin_get("/config_dump?resource=dynamic_listeners")
            .unwrap_or_default()
            .contains("backend{version=2}")
    };
    assert!(
        eventually(Duration::from_secs(15), || routed()
            && !who_answers(outbound).is_empty()),
        "the route never reached the client's Envoy; log:\n{}",
        client.log()
    );
    let mut v1 = 0;
    let total = 1000;
    for _ in 0..total {
        match who_answers(outbound).as_str() {
            "v1" => v1 += 1,
            "v2" => {}
            other => panic!("unexpected answer {other:?}; client log:\n{}", client.log()),
        }
    }
    assert!(
        (850..=950).contains(&v1),
        "{v1} of {total} connections reached version 1, expected about 900"
    );

    put_route(&cp, (0, 100));
    assert!(
        eventually(Duration::from_secs(15), || !client
            .admin_get("/config_dump?resource=dynamic_listeners")
            .unwrap_or_default()
            .contains("\"weighted_clusters\"")),
        "the 0/100 route never reached the client's Envoy"
    );
    for i in 0..200 {
        assert_eq!(who_answers(outbound), "v2", "connection {i} after 0/100");
    }
}

/// Starts kuma-dp for two versions of `backend`, each behind its own
/// application, `tags` beyond service and version on both, the inbound
/// named `main` (as Kuma 2.x names inbounds); returns the proxies.
fn backend_versions(cp: &KumaCp, apps: [u16; 2], tags: serde_json::Value) -> Vec<Dataplane> {
    let mut proxies = Vec::new();
    for (i, app) in apps.into_iter().enumerate() {
        let version = (i + 1).to_string();
        let name = format!("backend-v{version}");
        let mut all = serde_json::json!({"service": "backend", "version": version});
        all.as_object_mut()
            .unwrap()
            .extend(tags.as_object().cloned().unwrap_or_default());
        let dataplane = serde_json::json!({
            "type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"inbound": [{
                "interface": format!("127.0.0.1:{}:{app}", free_port()),
                "name": "main", "tags": all}]}
        });
        cp.put(
            &format!("/meshes/default/dataplanes/{name}"),
            &dataplane.to_string(),
        );
        proxies.push(Dataplane::start(cp, "default", &name));
    }
    proxies
}

/// `client-1`, with an outbound to `backend`, started; its outbound port.
fn backend_client(cp: &KumaCp) -> (u16, Dataplane) {
    let outbound = free_port();
    put_proxy(
        cp,
        "default",
        "client-1",
        "client",
        &[(outbound, "backend")],
    );
    (outbound, Dataplane::start(cp, "default", "client-1"))
}

/// A MeshTCPRoute for the client's connections to `backend`: `weights`
/// between its versions 1 and 2.
fn put_tcp_route(cp: &KumaCp, weights: (u32, u32)) {
    let backend = |version: &str, weight: u32| {
        serde_json::json!({"kind": "MeshServiceSubset", "name": "backend",
                           "tags": {"version": version}, "weight": weight})
    };
    cp.put(
        "/meshes/default/meshtcproutes/backend-split",
        &serde_json::json!({"type": "MeshTCPRoute", "mesh": "default", "name": "backend-split",
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "client"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                        "rules": [{"default": {"backendRefs": [
                            backend("1", weights.0), backend("2", weights.1)]}}]}]}})
        .to_string(),
    );
}

/// Who answered `total` new connections: (version 1, version 2, nobody
/// or someone else).
fn answers(outbound: u16, total: usize) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for _ in 0..total {
        match who_answers(outbound).as_str() {
            "v1" => counts.0 += 1,
            "v2" => counts.1 += 1,
            _ => counts.2 += 1,
        }
    }
    counts
}

/// A MeshTCPRoute takes the client's connections from the TrafficRoute
/// (which sends all to version 2) and splits them 90/10; deleted, the
/// TrafficRoute has them again.
#[test]
fn a_mesh_tcp_route_splits_connections_and_takes_over_from_the_traffic_route() {
    let cp = KumaCp::start(&[]);
    let _backends = backend_versions(
        &cp,
        [naming_server("v1"), naming_server("v2")],
        serde_json::json!({}),
    );
    let (outbound, client) = backend_client(&cp);
    put_route(&cp, (0, 100));
    assert!(
        eventually(Duration::from_secs(15), || (0..20)
            .all(|_| who_answers(outbound) == "v2")),
        "the TrafficRoute never reached the client; log:\n{}",
        client.log()
    );

    put_tcp_route(&cp, (90, 10));
    // While Envoy warms the new subset's cluster a connection may find
    // nobody; once the route is in force, every one is answered.
    assert!(
        eventually(Duration::from_secs(15), || {
            let (v1, _, nobody) = answers(outbound, 20);
            v1 > 10 && nobody == 0
        }),
        "the MeshTCPRoute did not take over from the TrafficRoute"
    );
    let (v1, _, nobody) = answers(outbound, 1000);
    assert_eq!(
        nobody,
        0,
        "connections nobody answered; client log:\n{}",
        client.log()
    );
    assert!(
        (850..=950).contains(&v1),
        "{v1} of 1000 connections reached version 1, expected about 900"
    );

    // Kuma's newer model names the service's port by its name: this
    // route (as specific as the split, and its name sorts first, so it
    // wins) sends all to version 1; one naming a port the service lacks
    // changes nothing.
    let by_port = |name: &str, port: &str| {
        serde_json::json!({"type": "MeshTCPRoute", "mesh": "default", "name": name,
            "spec": {
                "targetRef": {"kind": "MeshService", "name": "client"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "backend", "sectionName": port},
                        "rules": [{"default": {"backendRefs": [
                            {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "1"}}]}}]}]}})
    };
    for (name, port) in [("a-main-port", "main"), ("a-other-port", "admin")] {
        cp.put(
            &format!("/meshes/default/meshtcproutes/{name}"),
            &by_port(name, port).to_string(),
        );
    }
    assert!(
        eventually(Duration::from_secs(15), || answers(outbound, 50)
            == (50, 0, 0)),
        "the route naming the port by its name did not apply"
    );
    cp.delete("/meshes/default/meshtcproutes/a-main-port");
    assert!(
        eventually(Duration::from_secs(15), || answers(outbound, 100).1 > 0),
        "the route naming another port took the connections: {}",
        common::http(
            "GET",
            &format!("{}/meshes/default/dataplanes/client-1/policies", cp.api),
            None
        )
        .body["outbound"]
    );
    cp.delete("/meshes/default/meshtcproutes/a-other-port");

    cp.delete("/meshes/default/meshtcproutes/backend-split");
    assert!(
        eventually(Duration::from_secs(15), || answers(outbound, 50)
            == (0, 50, 0)),
        "with the MeshTCPRoute gone, the TrafficRoute's 0/100 does not apply again"
    );
}

/// An HTTP application that answers every request with its `name`, then
/// the request's head as it arrived (request line and headers).
fn naming_http_app(name: &'static str) -> (u16, Received) {
    http_server(move |head| {
        let body = format!("{name}\n{head}");
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
    })
}

/// A request through the client's outbound at `port`: status, headers
/// and body of the answer (status 0 when none came).
fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = format!("GET {path} HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_string())
}

/// Kuma's MeshHTTPRoute at work on real Envoy: a prefix moved to version
/// 2 and rewritten, a header match that also adds a header, a 90/10 split
/// of one path measured over requests, a mirror that receives a copy, a
/// redirect; requests no rule matches reach the service as before.
#[test]
fn a_mesh_http_route_matches_rewrites_splits_mirrors_and_redirects() {
    let cp = KumaCp::start(&[]);
    let http = serde_json::json!({"protocol": "http"});
    let (v1, _) = naming_http_app("v1");
    let (v2, _) = naming_http_app("v2");
    let _backends = backend_versions(&cp, [v1, v2], http.clone());
    let (mirror_app, mirrored) = naming_http_app("mirror");
    put_tagged_dataplane(
        &cp,
        "default",
        "mirror-1",
        (free_port(), mirror_app),
        serde_json::json!({"service": "mirror", "protocol": "http"}),
        &[],
    );
    let _mirror = Dataplane::start(&cp, "default", "mirror-1");
    let (outbound, client) = backend_client(&cp);
    let subset = |version: &str, weight: u32| {
        serde_json::json!({"kind": "MeshServiceSubset", "name": "backend",
                           "tags": {"version": version}, "weight": weight})
    };
    let route = serde_json::json!({
        "type": "MeshHTTPRoute", "mesh": "default", "name": "backend-routes",
        "spec": {
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": [
                {"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                 "default": {"filters": [{"type": "URLRewrite", "urlRewrite": {
                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
                             "backendRefs": [subset("2", 1)]}},
                {"matches": [{"headers": [{"type": "Exact", "name": "x-team", "value": "a"}]}],
                 "default": {"filters": [{"type": "RequestHeaderModifier",
                                          "requestHeaderModifier": {"set": [{"name": "x-routed", "value": "team-a"}]}}],
                             "backendRefs": [subset("2", 1)]}},
                {"matches": [{"path": {"type": "Exact", "value": "/split"}}],
                 "default": {"backendRefs": [subset("1", 90), subset("2", 10)]}},
                {"matches": [{"path": {"type": "Exact", "value": "/mirrored"}}],
                 "default": {"filters": [{"type": "RequestMirror", "requestMirror": {
                                "backendRef": {"kind": "MeshService", "name": "mirror"}}}],
                             "backendRefs": [subset("1", 1)]}},
                {"matches": [{"path": {"type": "Exact", "value": "/old"}, "method": "GET"}],
                 "default": {"filters": [{"type": "RequestRedirect", "requestRedirect": {
                                "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"},
                                "statusCode": 301}}]}}
            ]}]
        }
    });
    cp.put(
        "/meshes/default/meshhttproutes/backend-routes",
        &route.to_string(),
    );
    assert!(
        eventually(Duration::from_secs(15), || request(
            outbound,
            "/v2/hello",
            &[]
        )
        .2
        .starts_with("v2\nGET /hello ")),
        "the prefix rule never applied: {:?}; client log:\n{}",
        request(outbound, "/v2/hello", &[]),
        client.log()
    );
    let (_, _, body) = request(outbound, "/other", &[("x-team", "a")]);
    assert!(
        body.starts_with("v2\n") && body.contains("x-routed: team-a"),
        "the header rule: {body}"
    );
    let (status, _, body) = request(outbound, "/other", &[]);
    assert!(
        status == 200 && (body.starts_with("v1\n") || body.starts_with("v2\n")),
        "no rule matches: the service answers as before: {status} {body}"
    );
    let v1 = (0..400)
        .filter(|_| request(outbound, "/split", &[]).2.starts_with("v1\n"))
        .count();
    assert!(
        (330..=390).contains(&v1),
        "{v1} of 400 requests to /split reached version 1, expected about 360"
    );
    assert!(request(outbound, "/mirrored", &[]).2.starts_with("v1\n"));
    assert!(
        eventually(Duration::from_secs(5), || mirrored
            .lock()
            .unwrap()
            .iter()
            .any(|(path, _)| path == "/mirrored")),
        "the mirror received no copy"
    );
    let (status, head, _) = request(outbound, "/old", &[]);
    assert_eq!(status, 301, "{head}");
    assert!(head.contains("location: http://backend/new"), "{head}");
}

/// Every request a server received: (path, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal HTTP collector: keeps each request, answers 202.
fn collector() -> (u16, Received) {
    http_server(|_| "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string())
}

/// A minimal HTTP server: reads each request (Content-Length or chunked
/// bodies), keeps it, and answers what `respond` makes of its head (the
/// request line and headers, as received).
fn http_server(respond: impl Fn(&str) -> String + Send + Sync + 'static) -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let keep = received.clone();
    let respond = Arc::new(respond);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let (keep, respond) = (keep.clone(), respond.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut head = String::new();
                    if reader.read_line(&mut head).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let (mut length, mut chunked) = (0, false);
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        if header.trim_end().is_empty() {
                            break;
                        }
                        head.push_str(&header);
                        let header = header.trim_end();
                        if let Some((k, v)) = header.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        chunked |= header.eq_ignore_ascii_case("transfer-encoding: chunked");
                    }
                    let body = if chunked {
                        read_chunked(&mut reader)
                    } else {
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).ok().map(|_| body)
                    };
                    let Some(body) = body else { return };
                    keep.lock()
                        .unwrap()
                        .push((path, String::from_utf8_lossy(&body).into_owned()));
                    let _ = conn.write_all(respond(&head).as_bytes());
                }
            });
        }
    });
    (port, received)
}

/// A chunked HTTP body: hex size lines, each followed by that many bytes,
/// up to the empty chunk.
fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// With a zipkin backend and a TrafficTrace over every service, a request
/// through two Envoys reaches the collector as spans named after both
/// services, client side and server side.
#[test]
fn a_traffic_trace_reports_spans_of_both_services_to_the_zipkin_collector() {
    let cp = KumaCp::start(&[]);
    let (collector_port, received) = collector();
    cp.put(
        "/meshes/default",
        &serde_json::json!({"type": "Mesh", "name": "default",
            "tracing": {"defaultBackend": "zipkin", "backends": [{"name": "zipkin", "type": "zipkin",
                "sampling": 100.0, "conf": {"url": format!("http://127.0.0.1:{collector_port}/api/v2/spans")}}]}})
        .to_string(),
    );
    cp.put(
        "/meshes/default/traffic-traces/everything",
        &serde_json::json!({"type": "TrafficTrace", "mesh": "default", "name": "everything",
            "selectors": [{"match": {"service": "*"}}]})
        .to_string(),
    );
    let (app, outbound) = (free_port(), free_port());
    let _app = common::http_app(app, "hello\n");
    put_tagged_dataplane(
        &cp,
        "default",
        "api-1",
        (free_port(), app),
        serde_json::json!({"service": "api", "protocol": "http"}),
        &[],
    );
    put_proxy(&cp, "default", "web-1", "web", &[(outbound, "api")]);
    let _api = Dataplane::start(&cp, "default", "api-1");
    let web = Dataplane::start(&cp, "default", "web-1");
    let url = format!("http://127.0.0.1:{outbound}/hello.txt");
    assert!(
        eventually(Duration::from_secs(15), || reqwest::blocking::get(&url)
            .and_then(|r| r.text())
            .is_ok_and(|t| t == "hello\n")),
        "no answer through the mesh; web log:\n{}",
        web.log()
    );
    // Envoy's zipkin reporter flushes every 5 s.
    let spans = || -> Vec<serde_json::Value> {
        received
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| path == "/api/v2/spans")
            .flat_map(|(_, body)| {
                serde_json::from_str::<Vec<serde_json::Value>>(body).unwrap_or_default()
            })
            .collect()
    };
    let has = |service: &str, kind: &str| {
        spans().iter().any(|s| {
            s["localEndpoint"]["serviceName"] == service
                && s["kind"] == kind
                && s["tags"]["http.url"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/hello.txt"))
        })
    };
    assert!(
        eventually(Duration::from_secs(20), || has("web", "CLIENT")
            && has("api", "SERVER")),
        "requests received: {:#?}",
        received.lock().unwrap()
    );
    let trace_ids: std::collections::BTreeSet<String> = spans()
        .iter()
        .filter(|s| {
            s["tags"]["http.url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/hello.txt"))
        })
        .filter_map(|s| s["traceId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        trace_ids.len(),
        1,
        "both spans belong to one trace: {trace_ids:?}"
    );
}

/// A client and a naming server "echo" behind one dataplane each; returns
/// the client's outbound port and the two proxies.
fn client_and_server(cp: &KumaCp) -> (u16, Dataplane, Dataplane) {
    let app = naming_server("echo");
    put_dataplane(cp, "default", "echo-1", (free_port(), app), "echo", &[]);
    let outbound = free_port();
    put_proxy(cp, "default", "client-1", "client", &[(outbound, "echo")]);
    let server = Dataplane::start(cp, "default", "echo-1");
    let client = Dataplane::start(cp, "default", "client-1");
    assert!(
        eventually(Duration::from_secs(15), || who_answers(outbound) == "echo"),
        "no answer through the mesh; client log:\n{}",
        client.log()
    );
    (outbound, client, server)
}

/// A TrafficLog naming a `tcp` backend: kuma-dp sends each connection's
/// line, formatted by Envoy with Kuma's placeholders filled in, to the
/// backend's address.
#[test]
fn a_traffic_log_sends_lines_to_the_tcp_backend() {
    let cp = KumaCp::start(&[]);
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = backend.local_addr().unwrap();
    let (outbound, client, _server) = client_and_server(&cp);
    cp.put(
        "/meshes/default",
        &serde_json::json!({"type": "Mesh", "name": "default",
            "logging": {"backends": [{"name": "logstash", "tcp": {"address": address.to_string()},
                "format": "%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% in %KUMA_MESH% sent %BYTES_SENT%"}]}})
        .to_string(),
    );
    cp.put(
        "/meshes/default/traffic-logs/client-to-echo",
        &serde_json::json!({"type": "TrafficLog", "mesh": "default", "name": "client-to-echo",
            "sources": [{"match": {"service": "client"}}],
            "destinations": [{"match": {"service": "echo"}}],
            "conf": {"backend": "logstash"}})
        .to_string(),
    );
    assert!(
        eventually(Duration::from_secs(15), || client
            .admin_get("/config_dump?resource=dynamic_listeners")
            .unwrap_or_default()
            .contains("envoy.access_loggers.stdout")),
        "the access log never reached the client's Envoy"
    );
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let keep = lines.clone();
    std::thread::spawn(move || {
        for conn in backend.incoming().flatten() {
            for line in BufReader::new(conn).lines().map_while(Result::ok) {
                keep.lock().unwrap().push(line);
            }
        }
    });
    assert!(
        eventually(Duration::from_secs(15), || {
            assert_eq!(who_answers(outbound), "echo");
            lines
                .lock()
                .unwrap()
                .iter()
                .any(|l| l == "client->echo in default sent 4")
        }),
        "lines at the backend: {:?}; client log:\n{}",
        lines.lock().unwrap(),
        client.log()
    );
}

/// The reference's ProxyTemplate example, as written (its v2 Cluster, its
/// `app: backend` selector), in mesh `default`.
fn reference_template() -> serde_json::Value {
    serde_json::json!({
        "type": "ProxyTemplate", "name": "pt-1", "mesh": "default",
        "selectors": [{"match": {"app": "backend"}}],
        "imports": ["default-proxy"],
        "resources": [{"name": "raw-name", "version": "raw-version",
            "resource": "'@type': type.googleapis.com/envoy.api.v2.Cluster\nconnectTimeout: 5s\nloadAssignment:\n  clusterName: localhost:8443\n  endpoints:\n    - lbEndpoints:\n        - endpoint:\n            address:\n              socketAddress:\n                address: 127.0.0.1\n                portValue: 8443\nname: localhost:8443\ntype: STATIC\n"}]
    })
}

/// A ProxyTemplate keeps the generated configuration and adds the
/// reference's cluster; one replacing the outbound listener sends its
/// connections elsewhere; one Envoy rejects is reported by the insight and
/// `kumactl inspect dataplanes` while the proxy keeps working.
#[test]
fn a_proxy_template_adds_replaces_and_reports_what_envoy_rejects() {
    let cp = KumaCp::start(&[]);
    let app = naming_server("echo");
    put_dataplane(&cp, "default", "echo-1", (free_port(), app), "echo", &[]);
    let outbound = free_port();
    put_tagged_dataplane(
        &cp,
        "default",
        "client-1",
        (free_port(), free_port()),
        serde_json::json!({"service": "client", "app": "backend"}),
        &[(outbound, "echo")],
    );
    let _server = Dataplane::start(&cp, "default", "echo-1");
    let client = Dataplane::start(&cp, "default", "client-1");
    assert!(eventually(Duration::from_secs(15), || who_answers(
        outbound
    ) == "echo"));
    let clusters = || {
        client
            .admin_get("/config_dump?resource=dynamic_active_clusters")
            .unwrap_or_default()
    };

    cp.put(
        "/meshes/default/proxytemplates/pt-1",
        &reference_template().to_string(),
    );
    assert!(
        eventually(Duration::from_secs(15), || clusters()
            .contains("\"localhost:8443\"")),
        "the template's cluster never reached Envoy; client log:\n{}",
        client.log()
    );
    assert_eq!(who_answers(outbound), "echo", "the generated part is kept");

    // Replace the outbound listener: its connections go to another server.
    let elsewhere = naming_server("elsewhere");
    let listener = format!(
        "'@type': type.googleapis.com/envoy.config.listener.v3.Listener\nname: outbound:127.0.0.1:{outbound}\naddress: {{socketAddress: {{address: 127.0.0.1, portValue: {outbound}}}}}\nfilterChains:\n- filters:\n  - name: envoy.filters.network.tcp_proxy\n    typedConfig:\n      '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n      statPrefix: elsewhere\n      cluster: elsewhere\n"
    );
    let cluster = format!(
        "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: elsewhere\nconnectTimeout: 1s\ntype: STATIC\nloadAssignment: {{clusterName: elsewhere, endpoints: [{{lbEndpoints: [{{endpoint: {{address: {{socketAddress: {{address: 127.0.0.1, portValue: {elsewhere}}}}}}}}}]}}]}}\n"
    );
    let template = |resources: serde_json::Value| {
        serde_json::json!({"type": "ProxyTemplate", "name": "pt-1", "mesh": "default",
            "selectors": [{"match": {"service": "client"}}],
            "imports": ["default-proxy"], "resources": resources})
        .to_string()
    };
    cp.put(
        "/meshes/default/proxytemplates/pt-1",
        &template(serde_json::json!([
            {"name": "listener", "resource": listener},
            {"name": "cluster", "resource": cluster}])),
    );
    assert!(
        eventually(Duration::from_secs(15), || who_answers(outbound)
            == "elsewhere"),
        "the replaced listener never took effect; client log:\n{}",
        client.log()
    );

    // Envoy refuses a connect timeout of 0s (its own validation rules);
    // the control plane parses it, Envoy rejects it, the insight says so.
    cp.put(
        "/meshes/default/proxytemplates/pt-1",
        &template(serde_json::json!([{"name": "bad", "resource": cluster.replace("connectTimeout: 1s", "connectTimeout: 0s").replace("name: elsewhere", "name: bad")}])),
    );
    let (_dir, config) = common::kumactl_config(&cp);
    let inspect = || common::kumactl(&config, &["inspect", "dataplanes"], None).stdout;
    assert!(
        eventually(Duration::from_secs(15), || {
            inspect().contains(
            "dataplane \"client-1\": Envoy rejected its configuration and keeps the last one it accepted: cds: "
        )
        }),
        "{}",
        inspect()
    );
    assert!(inspect().contains("connect_timeout"), "{}", inspect());
    // The listeners (the generated ones again) were accepted.
    assert_eq!(
        who_answers(outbound),
        "echo",
        "the proxy still carries traffic"
    );

    // Gone: the rejection goes with it.
    cp.delete("/meshes/default/proxytemplates/pt-1");
    assert!(
        eventually(Duration::from_secs(15), || !inspect().contains("rejected")),
        "{}",
        inspect()
    );
}

/// A template whose resource does not parse is refused with the field and
/// the parser's reason, and nothing is stored.
#[test]
fn a_proxy_template_that_does_not_parse_is_refused_with_the_reason() {
    let cp = KumaCp::start(&[]);
    let mut template = reference_template();
    template["resources"][0]["resource"] = "'@type': type.googleapis.com/envoy.api.v2.Cluster\nname: x\nhosts: [{socketAddress: {address: 127.0.0.1, portValue: 1}}]\n".into();
    let answer = common::http(
        "PUT",
        &format!("{}/meshes/default/proxytemplates/pt-1", cp.api),
        Some(&template.to_string()),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    let text = answer.body.to_string();
    assert!(
        text.contains("resources[0].resource") && text.contains("hosts") && text.contains("v3"),
        "{text}"
    );
    let get = common::http(
        "GET",
        &format!("{}/meshes/default/proxytemplates/pt-1", cp.api),
        None,
    );
    assert_eq!(get.status, 404);
}

/// `kumactl inspect dataplane NAME` names each policy that shaped the
/// proxy and the selectors that matched; `--config-dump` shows what the
/// connected proxy was sent, its private key left out.
#[test]
fn kumactl_inspect_dataplane_explains_the_policies_and_dumps_the_config() {
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    common::allow(
        &cp,
        "default",
        "client-to-echo",
        serde_json::json!({"service": "client"}),
        "echo",
    );
    let (outbound, _client, _server) = client_and_server(&cp);
    put_tagged_dataplane(
        &cp,
        "default",
        "echo-2",
        (free_port(), free_port()),
        serde_json::json!({"service": "echo", "version": "2"}),
        &[],
    );
    cp.put(
        "/meshes/default/traffic-routes/canary",
        &serde_json::json!({"type": "TrafficRoute", "mesh": "default", "name": "canary",
            "sources": [{"match": {"service": "*"}}],
            "destinations": [{"match": {"service": "echo"}}],
            "conf": [{"weight": 100, "destination": {"service": "echo"}},
                     {"weight": 1, "destination": {"service": "echo", "version": "2"}}]})
        .to_string(),
    );
    let (_dir, config) = common::kumactl_config(&cp);
    let explained = common::kumactl(
        &config,
        &["inspect", "dataplane", "client-1", "--policies"],
        None,
    );
    assert_eq!(explained.code, 0, "{}", explained.stderr);
    for expected in [
        "Dataplane \"client-1\" in mesh \"default\"",
        "ProxyTemplate: none, the default-proxy profile",
        &format!("outbound :{outbound} -> echo"),
        "TrafficRoute canary (source service=*, destination service=echo) splits echo 100, echo{version=2} 1",
    ] {
        assert!(
            explained.stdout.contains(expected),
            "{expected}\n{}",
            explained.stdout
        );
    }
    let server = common::kumactl(&config, &["inspect", "dataplane", "echo-1"], None);
    assert!(
        server.stdout.contains(
            "TrafficPermission client-to-echo (destination service=echo) admits service=client"
        ),
        "{}",
        server.stdout
    );

    let dump = common::kumactl(
        &config,
        &["inspect", "dataplane", "client-1", "--config-dump"],
        None,
    );
    assert_eq!(dump.code, 0, "{}", dump.stderr);
    let dump: serde_json::Value = serde_json::from_str(&dump.stdout).unwrap();
    assert_eq!(dump["source"], "sent");
    let names = |kind: &str| -> Vec<String> {
        dump[kind]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("listeners").contains(&format!("outbound:127.0.0.1:{outbound}")));
    assert!(names("clusters").contains(&"echo{version=2}".to_string()));
    let identity = dump["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "identity_cert")
        .expect("the identity secret");
    assert_eq!(
        identity["resource"]["tls_certificate"]["private_key"],
        "[left out]"
    );
    assert!(!dump.to_string().contains("PRIVATE KEY"));
    assert!(dump.to_string().contains("BEGIN CERTIFICATE"));

    // Not connected: generated now, and said so.
    let unconnected = common::kumactl(
        &config,
        &["inspect", "dataplane", "echo-2", "--config-dump"],
        None,
    );
    let unconnected: serde_json::Value = serde_json::from_str(&unconnected.stdout).unwrap();
    assert_eq!(unconnected["source"], "generated");
    let missing = common::kumactl(&config, &["inspect", "dataplane", "nobody"], None);
    assert_ne!(missing.code, 0);
    assert!(
        missing
            .stderr
            .contains("Dataplane \"nobody\" is not in mesh \"default\""),
        "{}",
        missing.stderr
    );
}
