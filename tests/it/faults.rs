//! Faults that must lose nothing. Each test prints its figure (what was
//! tried, what survived) for the README's Reliability table.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Kills of the kill -9 test: 20 in `make test`, `KUMA_SOAK_KILLS` (as
/// `make soak` sets it) for more.
fn kills() -> usize {
    std::env::var("KUMA_SOAK_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

/// The dataplane written as `name`, its inbound port telling which write
/// it was.
fn dataplane(name: &str, port: u16) -> String {
    serde_json::json!({"type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"inbound": [{"interface": format!("127.0.0.1:{port}:{}", port + 1),
                                    "tags": {"service": "web"}}]}})
    .to_string()
}

/// What a writer saw: the writes acknowledged (201), and how many were
/// refused with 503 (the store unavailable).
#[derive(Default)]
struct Writes {
    acknowledged: Vec<(String, u16)>,
    unavailable: usize,
}

/// Writes dataplanes `{prefix}-{i}` one after another until `stop`, or
/// until the control plane stops answering. A 503 is counted and the next
/// write tried a moment later.
fn write_until_stopped(api: String, prefix: String, stop: Arc<AtomicBool>) -> Writes {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("a client");
    let mut writes = Writes::default();
    for i in 0u16.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let name = format!("{prefix}-{i}");
        let port = 1000 + i % 60_000;
        let sent = client
            .put(format!("{api}/meshes/default/dataplanes/{name}"))
            .header("content-type", "application/json")
            .body(dataplane(&name, port))
            .send();
        match sent {
            Ok(r) if r.status().as_u16() == 201 => writes.acknowledged.push((name, port)),
            Ok(r) if r.status().as_u16() == 503 => {
                writes.unavailable += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(r) => panic!("{name}: {} {:?}", r.status(), r.text()),
            // Killed mid-request: not acknowledged, may or may not be stored.
            Err(_) => break,
        }
    }
    writes
}

/// Every acknowledged write reads back as written, and whatever else is
/// stored (a write cut by a fault may have landed) is whole too: the list
/// reads and every item validates. Answers how many are stored.
fn assert_stored_whole(api: &str, acknowledged: &[(String, u16)]) -> usize {
    for (name, port) in acknowledged {
        let got = common::http(
            "GET",
            &format!("{api}/meshes/default/dataplanes/{name}"),
            None,
        );
        assert_eq!(got.status, 200, "{name} was acknowledged and is gone");
        assert_eq!(
            got.body["networking"]["inbound"][0]["interface"],
            format!("127.0.0.1:{port}:{}", port + 1),
            "{name} reads back otherwise than written"
        );
    }
    let mut page = Some(format!("{api}/meshes/default/dataplanes?size=500"));
    let mut stored = 0;
    while let Some(url) = page {
        let listed = common::http("GET", &url, None);
        assert_eq!(listed.status, 200, "{}", listed.body);
        for item in listed.body["items"].as_array().expect("items") {
            kuma::resources::Resource::from_json(
                item.clone(),
                kuma::resources::Identity::FromDocument,
            )
            .unwrap_or_else(|e| panic!("a stored dataplane does not validate: {e}\n{item}"));
            stored += 1;
        }
        page = listed.body["next"].as_str().map(str::to_string);
    }
    assert!(stored >= acknowledged.len());
    stored
}

/// `kill -9` of kuma-cp on Postgres, [`kills`] times, while a client writes as
/// fast as it can: every write the API acknowledged is in the store after
/// the restarts, whole (it reads back as written and validates).
#[test]
fn every_acknowledged_write_survives_kill_9() {
    let db = common::migrated_database("faults_kill9");
    let mut acknowledged = Vec::new();
    let kills = kills();
    for round in 0..kills {
        let mut cp = db.kuma_cp(&[]);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (api, stop) = (cp.api.clone(), stop.clone());
            std::thread::spawn(move || write_until_stopped(api, format!("dp-{round}"), stop))
        };
        // Killed at a different moment of the writes each round.
        std::thread::sleep(Duration::from_millis(150 + 37 * round as u64 % 300));
        cp.child.kill().expect("SIGKILL");
        let _ = cp.child.wait();
        stop.store(true, Ordering::Relaxed);
        acknowledged.extend(writer.join().expect("the writer").acknowledged);
    }
    assert!(
        acknowledged.len() > kills,
        "too few writes to tell anything: {}",
        acknowledged.len()
    );
    let cp = db.kuma_cp(&[]);
    let stored = assert_stored_whole(&cp.api, &acknowledged);
    println!(
        "figure: {kills} kill -9 of kuma-cp during writes; {} writes acknowledged, all present and whole after restart ({stored} stored)",
        acknowledged.len()
    );
}

/// PostgreSQL stopped, then started, while a client writes as fast as it
/// can: meanwhile writes answer 503 and `/ready` fails; both recover by
/// themselves, and every write acknowledged before, during or after is
/// stored whole.
#[test]
fn a_database_outage_under_writes_loses_nothing_acknowledged() {
    let cluster = common::PgCluster::start();
    let db = cluster.new_database("outage_writes");
    db.migrate();
    let cp = db.kuma_cp(&[]);
    let ready = || common::http("GET", &format!("{}/ready", cp.health), None).status;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (api, stop) = (cp.api.clone(), stop.clone());
        std::thread::spawn(move || write_until_stopped(api, "dp".into(), stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop();
    assert!(
        common::eventually(Duration::from_secs(10), || ready() == 503),
        "/ready kept answering with the database down"
    );
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart();
    let restarted = std::time::Instant::now();
    assert!(
        common::eventually(Duration::from_secs(20), || ready() == 200),
        "/ready did not recover"
    );
    let recovered = restarted.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let writes = writer.join().expect("the writer");
    assert!(writes.unavailable > 0, "no write met the outage");
    assert!(
        writes.acknowledged.len() > 10,
        "too few writes to tell anything: {}",
        writes.acknowledged.len()
    );
    let stored = assert_stored_whole(&cp.api, &writes.acknowledged);
    println!(
        "figure: PostgreSQL stopped for 2 s under writes: {} writes answered 503 meanwhile; ready again {} ms after the restart; {} writes acknowledged, all present and whole ({stored} stored)",
        writes.unavailable,
        recovered.as_millis(),
        writes.acknowledged.len()
    );
}

/// How many hostile connections the slow-client test opens.
const HOSTILE: usize = 1_000;

/// Silent clients and slowloris clients (headers a byte now and then)
/// on every HTTP port (API, health, bootstrap, token server) and on the
/// HTTPS API, where they never finish the TLS handshake: a real request
/// on each is answered while they are still connected (not after the
/// control plane gave up on them), and the control plane disconnects
/// them all within its header read and handshake timeouts (10 s, README
/// "Reliability"). The ports share one accept loop; this proves it of each.
#[test]
fn silent_and_slow_http_clients_do_not_starve_real_ones_and_are_disconnected() {
    use std::io::{Read, Write};
    let cp = common::KumaCp::start(&[
        ("KUMA_API_SERVER_HTTPS_ENABLED", "true"),
        ("KUMA_API_SERVER_HTTPS_PORT", "0"),
    ]);
    let https = cp.https_api.clone().expect("the HTTPS API listens");
    // Each port with a real request it answers (a refusal is an answer).
    let ports = [
        ("API", cp.api.clone(), "GET", "/meshes"),
        ("health", cp.health.clone(), "GET", "/healthy"),
        ("bootstrap", cp.bootstrap.clone(), "POST", "/bootstrap"),
        ("dataplane token", cp.tokens.clone(), "POST", "/tokens"),
        ("HTTPS API", https, "GET", "/meshes"),
    ];
    let per_port = HOSTILE / ports.len();
    let mut hostile: Vec<std::net::TcpStream> = Vec::new();
    for (_, url, _, _) in &ports {
        let address = url
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        for i in 0..per_port {
            let mut c = std::net::TcpStream::connect(address).expect("connect");
            if i % 2 == 0 {
                // Half the headers (on HTTPS: bytes that are no
                // ClientHello), never the end of them.
                c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
                    .expect("write");
            }
            hostile.push(c);
        }
    }
    let started = std::time::Instant::now();
    let mut latencies = Vec::new();
    for (server, url, method, path) in &ports {
        let asked = std::time::Instant::now();
        // The HTTPS API's certificate is generated: not verified here.
        let client = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let status = client
            .request(method.parse().unwrap(), format!("{url}{path}"))
            .body("{}")
            .send()
            .unwrap_or_else(|e| panic!("{server}: {e}"))
            .status();
        let latency = asked.elapsed();
        assert!(status.as_u16() < 500, "{server}: {status}");
        latencies.push(format!("{server} {} ms", latency.as_millis()));
    }
    // Served while every silent connection (the odd ones) was still held,
    // not after kuma-cp gave up on them: a peek would block rather than
    // find the end. (Bytes that are no ClientHello end an HTTPS
    // connection at once, so the others are not counted here.)
    let silent = hostile.len() / 2;
    let still_open = hostile
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|c| {
            c.set_nonblocking(true).expect("nonblocking");
            let open = matches!(
                c.peek(&mut [0u8; 1]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            );
            c.set_nonblocking(false).expect("blocking");
            open
        })
        .count();
    assert_eq!(
        still_open,
        silent,
        "real requests were answered only after silent connections were dropped ({})",
        latencies.join(", ")
    );
    // Trickle a byte on the slow ones, as slowloris does.
    for c in hostile.iter_mut().step_by(2) {
        let _ = c.write_all(b"X");
    }
    let peak = common::peak_rss(cp.child.id());
    // Every hostile connection is closed by the control plane: a read
    // ends (0 bytes, or an error) instead of blocking.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut closed = 0;
    for c in &mut hostile {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        c.set_read_timeout(Some(left.max(Duration::from_millis(10))))
            .expect("timeout");
        let mut buf = [0u8; 512];
        loop {
            match c.read(&mut buf) {
                Ok(0) => {
                    closed += 1;
                    break;
                }
                // A 408 answer may come before the close.
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break;
                }
                Err(_) => {
                    closed += 1;
                    break;
                }
            }
        }
    }
    let waited = started.elapsed();
    assert_eq!(
        closed,
        hostile.len(),
        "hostile connections left open after {waited:?}"
    );
    println!(
        "figure: {} silent or slowloris connections, {per_port} on each of the API, health, bootstrap, token and HTTPS API ports: real requests answered in {}; all closed by kuma-cp within {:.1} s; peak RSS {peak}",
        hostile.len(),
        latencies.join(", "),
        waited.as_secs_f64()
    );
}

/// The API under more requests than it takes at once: with room for 4,
/// four uploads that stall hold it, a fifth request gets 503 at once
/// (while the stalled ones are still waiting) instead of waiting; the
/// stalled ones get 503 (with Retry-After) at the request timeout, and
/// then the API serves again.
#[test]
fn beyond_its_concurrency_limit_the_api_answers_503_at_once() {
    use std::io::{Read, Write};
    let cp = common::KumaCp::start(&[
        ("KUMA_API_SERVER_MAX_CONCURRENT_REQUESTS", "4"),
        ("KUMA_API_SERVER_REQUEST_TIMEOUT_MS", "10000"),
    ]);
    let address = cp.api.trim_start_matches("http://").to_string();
    let stalled: Vec<std::net::TcpStream> = (0..4)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(&address).expect("connect");
            write!(
                c,
                "PUT /meshes/default/dataplanes/dp-{i} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\""
            )
            .expect("write");
            c
        })
        .collect();
    // Once the four hold the API, a fifth request is refused.
    let mut refused = common::http("GET", &format!("{}/meshes", cp.api), None);
    let mut refused_in = Duration::ZERO;
    assert!(
        common::eventually(Duration::from_secs(8), || {
            let started = std::time::Instant::now();
            refused = common::http("GET", &format!("{}/meshes", cp.api), None);
            refused_in = started.elapsed();
            refused.status == 503
        }),
        "the API never refused a request beyond its limit: {}",
        refused.body
    );
    assert_eq!(refused.body["title"], "Overloaded");
    assert!(
        refused.body["details"]
            .as_str()
            .unwrap_or_default()
            .contains("KUMA_API_SERVER_MAX_CONCURRENT_REQUESTS"),
        "{}",
        refused.body
    );
    // The refusal came at once: none of the stalled uploads has had its
    // answer yet.
    for c in &stalled {
        c.set_nonblocking(true).expect("nonblocking");
        assert!(
            matches!(c.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a stalled upload was answered before the fifth request was refused"
        );
        c.set_nonblocking(false).expect("blocking");
    }
    // The stalled uploads end with 503 at the timeout.
    for mut c in stalled {
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = String::new();
        let mut buf = [0u8; 4096];
        // A signal to the test process (a child exiting) may interrupt the
        // wait: that is no answer yet, so wait again.
        let n = loop {
            match c.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                read => break read.expect("an answer before the read timeout"),
            }
        };
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains("KUMA_API_SERVER_REQUEST_TIMEOUT_MS"),
            "{answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("retry-after: 1"),
            "{answer}"
        );
    }
    assert!(
        common::eventually(Duration::from_secs(5), || common::http(
            "GET",
            &format!("{}/meshes", cp.api),
            None
        )
        .status
            == 200),
        "the API did not serve again"
    );
    println!(
        "figure: API limited to 4 requests at once: the 5th answered 503 in {} ms; stalled requests 503 at the 10 s timeout; served again after",
        refused_in.as_millis()
    );
}

/// Out of file descriptors, kuma-cp serves the connections it has,
/// refuses new ones (closed at once, not left hanging), says so once with
/// the limit and how to raise it, and accepts again when descriptors free.
#[test]
fn at_the_file_descriptor_limit_open_connections_are_served_and_new_ones_refused() {
    use std::io::{Read, Write};
    const LIMIT: usize = 160;
    let cmd = common::kuma_cp_under("prlimit", &[format!("--nofile={LIMIT}:{LIMIT}")], &[]);
    let cp = common::KumaCp::try_start_command(cmd).expect("kuma-cp under prlimit");
    let address = cp.health.trim_start_matches("http://").to_string();
    // Opened quickly: kuma-cp lets a connection that sends nothing go
    // after 10 s, which frees its descriptor.
    let first = std::net::TcpStream::connect(&address).unwrap();
    let opened: Vec<std::net::TcpStream> = (0..2 * LIMIT)
        .map(|_| std::net::TcpStream::connect(&address).unwrap())
        .collect();
    // A refused connection is closed by kuma-cp: end of stream. One it
    // holds stays open, waiting for a request; so does one still in the
    // listen queue, which kuma-cp (busy, when the machine is) has not
    // come to yet. So the count is taken until no more are refused, well
    // within the 10 s after which kuma-cp lets silent connections go.
    let started = std::time::Instant::now();
    let (mut held, mut refused) = (opened, 0);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let before = refused;
        held.retain_mut(|c| {
            c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            let closed = matches!(c.read(&mut [0; 1]), Ok(0));
            refused += usize::from(closed);
            !closed
        });
        if (refused > 0 && refused == before) || started.elapsed() > Duration::from_secs(6) {
            break;
        }
    }
    assert!(
        refused > 0 && held.len() < LIMIT,
        "kuma-cp held {} connections and refused {refused}",
        held.len()
    );
    let log = cp.log();
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("out of file descriptors"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {log}");
    assert!(
        said[0].contains(&format!("\"limit\":{LIMIT}")) && said[0].contains("ulimit -n"),
        "{}",
        said[0]
    );
    // One request on a connection of its own; the answer's first line.
    let ask = |mut c: std::net::TcpStream| -> String {
        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = c.write_all(b"GET /healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        answer.lines().next().unwrap_or("").to_string()
    };
    // A connection opened before the limit is still served.
    assert_eq!(ask(first), "HTTP/1.1 200 OK");
    // Descriptors freed: new connections are accepted again.
    drop(held);
    assert!(
        common::eventually(Duration::from_secs(10), || ask(
            std::net::TcpStream::connect(&address).unwrap()
        ) == "HTTP/1.1 200 OK"),
        "kuma-cp did not recover"
    );
    assert!(
        common::eventually(Duration::from_secs(5), || cp
            .log()
            .contains("file descriptors free again")),
        "the recovery is logged"
    );
}
