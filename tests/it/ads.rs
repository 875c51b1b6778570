//! The ADS server spoken to over real gRPC by a client of our own, for what
//! Envoy does not show from outside: refusals, NACK handling, node ids.

use crate::common;

use common::{KumaCp, eventually, free_port, http, put_proxy};
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

fn node(id: &str) -> Option<Node> {
    Some(Node {
        id: id.to_string(),
        ..Default::default()
    })
}

async fn sotw(
    cp: &KumaCp,
    token: &str,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    Result<Streaming<DiscoveryResponse>, tonic::Status>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(cp.grpc_endpoint(&cp.xds))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(8);
    let responses = client
        .stream_aggregated_resources(with_token(ReceiverStream::new(rx), token))
        .await
        .map(|r| r.into_inner());
    (tx, responses)
}

async fn delta(
    cp: &KumaCp,
    token: &str,
) -> (
    mpsc::Sender<DeltaDiscoveryRequest>,
    Streaming<DeltaDiscoveryResponse>,
) {
    let mut client = AggregatedDiscoveryServiceClient::connect(cp.grpc_endpoint(&cp.xds))
        .await
        .expect("connect");
    let (tx, rx) = mpsc::channel(8);
    let responses = client
        .delta_aggregated_resources(with_token(ReceiverStream::new(rx), token))
        .await
        .expect("stream")
        .into_inner();
    (tx, responses)
}

/// A request carrying a dataplane token, as Envoy sends it.
fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = token.parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn next<T>(stream: &mut Streaming<T>, within: Duration) -> Option<Result<T, tonic::Status>> {
    tokio::time::timeout(within, stream.message())
        .await
        .ok()
        .and_then(|r| r.transpose())
}

#[test]
fn an_unregistered_dataplane_is_refused_with_the_reason() {
    let cp = KumaCp::start(&[]);
    let ghost = cp.token("default", "ghost");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let (tx, responses) = sotw(&cp, &ghost).await;
        tx.send(DiscoveryRequest {
            node: node("default.ghost"),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut responses = responses.expect("stream opens");
        let status = next(&mut responses, Duration::from_secs(5))
            .await
            .expect("an answer")
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert!(
            status
                .message()
                .contains("dataplane \"ghost\" of mesh \"default\" is not registered"),
            "{}",
            status.message()
        );

        let (tx, responses) = sotw(&cp, "").await;
        tx.send(DiscoveryRequest {
            node: node("no-dot"),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let status = next(&mut responses.unwrap(), Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    });
}

#[test]
fn a_nack_is_recorded_and_not_resent_until_the_config_changes() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cp = KumaCp::start(&[("KUMA_XDS_SERVER_INSIGHT_FLUSH_INTERVAL_MS", "50")]);
    put_proxy(&cp, "default", "web", "web", &[(free_port(), "redis")]);
    let (tx, responses) = rt.block_on(sotw(&cp, &cp.token("default", "web")));
    let mut responses = responses.unwrap();
    let first = rt.block_on(async {
        tx.send(DiscoveryRequest {
            node: node("default.web"),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        next(&mut responses, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(first.resources.len(), 2, "the local cluster and redis");

    // Rejected, as Envoy would: the nonce and an error.
    rt.block_on(async {
        tx.send(DiscoveryRequest {
            type_url: CDS.into(),
            response_nonce: first.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "cluster redis: bad config".into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    });

    let url = format!("{}/meshes/default/dataplanes+insights/web", cp.api);
    let mut last = serde_json::Value::Null;
    let recorded = eventually(Duration::from_secs(5), || {
        last = http("GET", &url, None).body;
        last["dataplaneInsight"]["subscriptions"][0]["status"]["cds"]["responsesRejected"] == "1"
    });
    assert!(recorded, "{last}");
    assert_eq!(
        last["dataplaneInsight"]["subscriptions"][0]["status"]["lastNackMessage"],
        "cds: cluster redis: bad config"
    );
    let metrics = http("GET", &format!("{}/metrics", cp.api), None).body;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("xds_nacks_total{type=\"cds\"} 1"),
        "{metrics}"
    );

    // A new configuration is sent, and it is the next response: had the
    // rejected one been sent again, it would come first.
    let body = serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "web",
        "networking": {"inbound": [{"interface": "127.0.0.1:7000:7001", "tags": {"service": "web"}}],
                       "outbound": [{"interface": ":7002", "service": "db"}]}});
    assert_eq!(
        http(
            "PUT",
            &format!("{}/meshes/default/dataplanes/web", cp.api),
            Some(&body.to_string())
        )
        .status,
        200
    );
    let second = rt
        .block_on(next(&mut responses, Duration::from_secs(5)))
        .expect("new config")
        .unwrap();
    assert_ne!(
        second.version_info, first.version_info,
        "the rejected config was sent again"
    );
    assert_eq!(second.resources.len(), 2, "the local cluster and db");
}

#[test]
fn delta_sends_only_what_changed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cp = KumaCp::start(&[]);
    put_proxy(&cp, "default", "web", "web", &[(free_port(), "redis")]);
    put_proxy(&cp, "default", "redis-1", "redis", &[]);
    let (tx, mut responses) = rt.block_on(delta(&cp, &cp.token("default", "web")));
    let first = rt.block_on(async {
        tx.send(DeltaDiscoveryRequest {
            node: node("default.web"),
            type_url: EDS.into(),
            resource_names_subscribe: vec!["redis".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        next(&mut responses, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap()
    });
    assert_eq!(first.resources.len(), 1);
    assert_eq!(first.resources[0].name, "redis");
    rt.block_on(tx.send(DeltaDiscoveryRequest {
        type_url: EDS.into(),
        response_nonce: first.nonce.clone(),
        ..Default::default()
    }))
    .unwrap();

    // An unrelated change sends nothing: the next response is the one for
    // the change after it.
    put_proxy(&cp, "default", "other", "other", &[]);

    // A second redis: only the redis endpoints are sent again.
    put_proxy(&cp, "default", "redis-2", "redis", &[]);
    let update = rt
        .block_on(next(&mut responses, Duration::from_secs(5)))
        .unwrap()
        .unwrap();
    assert_eq!(update.resources.len(), 1, "an unrelated change was pushed");
    let endpoints = ClusterLoadAssignment::decode(
        update.resources[0]
            .resource
            .as_ref()
            .expect("a resource")
            .value
            .as_slice(),
    )
    .expect("endpoints");
    assert_eq!(
        endpoints
            .endpoints
            .iter()
            .map(|e| e.lb_endpoints.len())
            .sum::<usize>(),
        2,
        "the first push after the unrelated change has both redis endpoints"
    );
    assert!(update.removed_resources.is_empty());

    // The node id cannot change within a stream.
    let status = rt.block_on(async {
        tx.send(DeltaDiscoveryRequest {
            node: node("default.other"),
            type_url: EDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        next(&mut responses, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("node id changed"),
        "{}",
        status.message()
    );
}

#[test]
fn sds_on_its_own_port_serves_the_proxys_secrets_to_its_token_only() {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
    use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
    use prost::Message;
    let cp = KumaCp::start(&[]);
    cp.enable_mtls("default");
    put_proxy(&cp, "default", "web", "web", &[(free_port(), "db")]);
    let token = cp.token("default", "web");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open = |token: &str, type_url: &str| {
        let (sds, token, type_url) = (
            cp.grpc_endpoint(&cp.sds),
            token.to_string(),
            type_url.to_string(),
        );
        rt.block_on(async move {
            let mut client = SecretDiscoveryServiceClient::connect(sds)
                .await
                .expect("connect");
            let (tx, rx) = mpsc::channel(8);
            tx.send(DeltaDiscoveryRequest {
                node: node("default.web"),
                type_url,
                ..Default::default()
            })
            .await
            .unwrap();
            let mut stream = client
                .delta_secrets(with_token(ReceiverStream::new(rx), &token))
                .await
                .unwrap()
                .into_inner();
            let first = next(&mut stream, Duration::from_secs(3)).await;
            (tx, first)
        })
    };
    let (_tx, first) = open(
        &token,
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    );
    let response = first.expect("secrets").expect("accepted");
    let mut names: Vec<&str> = response.resources.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["identity_cert", "mesh_ca"]);
    let identity = response
        .resources
        .iter()
        .find(|r| r.name == "identity_cert")
        .unwrap();
    let secret = Secret::decode(identity.resource.as_ref().unwrap().value.as_slice()).unwrap();
    assert!(matches!(
        secret.r#type,
        Some(secret::Type::TlsCertificate(_))
    ));

    let (_tx, first) = open(
        "",
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
    );
    assert_eq!(
        first.expect("an answer").unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let (_tx, first) = open(&token, CDS);
    assert!(first.is_none(), "the SDS port served clusters");
}

/// Streams that never send a request, a connection that sends garbage and
/// a request for a dataplane that does not exist, all at once: a real
/// proxy is still configured, the silent streams are ended with
/// DEADLINE_EXCEEDED at the first-request timeout (10 s), and the unknown
/// node is refused.
#[test]
fn silent_streams_garbage_and_unknown_nodes_do_not_stop_real_proxies() {
    let cp = KumaCp::start(&[("KUMA_DP_SERVER_AUTH_TYPE", "none")]);
    put_proxy(&cp, "default", "web", "web", &[]);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(hostile_streams(&cp));
}

async fn hostile_streams(cp: &KumaCp) {
    use tokio::io::AsyncWriteExt;
    const SILENT: usize = 1_000;
    let address = cp
        .xds
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .to_string();
    let mut garbage = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    garbage
        .write_all(b"\x16\x03\x01 this is not HTTP/2 at all \r\n\r\n")
        .await
        .expect("write");
    // The server answers garbage by closing the connection (after a GOAWAY
    // at most), so it holds nothing for it.
    let garbage_closed = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let mut answer = Vec::new();
        let read = garbage.read_to_end(&mut answer);
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .is_ok()
    });
    // Many streams over a few connections, none sending anything.
    let mut silent = Vec::new();
    let mut senders = Vec::new();
    for chunk in 0..10 {
        let mut client = AggregatedDiscoveryServiceClient::connect(cp.grpc_endpoint(&cp.xds))
            .await
            .expect("connect");
        for _ in 0..SILENT / 10 {
            let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(1);
            senders.push(tx);
            let stream = client
                .delta_aggregated_resources(ReceiverStream::new(rx))
                .await
                .unwrap_or_else(|e| panic!("connection {chunk}: {e}"))
                .into_inner();
            silent.push(stream);
        }
    }
    let started = std::time::Instant::now();
    // A delta stream of `node_id` that asks for clusters.
    let subscribed = |node_id: &'static str| async move {
        let (tx, responses) = delta(cp, "").await;
        tx.send(DeltaDiscoveryRequest {
            node: node(node_id),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        (tx, responses)
    };
    let (_unknown_tx, mut unknown) = subscribed("default.nobody").await;
    let (_real_tx, mut real) = subscribed("default.web").await;
    let configured = next(&mut real, Duration::from_secs(5)).await;
    let configured_in = started.elapsed();
    assert!(
        matches!(configured, Some(Ok(ref r)) if r.type_url == CDS),
        "the real proxy got {configured:?}"
    );
    let refused = next(&mut unknown, Duration::from_secs(10)).await;
    assert!(
        matches!(refused, Some(Err(ref s)) if s.code() == tonic::Code::NotFound),
        "the unknown node got {refused:?}"
    );
    let mut ended = 0;
    for stream in &mut silent {
        if let Some(Err(status)) = next(stream, Duration::from_secs(15)).await
            && status.code() == tonic::Code::DeadlineExceeded
        {
            ended += 1;
        }
    }
    let waited = started.elapsed();
    assert_eq!(ended, SILENT, "silent streams not ended after {waited:?}");
    assert!(
        garbage_closed.await.expect("reader"),
        "the garbage connection was kept open"
    );
    let peak = common::peak_rss(cp.child.id());
    println!(
        "figure: {SILENT} silent ADS streams, a garbage connection and an unknown node: a real proxy configured in {} ms; every silent stream ended with DEADLINE_EXCEEDED within {:.1} s; peak RSS {peak}",
        configured_in.as_millis(),
        waited.as_secs_f64()
    );
    drop(senders);
}
