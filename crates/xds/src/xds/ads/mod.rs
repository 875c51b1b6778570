//! The ADS gRPC server: state-of-the-world and incremental (delta) xDS v3
//! over one stream per proxy, serving listeners, clusters and endpoints
//! from the proxy's snapshot.
//!
//! A response is sent when the snapshot has something the proxy does not
//! have yet. A NACK is recorded (insight, metric, one log line) and the
//! rejected version is not sent again: the proxy keeps its last good
//! configuration until the generated configuration changes.

mod delta;
mod incoming;
mod outgoing;
mod slot;
mod sotw;
pub mod wire;

use super::auth::{AuthError, DataplaneAuth};
use super::cache::{Snapshot, SnapshotCache, SnapshotWatch};
use super::generator::TypeUrl;
use super::index::REGISTRATION_GRACE;
use super::index::{IndexHandle, ProxyId};
use super::insights::{InsightWriter, SubscriptionTracker};
use crate::metrics::{Metrics, StreamLabels, XdsType};
use crate::resources::{ComponentVersion, SubscriptionVersion};
use crate::runtime::CancellationToken;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use incoming::Requests;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::Status;
use tracing::Instrument;

pub struct AdsServer {
    pub cache: Arc<SnapshotCache>,
    /// Who is registered, and the mesh's token keys.
    pub index: IndexHandle,
    /// Writes what each stream did into its dataplane's insight.
    pub insights: InsightWriter,
    pub metrics: Arc<Metrics>,
    pub instance_id: String,
    /// Ends every stream, so the server can stop.
    pub shutdown: CancellationToken,
    /// What a stream must present.
    pub auth: Arc<DataplaneAuth>,
}

impl AdsServer {
    /// The ADS service and the SDS service, sharing streams' machinery,
    /// snapshots and token checks.
    pub fn into_services(
        self,
    ) -> (
        wire::Streams<wire::Aggregated>,
        wire::Streams<wire::Secrets>,
    ) {
        let shared = Arc::new(self);
        (
            wire::Streams::new(shared.clone()),
            wire::Streams::new(shared),
        )
    }

    /// Checks a stream's first request: the node id is `{mesh}.{name}` of a
    /// registered dataplane, and (unless authentication is off) the
    /// stream's `authorization` metadata is a valid token for it.
    async fn identify(&self, node: Option<&Node>, token: Option<&str>) -> Result<ProxyId, Status> {
        let node_id = node.map(|n| n.id.as_str()).unwrap_or("");
        let id = ProxyId::from_node_id(node_id).ok_or_else(|| {
            Status::invalid_argument(format!(
                "node id \"{node_id}\" must be {{mesh}}.{{dataplane name}}"
            ))
        })?;
        self.auth
            .check(&id, token.unwrap_or(""))
            .await
            .map_err(status_of)?;
        let registered = self
            .index
            .wait_for(REGISTRATION_GRACE, |i| i.dataplane(&id).map(|_| ()))
            .await;
        match registered {
            Some(()) => {
                self.auth.admitted(&id).map_err(status_of)?;
                Ok(id)
            }
            None => Err(Status::not_found(format!(
                "dataplane \"{}\" of mesh \"{}\" is not registered: create the Dataplane resource first (kumactl apply)",
                id.name, id.mesh
            ))),
        }
    }
}

fn status_of(e: AuthError) -> Status {
    match e {
        AuthError::Unavailable(m) => Status::unavailable(m),
        AuthError::Refused(m) => Status::unauthenticated(m),
        AuthError::NotAdmitted(m) => Status::permission_denied(m),
    }
}

/// Where a stream's task puts its responses. Boxed: the slot lives as long
/// as the stream, and a response is far larger than the pointer to it.
type Sender<T> = slot::Sender<Box<Result<T, Status>>>;

/// The responses of one stream, as tonic sends them.
pub struct Responses<T>(slot::Receiver<Box<Result<T, Status>>>);

impl<T> tokio_stream::Stream for Responses<T> {
    type Item = Result<T, Status>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.0)
            .poll_next(cx)
            .map(|item| item.map(|boxed| *boxed))
    }
}

/// What a proxy says it runs: Envoy's build version from its node, and
/// kuma-dp's from the metadata the bootstrap server put there.
fn reported_versions(node: &Node) -> Option<SubscriptionVersion> {
    use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
    let envoy = match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(build)) => build
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch)),
        Some(UserAgentVersionType::UserAgentVersion(v)) => Some(v.clone()),
        None => None,
    };
    let kuma_dp = node.metadata.as_ref().and_then(|m| {
        use envoy_types::pb::google::protobuf::value::Kind;
        let field = |s: &envoy_types::pb::google::protobuf::Struct, k: &str| {
            s.fields.get(k).and_then(|v| v.kind.clone())
        };
        let Some(Kind::StructValue(version)) = field(m, "version") else {
            return None;
        };
        let Some(Kind::StructValue(kuma_dp)) = field(&version, "kumaDp") else {
            return None;
        };
        match field(&kuma_dp, "version") {
            Some(Kind::StringValue(v)) => Some(v),
            _ => None,
        }
    });
    (envoy.is_some() || kuma_dp.is_some()).then(|| SubscriptionVersion {
        kuma_dp: kuma_dp.map(|version| ComponentVersion { version }),
        envoy: envoy.map(|version| ComponentVersion { version }),
    })
}

/// What one stream shares between its two protocols.
struct StreamContext {
    id: ProxyId,
    watch: SnapshotWatch,
    tracker: Arc<SubscriptionTracker>,
    metrics: Arc<Metrics>,
    nonce: u64,
    kind: &'static str,
}

impl StreamContext {
    fn open(
        server: &AdsServer,
        id: ProxyId,
        kind: &'static str,
        version: Option<SubscriptionVersion>,
    ) -> StreamContext {
        let watch = server.cache.watch(id.clone());
        let tracker = server
            .insights
            .track(id.clone(), &server.instance_id, version);
        server
            .metrics
            .streams
            .get_or_create(&StreamLabels { kind })
            .inc();
        tracing::info!(kind, "ADS stream opened");
        // Accepted, not refused: a restarting kuma-dp overlaps its old
        // stream for a moment, and a reconnect can beat the server's
        // noticing that the old connection died. Both get the same
        // configuration; the insight lists both, and the dataplane is
        // online while either is open.
        let streams = server.cache.streams(&id);
        if streams > 1 {
            tracing::warn!(
                kind,
                streams,
                "this dataplane now has {streams} ADS streams: is a second kuma-dp running with the same name? Each is served the same configuration"
            );
        }
        StreamContext {
            id,
            watch,
            tracker,
            metrics: server.metrics.clone(),
            nonce: 0,
            kind,
        }
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.watch.current()
    }

    /// The node id must not change within a stream.
    fn check_node(&self, node: Option<&Node>) -> Result<(), Status> {
        match node {
            Some(n) if !n.id.is_empty() && n.id != self.id.node_id() => {
                Err(Status::invalid_argument(format!(
                    "node id changed within the stream from \"{}\" to \"{}\"",
                    self.id.node_id(),
                    n.id
                )))
            }
            _ => Ok(()),
        }
    }

    fn sent(&self, type_url: TypeUrl) {
        self.tracker.sent(type_url);
        if type_url == TypeUrl::Secret
            && let Some(certificate) = self.snapshot().and_then(|s| s.certificate)
        {
            self.tracker.certificate(certificate);
        }
        self.metrics
            .pushes
            .get_or_create(&XdsType {
                r#type: type_url.short(),
            })
            .inc();
    }

    /// Records Envoy's answer to the response sent at `sent_at`: an ACK, or
    /// a NACK when it carries an error.
    fn answered(&self, type_url: TypeUrl, error: Option<&RpcStatus>, sent_at: Option<Instant>) {
        match (error, sent_at) {
            (Some(error), Some(_)) => self.nacked(type_url, error),
            (None, Some(sent_at)) => self.acked(type_url, sent_at),
            _ => {}
        }
    }

    fn acked(&self, type_url: TypeUrl, sent_at: Instant) {
        self.tracker.acked(type_url);
        self.metrics
            .push_to_ack_seconds
            .observe(sent_at.elapsed().as_secs_f64());
    }

    fn nacked(&self, type_url: TypeUrl, error: &RpcStatus) {
        self.tracker.nacked(type_url, &error.message);
        self.metrics
            .nacks
            .get_or_create(&XdsType {
                r#type: type_url.short(),
            })
            .inc();
        tracing::warn!(r#type = type_url.short(), error = %error.message, "Envoy rejected the configuration");
    }
}

impl Drop for StreamContext {
    fn drop(&mut self) {
        self.tracker.disconnected();
        self.metrics
            .streams
            .get_or_create(&StreamLabels { kind: self.kind })
            .dec();
        tracing::info!(kind = self.kind, "ADS stream closed");
    }
}

/// One flavour of ADS: how requests change what a stream knows of its
/// proxy, and what to send it from a snapshot.
trait Protocol: Default + Send + 'static {
    type Request: incoming::Request + Send + 'static;
    type Response: prost::Message + Send + 'static;
    /// `sotw` or `delta`, for logs and metrics.
    const KIND: &'static str;

    fn node(request: &Self::Request) -> Option<&Node>;
    /// Applies one request: a subscription, an ACK or a NACK.
    fn handle(&mut self, ctx: &StreamContext, request: Self::Request) -> Result<(), Status>;
    /// The version of `type_url` the proxy has in force, as far as the
    /// stream knows.
    fn confirmed(&self, type_url: TypeUrl) -> Option<u64>;
    /// The responses due for `type_url` (none when the proxy lacks
    /// nothing), each with the next `nonce`.
    fn responses(
        &mut self,
        snapshot: &Snapshot,
        type_url: TypeUrl,
        nonce: &mut u64,
    ) -> Vec<Self::Response>;
}

/// Sends whatever is due, clusters first, then endpoints, then listeners,
/// so Envoy never waits on a cluster it does not know yet.
async fn push<P: Protocol>(
    ctx: &mut StreamContext,
    protocol: &mut P,
    tx: &Sender<P::Response>,
    served: &[TypeUrl],
) -> Result<(), ()> {
    let Some(snapshot) = ctx.snapshot() else {
        return Ok(());
    };
    for type_url in TypeUrl::ALL.into_iter().filter(|t| served.contains(t)) {
        for response in protocol.responses(&snapshot, type_url, &mut ctx.nonce) {
            tx.send(Box::new(Ok(response))).await.map_err(|_| ())?;
            ctx.sent(type_url);
        }
    }
    Ok(())
}

/// How long a new stream may wait before its first request: Envoy sends it
/// at once, and a client that does not holds a task and a stream for
/// nothing.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One stream, from its first request until the proxy, the snapshot cache
/// or the server ends it.
///
/// Both phases are boxed. A task keeps room for the largest state of its
/// future for as long as it lives, and the handshake's states (a request
/// with its node, a timer, a Kubernetes token review) are kilobytes that a
/// connected proxy no longer needs: this way 10,000 streams keep 10,000
/// small tasks, not 10,000 of 6 KiB.
async fn run_stream<P: Protocol>(
    server: Arc<AdsServer>,
    served: &'static [TypeUrl],
    token: Option<String>,
    mut requests: Requests<P::Request>,
    tx: Sender<P::Response>,
) {
    let Some((id, first)) = Box::pin(handshake::<P>(&server, token, &mut requests, &tx)).await
    else {
        return;
    };
    let span = tracing::info_span!("stream", mesh = %id.mesh, dataplane = %id.name);
    Box::pin(serve_stream::<P>(server, served, id, first, requests, tx).instrument(span)).await
}

/// A stream's first request, and whose it is; None when the stream was
/// refused (and told why) or ended first.
async fn handshake<P: Protocol>(
    server: &AdsServer,
    token: Option<String>,
    requests: &mut Requests<P::Request>,
    tx: &Sender<P::Response>,
) -> Option<(ProxyId, Box<P::Request>)> {
    let first = match tokio::time::timeout(FIRST_REQUEST_TIMEOUT, requests.message()).await {
        Ok(Ok(Some(first))) => first,
        Ok(Ok(None)) => return None,
        Ok(Err(status)) => {
            let _ = tx.send(Box::new(Err(status))).await;
            return None;
        }
        Err(_) => {
            tracing::info!(
                "ADS stream closed: no DiscoveryRequest within {FIRST_REQUEST_TIMEOUT:?}"
            );
            let status = Status::deadline_exceeded(format!(
                "no DiscoveryRequest within {} s of opening the stream",
                FIRST_REQUEST_TIMEOUT.as_secs()
            ));
            let _ = tx.send(Box::new(Err(status))).await;
            return None;
        }
    };
    match server.identify(P::node(&first), token.as_deref()).await {
        Ok(id) => Some((id, first)),
        Err(status) => {
            tracing::warn!(status = %status.message(), "ADS stream refused");
            let _ = tx.send(Box::new(Err(status))).await;
            None
        }
    }
}

/// A stream whose proxy is known, until it ends.
async fn serve_stream<P: Protocol>(
    server: Arc<AdsServer>,
    served: &'static [TypeUrl],
    id: ProxyId,
    first: Box<P::Request>,
    mut requests: Requests<P::Request>,
    tx: Sender<P::Response>,
) {
    let version = P::node(&first).and_then(reported_versions);
    let mut ctx = StreamContext::open(&server, id, P::KIND, version);
    let mut protocol = P::default();
    let mut pending = Some(first);
    let stop = server.shutdown.clone().cancelled_owned();
    tokio::pin!(stop);
    loop {
        if let Some(request) = pending.take() {
            let handled = ctx
                .check_node(P::node(&request))
                .and_then(|()| protocol.handle(&ctx, *request));
            if let Err(status) = handled {
                let _ = tx.send(Box::new(Err(status))).await;
                return;
            }
        }
        // Boxed, like the other large states below: the task of a stream
        // keeps room for its largest state for as long as it lives, and
        // 10,000 connected proxies keep 10,000 of them.
        if Box::pin(push(&mut ctx, &mut protocol, &tx, served))
            .await
            .is_err()
        {
            return;
        }
        for type_url in served {
            if let Some(version) = protocol.confirmed(*type_url) {
                ctx.watch.applied(*type_url, version);
            }
        }
        tokio::select! {
            message = requests.message() => match message {
                Ok(Some(request)) => pending = Some(request),
                Ok(None) => return,
                Err(status) => {
                    tracing::info!(status = %status.message(), "ADS stream closed: unreadable request");
                    let _ = tx.send(Box::new(Err(status))).await;
                    return;
                }
            },
            () = ctx.watch.changed() => {}
            _ = &mut stop => return,
        }
    }
}

/// Starts a stream in its own task; its responses flow back through a
/// slot. `token` is the stream's `authorization` metadata.
fn spawn_stream<P: Protocol>(
    server: &Arc<AdsServer>,
    served: &'static [TypeUrl],
    token: Option<String>,
    requests: Requests<P::Request>,
) -> Responses<P::Response> {
    let (tx, rx) = slot::slot();
    tokio::spawn(run_stream::<P>(server.clone(), served, token, requests, tx));
    Responses(rx)
}
