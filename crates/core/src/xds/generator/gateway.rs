//! Cross-mesh gateways (see `resources::gateway`): what a gateway proxy is
//! sent, and the outbound by which a proxy of another mesh reaches it.
//! Both need mTLS in both meshes; without it there is no path.

use super::envoy::{self, ProxyListener, XdsResource};
use super::http::Protocol;
use super::tls::{self, CROSS_MESH_CA_SECRET, ProxyTls};
use super::{ProxyConfig, ready_endpoints};
use crate::resources::{DataplaneSpec, Gateway, OutboundEndpoint};
use crate::xds::index::MeshView;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;

/// The outbound listener, cluster and endpoints by which a proxy of `mesh`
/// (serving `own`) reaches gateway service `service` of mesh `peer`: the
/// peer's CA is trusted for it alone, and the gateway must prove
/// `spiffe://{peer}/{service}`. No endpoint unless `mesh` trusts `peer`
/// (`Mesh.crossMesh`).
pub struct CrossMeshTarget {
    pub listener: XdsResource,
    pub cluster: XdsResource,
    pub endpoints: XdsResource,
}

pub fn cross_mesh_target(
    mesh: &MeshView,
    own: &str,
    peer: &str,
    service: &str,
    at: OutboundEndpoint,
) -> CrossMeshTarget {
    let name = format!("crossmesh:{peer}:{service}");
    let addresses = mesh
        .cross_mesh()
        .reachable
        .get(peer)
        .and_then(|services| services.get(service))
        .into_iter()
        .flatten()
        .copied();
    let transport = tls::upstream_verified_by(peer, service, &tls::peer_ca_secret(peer));
    let listener_name = format!("outbound:{}:{}", at.address, at.port);
    CrossMeshTarget {
        listener: envoy::proxy_listener(ProxyListener {
            name: &listener_name,
            address: (at.address, at.port),
            bind: true,
            direction: TrafficDirection::Outbound,
            upstream: &[(name.clone(), 1)],
            routes: &[],
            stat_prefix: &format!("{own}->{service}.{peer}"),
            protocol: Protocol::Tcp,
            filters_before: Vec::new(),
            transport: None,
            permissive: false,
            access_log: Vec::new(),
            tracing: None,
        }),
        cluster: envoy::eds_cluster(&name, Some(transport), Protocol::Tcp),
        endpoints: envoy::load_assignment(&name, addresses),
    }
}

/// A gateway proxy: a listener per cross-mesh listener of its MeshGateway,
/// taking the proxies of the meshes that trust this one (their CAs, and
/// the gateway service's TrafficPermissions, whose sources name them with
/// `kuma.io/mesh`), and sending them to its MeshGatewayRoute's backends.
pub fn proxy(
    dataplane: &DataplaneSpec,
    gateway: &Gateway,
    mesh: &MeshView,
    tls: Option<ProxyTls<'_>>,
) -> ProxyConfig {
    let Some(tls) = tls else {
        return ProxyConfig::default();
    };
    let mut config = ProxyConfig {
        secrets: tls::secrets(&tls),
        ..Default::default()
    };
    let trusting: Vec<&str> = tls
        .peer_cas
        .iter()
        .filter(|(m, _)| mesh.cross_mesh().trusted_by.contains(m))
        .map(|(_, pem)| pem.as_str())
        .collect();
    let (Some(address), Some(service), Some(conf), Some(route)) = (
        dataplane.gateway_address(),
        gateway.service(),
        mesh.gateway_for(&gateway.tags),
        mesh.gateway_route_for(&gateway.tags),
    ) else {
        return config;
    };
    // No mesh trusts this one: nobody may come in.
    if trusting.is_empty() {
        return config;
    }
    config.secrets.push(tls::validation_secret(
        CROSS_MESH_CA_SECRET,
        &trusting.join("\n"),
    ));
    let mut upstream = Vec::new();
    for (backend, weight) in route.backends() {
        config.clusters.push(envoy::eds_cluster(
            backend,
            Some(tls::upstream(&mesh.name, backend)),
            Protocol::Tcp,
        ));
        config.endpoints.push(envoy::load_assignment(
            backend,
            ready_endpoints(mesh, backend, |tags| {
                tags.get(crate::resources::tags::SERVICE_TAG)
                    .is_some_and(|s| s == backend)
            }),
        ));
        upstream.push((backend.to_string(), weight));
    }
    for listener in conf.conf.listeners.iter().filter(|l| l.cross_mesh) {
        let name = format!("gateway:{address}:{}", listener.port);
        let permissions = mesh
            .permissions()
            .for_services(&[service])
            .map(|(n, p)| (n.as_str(), p.as_ref()));
        let rbac = tls::rbac_filter(&name, &mesh.name, &gateway.tags, permissions);
        config.listeners.push(envoy::proxy_listener(ProxyListener {
            name: &name,
            address: (address, listener.port),
            bind: true,
            direction: TrafficDirection::Inbound,
            upstream: &upstream,
            routes: &[],
            stat_prefix: &name,
            protocol: Protocol::Tcp,
            filters_before: vec![rbac],
            transport: Some(tls::downstream_verified_by(CROSS_MESH_CA_SECRET)),
            permissive: false,
            access_log: Vec::new(),
            tracing: None,
        }));
    }
    config
}
