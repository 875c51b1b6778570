//! The ADS gRPC server: state-of-the-world and incremental (delta) xDS v3
//! over one stream per proxy, serving listeners, clusters and endpoints
//! from the proxy's snapshot.
//!
//! A response is sent when the snapshot has something the proxy does not
//! have yet. A NACK is recorded (insight, metric, one log line) and the
//! rejected version is not sent again: the proxy keeps its last good
//! configuration until the generated configuration changes.

use super::cache::{Snapshot, SnapshotCache, SnapshotWatch};
use super::generator::TypeUrl;
use super::index::ProxyId;
use super::insights::{self, SubscriptionTracker};
use crate::cp::Shutdown;
use crate::metrics::{Metrics, StreamLabels, XdsType};
use crate::resources::{ResourceKey, ResourceType};
use crate::store::{SharedStore, StoreError};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

pub struct AdsServer {
    pub cache: Arc<SnapshotCache>,
    pub store: SharedStore,
    pub metrics: Arc<Metrics>,
    pub instance_id: String,
    /// Insights are written at most this often per stream.
    pub insight_flush_interval: Duration,
    /// Ends every stream, so the server can stop.
    pub shutdown: Shutdown,
    /// Held by every insight writer; see [`wait_for_insight_writers`].
    pub insight_writers: Arc<()>,
}

/// Waits (up to `limit`) until every stream's last insight write is done,
/// so a stopping control plane leaves its subscriptions marked
/// disconnected.
pub async fn wait_for_insight_writers(writers: &Arc<()>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Arc::strong_count(writers) > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl AdsServer {
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService(Arc::new(self)))
            .max_decoding_message_size(16 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024)
    }

    /// Checks the node id of a stream's first request: `{mesh}.{name}` of a
    /// registered dataplane.
    async fn identify(&self, node: Option<&Node>) -> Result<ProxyId, Status> {
        let node_id = node.map(|n| n.id.as_str()).unwrap_or("");
        let id = ProxyId::from_node_id(node_id).ok_or_else(|| {
            Status::invalid_argument(format!(
                "node id \"{node_id}\" must be {{mesh}}.{{dataplane name}}"
            ))
        })?;
        let key = ResourceKey::new(ResourceType::Dataplane, &id.mesh, &id.name);
        match self.store.get(&key).await {
            Ok(_) => Ok(id),
            Err(StoreError::NotFound(_)) => Err(Status::not_found(format!(
                "dataplane \"{}\" of mesh \"{}\" is not registered: create the Dataplane resource first (kumactl apply)",
                id.name, id.mesh
            ))),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

type Sender<T> = mpsc::Sender<Result<T, Status>>;

/// What one stream shares between its two protocols.
struct StreamContext {
    id: ProxyId,
    watch: SnapshotWatch,
    tracker: Arc<SubscriptionTracker>,
    metrics: Arc<Metrics>,
    done: Arc<Notify>,
    nonce: u64,
    kind: &'static str,
}

impl StreamContext {
    async fn open(server: &AdsServer, id: ProxyId, kind: &'static str) -> StreamContext {
        let watch = server.cache.watch(id.clone());
        let tracker = SubscriptionTracker::new(id.clone(), &server.instance_id);
        let done = Arc::new(Notify::new());
        tokio::spawn(insights::flush_loop(
            server.store.clone(),
            tracker.clone(),
            server.insight_flush_interval,
            done.clone(),
            server.insight_writers.clone(),
        ));
        server
            .metrics
            .streams
            .get_or_create(&StreamLabels { kind })
            .inc();
        tracing::info!(dataplane = %id, kind, "ADS stream opened");
        StreamContext {
            id,
            watch,
            tracker,
            metrics: server.metrics.clone(),
            done,
            nonce: 0,
            kind,
        }
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.watch.receiver.borrow().clone()
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
        self.metrics
            .pushes
            .get_or_create(&XdsType {
                r#type: type_url.short(),
            })
            .inc();
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
        tracing::warn!(dataplane = %self.id, r#type = type_url.short(), error = %error.message, "Envoy rejected the configuration");
    }
}

impl Drop for StreamContext {
    fn drop(&mut self) {
        self.done.notify_one();
        self.metrics
            .streams
            .get_or_create(&StreamLabels { kind: self.kind })
            .dec();
        tracing::info!(dataplane = %self.id, kind = self.kind, "ADS stream closed");
    }
}

/// Reads the first request, or ends the stream with the reason.
async fn first<T>(requests: &mut Streaming<T>) -> Option<T> {
    match requests.message().await {
        Ok(Some(r)) => Some(r),
        _ => None,
    }
}

// ------------------------------------------------------- state of the world

/// What a state-of-the-world stream has sent of one type.
#[derive(Default)]
struct SotwType {
    subscribed: bool,
    /// Requested names; empty means all (wildcard).
    names: Vec<String>,
    sent_version: Option<String>,
    sent_names: Vec<String>,
    nonce: String,
    sent_at: Option<Instant>,
}

fn sotw_handle(
    ctx: &StreamContext,
    state: &mut HashMap<TypeUrl, SotwType>,
    req: DiscoveryRequest,
) -> Result<(), Status> {
    ctx.check_node(req.node.as_ref())?;
    let Some(type_url) = TypeUrl::parse(&req.type_url) else {
        return Ok(()); // a type this control plane does not serve
    };
    let t = state.entry(type_url).or_default();
    if !req.response_nonce.is_empty() {
        if req.response_nonce != t.nonce {
            return Ok(()); // answers an older response; superseded
        }
        match (&req.error_detail, t.sent_at.take()) {
            (Some(error), Some(_)) => ctx.nacked(type_url, error),
            (None, Some(sent_at)) => ctx.acked(type_url, sent_at),
            _ => {}
        }
    } else if !req.version_info.is_empty()
        && let Some(snapshot) = ctx.snapshot()
        && snapshot.of_type(type_url).version == req.version_info
    {
        // A reconnect of a proxy that already has this version (the
        // control plane restarted): nothing to send.
        t.sent_version = Some(req.version_info.clone());
        t.sent_names = req.resource_names.clone();
    }
    t.subscribed = true;
    t.names = req.resource_names;
    Ok(())
}

async fn sotw_push(
    ctx: &mut StreamContext,
    state: &mut HashMap<TypeUrl, SotwType>,
    tx: &Sender<DiscoveryResponse>,
) -> Result<(), ()> {
    let Some(snapshot) = ctx.snapshot() else {
        return Ok(());
    };
    for type_url in TypeUrl::ALL {
        let nonce = ctx.nonce + 1;
        let Some(t) = state.get_mut(&type_url).filter(|t| t.subscribed) else {
            continue;
        };
        let current = snapshot.of_type(type_url);
        if t.sent_version.as_deref() == Some(current.version.as_str()) && t.sent_names == t.names {
            continue;
        }
        let resources = current
            .resources
            .iter()
            .filter(|(name, _)| t.names.is_empty() || t.names.contains(name))
            .map(|(_, r)| r.body.clone())
            .collect();
        t.sent_version = Some(current.version.clone());
        t.sent_names = t.names.clone();
        t.nonce = nonce.to_string();
        t.sent_at = Some(Instant::now());
        let response = DiscoveryResponse {
            version_info: current.version.clone(),
            resources,
            type_url: type_url.as_str().to_string(),
            nonce: ctx.next_nonce(),
            ..Default::default()
        };
        tx.send(Ok(response)).await.map_err(|_| ())?;
        ctx.sent(type_url);
    }
    Ok(())
}

async fn run_sotw(
    server: Arc<AdsServer>,
    mut requests: Streaming<DiscoveryRequest>,
    tx: Sender<DiscoveryResponse>,
) {
    let Some(first_req) = first(&mut requests).await else {
        return;
    };
    let id = match server.identify(first_req.node.as_ref()).await {
        Ok(id) => id,
        Err(status) => {
            tracing::warn!(status = %status.message(), "ADS stream refused");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut ctx = StreamContext::open(&server, id, "sotw").await;
    let mut state = HashMap::new();
    let mut pending = Some(first_req);
    let stop = server.shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        if let Some(req) = pending.take()
            && let Err(status) = sotw_handle(&ctx, &mut state, req)
        {
            let _ = tx.send(Err(status)).await;
            return;
        }
        if sotw_push(&mut ctx, &mut state, &tx).await.is_err() {
            return;
        }
        tokio::select! {
            msg = requests.message() => match msg {
                Ok(Some(req)) => pending = Some(req),
                _ => return,
            },
            changed = ctx.watch.receiver.changed() => if changed.is_err() { return },
            _ = &mut stop => return,
        }
    }
}

// ------------------------------------------------------------------- delta

/// What a delta stream knows the proxy has of one type.
#[derive(Default)]
struct DeltaType {
    subscribed: bool,
    wildcard: bool,
    names: HashSet<String>,
    /// name -> version the proxy has (or was last sent).
    known: HashMap<String, String>,
    nonce: String,
    sent_at: Option<Instant>,
}

fn delta_handle(
    ctx: &StreamContext,
    state: &mut HashMap<TypeUrl, DeltaType>,
    req: DeltaDiscoveryRequest,
) -> Result<(), Status> {
    ctx.check_node(req.node.as_ref())?;
    let Some(type_url) = TypeUrl::parse(&req.type_url) else {
        return Ok(());
    };
    let t = state.entry(type_url).or_default();
    if !t.subscribed {
        t.subscribed = true;
        // Wildcard unless the first request names resources (or names "*").
        t.wildcard = req.resource_names_subscribe.is_empty()
            || req.resource_names_subscribe.iter().any(|n| n == "*");
        t.known = req.initial_resource_versions.clone();
    }
    for name in req.resource_names_subscribe {
        if name == "*" {
            t.wildcard = true;
        } else {
            t.names.insert(name);
        }
    }
    for name in req.resource_names_unsubscribe {
        if name == "*" {
            t.wildcard = false;
        } else {
            t.names.remove(&name);
            t.known.remove(&name);
        }
    }
    if !req.response_nonce.is_empty() && req.response_nonce == t.nonce {
        match (&req.error_detail, t.sent_at.take()) {
            (Some(error), Some(_)) => ctx.nacked(type_url, error),
            (None, Some(sent_at)) => ctx.acked(type_url, sent_at),
            _ => {}
        }
    }
    Ok(())
}

async fn delta_push(
    ctx: &mut StreamContext,
    state: &mut HashMap<TypeUrl, DeltaType>,
    tx: &Sender<DeltaDiscoveryResponse>,
) -> Result<(), ()> {
    let Some(snapshot) = ctx.snapshot() else {
        return Ok(());
    };
    for type_url in TypeUrl::ALL {
        let nonce = ctx.nonce + 1;
        let Some(t) = state.get_mut(&type_url).filter(|t| t.subscribed) else {
            continue;
        };
        let current = snapshot.of_type(type_url);
        let wanted = |name: &str| t.wildcard || t.names.contains(name);
        let changed: Vec<Resource> = current
            .resources
            .iter()
            .filter(|(name, r)| wanted(name) && t.known.get(*name) != Some(&r.version))
            .map(|(name, r)| Resource {
                name: name.clone(),
                version: r.version.clone(),
                resource: Some(r.body.clone()),
                ..Default::default()
            })
            .collect();
        let removed: Vec<String> = t
            .known
            .keys()
            .filter(|name| !current.resources.contains_key(*name))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            continue;
        }
        for r in &changed {
            t.known.insert(r.name.clone(), r.version.clone());
        }
        for name in &removed {
            t.known.remove(name);
        }
        t.nonce = nonce.to_string();
        t.sent_at = Some(Instant::now());
        let response = DeltaDiscoveryResponse {
            system_version_info: current.version.clone(),
            resources: changed,
            type_url: type_url.as_str().to_string(),
            removed_resources: removed,
            nonce: ctx.next_nonce(),
            ..Default::default()
        };
        tx.send(Ok(response)).await.map_err(|_| ())?;
        ctx.sent(type_url);
    }
    Ok(())
}

async fn run_delta(
    server: Arc<AdsServer>,
    mut requests: Streaming<DeltaDiscoveryRequest>,
    tx: Sender<DeltaDiscoveryResponse>,
) {
    let Some(first_req) = first(&mut requests).await else {
        return;
    };
    let id = match server.identify(first_req.node.as_ref()).await {
        Ok(id) => id,
        Err(status) => {
            tracing::warn!(status = %status.message(), "ADS stream refused");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut ctx = StreamContext::open(&server, id, "delta").await;
    let mut state = HashMap::new();
    let mut pending = Some(first_req);
    let stop = server.shutdown.clone().wait();
    tokio::pin!(stop);
    loop {
        if let Some(req) = pending.take()
            && let Err(status) = delta_handle(&ctx, &mut state, req)
        {
            let _ = tx.send(Err(status)).await;
            return;
        }
        if delta_push(&mut ctx, &mut state, &tx).await.is_err() {
            return;
        }
        tokio::select! {
            msg = requests.message() => match msg {
                Ok(Some(req)) => pending = Some(req),
                _ => return,
            },
            changed = ctx.watch.receiver.changed() => if changed.is_err() { return },
            _ = &mut stop => return,
        }
    }
}

/// The gRPC service; each stream runs in its own task.
pub struct AdsService(Arc<AdsServer>);

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_sotw(self.0.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(run_delta(self.0.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
