//! State-of-the-world ADS: each response carries every resource of its
//! type (or, for endpoints, every requested one) at one version.

use super::outgoing::SotwResponse;
use super::{Protocol, StreamContext};
use crate::xds::cache::{Snapshot, hex};
use crate::xds::generator::TypeUrl;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
use std::collections::HashMap;
use std::time::Instant;
use tonic::Status;

/// What the stream has sent of one type.
#[derive(Default)]
struct TypeState {
    subscribed: bool,
    /// Requested names; empty means all (wildcard).
    names: Vec<String>,
    sent_version: Option<u64>,
    sent_names: Vec<String>,
    nonce: String,
    sent_at: Option<Instant>,
    /// The version the proxy has in force: it ACKed it, or had it.
    confirmed: Option<u64>,
}

#[derive(Default)]
pub(super) struct Sotw(HashMap<TypeUrl, TypeState>);

impl Protocol for Sotw {
    type Request = DiscoveryRequest;
    type Response = SotwResponse;
    const KIND: &'static str = "sotw";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn handle(&mut self, ctx: &StreamContext, req: DiscoveryRequest) -> Result<(), Status> {
        let Some(type_url) = TypeUrl::parse(&req.type_url) else {
            return Ok(()); // a type this control plane does not serve
        };
        let t = self.0.entry(type_url).or_default();
        if !req.response_nonce.is_empty() {
            if req.response_nonce != t.nonce {
                return Ok(()); // answers an older response; superseded
            }
            ctx.answered(type_url, req.error_detail.as_ref(), t.sent_at.take());
            if req.error_detail.is_none() {
                t.confirmed = t.sent_version;
            }
        } else if !req.version_info.is_empty()
            && let Some(snapshot) = ctx.snapshot()
            && hex(snapshot.of_type(type_url).version) == req.version_info
        {
            // A reconnect of a proxy that already has this version (the
            // control plane restarted): nothing to send.
            t.sent_version = Some(snapshot.of_type(type_url).version);
            t.sent_names = req.resource_names.clone();
            t.confirmed = t.sent_version;
        }
        t.subscribed = true;
        t.names = req.resource_names;
        Ok(())
    }

    fn confirmed(&self, type_url: TypeUrl) -> Option<u64> {
        self.0.get(&type_url)?.confirmed
    }

    fn responses(
        &mut self,
        snapshot: &Snapshot,
        type_url: TypeUrl,
        nonce: &mut u64,
    ) -> Vec<SotwResponse> {
        let Some(t) = self.0.get_mut(&type_url).filter(|t| t.subscribed) else {
            return Vec::new();
        };
        let current = snapshot.of_type(type_url);
        if t.sent_version == Some(current.version) && t.sent_names == t.names {
            return Vec::new();
        }
        // Each response is the whole state of its type: one, however large.
        *nonce += 1;
        let nonce = nonce.to_string();
        let resources = current
            .resources
            .iter()
            .filter(|r| t.names.is_empty() || t.names.contains(&r.name))
            .cloned()
            .collect();
        t.sent_version = Some(current.version);
        t.sent_names = t.names.clone();
        t.nonce = nonce.clone();
        t.sent_at = Some(Instant::now());
        if type_url == TypeUrl::Cluster
            && let Some(eds) = self.0.get_mut(&TypeUrl::ClusterLoadAssignment)
        {
            // Replaced clusters warm until they get endpoints again, even
            // unchanged ones: send them after the clusters.
            eds.sent_version = None;
        }
        vec![SotwResponse {
            version_info: hex(current.version),
            resources,
            type_url: type_url.as_str(),
            nonce,
        }]
    }
}
