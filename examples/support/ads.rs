//! A load generator speaking real delta ADS over gRPC: each simulated
//! proxy subscribes to every type, ACKs everything and records when it
//! got what, so benchmarks can time pushes to the proxies they affect.

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub const TYPES: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
];
pub const EDS: usize = 1;
pub const LDS: usize = 2;
/// Simulated proxies per HTTP/2 connection.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// What the simulated proxies saw, as nanoseconds since the bench started.
pub struct Observed {
    pub started: Instant,
    /// When each proxy had CDS, EDS and LDS at least once.
    pub full_config: Vec<AtomicU64>,
    /// When each proxy last received (and ACKed) endpoints, and listeners.
    pub last_eds: Vec<AtomicU64>,
    pub last_lds: Vec<AtomicU64>,
    pub bytes: AtomicU64,
    pub complete: AtomicUsize,
}

impl Observed {
    pub fn new(n: usize) -> Arc<Observed> {
        Arc::new(Observed {
            started: Instant::now(),
            full_config: (0..n).map(|_| AtomicU64::new(0)).collect(),
            last_eds: (0..n).map(|_| AtomicU64::new(0)).collect(),
            last_lds: (0..n).map(|_| AtomicU64::new(0)).collect(),
            bytes: AtomicU64::new(0),
            complete: AtomicUsize::new(0),
        })
    }

    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }
}

/// One simulated proxy. Its configuration is full once it has clusters,
/// endpoints and listeners (and, with mTLS, secrets).
pub async fn simulate(
    channel: Channel,
    node_id: String,
    i: usize,
    needed: usize,
    seen: Arc<Observed>,
) {
    let mut client = AggregatedDiscoveryServiceClient::new(channel);
    let (tx, rx) = mpsc::channel(8);
    for (n, t) in TYPES.iter().enumerate() {
        let node = (n == 0).then(|| Node {
            id: node_id.clone(),
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
    let mut got = [false; 4];
    let full = |got: &[bool; 4]| got[..needed].iter().all(|g| *g);
    while let Ok(Some(r)) = stream.message().await {
        seen.bytes
            .fetch_add(r.encoded_len() as u64, Ordering::Relaxed);
        if let Some(t) = TYPES.iter().position(|t| *t == r.type_url) {
            match t {
                EDS => seen.last_eds[i].store(seen.now(), Ordering::Relaxed),
                LDS => seen.last_lds[i].store(seen.now(), Ordering::Relaxed),
                _ => {}
            }
            if !full(&got) {
                got[t] = true;
                if full(&got) {
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

/// Connects one simulated proxy per node id, `STREAMS_PER_CONNECTION` to
/// an HTTP/2 connection; proxy `i` records into slot `i` of `seen`.
pub async fn connect_all(xds: &str, node_ids: Vec<String>, needed: usize, seen: Arc<Observed>) {
    for (chunk, ids) in node_ids.chunks(STREAMS_PER_CONNECTION).enumerate() {
        let channel = Channel::from_shared(xds.to_string())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        for (k, id) in ids.iter().enumerate() {
            let i = chunk * STREAMS_PER_CONNECTION + k;
            tokio::spawn(simulate(
                channel.clone(),
                id.clone(),
                i,
                needed,
                seen.clone(),
            ));
        }
    }
}

pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits until every proxy of `watched` got a response of `last` after its
/// `before` value; returns each one's delay from `t0`.
pub fn wait_for(last: &[AtomicU64], watched: &[usize], before: &[u64], t0: u64) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !watched
        .iter()
        .zip(before)
        .all(|(c, b)| last[*c].load(Ordering::Relaxed) > *b)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    watched
        .iter()
        .map(|c| Duration::from_nanos(last[*c].load(Ordering::Relaxed).saturating_sub(t0)))
        .collect()
}
