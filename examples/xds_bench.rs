//! `make bench`: the xDS side at scale. A load generator speaking real
//! delta ADS over gRPC simulates N dataplanes (one mesh, N/10 services),
//! ACKing everything it gets, against a release `kuma-cp`. Two shapes:
//! each proxy with one outbound, and, as Kubernetes mode generates them,
//! transparent proxies that reach every service of the mesh at its Service
//! address. Prints tables and each goal as met or missed; asserts nothing.

use kuma_test_support as common;
use kuma_test_support::bench as support;

use kuma::resources::{Identity, Resource};
use kuma::security::ca::MeshCa;
use kuma::xds::generator::{self, MtlsPhase, ProxyTls, tls};
use kuma::xds::index::{IndexEvent, ProxyId, ResourceIndex};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::ads::{AS_ENVOY, Arrivals, MULTIPLEXED, Observed, connect_all, ms, wait_for};
use support::{Ran, cpu_seconds, load, proc_status_kib};

const CHANGE_ROUNDS: usize = 20;
/// How long a benchmark waits for a change to reach every proxy it
/// affects; those it has not reached by then are counted as missing.
const ARRIVAL_BOUND: Duration = Duration::from_secs(10);

/// What the channel between the proxies and kuma-cp speaks.
#[derive(Clone, Copy, PartialEq)]
enum Transport {
    /// TLS, as kuma-cp serves by default; the simulated proxies verify it.
    Tls,
    /// `KUMA_DP_SERVER_INSECURE_PLAINTEXT`: what TLS costs is the
    /// difference.
    Plain,
}

/// How the proxies reach services.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// One outbound each, to the next service.
    OneOutbound,
    /// Transparent proxying: every service, at its Service address.
    EveryService,
}

impl Shape {
    /// Whether proxy `i` consumes `service`.
    fn consumes(self, i: usize, service: usize, services: usize) -> bool {
        self == Shape::EveryService || (i + 1) % services == service
    }
}

fn dataplane(i: usize, services: usize, shape: Shape) -> serde_json::Value {
    let service = i % services;
    let mut inbound = serde_json::json!({
        "interface": format!("10.{}.{}.{}:10000:8080", i / 62_500, (i / 250) % 250, i % 250 + 1),
        "tags": {"service": format!("svc-{service}")}
    });
    let networking = match shape {
        Shape::OneOutbound => serde_json::json!({
            "inbound": [inbound],
            "outbound": [{"interface": ":20000", "service": format!("svc-{}", (i + 1) % services)}]
        }),
        Shape::EveryService => {
            inbound["serviceVip"] =
                format!("10.96.{}.{}:80", service / 250, service % 250 + 1).into();
            serde_json::json!({"inbound": [inbound], "transparentProxying": {}})
        }
    };
    serde_json::json!({
        "type": "Dataplane", "mesh": "default", "name": format!("dp-{i}"),
        "networking": networking
    })
}

/// One permission per service: its consumers may reach it.
fn permission(k: usize, services: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "TrafficPermission", "mesh": "default", "name": format!("to-svc-{k}"),
        "rules": [{"sources": [{"match": {"service": format!("svc-{}", (k + services - 1) % services)}}],
                   "destinations": [{"match": {"service": format!("svc-{k}")}}]}]
    })
}

/// The policies of service `k` in the policy run: its consumers log and
/// split their connections to it 90/10 between the whole service and its
/// version 2, and its providers get one raw cluster more.
fn policies_of(k: usize, services: usize) -> [(&'static str, serde_json::Value); 3] {
    let consumer = format!("svc-{}", (k + services - 1) % services);
    let service = format!("svc-{k}");
    [
        (
            "traffic-logs",
            serde_json::json!({"type": "TrafficLog", "mesh": "default", "name": format!("log-{service}"),
                "rules": [{"sources": [{"match": {"service": consumer}}],
                           "destinations": [{"match": {"service": service}}]}]}),
        ),
        ("traffic-routes", route(k, services, (90, 10))),
        (
            "proxytemplates",
            serde_json::json!({"type": "ProxyTemplate", "mesh": "default", "name": format!("pt-{service}"),
                "selectors": [{"match": {"service": service}}], "imports": ["default-proxy"],
                "resources": [{"name": "extra", "resource": format!(
                    "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: extra-{service}\nconnectTimeout: 1s\ntype: STATIC\n")}]}),
        ),
    ]
}

fn route(k: usize, services: usize, weights: (u32, u32)) -> serde_json::Value {
    let consumer = format!("svc-{}", (k + services - 1) % services);
    let service = format!("svc-{k}");
    serde_json::json!({"type": "TrafficRoute", "mesh": "default", "name": format!("route-{service}"),
        "sources": [{"match": {"service": consumer}}],
        "destinations": [{"match": {"service": service}}],
        "conf": [{"weight": weights.0, "destination": {"service": service}},
                 {"weight": weights.1, "destination": {"service": service, "version": "2"}}]})
}

/// Dataplane `i`, a new provider of `service`, consuming nothing itself.
fn new_provider(i: usize, service: usize, services: usize) -> serde_json::Value {
    let mut body = dataplane(i, services, Shape::OneOutbound);
    body["networking"]["inbound"][0]["tags"]["service"] = format!("svc-{service}").into();
    body["networking"]["outbound"] = serde_json::json!([]);
    body
}

/// PUTs `body` at `path` of `api`, then waits (`ARRIVAL_BOUND` at most)
/// until each of `watched` (slots of `seen`) got a response recorded in
/// `last`; answers who got it, and when.
fn timed_put(
    (api, path, body): (&str, &str, &serde_json::Value),
    seen: &Observed,
    last: &[AtomicU64],
    watched: &[usize],
) -> Arrivals {
    let before: Vec<u64> = watched
        .iter()
        .map(|c| last[*c].load(Ordering::Relaxed))
        .collect();
    let t0 = seen.now();
    change(api, path, body);
    wait_for(last, watched, &before, t0, ARRIVAL_BOUND)
}

/// Writes `new_provider(i, service, services)` through `api`; answers
/// which of `consumers` (slots of `seen`) got new endpoints, and when.
fn add_provider(
    api: &str,
    (i, service, services): (usize, usize, usize),
    seen: &Observed,
    consumers: &[usize],
) -> Arrivals {
    let path = format!("/meshes/default/dataplanes/dp-{i}");
    let body = new_provider(i, service, services);
    timed_put((api, &path, &body), seen, &seen.last_eds, consumers)
}

/// What a run loads besides the dataplanes.
#[derive(Clone, Copy, PartialEq)]
enum Extra {
    Nothing,
    /// One TrafficPermission per service, and mTLS on.
    Mtls,
    /// One TrafficLog, TrafficRoute and ProxyTemplate per service.
    Policies,
    /// mTLS on, and one `targetRef` policy per service, the kinds in turn:
    /// a MeshTrafficPermission, a MeshTCPRoute (90/10 by version), a
    /// MeshHTTPRoute, a MeshTLS.
    TargetRef,
}

/// Service `k`'s `targetRef` policy in the targetRef run (see [`Extra`]).
fn target_ref_policy(k: usize, services: usize) -> (&'static str, serde_json::Value) {
    let consumer = format!("svc-{}", (k + services - 1) % services);
    let service = format!("svc-{k}");
    let name = format!("p-{service}");
    let backend = |tags: serde_json::Value, weight: u32| serde_json::json!({"kind": "MeshServiceSubset", "name": service, "tags": tags, "weight": weight});
    match k % 4 {
        0 => (
            "meshtrafficpermissions",
            serde_json::json!({"type": "MeshTrafficPermission", "mesh": "default", "name": name,
                "spec": {"targetRef": {"kind": "MeshService", "name": service},
                         "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Deny"}},
                                  {"targetRef": {"kind": "MeshService", "name": consumer},
                                   "default": {"action": "Allow"}}]}}),
        ),
        1 => (
            "meshtcproutes",
            serde_json::json!({"type": "MeshTCPRoute", "mesh": "default", "name": name,
                "spec": {"targetRef": {"kind": "MeshService", "name": consumer},
                         "to": [{"targetRef": {"kind": "MeshService", "name": service},
                                 "rules": [{"default": {"backendRefs": [
                                     backend(serde_json::json!({}), 90),
                                     backend(serde_json::json!({"version": "2"}), 10)]}}]}]}}),
        ),
        2 => (
            "meshhttproutes",
            serde_json::json!({"type": "MeshHTTPRoute", "mesh": "default", "name": name,
                "spec": {"targetRef": {"kind": "MeshService", "name": consumer},
                         "to": [{"targetRef": {"kind": "MeshService", "name": service},
                                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v2"}}],
                                            "default": {"backendRefs": [
                                                backend(serde_json::json!({"version": "2"}), 1)]}}]}]}}),
        ),
        _ => (
            "meshtlses",
            serde_json::json!({"type": "MeshTLS", "mesh": "default", "name": name,
                "spec": {"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/service": service}},
                         "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Permissive"}}]}}),
        ),
    }
}

fn extra_documents(extra: Extra, services: usize) -> Vec<(&'static str, serde_json::Value)> {
    match extra {
        Extra::Nothing => Vec::new(),
        Extra::Mtls => (0..services)
            .map(|k| ("traffic-permissions", permission(k, services)))
            .collect(),
        Extra::Policies => (0..services)
            .flat_map(|k| policies_of(k, services))
            .collect(),
        Extra::TargetRef => (0..services)
            .map(|k| target_ref_policy(k, services))
            .collect(),
    }
}

impl Extra {
    fn mtls(self) -> bool {
        matches!(self, Extra::Mtls | Extra::TargetRef)
    }
}

/// The generator alone, in this process: every proxy's configuration once,
/// sharing one outbound memo as the reconciler does (with mTLS: one
/// certificate shared by all, as the CA's cost is apart).
fn generator_floor(n: usize, services: usize, extra: Extra, shape: Shape) -> Duration {
    let mtls = extra.mtls();
    let mut index = ResourceIndex::default();
    let documents = (0..n)
        .map(|i| dataplane(i, services, shape))
        .chain(extra_documents(extra, services).into_iter().map(|(_, d)| d));
    for document in documents {
        let r = Resource::from_json(document, Identity::FromDocument).expect("valid");
        index.apply(IndexEvent::Apply(r));
    }
    let (ca, _) = MeshCa::generate("default").expect("ca");
    let cert = ca
        .issue(&["svc-0"], &Default::default(), Duration::from_secs(3600))
        .expect("cert");
    let identity = tls::identity_secret(&cert.cert_pem, &cert.key_pem);
    let mesh_ca = tls::validation_secret(tls::MESH_CA_SECRET, &ca.cert_pem);
    let tls = mtls.then_some(ProxyTls {
        phase: MtlsPhase::Strict,
        identity: &identity,
        mesh_ca: &mesh_ca,
        peer_cas: &[],
    });
    let mesh = index.mesh("default").expect("mesh");
    let mut outbounds = generator::Outbounds::default();
    let started = Instant::now();
    for i in 0..n {
        let dp = index
            .dataplane(&ProxyId::new("default", &format!("dp-{i}")))
            .expect("dp");
        std::hint::black_box(generator::generate_sharing(dp, mesh, tls, &mut outbounds));
    }
    started.elapsed()
}

/// TLS handshakes kuma-cp's xDS port completes per second: `count`
/// connections, 64 at a time, each verifying the certificate and closing.
fn handshakes_per_second(rt: &tokio::runtime::Runtime) -> f64 {
    let cp = common::KumaCp::start(&[("KUMA_LOGGING_LEVEL", support::QUIET)]);
    let pem = std::fs::read(cp.ca_file.as_ref().expect("a generated CA")).expect("the CA");
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.expect("PEM")).expect("a root");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let address = cp.xds.trim_start_matches("https://").to_string();
    let count = 4_000;
    let started = Instant::now();
    rt.block_on(async {
        use futures::StreamExt;
        futures::stream::iter(0..count)
            .for_each_concurrent(64, |_| {
                let (connector, address) = (connector.clone(), address.clone());
                async move {
                    let tcp = tokio::net::TcpStream::connect(&address)
                        .await
                        .expect("connect");
                    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
                    connector.connect(name, tcp).await.expect("handshake");
                }
            })
            .await;
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// Workload certificates a mesh CA signs per second, on one core.
fn certificates_per_second() -> f64 {
    let (ca, _) = MeshCa::generate("bench").expect("ca");
    let tags = [("version".to_string(), "1".to_string())].into();
    let started = Instant::now();
    let count = 2_000;
    for i in 0..count {
        let service = format!("svc-{i}");
        std::hint::black_box(
            ca.issue(&[&service], &tags, Duration::from_secs(86_400))
                .expect("cert"),
        );
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// A timed change: PUT with a bound, so that a control plane that does not
/// answer (stopped, overloaded) makes the change's rows MISSED, with the
/// count of what never arrived, rather than ending the benchmark.
fn change(api: &str, path: &str, body: &serde_json::Value) {
    let sent = reqwest::blocking::Client::new()
        .put(format!("{api}{path}"))
        .timeout(ARRIVAL_BOUND)
        .json(body)
        .send();
    match sent {
        Ok(answer) if answer.status().is_success() => {}
        Ok(answer) => eprintln!("PUT {path}: {}", answer.status()),
        Err(e) => eprintln!("PUT {path}: no answer ({e}); its arrivals are counted as they come"),
    }
}

fn put(api: &str, path: &str, body: &serde_json::Value) {
    let answer = common::http("PUT", &format!("{api}{path}"), Some(&body.to_string()));
    assert!(
        answer.status == 200 || answer.status == 201,
        "{path}: {}",
        answer.body
    );
}

/// What one run measured, for the goals.
struct Figures {
    configured: usize,
    all_configured: Duration,
    /// A dataplane added: its consumers' arrivals over every round.
    added: Arrivals,
    kib_per_proxy: f64,
    /// kuma-cp's CPU seconds to configure all, and the generator's time
    /// alone (the floor).
    cpu_connect: f64,
    floor: Duration,
    /// Runs without policies only: mTLS switched on, until every proxy
    /// has its new listeners.
    mtls_switch: Option<Arrivals>,
    /// What kuma-cp ran over the idle window.
    idle_cpu: Option<Idle>,
    transport: Transport,
    per_connection: usize,
}

/// A window in which nothing changed.
struct Idle {
    ran: Ran,
    window: Duration,
    /// Streams that ended meanwhile: an idle connection is to stay open.
    streams_ended: usize,
}

impl Figures {
    /// All configured, against the generator alone.
    fn whole_to_floor(&self) -> f64 {
        self.all_configured.as_secs_f64() / self.floor.as_secs_f64()
    }
}

/// `KUMA_BENCH_HEAP_PROFILE`: where heaptrack writes the profile of
/// kuma-cp (`make heap-profile`); the first run then stops at rest.
fn heap_profile() -> Option<String> {
    std::env::var("KUMA_BENCH_HEAP_PROFILE").ok()
}

/// kuma-cp's command, run by heaptrack writing to `out`.
fn under_heaptrack(out: &str, env: &[(&str, &str)]) -> std::process::Command {
    common::kuma_cp_under("heaptrack", &["-o".to_string(), out.to_string()], env)
}

/// One run; `idle` also measures the CPU of a quiet control plane.
/// The most proxies the bench connects one connection each: a process
/// here may hold 20,000 descriptors, and the bench and kuma-cp each need
/// one per connection and a few dozen of their own. Larger runs
/// multiplex, and are labelled so; 100,000 with one connection each is
/// put on paper from the 10,000 and 19,000 runs ([`on_paper`]).
const AS_ENVOY_UP_TO: usize = 19_000;

#[allow(clippy::too_many_arguments)] // one run's settings, each a column
fn bench(
    n: usize,
    extra: Extra,
    shape: Shape,
    transport: Transport,
    per_connection: usize,
    idle: bool,
    rt: &tokio::runtime::Runtime,
) -> Figures {
    let mtls = extra.mtls();
    let services = n / 10;
    // The simulated proxies present no dataplane tokens.
    let plain = if transport == Transport::Plain {
        "true"
    } else {
        "false"
    };
    let env = [
        ("KUMA_LOGGING_LEVEL", support::QUIET),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
        ("KUMA_DP_SERVER_INSECURE_PLAINTEXT", plain),
    ];
    let mut cp = match heap_profile() {
        Some(out) => common::KumaCp::try_start_command(under_heaptrack(&out, &env))
            .unwrap_or_else(|e| panic!("kuma-cp under heaptrack did not start: {e}")),
        None => common::KumaCp::start(&env),
    };
    let pid = cp.child.id();
    let api = cp.api.clone();
    if mtls {
        put(
            &api,
            "/meshes/default",
            &serde_json::json!({"mtls": {"enabled": true, "ca": {"builtin": {}}}}),
        );
    }
    if extra == Extra::Policies {
        put(
            &api,
            "/meshes/default",
            &serde_json::json!({"logging": {"defaultBackend": "file",
                "backends": [{"name": "file", "file": {"path": "/tmp/kuma-bench-access.log"}}]}}),
        );
    }
    let documents = std::sync::Arc::new(extra_documents(extra, services));
    let base = api.clone();
    let count = documents.len();
    rt.block_on(load(count, move |c, i| {
        let (collection, body) = &documents[i];
        c.put(format!(
            "{base}/meshes/default/{collection}/{}",
            body["name"].as_str().unwrap_or_default()
        ))
        .json(body)
    }));
    let base = api.clone();
    rt.block_on(load(n, move |c, i| {
        c.put(format!("{base}/meshes/default/dataplanes/dp-{i}"))
            .json(&dataplane(i, services, shape))
    }));
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = proc_status_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);

    let seen = Observed::new(n);
    let needed = if mtls { 4 } else { 3 };
    let node_ids = (0..n).map(|i| format!("default.dp-{i}")).collect();
    let connect_started = Instant::now();
    rt.block_on(connect_all(
        &cp.grpc_endpoint(&cp.xds),
        node_ids,
        per_connection,
        needed,
        seen.clone(),
    ));
    let configured = wait_configured(&seen, n);
    let all_configured = connect_started.elapsed();
    // At rest: kuma-cp hands back what the burst freed once it has been
    // quiet for a second (`runtime::memory`).
    std::thread::sleep(Duration::from_secs(3));
    let rss_connected = proc_status_kib(pid, "VmRSS:");
    if let Some(out) = heap_profile() {
        // Killed at rest, so that what heaptrack reports as leaked is
        // exactly what was live with every proxy configured.
        let killed = std::process::Command::new("pkill")
            .args(["-9", "-x", "kuma-cp", "-P", &pid.to_string()])
            .status();
        assert!(killed.is_ok_and(|s| s.success()), "kuma-cp under heaptrack");
        let _ = cp.child.wait();
        println!("heap profile of kuma-cp with {configured} of {n} proxies configured: {out}.zst");
        std::process::exit(0);
    }
    let cpu_connect = cpu_seconds(pid) - cpu_before;
    let bytes_per_proxy = seen.bytes.load(Ordering::Relaxed) as f64 / n as f64;

    // Change 1: a dataplane added; its service's consumers must get it.
    let mut added = Arrivals::default();
    for round in 0..CHANGE_ROUNDS {
        let service = (round * 7) % services;
        let consumers: Vec<usize> = (0..n)
            .filter(|i| shape.consumes(*i, service, services))
            .collect();
        let provider = (n + round, service, services);
        added.extend(add_provider(&api, provider, &seen, &consumers));
    }

    // Change 2: a policy changed. Only the proxies it selects are
    // regenerated. A permission selects the providers of the service it
    // names: with mTLS they get a new listener (RBAC), without mTLS their
    // configuration is unchanged and nothing is pushed. A route selects the
    // consumers it splits: they get a new listener.
    let generated_before = common::metric(&api, "xds_generation_seconds_count");
    let pushed_before = seen.bytes.load(Ordering::Relaxed);
    let (selected, path, changed): (Vec<usize>, _, _) = if extra == Extra::Policies {
        (
            (0..n).filter(|i| (i + 1) % services == 0).collect(),
            "/meshes/default/traffic-routes/route-svc-0",
            route(0, services, (50, 50)),
        )
    } else if extra == Extra::TargetRef {
        // Service 0's MeshTrafficPermission lets its consumers' consumer
        // in instead: its providers get a new RBAC filter.
        let (_, mut changed) = target_ref_policy(0, services);
        changed["spec"]["from"][1]["targetRef"]["name"] = "svc-1".into();
        (
            (0..n).filter(|i| i % services == 0).collect(),
            "/meshes/default/meshtrafficpermissions/p-svc-0",
            changed,
        )
    } else {
        let mut changed = permission(0, services);
        changed["rules"][0]["sources"][0]["match"]["service"] = "svc-1".into();
        (
            (0..n).filter(|i| i % services == 0).collect(),
            "/meshes/default/traffic-permissions/to-svc-0",
            changed,
        )
    };
    let before: Vec<u64> = selected
        .iter()
        .map(|c| seen.last_lds[*c].load(Ordering::Relaxed))
        .collect();
    let t0 = seen.now();
    change(&api, path, &changed);
    let policy = if extra == Extra::Nothing {
        Arrivals::default()
    } else {
        wait_for(&seen.last_lds, &selected, &before, t0, ARRIVAL_BOUND)
    };
    std::thread::sleep(Duration::from_millis(300));
    let rebuilt = common::metric(&api, "xds_generation_seconds_count") - generated_before;
    let policy_pushed = (seen.bytes.load(Ordering::Relaxed) - pushed_before) as f64 / 1024.0;
    let policy_ack = if policy.expected() == 0 {
        "nothing to push".to_string()
    } else {
        policy.describe(&[50, 99])
    };

    let peak = proc_status_kib(pid, "VmHWM:");
    let per_dp = (rss_connected.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;

    // Idle, then a mesh-wide change: mTLS on. Every proxy gets new
    // listeners (TLS, RBAC) and its certificate.
    let (idle_cpu, mtls_switch) = if extra == Extra::Nothing && shape == Shape::OneOutbound {
        let idle_cpu = idle.then(|| {
            let ended_before = seen.ended.load(Ordering::Relaxed);
            let (ran, window) = support::idle(pid);
            Idle {
                ran,
                window,
                streams_ended: seen.ended.load(Ordering::Relaxed) - ended_before,
            }
        });
        let all: Vec<usize> = (0..n).collect();
        let mtls = serde_json::json!({"mtls": {"enabled": true, "ca": {"builtin": {}}}});
        // The switch goes in steps (`xds::mtls_rollout`); listeners change
        // at the first (inbounds take both) and at the last (inbounds take
        // mTLS only), which waits for every proxy to have applied the one
        // before: the slowest proxy's second listener change is the end.
        let lds_now = || -> Vec<u64> {
            all.iter()
                .map(|c| seen.last_lds[*c].load(Ordering::Relaxed))
                .collect()
        };
        let before = lds_now();
        let t0 = seen.now();
        change(&api, "/meshes/default", &mtls);
        wait_for(&seen.last_lds, &all, &before, t0, ARRIVAL_BOUND);
        let switched = wait_for(&seen.last_lds, &all, &lds_now(), t0, ARRIVAL_BOUND);
        if switched.missing() > 0 {
            // Why, in kuma-cp's words: a step that waited for a proxy.
            for line in cp.log().lines().filter(|l| l.contains("mTLS switch")) {
                eprintln!("kuma-cp: {line}");
            }
        }
        (idle_cpu, Some(switched))
    } else {
        (None, None)
    };
    let added_cell = added.describe(&[50, 99]);
    let figures = Figures {
        configured,
        all_configured,
        added,
        kib_per_proxy: per_dp / 1024.0,
        cpu_connect,
        floor: generator_floor(n, services, extra, shape),
        mtls_switch,
        idle_cpu,
        transport,
        per_connection,
    };
    let mut label = shape_label(extra, shape).to_string();
    if transport == Transport::Plain {
        label.push_str(", plain text");
    }
    if per_connection > AS_ENVOY {
        label.push_str(&format!(", {per_connection} per connection"));
    }
    println!(
        "| {n:>6} | {label:>13} | {configured:>6} | {:>6.2} s | {added_cell} | {policy_ack:>16} | {rebuilt:>4.0} ({policy_pushed:.1} KiB pushed) | {:>6.1} MiB | {:>5.1} KiB | {:>5.1} s | {:>6.0} B | {:>6.0} ms | {:>3.0}x |",
        all_configured.as_secs_f64(),
        peak as f64 / 1024.0,
        figures.kib_per_proxy,
        cpu_connect,
        bytes_per_proxy,
        ms(figures.floor),
        figures.whole_to_floor(),
    );
    figures
}

/// One goal of the performance issue against what a run measured.
fn goal(what: &str, measured: String, met: bool) {
    let verdict = if met { "met" } else { "MISSED" };
    println!("| {what} | {measured} | {verdict} |");
}

/// The goals a run of `n` proxies of `shape` answers.
fn goals_of(n: usize, extra: Extra, shape: Shape, f: &Figures) {
    let all = f.configured == n;
    let configured = format!(
        "{} of {n} in {:.1} s",
        f.configured,
        f.all_configured.as_secs_f64()
    );
    let memory = format!("{:.1} KiB", f.kib_per_proxy);
    let p99 = format!("p99 {}", f.added.describe(&[99]));
    match shape {
        // The goals of the realistic shape, one connection per proxy: a
        // multiplexed row is there for comparison only.
        Shape::OneOutbound if f.per_connection > AS_ENVOY => {}
        Shape::OneOutbound => {
            let (kib, label) = match (f.transport, extra) {
                (Transport::Plain, _) => (12.0, " (plain text)"),
                (Transport::Tls, Extra::Mtls) => (16.0, " (TLS, mTLS)"),
                (Transport::Tls, _) => (16.0, " (TLS)"),
            };
            if !matches!(extra, Extra::Policies | Extra::TargetRef) {
                goal(
                    &format!("{n} proxies{label}: all configured in under 3 s"),
                    configured,
                    all && f.all_configured < Duration::from_secs(3),
                );
                goal(
                    &format!("{n} proxies{label}: change to ACK p99 under 50 ms"),
                    p99,
                    f.added.met(99, Duration::from_millis(50)),
                );
                goal(
                    &format!("{n} proxies{label}: at most {kib} KiB per connected proxy"),
                    memory,
                    f.kib_per_proxy <= kib,
                );
            }
        }
        Shape::EveryService => {
            let services = n / 10;
            goal(
                &format!("{n} proxies x {services} services: all configured in under 60 s"),
                configured,
                all && f.all_configured < Duration::from_secs(60),
            );
            goal(
                &format!("{n} proxies x {services} services: under 64 KiB per proxy"),
                memory,
                f.kib_per_proxy < 64.0,
            );
            goal(
                &format!(
                    "{n} proxies x {services} services: an endpoint change ACKed by every consumer, p99 under 2 s"
                ),
                p99,
                f.added.met(99, Duration::from_secs(2)),
            );
        }
    }
    if let Some(switched) = &f.mtls_switch {
        goal(
            &format!(
                "{n} proxies: mTLS switched on, every proxy on its strict config (the last step) in under 5 s"
            ),
            format!("slowest {}", switched.describe(&[100])),
            switched.met(100, Duration::from_secs(5)),
        );
    }
    if let Some(idle) = &f.idle_cpu {
        goal(
            &format!(
                "{n} proxies connected, nothing changing: under 0.05 CPU s over 60 s, every stream kept"
            ),
            format!(
                "{:.4} CPU s over {} s; kuma-cp's threads ran {} times; {} streams ended",
                idle.ran.cpu_seconds,
                idle.window.as_secs(),
                idle.ran.times,
                idle.streams_ended
            ),
            idle.ran.cpu_seconds < 0.05 * idle.window.as_secs_f64() / 60.0
                && idle.streams_ended == 0,
        );
    }
    goal(
        &format!(
            "{n} proxies, {}: whole push within 2x of the generator alone",
            shape_label(extra, shape)
        ),
        format!(
            "{:.1}x: kuma-cp spent {:.2} CPU s, {:.0}x the generator's {:.0} ms; the rest is a gRPC exchange per proxy (README: where the time goes)",
            f.whole_to_floor(),
            f.cpu_connect,
            f.cpu_connect / f.floor.as_secs_f64(),
            ms(f.floor)
        ),
        f.whole_to_floor() <= 2.0,
    );
}

/// 100,000 proxies with one connection each, which one process here
/// cannot hold (20,000 descriptors): kuma-cp's memory put on paper from
/// the one-outbound TLS runs at 10,000 and 19,000, as what it holds at
/// 19,000 plus each proxy more at the cost of one between the two.
fn on_paper(runs: &[(usize, Extra, Shape, Figures)]) {
    let kib_at = |n: usize| {
        runs.iter()
            .find(|(size, extra, shape, f)| {
                *size == n
                    && *extra == Extra::Nothing
                    && *shape == Shape::OneOutbound
                    && f.transport == Transport::Tls
                    && f.per_connection == AS_ENVOY
            })
            .map(|(_, _, _, f)| f.kib_per_proxy * n as f64)
    };
    let (Some(at_10k), Some(at_19k)) = (kib_at(10_000), kib_at(19_000)) else {
        return;
    };
    let each = (at_19k - at_10k) / 9_000.0;
    let total = at_19k + each * 81_000.0;
    println!(
        "\n100,000 proxies, one connection each, TLS, ON PAPER (not run: one process here holds 20,000 descriptors): {each:.1} KiB for each proxy past 10,000 (between the 10,000 and 19,000 runs), so {:.1} KiB per proxy and {:.2} GiB of kuma-cp memory for them all; five control planes of 20,000, or one with its descriptor limit raised",
        total / 100_000.0,
        total / (1024.0 * 1024.0)
    );
}

fn shape_label(extra: Extra, shape: Shape) -> &'static str {
    match (shape, extra) {
        (Shape::EveryService, _) => "every service",
        (_, Extra::Nothing) => "one outbound",
        (_, Extra::Mtls) => "one outbound, mTLS",
        (_, Extra::Policies) => "one outbound, policies",
        (_, Extra::TargetRef) => "one outbound, mTLS, targetRef policies",
    }
}

fn sizes(var: &str, default: &[usize]) -> Vec<usize> {
    if std::env::var_os("KUMA_BENCH_STORM_ONLY").is_some() {
        return Vec::new();
    }
    std::env::var(var)
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

fn main() {
    let one_outbound = sizes("KUMA_BENCH_SIZES", &[1_000, 10_000, 19_000, 100_000]);
    let every_service = sizes("KUMA_BENCH_EVERY_SIZES", &[10_000]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "\nxDS: simulated delta-ADS proxies against a release kuma-cp (memory store), one mesh, N/10 services, as Envoy connects: one HTTP/2 connection per proxy up to 19,000 (then 100 per connection, labelled), TLS unless labelled plain text, and the node Envoy 1.40 sends in each first request. One outbound: each proxy reaches the next service. Every service: transparent proxies reaching every service of the mesh at its Service address. With mTLS: one TrafficPermission per service. With policies: one TrafficLog, TrafficRoute (90/10 by version) and ProxyTemplate (one raw cluster) per service. With targetRef policies: mTLS, and one policy per service, in turn a MeshTrafficPermission, MeshTCPRoute (90/10 by version), MeshHTTPRoute and MeshTLS. \"policy changed\" is a permission, or with policies a route's weights\n"
    );
    println!(
        "| N      | shape         | configured | all configured | dataplane added: p50 / p99 | policy changed: affected p50 / p99 | proxies rebuilt | peak RSS | RSS per DP | CPU (connect) | bytes per proxy | generator alone | whole/floor |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    // `KUMA_BENCH_EXTRAS=none,mtls,policies` (the default) picks the runs.
    let extras = std::env::var("KUMA_BENCH_EXTRAS")
        .unwrap_or_else(|_| "none,mtls,policies,targetref".into());
    let chosen = |name: &str| extras.split(',').any(|e| e.trim() == name);
    let extras = [
        ("none", Extra::Nothing),
        ("mtls", Extra::Mtls),
        ("policies", Extra::Policies),
        ("targetref", Extra::TargetRef),
    ]
    .into_iter()
    .filter(|(name, _)| chosen(name))
    .map(|(_, extra)| extra);
    for extra in extras {
        // The policy runs stop at 10,000 proxies (30,000 policies there,
        // or 1,000 targetRef ones): no goal is about them, and they would
        // double the bench's time.
        for &n in one_outbound
            .iter()
            .filter(|n| !matches!(extra, Extra::Policies | Extra::TargetRef) || **n <= 10_000)
        {
            // Idle CPU is a goal at 10,000 proxies, and is read at every
            // size from there.
            let per_connection = if n <= AS_ENVOY_UP_TO {
                AS_ENVOY
            } else {
                MULTIPLEXED
            };
            let one = |transport, per_connection, idle| {
                bench(
                    n,
                    extra,
                    Shape::OneOutbound,
                    transport,
                    per_connection,
                    idle,
                    &rt,
                )
            };
            let figures = one(Transport::Tls, per_connection, n >= 10_000);
            runs.push((n, extra, Shape::OneOutbound, figures));
            // What TLS costs, and what the multiplexed shape hid: the same
            // run in plain text, and with 100 proxies per connection.
            if extra == Extra::Nothing && n == 10_000 {
                let plain = one(Transport::Plain, per_connection, false);
                runs.push((n, extra, Shape::OneOutbound, plain));
                if per_connection == AS_ENVOY {
                    one(Transport::Tls, MULTIPLEXED, false);
                }
            }
        }
    }
    for &n in &every_service {
        let figures = bench(
            n,
            Extra::Nothing,
            Shape::EveryService,
            Transport::Tls,
            AS_ENVOY,
            false,
            &rt,
        );
        runs.push((n, Extra::Nothing, Shape::EveryService, figures));
    }
    on_paper(&runs);
    if !runs.is_empty() {
        println!("\nGoals (the performance issue), from the runs above\n");
        println!("| goal | measured | |");
        println!("|---|---|---|");
        for (n, extra, shape, figures) in &runs {
            goals_of(*n, *extra, *shape, figures);
        }
    }
    println!(
        "\nWorkload certificates issued per second (ECDSA P-256, one core): {:.0}",
        certificates_per_second()
    );
    println!(
        "TLS handshakes per second on kuma-cp's xDS port (ECDSA P-256 certificate, verified by the client): {:.0}",
        handshakes_per_second(&rt)
    );
    let two = std::env::var("KUMA_BENCH_TWO")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    if two > 0 {
        println!(
            "\nTwo kuma-cp on one PostgreSQL, {two} simulated proxies split between them; a dataplane written through the first, its consumers on the second ACK it ({CHANGE_ROUNDS} rounds)\n"
        );
        println!("| N | configured | ACKed on the other: p50 / p90 / p99 |");
        println!("|---|---|---|");
        two_control_planes(two, &rt);
    }
    let storm = std::env::var("KUMA_BENCH_STORM")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    if storm == 0 {
        return;
    }
    println!(
        "\nReconnect storm: {storm} simulated proxies configured by a kuma-cp on PostgreSQL; it is killed with -9, a new one starts on the same database, and all {storm} reconnect at once\n"
    );
    println!("| N | new kuma-cp ready | all configured again | peak RSS | CPU (reconnect) |");
    println!("|---|---|---|---|---|");
    restart_storm(storm, &rt);
}

/// Waits until `seen` counts `n` fully configured proxies (2 minutes at
/// most); answers how many.
fn wait_configured(seen: &Observed, n: usize) -> usize {
    let started = Instant::now();
    while seen.complete.load(Ordering::Relaxed) < n && started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let configured = seen.complete.load(Ordering::Relaxed);
    let ended = seen.ended.load(Ordering::Relaxed);
    if configured < n || ended > 0 {
        // A stream that failed before its proxy was configured was opened
        // again (as Envoy does): a run that configured everyone still says
        // how many it took.
        let first = seen.first_end.lock().ok().and_then(|f| f.clone());
        eprintln!(
            "{configured} of {n} configured; {ended} streams ended, the first: {}",
            first.as_deref().unwrap_or("none ended (they are waiting)")
        );
    }
    configured
}

/// The reconnect storm after a restart: every proxy of a killed control
/// plane reconnects at once to its successor on the same database.
/// The simulated proxies present no dataplane tokens.
const POSTGRES_ENV: [(&str, &str); 2] = [
    ("KUMA_LOGGING_LEVEL", support::QUIET),
    ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
];

/// A kuma-cp on a fresh database, with `n` dataplanes written through it
/// and in its index.
fn loaded_on_postgres(
    name: &str,
    n: usize,
    rt: &tokio::runtime::Runtime,
) -> (common::PgDatabase, common::KumaCp) {
    let services = n / 10;
    let db = common::migrated_database(name);
    let first = db.kuma_cp(&POSTGRES_ENV);
    // The leader creates the default mesh a moment after the start.
    let mesh = format!("{}/meshes/default", first.api);
    assert!(
        common::eventually(Duration::from_secs(30), || common::http("GET", &mesh, None)
            .status
            == 200),
        "no default mesh"
    );
    let base = first.api.clone();
    rt.block_on(load(n, move |c, i| {
        c.put(format!("{base}/meshes/default/dataplanes/dp-{i}"))
            .json(&dataplane(i, services, Shape::OneOutbound))
    }));
    wait_indexed(&first, n);
    (db, first)
}

/// Waits until the last of `n` dataplanes is in `cp`'s index: writes reach
/// it through the database's change feed, and proxies connect once it is
/// there (the explain view reads the index), as in a real rollout.
fn wait_indexed(cp: &common::KumaCp, n: usize) {
    let last = format!("{}/meshes/default/dataplanes/dp-{}/policies", cp.api, n - 1);
    assert!(
        common::eventually(Duration::from_secs(120), || common::http(
            "GET", &last, None
        )
        .status
            == 200),
        "the dataplanes did not reach the index"
    );
}

/// Two kuma-cp on one database, half the proxies on each: a change written
/// through one reaches the other's proxies through the change feed.
fn two_control_planes(n: usize, rt: &tokio::runtime::Runtime) {
    let services = n / 10;
    let (db, first) = loaded_on_postgres("bench_two", n, rt);
    let second = db.kuma_cp(&POSTGRES_ENV);
    wait_indexed(&second, n);
    let half = n / 2;
    let ids = |range: std::ops::Range<usize>| range.map(|i| format!("default.dp-{i}")).collect();
    let (on_first, on_second) = (Observed::new(half), Observed::new(n - half));
    rt.block_on(connect_all(
        &first.grpc_endpoint(&first.xds),
        ids(0..half),
        AS_ENVOY,
        3,
        on_first.clone(),
    ));
    rt.block_on(connect_all(
        &second.grpc_endpoint(&second.xds),
        ids(half..n),
        AS_ENVOY,
        3,
        on_second.clone(),
    ));
    let configured = wait_configured(&on_first, half) + wait_configured(&on_second, n - half);
    let mut acked = Arrivals::default();
    for round in 0..CHANGE_ROUNDS {
        let service = (round * 7) % services;
        // The second's proxies consuming `service`, by their slot there.
        let consumers: Vec<usize> = (half..n)
            .filter(|i| (i + 1) % services == service)
            .map(|i| i - half)
            .collect();
        let provider = (n + round, service, services);
        acked.extend(add_provider(&first.api, provider, &on_second, &consumers));
    }
    println!(
        "| {n} | {configured} of {n} | {} |",
        acked.describe(&[50, 90, 99])
    );
    goal(
        &format!(
            "two kuma-cp on one Postgres, {n} proxies split: a change through one ACKed by the other's proxies, p99 under 100 ms"
        ),
        format!("p99 {}", acked.describe(&[99])),
        acked.met(99, Duration::from_millis(100)),
    );
}

fn restart_storm(n: usize, rt: &tokio::runtime::Runtime) {
    let (db, mut first) = loaded_on_postgres("bench_storm", n, rt);
    let node_ids: Vec<String> = (0..n).map(|i| format!("default.dp-{i}")).collect();
    let seen = Observed::new(n);
    rt.block_on(connect_all(
        &first.grpc_endpoint(&first.xds),
        node_ids.clone(),
        AS_ENVOY,
        3,
        seen.clone(),
    ));
    assert_eq!(
        wait_configured(&seen, n),
        n,
        "the first control plane configured them all"
    );
    first.child.kill().expect("SIGKILL");
    let _ = first.child.wait();

    let started = Instant::now();
    let second = db.kuma_cp(&POSTGRES_ENV);
    let ready = started.elapsed();
    let pid = second.child.id();
    let cpu_before = cpu_seconds(pid);
    let seen = Observed::new(n);
    let storm = Instant::now();
    rt.block_on(connect_all(
        &second.grpc_endpoint(&second.xds),
        node_ids,
        AS_ENVOY,
        3,
        seen.clone(),
    ));
    let configured = wait_configured(&seen, n);
    let again = storm.elapsed();
    println!(
        "| {n} | {:.2} s | {configured} of {n} in {:.2} s | {:.1} MiB | {:.1} s |",
        ready.as_secs_f64(),
        again.as_secs_f64(),
        proc_status_kib(pid, "VmHWM:") as f64 / 1024.0,
        cpu_seconds(pid) - cpu_before,
    );
}
