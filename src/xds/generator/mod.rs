//! The generator: a pure function from a dataplane and its mesh to the
//! Envoy resources of its proxy. No locks, no I/O, no clocks, so it is
//! tested with golden files and benchmarked on its own.
//!
//! - one inbound listener per inbound interface, `{address}:{dataplane-port}`,
//!   proxying TCP to the local cluster `localhost:{service-port}`;
//! - one outbound listener per outbound interface, proxying TCP to the
//!   cluster named after the service, whose endpoints (EDS) are every
//!   inbound of that service in the same mesh.

mod envoy;

pub use envoy::{TypeUrl, XdsResource};

use super::index::MeshView;
use crate::resources::DataplaneSpec;
use std::collections::BTreeMap;

/// Everything one proxy is sent, by type, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    pub listeners: Vec<XdsResource>,
    pub clusters: Vec<XdsResource>,
    pub endpoints: Vec<XdsResource>,
}

impl ProxyConfig {
    pub fn of_type(&self, type_url: TypeUrl) -> &[XdsResource] {
        match type_url {
            TypeUrl::Listener => &self.listeners,
            TypeUrl::Cluster => &self.clusters,
            TypeUrl::ClusterLoadAssignment => &self.endpoints,
        }
    }
}

/// The local cluster an inbound forwards to.
pub fn local_cluster_name(service_port: u16) -> String {
    format!("localhost:{service_port}")
}

pub fn generate(dataplane: &DataplaneSpec, mesh: &MeshView) -> ProxyConfig {
    let mut listeners = BTreeMap::new();
    let mut clusters = BTreeMap::new();
    let mut endpoints = BTreeMap::new();
    let service = dataplane.services().first().copied().unwrap_or("");

    for inbound in &dataplane.networking.inbound {
        // Validated on the way into the store; an unparsable one cannot be
        // served, so it is skipped rather than failing the whole proxy.
        let Ok(ep) = inbound.endpoint() else { continue };
        let cluster = local_cluster_name(ep.service_port);
        let name = format!("inbound:{}:{}", ep.address, ep.dataplane_port);
        listeners.insert(
            name.clone(),
            envoy::tcp_listener(&name, ep.address, ep.dataplane_port, &cluster, &name),
        );
        clusters.insert(
            cluster.clone(),
            envoy::static_cluster(
                &cluster,
                std::net::Ipv4Addr::LOCALHOST.into(),
                ep.service_port,
            ),
        );
    }

    for outbound in &dataplane.networking.outbound {
        let Ok(ep) = outbound.endpoint() else {
            continue;
        };
        let name = format!("outbound:{}:{}", ep.address, ep.port);
        let target = &outbound.service;
        listeners.insert(
            name.clone(),
            envoy::tcp_listener(
                &name,
                ep.address,
                ep.port,
                target,
                &format!("{service}->{target}"),
            ),
        );
        clusters.insert(target.clone(), envoy::eds_cluster(target));
        let addresses = mesh.providers(target).flat_map(|(_, provider)| {
            provider
                .networking
                .inbound
                .iter()
                .filter(|i| i.service() == Some(target.as_str()))
                .filter_map(|i| i.endpoint().ok())
                .map(|e| (e.address, e.dataplane_port))
        });
        endpoints.insert(target.clone(), envoy::load_assignment(target, addresses));
    }
    ProxyConfig {
        listeners: listeners.into_values().collect(),
        clusters: clusters.into_values().collect(),
        endpoints: endpoints.into_values().collect(),
    }
}
