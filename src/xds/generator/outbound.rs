//! What outbounds share across proxies, encoded once. On Kubernetes every
//! proxy of a mesh reaches every service at its Service address: 10,000
//! proxies and 1,000 services would mean ten million clusters, endpoint
//! lists and listeners to encode, nearly all of them byte for byte the
//! same. Here each is encoded once per mesh state and handed to every
//! proxy that needs it; a change to one service's providers re-encodes
//! that service only.
//!
//! The memo never changes what a proxy gets, only how often it is
//! computed: each entry remembers the revisions of what it read (the
//! mesh's policies, the providers of each service) and is rebuilt when one
//! moved.

use super::envoy::{self, ProxyListener, XdsResource};
use super::http::Protocol;
use super::route::{self, Subset};
use super::{ready_endpoints, tls};
use crate::resources::{Selector, Specificity};
use crate::resources::tags::Tags;
use crate::xds::index::MeshView;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// The outbounds to one service under one TrafficRoute (or none): its
/// protocol, where traffic goes, and the clusters and endpoints that
/// takes.
#[derive(Debug)]
pub struct Target {
    pub service: String,
    pub protocol: Protocol,
    /// Clusters and weights; one cluster takes everything.
    pub upstream: Vec<(String, u32)>,
    pub clusters: Vec<XdsResource>,
    pub endpoints: Vec<XdsResource>,
    /// The services read, with their revisions then.
    read: Vec<(String, u64)>,
}

impl Target {
    fn build(mesh: &MeshView, service: &str, subsets: Vec<Subset>, mtls: bool) -> Target {
        let of_service =
            |service: &str| Protocol::of_service(service, mesh.providers(service).map(|(_, p)| p));
        let protocol = of_service(service);
        let mut read = vec![(service.to_string(), mesh.service_revision(service))];
        let (mut clusters, mut endpoints) = (Vec::new(), Vec::new());
        for subset in &subsets {
            if clusters
                .iter()
                .any(|c: &XdsResource| c.name == subset.cluster)
            {
                continue;
            }
            // Usually the target's own subsets: its protocol is known.
            let subset_protocol = if subset.service == service {
                protocol
            } else {
                read.push((
                    subset.service.clone(),
                    mesh.service_revision(&subset.service),
                ));
                of_service(&subset.service)
            };
            let transport = mtls.then(|| tls::upstream(&mesh.name, &subset.service));
            clusters.push(envoy::eds_cluster(
                &subset.cluster,
                transport,
                subset_protocol,
            ));
            let addresses = ready_endpoints(mesh, &subset.service, |t| subset.selects(t));
            endpoints.push(envoy::load_assignment(&subset.cluster, addresses));
        }
        Target {
            service: service.to_string(),
            protocol,
            upstream: subsets.into_iter().map(|s| (s.cluster, s.weight)).collect(),
            clusters,
            endpoints,
            read,
        }
    }

    fn is_current(&self, mesh: &MeshView) -> bool {
        self.read
            .iter()
            .all(|(service, revision)| mesh.service_revision(service) == *revision)
    }
}

/// A target under the TrafficRoute of that name (or none).
type RoutedTarget = (Option<String>, Arc<Target>);

/// A listener shared by the proxies whose outbound to the same target,
/// at the same address, is configured the same way.
struct SharedListener {
    bind: bool,
    target: Arc<Target>,
    /// The TrafficTrace the proxy reports to, by name.
    trace: Option<String>,
    listener: XdsResource,
}

/// What a transparent proxy gets for every service of its mesh at its
/// Service address, each list sorted by name.
#[derive(Debug, Default)]
pub struct VipSet {
    pub listeners: Vec<XdsResource>,
    pub clusters: Vec<XdsResource>,
    pub endpoints: Vec<XdsResource>,
}

/// Proxies alike in every input of their VIP set get the same set: how
/// specifically each TrafficRoute's sources select them (the route each
/// connection takes follows from that alone), whether the listeners bind,
/// and the TrafficTrace they report to.
#[derive(Debug, PartialEq, Eq, Hash)]
struct VipKey {
    routes: Vec<(usize, Specificity)>,
    bind: bool,
    trace: Option<String>,
}

/// One mesh's outbound memo, kept by the reconciler across rebuilds.
#[derive(Default)]
pub struct Outbounds {
    /// The mesh's policy revision the entries were built under.
    policy_revision: u64,
    mtls: bool,
    /// The mesh's revision the VIP sets were built under: they read
    /// every service, so any change makes them stale.
    mesh_revision: u64,
    vip_sets: HashMap<VipKey, Arc<VipSet>>,
    /// service -> by the TrafficRoute that applies.
    targets: HashMap<String, Vec<RoutedTarget>>,
    /// listener name -> target service -> the variants proxies use. (By
    /// service too: every proxy with one explicit outbound names its
    /// listener after the same local port, whatever service it reaches.)
    listeners: HashMap<String, HashMap<String, Vec<SharedListener>>>,
}

/// How one proxy reaches one service, as [`Outbounds::listener`] builds it.
pub struct Outbound<'a> {
    pub name: &'a str,
    pub address: (IpAddr, u16),
    pub bind: bool,
    pub target: &'a Arc<Target>,
    pub trace: Option<(&'a str, &'a Tracing)>,
}

impl Outbounds {
    /// Forgets everything when the mesh's policies or spec changed since
    /// the entries were built.
    fn check(&mut self, mesh: &MeshView, mtls: bool) {
        if self.policy_revision != mesh.policy_revision() || self.mtls != mtls {
            *self = Outbounds {
                policy_revision: mesh.policy_revision(),
                mtls,
                ..Default::default()
            };
        }
    }

    /// The VIP set of a transparent proxy with `source_tags`, or `None`
    /// when a TrafficLog selects it: its logged listeners name it, so they
    /// are its own.
    pub fn vip_set(
        &mut self,
        mesh: &MeshView,
        source_tags: &[&Tags],
        bind: bool,
        trace: Option<(&str, &Tracing)>,
        mtls: bool,
    ) -> Option<Arc<VipSet>> {
        let logged = mesh.traffic_logs().iter().any(|(_, log)| {
            log.rules
                .iter()
                .any(|r| Selector::best(&r.sources, source_tags.iter().copied()).is_some())
        });
        if logged {
            return None;
        }
        self.check(mesh, mtls);
        if self.mesh_revision != mesh.revision() {
            self.mesh_revision = mesh.revision();
            self.vip_sets.clear();
        }
        let key = VipKey {
            routes: mesh
                .traffic_routes()
                .iter()
                .enumerate()
                .filter_map(|(i, (_, r))| {
                    Some((i, Selector::best(&r.sources, source_tags.iter().copied())?))
                })
                .collect(),
            bind,
            trace: trace.map(|(name, _)| name.to_string()),
        };
        if let Some(set) = self.vip_sets.get(&key) {
            return Some(set.clone());
        }
        let (mut listeners, mut clusters, mut endpoints) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (service, (ip, port)) in mesh.service_vips() {
            let name = format!("outbound:{ip}:{port}");
            let target = self.target(mesh, source_tags, service, mtls);
            for r in &target.clusters {
                clusters.entry(r.name.clone()).or_insert_with(|| r.clone());
            }
            for r in &target.endpoints {
                endpoints.entry(r.name.clone()).or_insert_with(|| r.clone());
            }
            let listener = self.listener(
                mesh,
                Outbound {
                    name: &name,
                    address: (ip, port),
                    bind,
                    target: &target,
                    trace,
                },
            );
            listeners.insert(name, listener);
        }
        let set = Arc::new(VipSet {
            listeners: listeners.into_values().collect(),
            clusters: clusters.into_values().collect(),
            endpoints: endpoints.into_values().collect(),
        });
        self.vip_sets.insert(key, set.clone());
        Some(set)
    }

    /// The outbound to `service` from a proxy with `source_tags`.
    pub fn target(
        &mut self,
        mesh: &MeshView,
        source_tags: &[&Tags],
        service: &str,
        mtls: bool,
    ) -> Arc<Target> {
        self.check(mesh, mtls);
        let chosen = route::chosen(source_tags, mesh, service);
        let route_name = chosen.map(|(name, _)| name);
        if !self.targets.contains_key(service) {
            self.targets.insert(service.to_string(), Vec::new());
        }
        let variants = self.targets.get_mut(service).expect("inserted");
        let at = variants
            .iter()
            .position(|(name, _)| name.as_deref() == route_name);
        if let Some(i) = at
            && variants[i].1.is_current(mesh)
        {
            return variants[i].1.clone();
        }
        let subsets = route::subsets_or_whole(chosen.map(|(_, r)| r), service);
        let built = Arc::new(Target::build(mesh, service, subsets, mtls));
        match at {
            Some(i) => variants[i].1 = built.clone(),
            None => variants.push((route_name.map(str::to_string), built.clone())),
        }
        built
    }

    /// The listener of an outbound that logs nothing (a logged one names
    /// its source, so it is the proxy's own).
    pub fn listener(&mut self, mesh: &MeshView, outbound: Outbound<'_>) -> XdsResource {
        let trace_name = outbound.trace.map(|(name, _)| name);
        if !self.listeners.contains_key(outbound.name) {
            self.listeners
                .insert(outbound.name.to_string(), HashMap::new());
        }
        let by_service = self.listeners.get_mut(outbound.name).expect("inserted");
        let service = &outbound.target.service;
        if !by_service.contains_key(service) {
            by_service.insert(service.clone(), Vec::new());
        }
        let variants = by_service.get_mut(service).expect("inserted");
        let found = variants.iter().find(|v| {
            v.bind == outbound.bind
                && Arc::ptr_eq(&v.target, outbound.target)
                && v.trace.as_deref() == trace_name
        });
        if let Some(v) = found {
            return v.listener.clone();
        }
        let listener = proxy_listener(&outbound, Vec::new());
        // A variant whose target is stale has been or will be rebuilt.
        variants.retain(|v| v.target.is_current(mesh));
        variants.push(SharedListener {
            bind: outbound.bind,
            target: outbound.target.clone(),
            trace: trace_name.map(str::to_string),
            listener: listener.clone(),
        });
        listener
    }
}

/// The listener of an outbound, with its access logs.
pub fn proxy_listener(
    outbound: &Outbound<'_>,
    access_log: Vec<envoy_types::pb::envoy::config::accesslog::v3::AccessLog>,
) -> XdsResource {
    let target = outbound.target;
    envoy::proxy_listener(ProxyListener {
        name: outbound.name,
        address: outbound.address,
        bind: outbound.bind,
        direction: TrafficDirection::Outbound,
        upstream: &target.upstream,
        // Named by where it goes, not by the proxy: the same listener for
        // every proxy of the mesh.
        stat_prefix: &target.service,
        protocol: target.protocol,
        filters_before: Vec::new(),
        transport: None,
        access_log,
        tracing: outbound.trace.map(|(_, t)| t),
    })
}
