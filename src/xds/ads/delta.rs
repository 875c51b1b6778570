//! Incremental (delta) ADS: each response carries only the resources whose
//! version the proxy lacks, and the names of those it should drop.

use super::{Protocol, StreamContext};
use crate::xds::cache::Snapshot;
use crate::xds::generator::TypeUrl;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use std::collections::{HashMap, HashSet};
use std::time::Instant;
use tonic::Status;

/// What the stream knows the proxy has of one type.
#[derive(Default)]
struct TypeState {
    subscribed: bool,
    wildcard: bool,
    names: HashSet<String>,
    /// name -> version the proxy has (or was last sent).
    known: HashMap<String, String>,
    nonce: String,
    sent_at: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Delta(HashMap<TypeUrl, TypeState>);

impl Protocol for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const KIND: &'static str = "delta";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn handle(&mut self, ctx: &StreamContext, req: DeltaDiscoveryRequest) -> Result<(), Status> {
        let Some(type_url) = TypeUrl::parse(&req.type_url) else {
            return Ok(());
        };
        let t = self.0.entry(type_url).or_default();
        let first = !t.subscribed;
        if first {
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
                // Subscribing again asks for the resource again (Envoy
                // does so for the endpoints of a cluster it replaced).
                if !first {
                    t.known.remove(&name);
                }
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
            ctx.answered(type_url, req.error_detail.as_ref(), t.sent_at.take());
        }
        Ok(())
    }

    fn response(
        &mut self,
        snapshot: &Snapshot,
        type_url: TypeUrl,
        nonce: &str,
    ) -> Option<DeltaDiscoveryResponse> {
        let t = self.0.get_mut(&type_url).filter(|t| t.subscribed)?;
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
            return None;
        }
        for r in &changed {
            t.known.insert(r.name.clone(), r.version.clone());
        }
        for name in &removed {
            t.known.remove(name);
        }
        t.nonce = nonce.to_string();
        t.sent_at = Some(Instant::now());
        if type_url == TypeUrl::Cluster
            && let Some(eds) = self.0.get_mut(&TypeUrl::ClusterLoadAssignment)
        {
            // A replaced cluster warms until it gets endpoints again, even
            // unchanged ones: send them after it.
            for r in &changed {
                eds.known.remove(&r.name);
            }
        }
        Some(DeltaDiscoveryResponse {
            system_version_info: current.version.clone(),
            resources: changed,
            type_url: type_url.as_str().to_string(),
            removed_resources: removed,
            nonce: nonce.to_string(),
            ..Default::default()
        })
    }
}
