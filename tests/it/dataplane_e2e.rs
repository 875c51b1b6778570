//! Real traffic through real Envoy: `kuma-cp`, `kuma-dp` (each running the
//! Envoy that `make test` installs) and `kuma-tcp-echo`.

use crate::common;

use common::{
    Dataplane, KumaCp, echo_roundtrip, echo_server, echo_works, eventually, free_port, http,
    put_dataplane, put_proxy,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// An echo service behind one dataplane and a client dataplane with an
/// outbound to it; returns the client's outbound port.
struct Mesh {
    echo_dp: Dataplane,
    client: Dataplane,
    outbound: u16,
    _services: common::EchoAndClient,
}

fn echo_mesh(cp: &KumaCp, mesh: &str) -> Mesh {
    let services = common::put_echo_and_client(cp, mesh);
    let outbound = services.outbound;
    let echo_dp = Dataplane::start(cp, mesh, "echo-1");
    let client = Dataplane::start(cp, mesh, "client-1");
    assert!(
        eventually(Duration::from_secs(10), || echo_works(outbound)),
        "no echo through the mesh; client log:\n{}",
        client.log()
    );
    Mesh {
        echo_dp,
        client,
        outbound,
        _services: services,
    }
}

#[test]
fn bytes_come_back_through_two_envoys_on_many_connections() {
    let cp = KumaCp::start(&[]);
    let mesh = echo_mesh(&cp, "default");
    let outbound = mesh.outbound;
    let workers: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let payload: Vec<u8> = (0..64 * 1024).map(|b| ((b * 7 + i) % 251) as u8).collect();
                let back = echo_roundtrip(outbound, &payload).expect("roundtrip");
                assert!(
                    back == payload,
                    "connection {i}: {} of {} bytes came back intact",
                    back.len(),
                    payload.len()
                );
            })
        })
        .collect();
    for w in workers {
        w.join().expect("connection thread");
    }

    // Envoy's own view: the generated listeners and clusters.
    let dump = mesh.client.admin_get("/config_dump").unwrap();
    for name in [
        format!("\"outbound:127.0.0.1:{outbound}\""),
        "\"name\": \"echo\"".to_string(),
        "\"name\": \"localhost:".to_string(),
    ] {
        assert!(dump.contains(&name), "config_dump lacks {name}");
    }
    assert!(
        mesh.echo_dp
            .admin_get("/config_dump")
            .unwrap()
            .contains("\"inbound:127.0.0.1:")
    );
}

#[test]
fn a_second_instance_gets_traffic_and_a_deleted_one_disappears() {
    let cp = KumaCp::start(&[]);
    let mesh = echo_mesh(&cp, "default");
    let (port2, inbound2) = (free_port(), free_port());
    let _echo2 = echo_server(port2);
    put_dataplane(&cp, "default", "echo-2", (inbound2, port2), "echo", &[]);
    let _dp2 = Dataplane::start(&cp, "default", "echo-2");
    assert!(
        eventually(Duration::from_secs(5), || mesh
            .client
            .endpoints("echo")
            .len()
            == 2),
        "client sees {:?}",
        mesh.client.endpoints("echo")
    );
    let second = format!("127.0.0.1:{inbound2}");
    let endpoints = mesh.client.endpoints("echo");
    for _ in 0..40 {
        assert!(echo_works(mesh.outbound));
    }
    for ep in &endpoints {
        assert!(
            mesh.client.endpoint_stat("echo", ep, "cx_total") > 0,
            "no connection reached {ep}"
        );
    }

    // Deleted: gone from the other proxy, with no restart.
    let pid_before = mesh.client.process.0.id();
    let answer = http(
        "DELETE",
        &format!("{}/meshes/default/dataplanes/echo-2", cp.api),
        None,
    );
    assert_eq!(answer.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || !mesh
            .client
            .endpoints("echo")
            .contains(&second)),
        "echo-2 still listed: {:?}",
        mesh.client.endpoints("echo")
    );
    assert_eq!(mesh.client.process.0.id(), pid_before);
    assert!(echo_works(mesh.outbound));
}

#[test]
fn meshes_never_see_each_others_endpoints() {
    let cp = KumaCp::start(&[]);
    assert_eq!(
        http("PUT", &format!("{}/meshes/b", cp.api), Some("{}")).status,
        201
    );
    let a = echo_mesh(&cp, "default");
    // Mesh b: a client of "echo" too, and no echo of its own yet.
    let outbound_b = free_port();
    put_proxy(&cp, "b", "client-b", "client", &[(outbound_b, "echo")]);
    // Envoy reports LIVE only once its clusters have their first
    // endpoints; the exact list checked after b's own echo arrives below
    // is the later event that would show anything of mesh a.
    let client_b = Dataplane::start(&cp, "b", "client-b");
    assert_eq!(
        client_b.endpoints("echo"),
        Vec::<String>::new(),
        "mesh b got mesh a's echo"
    );
    assert!(!echo_works(outbound_b));

    // An echo of mesh b, same service name: b sees only its own.
    let (port_b, inbound_b) = (free_port(), free_port());
    let _echo_b = echo_server(port_b);
    put_dataplane(&cp, "b", "echo-b", (inbound_b, port_b), "echo", &[]);
    assert!(eventually(Duration::from_secs(5), || client_b
        .endpoints("echo")
        == vec![format!("127.0.0.1:{inbound_b}")]));
    assert_eq!(
        a.client.endpoints("echo").len(),
        1,
        "mesh a unchanged: {:?}",
        a.client.endpoints("echo")
    );
}

#[test]
fn state_of_the_world_ads_carries_traffic_too() {
    let cp = KumaCp::start(&[("KUMA_BOOTSTRAP_SERVER_XDS_API_TYPE", "sotw")]);
    let mesh = echo_mesh(&cp, "default");
    let dump = mesh.client.admin_get("/config_dump").unwrap();
    assert!(
        dump.contains("\"api_type\": \"GRPC\""),
        "Envoy runs state-of-the-world ADS"
    );
    put_proxy(&cp, "default", "echo-2", "echo", &[]);
    assert!(eventually(Duration::from_secs(10), || mesh
        .client
        .endpoints("echo")
        .len()
        == 2));
    http(
        "DELETE",
        &format!("{}/meshes/default/dataplanes/echo-2", cp.api),
        None,
    );
    assert!(eventually(Duration::from_secs(10), || mesh
        .client
        .endpoints("echo")
        .len()
        == 1));
    assert!(echo_works(mesh.outbound));
}

#[test]
fn insights_show_the_streams_and_inspect_shows_online() {
    let cp = KumaCp::start(&[("KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS", "100")]);
    let mesh = echo_mesh(&cp, "default");
    let url = format!("{}/meshes/default/dataplanes+insights/client-1", cp.api);
    assert!(
        eventually(Duration::from_secs(5), || {
            let s = &http("GET", &url, None).body["dataplaneInsight"]["subscriptions"][0]["status"];
            s["total"]["responsesAcknowledged"] == "3" && s["lds"]["responsesSent"] == "1"
        }),
        "{}",
        http("GET", &url, None).body
    );
    let (_dir, config) = common::kumactl_config(&cp);
    let run = common::kumactl(&config, &["inspect", "dataplanes"], None);
    let client_line = run
        .stdout
        .lines()
        .find(|l| l.contains("client-1"))
        .unwrap_or("")
        .to_string();
    assert!(client_line.contains("Online"), "{}", run.stdout);

    let metrics = http("GET", &format!("{}/metrics", cp.api), None).body;
    let text = metrics.as_str().unwrap_or("");
    assert!(text.contains("xds_streams{kind=\"delta\"} 2"), "{text}");
    assert!(text.contains("xds_push_to_ack_seconds_count"), "{text}");

    // With mTLS, secrets are sent too, and counted on their own line: the
    // parts add up to the total.
    cp.enable_mtls("default");
    let sent = |s: &serde_json::Value, part: &str| {
        s[part]["responsesSent"]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(10), || {
            let s = &http("GET", &url, None).body["dataplaneInsight"]["subscriptions"][0]["status"];
            let parts: u64 = ["cds", "eds", "lds", "rds", "sds"]
                .iter()
                .map(|p| sent(s, p))
                .sum();
            sent(s, "sds") > 0 && parts == sent(s, "total")
        }),
        "{}",
        http("GET", &url, None).body
    );

    // The certificate it was sent, and the versions it runs, as Kuma's
    // inspect shows them.
    assert!(
        eventually(Duration::from_secs(10), || {
            http("GET", &url, None).body["dataplaneInsight"]["mTLS"]["certificateRegenerations"]
                .as_u64()
                .is_some_and(|n| n >= 1)
        }),
        "{}",
        http("GET", &url, None).body
    );
    let run = common::kumactl(&config, &["inspect", "dataplanes"], None);
    let header = run.stdout.lines().next().unwrap_or("");
    for column in [
        "CERT REGENERATED AGO",
        "CERT EXPIRATION",
        "CERT REGENERATIONS",
        "KUMA-DP VERSION",
        "ENVOY VERSION",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let client_line = run
        .stdout
        .lines()
        .find(|l| l.contains("client-1"))
        .unwrap_or("")
        .to_string();
    let cells: Vec<&str> = client_line
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells[cells.len() - 2],
        env!("CARGO_PKG_VERSION"),
        "{client_line}"
    );
    assert!(
        cells[cells.len() - 1].starts_with("1."),
        "Envoy's version: {client_line}"
    );
    assert_ne!(cells[cells.len() - 3], "0", "regenerations: {client_line}");

    // Stopped: offline, with a disconnect time.
    drop(mesh);
    assert!(eventually(Duration::from_secs(5), || {
        http("GET", &url, None).body["dataplaneInsight"]["subscriptions"][0]["disconnectTime"]
            .is_string()
    }));
    let run = common::kumactl(&config, &["inspect", "dataplanes"], None);
    assert!(
        run.stdout
            .lines()
            .any(|l| l.contains("client-1") && l.contains("Offline")),
        "{}",
        run.stdout
    );
}

/// `kuma-cp` (Postgres, TLS with its generated certificate) restarted
/// under traffic: the client's round trips never fail, and both proxies
/// reconnect over TLS to the new process, which has the same CA (kept in
/// its work directory).
#[test]
fn envoy_keeps_traffic_while_kuma_cp_restarts_on_postgres() {
    let db = common::migrated_database("e2e_restart");
    let xds_port = free_port().to_string();
    let bootstrap_port = free_port().to_string();
    let work_dir = tempfile::tempdir().unwrap();
    let fixed = [
        ("KUMA_XDS_SERVER_GRPC_PORT", xds_port.as_str()),
        ("KUMA_BOOTSTRAP_SERVER_PORT", bootstrap_port.as_str()),
        ("KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS", "100"),
        ("KUMA_GENERAL_ADVERTISED_HOSTNAME", "127.0.0.1"),
        ("KUMA_GENERAL_WORK_DIR", work_dir.path().to_str().unwrap()),
    ];
    let mut cp = db.kuma_cp(&fixed);
    let mesh = echo_mesh(&cp, "default");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = client_loop(mesh.outbound, stop.clone());
    let url = format!("{}/meshes/default/dataplanes+insights/client-1", cp.api);
    let first_id = {
        assert!(eventually(Duration::from_secs(5), || http(
            "GET", &url, None
        )
        .body["dataplaneInsight"]["subscriptions"][0]["id"]
            .is_string()));
        http("GET", &url, None).body["dataplaneInsight"]["subscriptions"][0]["id"].clone()
    };

    assert!(cp.terminate().success());
    let restarted = std::time::Instant::now();
    for _ in 0..10 {
        assert!(
            echo_works(mesh.outbound),
            "traffic stopped while the control plane was down"
        );
    }
    let cp = db.kuma_cp(&fixed);
    let url = format!("{}/meshes/default/dataplanes+insights/client-1", cp.api);
    assert!(
        eventually(Duration::from_secs(20), || {
            let subs = http("GET", &url, None).body["dataplaneInsight"]["subscriptions"].clone();
            subs.as_array().is_some_and(|a| {
                a.len() == 2
                    && a[0]["id"] == first_id
                    && a[0]["disconnectTime"].is_string()
                    && a[1]["disconnectTime"].is_null()
            })
        }),
        "no new subscription: {}\nkuma-cp log:\n{}\nclient log:\n{}",
        http("GET", &url, None).body,
        cp.log(),
        mesh.client.log()
    );
    assert!(
        eventually(Duration::from_secs(10), || common::open_streams(&cp.api)
            == 2.0),
        "both proxies reconnected over TLS"
    );
    let reconnected = restarted.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (failed, longest) = traffic.join().unwrap();
    assert_eq!(failed, 0, "round trips failed across the restart");
    println!(
        "figure: kuma-cp restarted with TLS: both proxies reconnected {:.2} s after the stop began; the longest gap between the client's round trips was {} ms, none failed",
        reconnected.as_secs_f64(),
        longest.as_millis()
    );
}

/// A second kuma-dp with the name of a running one is accepted (with a
/// warning in the control plane's log and in `kumactl inspect`); when it
/// goes, the first is still Online, and still carries traffic.
#[test]
fn a_second_stream_for_a_dataplane_is_flagged_and_its_end_leaves_it_online() {
    let cp = KumaCp::start(&[("KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS", "100")]);
    let mesh = echo_mesh(&cp, "default");
    let url = format!("{}/meshes/default/dataplanes+insights/client-1", cp.api);
    let connected = || {
        http("GET", &url, None).body["dataplaneInsight"]["subscriptions"]
            .as_array()
            .map(|s| s.iter().filter(|s| s["disconnectTime"].is_null()).count())
            .unwrap_or(0)
    };
    let token = cp.token("default", "client-1");
    let second = Dataplane::launch(&cp, "default", "client-1", Some(&token), &[]);
    assert!(
        eventually(Duration::from_secs(15), || connected() == 2),
        "the second stream is not in the insight; its log:\n{}",
        second.log()
    );
    assert!(
        cp.log()
            .contains("is a second kuma-dp running with the same name?"),
        "{}",
        cp.log()
    );
    let (_dir, config) = common::kumactl_config(&cp);
    let inspect = || common::kumactl(&config, &["inspect", "dataplanes"], None).stdout;
    let shown = inspect();
    assert!(
        shown.contains("dataplane \"client-1\" has 2 connected kuma-dp streams"),
        "{shown}"
    );

    drop(second);
    assert!(eventually(Duration::from_secs(10), || connected() == 1));
    let shown = inspect();
    assert!(
        shown
            .lines()
            .any(|l| l.contains("client-1") && l.contains("Online")),
        "{shown}"
    );
    assert!(!shown.contains("connected kuma-dp streams"), "{shown}");
    assert!(
        echo_works(mesh.outbound),
        "the first proxy still carries traffic"
    );
}

/// An HTTP service (`protocol: http`) is served through both Envoys as
/// HTTP: the request gets its answer, and each Envoy counts it as an HTTP
/// request, which a TCP proxy cannot.
#[test]
fn an_http_service_is_proxied_as_http_by_both_envoys() {
    let cp = KumaCp::start(&[]);
    let (app, inbound, client_inbound, outbound) =
        (free_port(), free_port(), free_port(), free_port());
    let _server = common::http_app(app, "hello over http\n");
    cp.put(
        "/meshes/default/dataplanes/api-1",
        &serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "api-1",
            "networking": {"inbound": [{"interface": format!("127.0.0.1:{inbound}:{app}"),
                                        "tags": {"service": "api", "protocol": "http"}}]}})
        .to_string(),
    );
    put_dataplane(
        &cp,
        "default",
        "client-1",
        (client_inbound, free_port()),
        "client",
        &[(outbound, "api")],
    );
    let api = Dataplane::start(&cp, "default", "api-1");
    let client = Dataplane::start(&cp, "default", "client-1");
    let url = format!("http://127.0.0.1:{outbound}/hello.txt");
    assert!(
        eventually(Duration::from_secs(15), || reqwest::blocking::get(&url)
            .and_then(|r| r.text())
            .is_ok_and(|t| t == "hello over http\n")),
        "no answer through the mesh; client log:\n{}",
        client.log()
    );
    let http_requests = |dp: &Dataplane| {
        dp.admin_get("/stats")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("http.") && !l.starts_with("http.admin."))
            .filter(|l| l.contains(".downstream_rq_2xx: "))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum::<u64>()
    };
    assert!(
        http_requests(&client) >= 1,
        "the client's Envoy saw no HTTP request"
    );
    assert!(
        http_requests(&api) >= 1,
        "the service's Envoy saw no HTTP request"
    );
}

/// A TrafficLog whose sources and destinations select a connection logs
/// it, through the mesh's file backend, with Kuma's placeholders filled in;
/// deleting the policy stops the logging without restarting anything.
#[test]
fn a_traffic_log_writes_the_connections_it_selects_to_the_file_backend() {
    let cp = KumaCp::start(&[]);
    let mesh = echo_mesh(&cp, "default");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    cp.put(
        "/meshes/default",
        &serde_json::json!({"type": "Mesh", "name": "default",
            "logging": {"backends": [{"name": "file", "file": {"path": log.display().to_string()}}],
                        "defaultBackend": "file"}})
        .to_string(),
    );
    let traffic_log = serde_json::json!({"type": "TrafficLog", "mesh": "default", "name": "client-to-echo",
        "rules": [{"sources": [{"match": {"service": "client"}}],
                   "destinations": [{"match": {"service": "echo"}}]}]});
    cp.put(
        "/meshes/default/traffic-logs/client-to-echo",
        &traffic_log.to_string(),
    );
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        eventually(Duration::from_secs(15), || {
            let _ = echo_roundtrip(mesh.outbound, b"logged");
            lines().iter().any(|l| {
                l.contains(" default 127.0.0.1(client)->127.0.0.1:") && l.contains("(echo) took ")
            })
        }),
        "no access log line; file: {:?}; client log:\n{}",
        lines(),
        mesh.client.log()
    );

    cp.delete("/meshes/default/traffic-logs/client-to-echo");
    let has_log_config = || {
        mesh.client
            .admin_get("/config_dump?resource=dynamic_listeners")
            .unwrap_or_default()
            .contains("envoy.access_loggers.file")
    };
    assert!(
        eventually(Duration::from_secs(10), || !has_log_config()),
        "the access log stayed configured"
    );
    // Payloads of lengths no other connection here has, so that each
    // connection's line is told apart by its byte count.
    let quiet: &[u8] = b"quiet, unlogged";
    let marker: &[u8] = b"the marker";
    let sent = |payload: &[u8]| format!("sent {} bytes", payload.len());
    assert_eq!(echo_roundtrip(mesh.outbound, quiet).unwrap(), quiet);
    // Envoy buffers its file logs, so "no line yet" proves nothing. The
    // policy comes back and one more connection is made: once its line is
    // written, anything logged for the quiet connection (which closed
    // first) is written too.
    cp.put(
        "/meshes/default/traffic-logs/client-to-echo",
        &traffic_log.to_string(),
    );
    assert!(
        eventually(Duration::from_secs(10), has_log_config),
        "the access log did not come back"
    );
    assert_eq!(echo_roundtrip(mesh.outbound, marker).unwrap(), marker);
    assert!(
        eventually(Duration::from_secs(30), || lines()
            .iter()
            .any(|l| l.contains(&sent(marker)))),
        "the marker connection was not logged: {:?}",
        lines()
    );
    assert!(
        !lines().iter().any(|l| l.contains(&sent(quiet))),
        "a connection was logged while the policy was gone: {:?}",
        lines()
    );
}

/// A load balancer in front of the control planes' xDS ports: every
/// connection goes to the port `target` holds when it opens.
fn forwarder(target: Arc<AtomicU16>) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) =
                std::net::TcpStream::connect(("127.0.0.1", target.load(Ordering::SeqCst)))
            else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}

/// Two control planes on one database behind a load balancer; the one the
/// Envoys use is killed. They reconnect to the other, which serves them
/// what was written through the dead one just before, and what is written
/// after: the change feed misses nothing. Traffic flows throughout.
#[test]
fn when_one_of_two_control_planes_dies_its_proxies_move_to_the_other() {
    let db = common::migrated_database("e2e_failover");
    let target = Arc::new(AtomicU16::new(0));
    let balanced = forwarder(target.clone()).to_string();
    // One CA for both, as replicas behind one address have.
    let work_dir = tempfile::tempdir().unwrap();
    let env = [
        ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "127.0.0.1"),
        ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT", balanced.as_str()),
        ("KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS", "100"),
        ("KUMA_GENERAL_WORK_DIR", work_dir.path().to_str().unwrap()),
    ];
    let mut first = db.kuma_cp(&env);
    let second = db.kuma_cp(&env);
    let port = |cp: &KumaCp| cp.xds.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    target.store(port(&first), Ordering::SeqCst);
    let mesh = echo_mesh(&first, "default");
    let endpoints = || {
        let mut e = mesh.client.endpoints("echo");
        e.sort();
        e
    };
    let mut both = endpoints();
    assert_eq!(both.len(), 1);

    // Written through the first just before it dies: a second echo.
    let (echo_port, echo_inbound) = (free_port(), free_port());
    let _echo_2 = echo_server(echo_port);
    put_dataplane(
        &first,
        "default",
        "echo-2",
        (echo_inbound, echo_port),
        "echo",
        &[],
    );
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();
    let killed = std::time::Instant::now();
    target.store(port(&second), Ordering::SeqCst);
    for _ in 0..10 {
        assert!(echo_works(mesh.outbound), "traffic stopped at the failover");
    }

    both.push(format!("127.0.0.1:{echo_inbound}"));
    both.sort();
    // The client's stream is now the second's: its insight says so.
    let second_id = http("GET", &format!("{}/", second.api), None).body["instanceId"].clone();
    let url = format!("{}/meshes/default/dataplanes+insights/client-1", second.api);
    assert!(
        eventually(Duration::from_secs(20), || {
            let subs = http("GET", &url, None).body["dataplaneInsight"]["subscriptions"].clone();
            subs.as_array()
                .and_then(|s| s.last().cloned())
                .is_some_and(|s| {
                    s["controlPlaneInstanceId"] == second_id && s["disconnectTime"].is_null()
                })
        }),
        "the client did not reconnect to the second control plane: {}\nclient:\n{}",
        http("GET", &url, None).body,
        mesh.client.log()
    );
    // What the second sent it holds echo-2, written through the first:
    // the second's feed missed nothing.
    assert!(
        eventually(Duration::from_secs(10), || endpoints() == both),
        "echo-2 is not in what the second control plane serves: {:?}\nsecond:\n{}",
        endpoints(),
        second.log()
    );
    println!(
        "figure: the client reconnected to the second control plane and was up to date {:.2} s after the first was killed",
        killed.elapsed().as_secs_f64()
    );
    // Written through the second: reaches the proxy too.
    common::http(
        "DELETE",
        &format!("{}/meshes/default/dataplanes/echo-2", second.api),
        None,
    );
    assert!(eventually(Duration::from_secs(10), || endpoints().len() == 1));
    assert!(echo_works(mesh.outbound));
}

/// Echo round trips on `outbound`, one after another, until `stop`:
/// how many failed, and the longest time between two that succeeded.
fn client_loop(
    outbound: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, Duration)> {
    std::thread::spawn(move || {
        let (mut failed, mut longest) = (0, Duration::ZERO);
        let mut last = std::time::Instant::now();
        while !stop.load(Ordering::SeqCst) {
            if echo_works(outbound) {
                longest = longest.max(last.elapsed());
                last = std::time::Instant::now();
            } else {
                failed += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (failed, longest)
    })
}

/// The control plane's certificate files replaced on disk (a new CA):
/// the connected proxies keep their streams and are still served; a new
/// `kuma-dp` must trust the new CA, and the old one no longer verifies.
#[test]
fn a_replaced_certificate_reaches_new_connections_and_spares_open_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = |file: &str| dir.path().join(file).display().to_string();
    let issue = |ca: &str| {
        let (ca_pem, cert, key) = common::server_certificate(&format!("test {ca}"), None);
        std::fs::write(path(ca), ca_pem).unwrap();
        // Written aside and renamed in, as a Secret volume swaps files.
        std::fs::write(path("tls.crt.new"), cert).unwrap();
        std::fs::write(path("tls.key.new"), key).unwrap();
        std::fs::rename(path("tls.key.new"), path("tls.key")).unwrap();
        std::fs::rename(path("tls.crt.new"), path("tls.crt")).unwrap();
    };
    issue("old-ca.crt");
    let cp = KumaCp::start(&[
        ("KUMA_GENERAL_TLS_CERT_FILE", &path("tls.crt")),
        ("KUMA_GENERAL_TLS_KEY_FILE", &path("tls.key")),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    let services = common::put_echo_and_client(&cp, "default");
    let outbound = services.outbound;
    let old_ca = ["--ca-cert-file".to_string(), path("old-ca.crt")];
    let old_ca: Vec<&str> = old_ca.iter().map(String::as_str).collect();
    let client = Dataplane::launch(&cp, "default", "client-1", None, &old_ca);
    client.wait_ready();
    assert!(eventually(
        Duration::from_secs(10),
        || common::open_streams(&cp.api) == 1.0
    ));

    issue("new-ca.crt");
    assert!(
        eventually(Duration::from_secs(10), || cp
            .log()
            .contains("the control plane's certificate changed")),
        "kuma-cp did not take the new files"
    );
    // A new kuma-dp with the old CA is refused; with the new one it runs.
    let mut stale = Dataplane::launch(&cp, "default", "echo-1", None, &old_ca);
    assert!(!stale.exit_status().success());
    assert!(
        stale.log().contains("not signed by that CA"),
        "{}",
        stale.log()
    );
    let new_ca = ["--ca-cert-file".to_string(), path("new-ca.crt")];
    let new_ca: Vec<&str> = new_ca.iter().map(String::as_str).collect();
    let echo = Dataplane::launch(&cp, "default", "echo-1", None, &new_ca);
    echo.wait_ready();
    // The client's stream, opened under the old certificate, is still
    // served: the echo's endpoint reaches it and traffic flows.
    assert!(
        eventually(Duration::from_secs(10), || echo_works(outbound)),
        "the client kept by the old certificate got no endpoint; client:\n{}",
        client.log()
    );
    assert_eq!(common::open_streams(&cp.api), 2.0, "no stream was cut");
}
