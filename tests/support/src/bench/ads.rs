//! A load generator speaking real delta ADS over gRPC: each simulated
//! proxy subscribes to every type, ACKs everything and records when it
//! got what, so benchmarks can time pushes to the proxies they affect.

use super::envoy_node;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use prost::Message;
use prost::bytes::Bytes;
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
/// Simulated proxies per HTTP/2 connection, as Envoy connects: each its own.
pub const AS_ENVOY: usize = 1;
/// The bench's earlier shape, kept as a labelled extra row: 100 proxies'
/// streams on each connection, which no deployment has.
pub const MULTIPLEXED: usize = 100;

/// Connections opened (and TLS handshakes made) at once.
const CONNECTING_AT_ONCE: usize = 256;

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
    /// Streams that ended, with an error or not, and the first reason: a
    /// run whose proxies are not all configured says why.
    pub ended: AtomicUsize,
    pub first_end: std::sync::Mutex<Option<String>>,
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
            ended: AtomicUsize::new(0),
            first_end: std::sync::Mutex::new(None),
        })
    }

    pub fn now(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn stream_ended(&self, node_id: &str, why: impl std::fmt::Display) {
        if self.ended.fetch_add(1, Ordering::Relaxed) == 0
            && let Ok(mut first) = self.first_end.lock()
        {
            *first = Some(format!("{node_id}: {why}"));
        }
    }
}

/// A request already encoded. Each proxy's first request carries Envoy's
/// node (about 60 KB): encoded once for all proxies and sent as bytes, the
/// load generator does not clone and encode it again per proxy, CPU it
/// would take from kuma-cp on the same machine.
#[derive(Clone, Debug, Default, PartialEq)]
struct Encoded(Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

impl From<DeltaDiscoveryRequest> for Encoded {
    fn from(request: DeltaDiscoveryRequest) -> Encoded {
        Encoded(request.encode_to_vec().into())
    }
}

/// A first request for `type_url`: the `node` encoded once for every
/// proxy, followed by this proxy's id (a field read after the others is
/// still the node's id), then the type.
fn first_request(node: &[u8], node_id: &str, type_url: &str) -> Encoded {
    let id = Node {
        id: node_id.to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut bytes = Vec::with_capacity(node.len() + id.len() + 80);
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut bytes);
    prost::encoding::encode_varint((node.len() + id.len()) as u64, &mut bytes);
    bytes.extend_from_slice(node);
    bytes.extend_from_slice(&id);
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        ..Default::default()
    }
    .encode_raw(&mut bytes);
    Encoded(bytes.into())
}

const DELTA_ADS: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// One simulated proxy, sending `node` (encoded, without an id) with its
/// own id in its first request as Envoy does. Its configuration is full
/// once it has clusters, endpoints and listeners (and, with mTLS, secrets).
/// A stream that fails before then is opened again, as Envoy does; each
/// failure, and any end of its stream, is counted.
async fn simulate(
    channel: Channel,
    (node_id, node): (String, Bytes),
    i: usize,
    needed: usize,
    seen: Arc<Observed>,
) {
    let mut delay = RETRY_FIRST;
    for attempt in 1..=ATTEMPTS {
        let configured = match stream(&channel, (&node_id, &node), i, needed, &seen).await {
            Ok(()) => {
                // A proxy's stream is to stay open: an end is counted too.
                seen.stream_ended(&node_id, "kuma-cp ended the stream");
                return;
            }
            Err(Failed { why, configured }) => {
                seen.stream_ended(&node_id, format_args!("{why} (attempt {attempt})"));
                configured
            }
        };
        if configured {
            // A configured proxy's stream ends when kuma-cp goes away;
            // the bench connects anew when it wants one back.
            return;
        }
        // Envoy's jittered back-off: anywhere up to the current delay.
        let jitter = (i as u64).wrapping_mul(2_654_435_761) % 1000 + 1;
        tokio::time::sleep(delay * jitter as u32 / 1000).await;
        delay = (delay * 2).min(RETRY_MOST);
    }
}

/// Envoy opens its ADS stream again when it fails: after at most 500 ms,
/// doubling to at most 30 s, each delay jittered. The simulated proxies do
/// so until they are configured, a few times.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MOST: Duration = Duration::from_secs(30);
const ATTEMPTS: u32 = 5;

/// Why a stream ended, and whether its proxy had been configured by then.
struct Failed {
    why: String,
    configured: bool,
}

/// One ADS stream of a simulated proxy, until it ends: `Ok` when kuma-cp
/// ended it cleanly.
async fn stream(
    channel: &Channel,
    (node_id, node): (&str, &Bytes),
    i: usize,
    needed: usize,
    seen: &Observed,
) -> Result<(), Failed> {
    let mut client = tonic::client::Grpc::new(channel.clone());
    let (tx, rx) = mpsc::channel::<Encoded>(8);
    for (n, t) in TYPES.iter().enumerate() {
        let request = if n == 0 {
            first_request(node, node_id, t)
        } else {
            DeltaDiscoveryRequest {
                type_url: t.to_string(),
                ..Default::default()
            }
            .into()
        };
        let _ = tx.send(request).await;
    }
    let codec = tonic_prost::ProstCodec::<Encoded, DeltaDiscoveryResponse>::default();
    let opened = match client.ready().await {
        Ok(()) => {
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(DELTA_ADS);
            let requests = tonic::Request::new(ReceiverStream::new(rx));
            client.streaming(requests, path, codec).await
        }
        Err(e) => Err(tonic::Status::unavailable(e.to_string())),
    };
    let mut stream = opened
        .map_err(|status| Failed {
            why: format!("no stream: {status}"),
            configured: false,
        })?
        .into_inner();
    let mut got = [false; 4];
    let full = |got: &[bool; 4]| got[..needed].iter().all(|g| *g);
    loop {
        let r = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(Failed {
                    why: format!("stream ended: {status}"),
                    configured: full(&got),
                });
            }
        };
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
        let ack = DeltaDiscoveryRequest {
            type_url: r.type_url.clone(),
            response_nonce: r.nonce.clone(),
            ..Default::default()
        };
        let _ = tx.send(ack.into()).await;
    }
}

/// Connects one simulated proxy per node id, `per_connection` to an
/// HTTP/2 connection ([`AS_ENVOY`] or [`MULTIPLEXED`]); proxy `i` records
/// into slot `i` of `seen`. Each sends the node Envoy 1.40 sends
/// ([`envoy_node::recorded`]). Returns once every connection is open.
pub async fn connect_all(
    xds: &tonic::transport::Endpoint,
    node_ids: Vec<String>,
    per_connection: usize,
    needed: usize,
    seen: Arc<Observed>,
) {
    let node = Arc::new(envoy_node::recorded(""));
    connect_all_sending(xds, (node_ids, node), per_connection, needed, seen).await
}

/// [`connect_all`], each proxy sending `node` with its own id.
pub async fn connect_all_sending(
    xds: &tonic::transport::Endpoint,
    (node_ids, node): (Vec<String>, Arc<Node>),
    per_connection: usize,
    needed: usize,
    seen: Arc<Observed>,
) {
    use futures::StreamExt;
    let node = Bytes::from(
        Node {
            id: String::new(),
            ..Node::clone(&node)
        }
        .encode_to_vec(),
    );
    let chunks: Vec<(usize, Vec<String>)> = node_ids
        .chunks(per_connection)
        .map(<[String]>::to_vec)
        .enumerate()
        .collect();
    futures::stream::iter(chunks)
        .for_each_concurrent(CONNECTING_AT_ONCE, |(chunk, ids)| {
            let (seen, node) = (seen.clone(), node.clone());
            async move {
                let channel: Channel = match xds.connect().await {
                    Ok(channel) => channel,
                    Err(e) => {
                        // Counted and named, as a stream that failed: the
                        // run says why its proxies are not all configured.
                        for id in &ids {
                            seen.stream_ended(id, format!("no connection: {e:?}"));
                        }
                        return;
                    }
                };
                for (k, id) in ids.into_iter().enumerate() {
                    let i = chunk * per_connection + k;
                    let proxy = (id, node.clone());
                    tokio::spawn(simulate(channel.clone(), proxy, i, needed, seen.clone()));
                }
            }
        })
        .await;
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What a change reached: the delays of the proxies that got it, and how
/// many were waited for. A proxy that never got it has no delay: it is
/// counted as missing, never timed, so percentiles are over arrivals only
/// and any missing proxy makes a goal MISSED.
#[derive(Debug, Default)]
pub struct Arrivals {
    /// Sorted.
    delays: Vec<Duration>,
    expected: usize,
}

impl Arrivals {
    pub fn new(mut delays: Vec<Duration>, expected: usize) -> Arrivals {
        delays.sort();
        Arrivals { delays, expected }
    }

    /// Adds another round's arrivals.
    pub fn extend(&mut self, other: Arrivals) {
        self.delays.extend(other.delays);
        self.delays.sort();
        self.expected += other.expected;
    }

    pub fn arrived(&self) -> usize {
        self.delays.len()
    }

    pub fn expected(&self) -> usize {
        self.expected
    }

    pub fn missing(&self) -> usize {
        self.expected - self.arrived()
    }

    /// The `p`th percentile of the arrivals; none when nothing arrived.
    pub fn percentile(&self, p: usize) -> Option<Duration> {
        let last = self.delays.len().checked_sub(1)?;
        Some(self.delays[(self.delays.len() * p / 100).min(last)])
    }

    /// Met only when every proxy waited for got the change and the `p`th
    /// percentile is under `bound`.
    pub fn met(&self, p: usize, bound: Duration) -> bool {
        self.missing() == 0 && self.percentile(p).is_some_and(|d| d < bound)
    }

    /// "p50 / p99 ms, arrived of expected", e.g. for a table cell.
    pub fn describe(&self, percentiles: &[usize]) -> String {
        let figures: Vec<String> = percentiles
            .iter()
            .map(|p| match self.percentile(*p) {
                Some(d) => format!("{:.1}", ms(d)),
                None => "-".to_string(),
            })
            .collect();
        format!(
            "{} ms ({} of {} arrived)",
            figures.join(" / "),
            self.arrived(),
            self.expected
        )
    }
}

/// Waits until every proxy of `watched` got a response of `last` after its
/// `before` value (`bound` at most); answers the delays from `t0` of those
/// that did.
pub fn wait_for(
    last: &[AtomicU64],
    watched: &[usize],
    before: &[u64],
    t0: u64,
    bound: Duration,
) -> Arrivals {
    let deadline = Instant::now() + bound;
    let arrived = |c: usize, b: u64| last[c].load(Ordering::Relaxed) > b;
    while !watched.iter().zip(before).all(|(c, b)| arrived(*c, *b)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let delays = watched
        .iter()
        .zip(before)
        .filter(|(c, b)| arrived(**c, **b))
        .map(|(c, _)| Duration::from_nanos(last[*c].load(Ordering::Relaxed).saturating_sub(t0)))
        .collect();
    Arrivals::new(delays, watched.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    #[test]
    fn a_first_request_is_envoys_node_with_the_proxys_id() {
        let node = envoy_node::recorded("");
        let encoded = first_request(&node.encode_to_vec(), "default.dp-7", TYPES[0]);
        let request = DeltaDiscoveryRequest::decode(encoded.0).expect("a request");
        assert_eq!(request.type_url, TYPES[0]);
        assert_eq!(
            request.node,
            Some(Node {
                id: "default.dp-7".into(),
                ..node
            })
        );
    }

    #[test]
    fn a_missing_arrival_is_not_timed_and_misses_the_goal() {
        // 99 fast proxies and one that never got the change.
        let arrivals = Arrivals::new(ms_list(&[5; 99]), 100);
        assert_eq!(arrivals.missing(), 1);
        assert_eq!(arrivals.percentile(99), Some(Duration::from_millis(5)));
        assert!(!arrivals.met(99, Duration::from_millis(50)));
        assert_eq!(
            arrivals.describe(&[50, 99]),
            "5.0 / 5.0 ms (99 of 100 arrived)"
        );
    }

    #[test]
    fn percentiles_are_over_arrivals_only() {
        let arrivals = Arrivals::new(ms_list(&[40, 10, 30, 20]), 4);
        assert_eq!(arrivals.percentile(50), Some(Duration::from_millis(30)));
        assert_eq!(arrivals.percentile(99), Some(Duration::from_millis(40)));
        assert!(arrivals.met(99, Duration::from_millis(50)));
        assert!(!arrivals.met(99, Duration::from_millis(40)));
    }

    #[test]
    fn nothing_arrived_has_no_percentile_and_is_missed() {
        let arrivals = Arrivals::new(Vec::new(), 3);
        assert_eq!(arrivals.percentile(50), None);
        assert!(!arrivals.met(50, Duration::from_secs(60)));
        assert_eq!(arrivals.describe(&[50]), "- ms (0 of 3 arrived)");
    }

    #[test]
    fn rounds_add_up() {
        let mut all = Arrivals::new(ms_list(&[1, 2]), 2);
        all.extend(Arrivals::new(ms_list(&[3]), 2));
        assert_eq!((all.arrived(), all.expected(), all.missing()), (3, 4, 1));
        assert!(!all.met(50, Duration::from_secs(1)));
    }

    #[test]
    fn wait_for_counts_who_got_the_change() {
        let last: Vec<AtomicU64> = [10, 0, 30].into_iter().map(AtomicU64::new).collect();
        // Proxy 1 is still at its value from before the change.
        let arrivals = wait_for(&last, &[0, 1, 2], &[0, 0, 0], 5, Duration::from_millis(20));
        assert_eq!((arrivals.arrived(), arrivals.missing()), (2, 1));
        assert_eq!(arrivals.percentile(100), Some(Duration::from_nanos(25)));
    }
}
