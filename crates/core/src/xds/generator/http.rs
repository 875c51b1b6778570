//! Services that speak HTTP: an inbound tagged `protocol: http`, `http2`
//! or `grpc` gets Envoy's HTTP connection manager instead of the TCP
//! proxy, and so do the outbounds of its consumers, so that stats, access
//! logs, routes and traces carry HTTP detail. TCP stays the default.

use super::encode::any;
use crate::resources::DataplaneSpec;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Http2ProtocolOptions;
use envoy_types::pb::envoy::config::listener::v3::{Filter, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster, route,
    route_action, route_match, weighted_cluster,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions, http_protocol_options,
};
use envoy_types::pb::google::protobuf::{Duration, UInt32Value};
use http_connection_manager::Tracing;

/// What a service speaks, from the `protocol` tag of its inbounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Http,
    /// HTTP/2, and gRPC over it: the upstream connection is HTTP/2 too.
    Http2,
}

impl Protocol {
    pub fn of_tag(tag: Option<&str>) -> Protocol {
        match tag {
            Some("http") => Protocol::Http,
            Some("http2" | "grpc") => Protocol::Http2,
            _ => Protocol::Tcp,
        }
    }

    /// What the consumers of `service` speak to it: the protocol its
    /// providers' inbounds agree on, TCP when they do not (a mixed rollout
    /// keeps working at the lowest common level).
    pub fn of_service<'a>(
        service: &str,
        providers: impl Iterator<Item = &'a DataplaneSpec>,
    ) -> Protocol {
        let mut agreed = None;
        for provider in providers {
            for inbound in &provider.networking.inbound {
                if inbound.service() != Some(service) {
                    continue;
                }
                let protocol = Protocol::of_tag(inbound.tags.get("protocol").map(String::as_str));
                match agreed {
                    None => agreed = Some(protocol),
                    Some(p) if p != protocol => return Protocol::Tcp,
                    Some(_) => {}
                }
            }
        }
        agreed.unwrap_or(Protocol::Tcp)
    }
}

/// The HTTP connection manager of listener `name`, routing every request
/// that none of `routes` takes to its upstream: one cluster, or several
/// by weight (TrafficRoute, MeshTCPRoute).
pub fn connection_manager(
    name: &str,
    upstream: &[(String, u32)],
    routes: &[Route],
    stat_prefix: &str,
    access_log: Vec<AccessLog>,
    tracing: Option<&Tracing>,
) -> Filter {
    let cluster_specifier = match upstream {
        [(cluster, _)] => route_action::ClusterSpecifier::Cluster(cluster.clone()),
        split => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: split
                .iter()
                .map(|(name, weight)| weighted_cluster::ClusterWeight {
                    name: name.clone(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier),
            // No request timeout: long-lived streams (gRPC, downloads) are
            // the application's to end, as they are over TCP.
            timeout: Some(Duration {
                seconds: 0,
                nanos: 0,
            }),
            ..Default::default()
        })),
        ..Default::default()
    };
    let manager = HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: name.to_string(),
                virtual_hosts: vec![VirtualHost {
                    name: name.to_string(),
                    domains: vec!["*".into()],
                    routes: routes.iter().cloned().chain([route]).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        access_log,
        tracing: tracing.cloned(),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(
                any(&Router::default()),
            )),
            ..Default::default()
        }],
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(any(&manager))),
    }
}

/// Makes `cluster` speak HTTP/2 to its endpoints.
pub fn upstream_http2(cluster: &mut Cluster) {
    let options = HttpProtocolOptions {
        upstream_protocol_options: Some(
            http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                http_protocol_options::ExplicitHttpConfig {
                    protocol_config: Some(
                        http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                            Http2ProtocolOptions::default(),
                        ),
                    ),
                },
            ),
        ),
        ..Default::default()
    };
    cluster.typed_extension_protocol_options.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".into(),
        any(&options),
    );
}
