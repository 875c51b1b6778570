//! Builders of the Envoy v3 messages the generator emits, so the generator
//! itself reads as what it configures.

use super::encode::any;
use super::http::Protocol;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, TrafficDirection,
    TransportSocket, address, config_source, socket_address,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::config::route::v3::Route;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter, filter, listener_filter,
};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::{Any, BoolValue, Duration};
use prost::{Message, Name};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

/// One named resource, encoded once. Clones share the bytes: a cluster
/// every proxy of a mesh is sent exists once, however many snapshots and
/// streams hold it.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsResource(Arc<Encoded>);

#[derive(Debug, PartialEq)]
pub struct Encoded {
    pub name: String,
    pub body: Any,
    /// A hash of the name and the bytes, taken once here: the same content
    /// has the same version in every snapshot, process and restart.
    pub version: u64,
}

impl std::ops::Deref for XdsResource {
    type Target = Encoded;

    fn deref(&self) -> &Encoded {
        &self.0
    }
}

impl XdsResource {
    /// `msg` encoded, under `name`.
    pub(super) fn new<M: Message + Name>(name: &str, msg: &M) -> Self {
        Self::from_any(name.to_string(), any(msg))
    }

    /// An already encoded `body` under `name`.
    pub fn from_any(name: String, body: Any) -> Self {
        // DefaultHasher::new() uses fixed keys: stable across processes.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.hash(&mut h);
        body.type_url.hash(&mut h);
        body.value.hash(&mut h);
        let version = h.finish();
        XdsResource(Arc::new(Encoded {
            name,
            body,
            version,
        }))
    }

    /// A resource of one byte, for tests of what holds resources.
    #[cfg(any(test, feature = "testing"))]
    pub fn of_byte(name: &str, content: u8) -> Self {
        Self::from_any(
            name.into(),
            Any {
                type_url: "t".into(),
                value: vec![content],
            },
        )
    }

    /// Whether both are the very same encoding (not only equal content).
    #[cfg(any(test, feature = "testing"))]
    pub fn same(&self, other: &XdsResource) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// An address: an IP, or (in a DNS cluster) a name to resolve.
fn socket(host: impl std::fmt::Display, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// How long a TLS handshake on an inbound may take.
const HANDSHAKE_TIMEOUT: Duration = Duration {
    seconds: 10,
    nanos: 0,
};

/// How long a proxied TCP connection may carry nothing before Envoy
/// closes it: Kuma's default, written out so that the config says it (with
/// the connect and handshake timeouts, no connection waits without end).
const TCP_IDLE_TIMEOUT: Duration = Duration {
    seconds: 3600,
    nanos: 0,
};

fn connect_timeout() -> Option<Duration> {
    Some(Duration {
        seconds: 5,
        nanos: 0,
    })
}

/// Resources delivered over the proxy's ADS stream.
pub(super) fn ads_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// A listener that proxies every connection to its `upstream` (as TCP,
/// or request by request for an HTTP service), after `filters_before`
/// (RBAC), over `transport` (TLS) when given. One that does not `bind` its
/// port receives only connections redirected to it (transparent proxying).
pub struct ProxyListener<'a> {
    pub name: &'a str,
    pub address: (IpAddr, u16),
    pub bind: bool,
    pub direction: TrafficDirection,
    /// Clusters and their weights; one cluster takes everything.
    pub upstream: &'a [(String, u32)],
    /// HTTP routes tried before the one to `upstream` (MeshHTTPRoute).
    pub routes: &'a [Route],
    pub stat_prefix: &'a str,
    pub protocol: Protocol,
    pub filters_before: Vec<Filter>,
    pub transport: Option<TransportSocket>,
    /// With a `transport`: plain-text connections are taken too, without
    /// `filters_before` (they carry no identity to check).
    pub permissive: bool,
    /// Where each connection (or request) is logged (TrafficLog).
    pub access_log: Vec<AccessLog>,
    /// Where an HTTP listener reports spans (TrafficTrace).
    pub tracing: Option<&'a Tracing>,
}

pub fn proxy_listener(spec: ProxyListener<'_>) -> XdsResource {
    let ProxyListener {
        name,
        address: (ip, port),
        bind: bind_to_port,
        direction,
        upstream,
        routes,
        stat_prefix,
        protocol,
        filters_before,
        transport,
        permissive,
        access_log,
        tracing,
    } = spec;
    let proxy = match protocol {
        Protocol::Tcp => {
            let cluster_specifier = match upstream {
                [(cluster, _)] => tcp_proxy::ClusterSpecifier::Cluster(cluster.clone()),
                split => {
                    tcp_proxy::ClusterSpecifier::WeightedClusters(tcp_proxy::WeightedCluster {
                        clusters: split
                            .iter()
                            .map(
                                |(name, weight)| tcp_proxy::weighted_cluster::ClusterWeight {
                                    name: name.clone(),
                                    weight: *weight,
                                    ..Default::default()
                                },
                            )
                            .collect(),
                    })
                }
            };
            let proxy = TcpProxy {
                stat_prefix: stat_prefix.to_string(),
                cluster_specifier: Some(cluster_specifier),
                access_log,
                idle_timeout: Some(TCP_IDLE_TIMEOUT),
                ..Default::default()
            };
            Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
            }
        }
        Protocol::Http | Protocol::Http2 => super::http::connection_manager(
            name,
            upstream,
            routes,
            stat_prefix,
            access_log,
            tracing,
        ),
    };
    let secured = transport.is_some();
    let permissive = permissive && secured;
    let by_transport = |protocol: &str| {
        permissive.then(|| FilterChainMatch {
            transport_protocol: protocol.to_string(),
            ..Default::default()
        })
    };
    let mut filter_chains = vec![FilterChain {
        filter_chain_match: by_transport("tls"),
        filters: filters_before.into_iter().chain([proxy.clone()]).collect(),
        transport_socket: transport,
        // A client that never finishes its handshake (one speaking plain
        // text, say) is let go rather than held forever.
        transport_socket_connect_timeout: secured.then_some(HANDSHAKE_TIMEOUT),
        ..Default::default()
    }];
    if permissive {
        filter_chains.push(FilterChain {
            filter_chain_match: by_transport("raw_buffer"),
            filters: vec![proxy],
            ..Default::default()
        });
    }
    let listener = Listener {
        name: name.to_string(),
        address: Some(socket(ip, port)),
        traffic_direction: direction as i32,
        filter_chains,
        // TLS or plain text is told by the first bytes.
        listener_filters: if permissive {
            vec![ListenerFilter {
                name: "envoy.filters.listener.tls_inspector".into(),
                config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                    &TlsInspector::default(),
                ))),
                ..Default::default()
            }]
        } else {
            Vec::new()
        },
        // A client that writes fewer bytes than a TLS record header and
        // waits for an answer would keep the inspector waiting: after a
        // second it is taken as plain text.
        listener_filters_timeout: permissive.then_some(INSPECTION_TIMEOUT),
        continue_on_listener_filters_timeout: permissive,
        // Unset is Envoy's default (bind), so bound listeners encode as before.
        bind_to_port: (!bind_to_port).then_some(BoolValue { value: false }),
        ..Default::default()
    };
    XdsResource::new(name, &listener)
}

/// How long a permissive inbound waits for the bytes that tell TLS from
/// plain text.
const INSPECTION_TIMEOUT: Duration = Duration {
    seconds: 1,
    nanos: 0,
};

/// A cluster that connects to where a redirected connection was going
/// (transparent proxying's passthrough).
pub fn original_destination_cluster(name: &str) -> XdsResource {
    let cluster = Cluster {
        name: name.to_string(),
        connect_timeout: connect_timeout(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: cluster::LbPolicy::ClusterProvided as i32,
        ..Default::default()
    };
    XdsResource::new(name, &cluster)
}

/// The listener the node's redirection (iptables) sends a pod's traffic to:
/// it hands each connection to the listener of its original destination,
/// and passes what no listener claims through to `passthrough`.
pub fn redirect_listener(name: &str, port: u16, passthrough: &str) -> XdsResource {
    let proxy = TcpProxy {
        stat_prefix: name.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(
            passthrough.to_string(),
        )),
        ..Default::default()
    };
    let listener = Listener {
        name: name.to_string(),
        address: Some(socket(std::net::Ipv4Addr::UNSPECIFIED, port)),
        use_original_dst: Some(BoolValue { value: true }),
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.original_dst".into(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                &OriginalDst {},
            ))),
            ..Default::default()
        }],
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.tcp_proxy".into(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&proxy))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    XdsResource::new(name, &listener)
}

/// A cluster of the addresses `host` resolves to (an IP is its own
/// answer), for services outside the mesh such as a trace collector.
pub fn dns_cluster(name: &str, host: &str, port: u16) -> XdsResource {
    let cluster = Cluster {
        name: name.to_string(),
        connect_timeout: connect_timeout(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::StrictDns as i32,
        )),
        dns_lookup_family: cluster::DnsLookupFamily::V4Preferred as i32,
        load_assignment: Some(assignment(name, [(host, port)].into_iter())),
        ..Default::default()
    };
    XdsResource::new(name, &cluster)
}

/// A cluster with one fixed endpoint (the local service behind an inbound).
pub fn static_cluster(name: &str, ip: IpAddr, port: u16, protocol: Protocol) -> XdsResource {
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: connect_timeout(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(assignment(name, [(ip, port)].into_iter())),
        ..Default::default()
    };
    if protocol == Protocol::Http2 {
        super::http::upstream_http2(&mut cluster);
    }
    XdsResource::new(name, &cluster)
}

/// A cluster whose endpoints come over ADS (EDS), named after its service,
/// over `transport` (TLS) when given.
pub fn eds_cluster(
    name: &str,
    transport: Option<TransportSocket>,
    protocol: Protocol,
) -> XdsResource {
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: connect_timeout(),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads_source()),
            service_name: String::new(),
        }),
        transport_socket: transport,
        ..Default::default()
    };
    if protocol == Protocol::Http2 {
        super::http::upstream_http2(&mut cluster);
    }
    XdsResource::new(name, &cluster)
}

fn assignment<H: std::fmt::Display>(
    name: &str,
    addresses: impl Iterator<Item = (H, u16)>,
) -> ClusterLoadAssignment {
    let lb_endpoints = addresses
        .map(|(ip, port)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                address: Some(socket(ip, port)),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The endpoints of a service, for EDS.
pub fn load_assignment(name: &str, addresses: impl Iterator<Item = (IpAddr, u16)>) -> XdsResource {
    XdsResource::new(name, &assignment(name, addresses))
}
