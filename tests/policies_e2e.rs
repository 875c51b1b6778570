//! Policies acting on real Envoy: TrafficRoute splits connections,
//! TrafficTrace reports spans to a collector, ProxyTemplate adds and
//! replaces raw resources, TrafficLog's tcp backend receives lines.

mod common;

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
    let mut proxies = Vec::new();
    for (name, version) in [("backend-v1", "1"), ("backend-v2", "2")] {
        let app = naming_server(if version == "1" { "v1" } else { "v2" });
        put_tagged_dataplane(
            &cp,
            "default",
            name,
            (free_port(), app),
            serde_json::json!({"service": "backend", "version": version}),
            &[],
        );
        proxies.push(Dataplane::start(&cp, "default", name));
    }
    let outbound = free_port();
    put_proxy(
        &cp,
        "default",
        "client-1",
        "client",
        &[(outbound, "backend")],
    );
    let client = Dataplane::start(&cp, "default", "client-1");
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

/// Every request the collector received: (path, body).
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A minimal HTTP collector: reads each request (Content-Length bodies),
/// keeps it, answers 202.
fn collector() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or("")
                        .to_string();
                    let (mut length, mut chunked) = (0, false);
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 {
                            return;
                        }
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
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
                    let _ = conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n");
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
