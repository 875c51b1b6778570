//! `make bench`: the xDS side at scale. A load generator speaking real
//! delta ADS over gRPC simulates N dataplanes (one mesh, N/10 services,
//! each proxy with one outbound), ACKing everything it gets, against a
//! release `kuma-cp`. Prints a table; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;
#[allow(dead_code)] // the HTTP latency figures are api_bench's
mod support;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use kuma::resources::{Identity, Resource, Spec};
use kuma::xds::generator;
use kuma::xds::index::{ProxyId, ResourceIndex};
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{cpu_seconds, load, proc_status_kib};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const TYPES: [&str; 3] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
];
/// Simulated proxies per HTTP/2 connection.
const STREAMS_PER_CONNECTION: usize = 100;
const CHANGE_ROUNDS: usize = 20;

fn dataplane(i: usize, services: usize) -> serde_json::Value {
    serde_json::json!({
        "type": "Dataplane", "mesh": "default", "name": format!("dp-{i}"),
        "networking": {
            "inbound": [{"interface": format!("10.{}.{}.{}:10000:8080", i / 62_500, (i / 250) % 250, i % 250 + 1),
                         "tags": {"service": format!("svc-{}", i % services)}}],
            "outbound": [{"interface": ":20000", "service": format!("svc-{}", (i + 1) % services)}]
        }
    })
}

/// What the simulated proxies saw, as nanoseconds since the bench started.
struct Observed {
    started: Instant,
    /// When each proxy had CDS, EDS and LDS at least once.
    full_config: Vec<AtomicU64>,
    /// When each proxy last received (and ACKed) endpoints.
    last_eds: Vec<AtomicU64>,
    bytes: AtomicU64,
    complete: AtomicUsize,
}

impl Observed {
    fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

async fn simulate(channel: Channel, i: usize, seen: Arc<Observed>) {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    for (n, t) in TYPES.iter().enumerate() {
        let node = (n == 0).then(|| Node {
            id: format!("default.dp-{i}"),
            ..Default::default()
        });
        let _ = tx
            .send(DeltaDiscoveryRequest {
                node,
                type_url: t.to_string(),
                ..Default::default()
            })
            .await;
    }
    let Ok(response) = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
    else {
        return;
    };
    let mut stream = response.into_inner();
    let mut got = [false; 3];
    while let Ok(Some(r)) = stream.message().await {
        seen.bytes
            .fetch_add(r.encoded_len() as u64, Ordering::Relaxed);
        if let Some(t) = TYPES.iter().position(|t| *t == r.type_url) {
            if t == 1 {
                seen.last_eds[i].store(seen.now(), Ordering::Relaxed);
            }
            if !got.iter().all(|g| *g) {
                got[t] = true;
                if got.iter().all(|g| *g) {
                    seen.full_config[i].store(seen.now(), Ordering::Relaxed);
                    seen.complete.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let _ = tx
            .send(DeltaDiscoveryRequest {
                type_url: r.type_url.clone(),
                response_nonce: r.nonce.clone(),
                ..Default::default()
            })
            .await;
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The generator alone, in this process: every proxy's configuration once.
fn generator_floor(n: usize, services: usize) -> Duration {
    let mut index = ResourceIndex::default();
    for i in 0..n {
        let r = Resource::from_json(dataplane(i, services), Identity::FromDocument).expect("valid");
        if let Spec::Dataplane(d) = r.spec {
            index.upsert_dataplane("default", &r.key.name, d);
        }
    }
    let mesh = index.mesh("default").expect("mesh");
    let started = Instant::now();
    for i in 0..n {
        let dp = index
            .dataplane(&ProxyId::new("default", &format!("dp-{i}")))
            .expect("dp");
        std::hint::black_box(generator::generate(dp, mesh, None));
    }
    started.elapsed()
}

fn metric(api: &str, name: &str) -> f64 {
    let text = common::http("GET", &format!("{api}/metrics"), None).body;
    text.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

fn bench(n: usize, rt: &tokio::runtime::Runtime) {
    let services = n / 10;
    // The simulated proxies present no dataplane tokens.
    let cp = common::KumaCp::start(&[
        ("KUMA_LOGGING_LEVEL", "warn,kuma::cp::listen=info"),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    let pid = cp.child.id();
    let api = cp.api.clone();
    let base = api.clone();
    rt.block_on(load(n, move |c, i| {
        c.put(format!("{base}/meshes/default/dataplanes/dp-{i}"))
            .json(&dataplane(i, services))
    }));
    std::thread::sleep(Duration::from_millis(200));
    let rss_before = proc_status_kib(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);

    let seen = Arc::new(Observed {
        started: Instant::now(),
        full_config: (0..n).map(|_| AtomicU64::new(0)).collect(),
        last_eds: (0..n).map(|_| AtomicU64::new(0)).collect(),
        bytes: AtomicU64::new(0),
        complete: AtomicUsize::new(0),
    });
    let xds = cp.xds.clone();
    let connect_started = Instant::now();
    rt.block_on(async {
        for chunk in 0..n.div_ceil(STREAMS_PER_CONNECTION) {
            let channel = Channel::from_shared(xds.clone())
                .expect("url")
                .connect()
                .await
                .expect("connect");
            for i in chunk * STREAMS_PER_CONNECTION..((chunk + 1) * STREAMS_PER_CONNECTION).min(n) {
                tokio::spawn(simulate(channel.clone(), i, seen.clone()));
            }
        }
    });
    while seen.complete.load(Ordering::Relaxed) < n
        && connect_started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let all_configured = connect_started.elapsed();
    let configured = seen.complete.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let rss_connected = proc_status_kib(pid, "VmRSS:");
    let cpu_connect = cpu_seconds(pid) - cpu_before;
    let bytes_per_proxy = seen.bytes.load(Ordering::Relaxed) as f64 / n as f64;

    // Change 1: a dataplane added; its service's consumers must get it.
    let mut latencies = Vec::new();
    for round in 0..CHANGE_ROUNDS {
        let service = (round * 7) % services;
        let consumers: Vec<usize> = (0..n).filter(|i| (i + 1) % services == service).collect();
        let before: Vec<u64> = consumers
            .iter()
            .map(|c| seen.last_eds[*c].load(Ordering::Relaxed))
            .collect();
        let new = n + round;
        let mut body = dataplane(new, services);
        body["networking"]["inbound"][0]["tags"]["service"] = format!("svc-{service}").into();
        body["networking"]["outbound"] = serde_json::json!([]);
        let t0 = seen.now();
        let answer = common::http(
            "PUT",
            &format!("{api}/meshes/default/dataplanes/dp-{new}"),
            Some(&body.to_string()),
        );
        assert_eq!(answer.status, 201);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let done = consumers
                .iter()
                .zip(&before)
                .all(|(c, b)| seen.last_eds[*c].load(Ordering::Relaxed) > *b);
            if done || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        for c in &consumers {
            let at = seen.last_eds[*c].load(Ordering::Relaxed);
            latencies.push(Duration::from_nanos(at.saturating_sub(t0)));
        }
    }
    latencies.sort();

    // Change 2: a policy. Without mTLS it changes no proxy's configuration:
    // every proxy of the mesh is regenerated and nothing is pushed.
    let generated_before = metric(&api, "xds_generation_seconds_count");
    let pushed_before = seen.bytes.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let tp = r#"{"type":"TrafficPermission","mesh":"default","name":"all","rules":[{"sources":[{"match":{"service":"*"}}],"destinations":[{"match":{"service":"*"}}]}]}"#;
    assert_eq!(
        common::http(
            "PUT",
            &format!("{api}/meshes/default/traffic-permissions/all"),
            Some(tp)
        )
        .status,
        201
    );
    while metric(&api, "xds_generation_seconds_count") < generated_before + n as f64
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let policy_rebuild = t0.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    let policy_pushed = seen.bytes.load(Ordering::Relaxed) - pushed_before;

    let peak = proc_status_kib(pid, "VmHWM:");
    let per_dp = (rss_connected.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
    let floor = generator_floor(n, services);
    println!(
        "| {n:>6} | {configured:>6} | {:>8.2} s | {:>7.1} | {:>7.1} | {:>8.0} ms ({policy_pushed} B) | {:>6.1} MiB | {:>6.1} KiB | {:>5.1} s | {:>7.0} B | {:>7.0} ms | {:>5.0}x |",
        all_configured.as_secs_f64(),
        ms(percentile(&latencies, 50)),
        ms(percentile(&latencies, 99)),
        ms(policy_rebuild),
        peak as f64 / 1024.0,
        per_dp / 1024.0,
        cpu_connect,
        bytes_per_proxy,
        ms(floor),
        all_configured.as_secs_f64() / floor.as_secs_f64(),
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KUMA_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 5_000, 10_000]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "\nxDS: simulated delta-ADS proxies against a release kuma-cp (memory store), one mesh, N/10 services\n"
    );
    println!(
        "| N      | configured | all configured | add p50 ms | add p99 ms | policy change: rebuild (bytes pushed) | peak RSS | RSS per DP | CPU (connect) | bytes per proxy | generator alone | whole/floor |"
    );
    println!(
        "|--------|------------|----------------|------------|------------|----------------------------------------|----------|------------|---------------|-----------------|-----------------|-------------|"
    );
    for n in sizes {
        bench(n, &rt);
    }
}
