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
use super::mesh_route::{Decision, Selecting};
use super::route::{self, Subset};
use super::{ready_endpoints, tls};
use crate::resources::{Selector, Specificity};
use crate::resources::tags::Tags;
use crate::xds::index::MeshView;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::route::v3::Route;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// The outbounds to one service under one decision of its routes: its
/// protocol, where traffic goes, and the clusters and endpoints that
/// takes.
#[derive(Debug)]
pub struct Target {
    pub service: String,
    pub protocol: Protocol,
    /// Clusters and weights; one cluster takes everything.
    pub upstream: Vec<(String, u32)>,
    /// HTTP routes tried before the one to `upstream` (MeshHTTPRoute).
    pub http_routes: Vec<Route>,
    pub clusters: Vec<XdsResource>,
    pub endpoints: Vec<XdsResource>,
    /// The services read, with their revisions then.
    read: Vec<(String, u64)>,
}

/// What of a service's outbound its routes decide.
struct Routing {
    /// The split of the traffic no HTTP route takes.
    upstream: Vec<Subset>,
    /// Every subset traffic may go to (the split's, the HTTP routes' and
    /// their mirrors').
    subsets: Vec<Subset>,
    http_routes: Vec<Route>,
}

/// Which routes decided a service's outbound: the TrafficRoute of that
/// name (or none), or today's routes with what they decided.
#[derive(Debug, PartialEq)]
enum RouteKey {
    TrafficRoute(Option<String>),
    Routes(String),
}

fn protocol_of(mesh: &MeshView, service: &str) -> Protocol {
    Protocol::of_service(service, mesh.providers(service).map(|(_, p)| p))
}

impl Target {
    fn build(mesh: &MeshView, service: &str, routing: Routing, mtls: bool) -> Target {
        let protocol = protocol_of(mesh, service);
        let mut read = vec![(service.to_string(), mesh.service_revision(service))];
        let (mut clusters, mut endpoints) = (Vec::new(), Vec::new());
        for subset in &routing.subsets {
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
                protocol_of(mesh, &subset.service)
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
            upstream: routing
                .upstream
                .into_iter()
                .map(|s| (s.cluster, s.weight))
                .collect(),
            http_routes: routing.http_routes,
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

/// A target under the routes that decided it.
type RoutedTarget = (RouteKey, Arc<Target>);

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
    /// The MeshTCPRoutes and MeshHTTPRoutes that select them.
    mesh_routes: Vec<String>,
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

/// What of the proxy decides its outbounds: the tags its inbounds
/// announce, the routes that select it, the TrafficTrace it reports to
/// (by name), and whether its mesh has mTLS.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    pub tags: &'a [&'a Tags],
    pub routes: &'a Selecting<'a>,
    pub trace: Option<(&'a str, &'a Tracing)>,
    pub mtls: bool,
}

/// Where an outbound listens: its listener's name, the address, and
/// whether the listener binds it.
pub struct Place {
    pub name: String,
    pub address: (IpAddr, u16),
    pub bind: bool,
}

/// Listeners, clusters and endpoints by name, as a proxy's configuration
/// (or a VIP set) gathers them.
#[derive(Default)]
pub struct ByName {
    pub listeners: BTreeMap<String, XdsResource>,
    pub clusters: BTreeMap<String, XdsResource>,
    pub endpoints: BTreeMap<String, XdsResource>,
}

/// How one proxy reaches one service, as [`proxy_listener`] builds it.
struct Outbound<'a> {
    place: &'a Place,
    target: &'a Arc<Target>,
    trace: Option<(&'a str, &'a Tracing)>,
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

    /// Adds the outbound at `place` to `service` to `into`, unless a
    /// listener of that name is there already: the target's clusters and
    /// endpoints, and its listener, shared unless `access_log` (called
    /// once) logs it, since a log line names its source.
    pub fn add(
        &mut self,
        into: &mut ByName,
        mesh: &MeshView,
        source: &Source<'_>,
        place: Place,
        service: &str,
        access_log: impl FnOnce() -> Vec<AccessLog>,
    ) {
        if into.listeners.contains_key(&place.name) {
            return;
        }
        let target = self.target(mesh, source, service);
        for r in &target.clusters {
            into.clusters
                .entry(r.name.clone())
                .or_insert_with(|| r.clone());
        }
        for r in &target.endpoints {
            into.endpoints
                .entry(r.name.clone())
                .or_insert_with(|| r.clone());
        }
        let outbound = Outbound {
            place: &place,
            target: &target,
            trace: source.trace,
        };
        let logs = access_log();
        let listener = if logs.is_empty() {
            self.listener(mesh, outbound)
        } else {
            proxy_listener(&outbound, logs)
        };
        into.listeners.insert(place.name, listener);
    }

    /// The VIP set of a transparent proxy, or `None` when a TrafficLog
    /// selects it: its logged listeners name it, so they are its own.
    pub fn vip_set(
        &mut self,
        mesh: &MeshView,
        source: &Source<'_>,
        bind: bool,
    ) -> Option<Arc<VipSet>> {
        let selects = |sources: &[Selector]| Selector::best(sources, source.tags.iter().copied());
        let logged = mesh
            .traffic_logs()
            .iter()
            .any(|(_, log)| log.rules.iter().any(|r| selects(&r.sources).is_some()));
        if logged {
            return None;
        }
        self.check(mesh, source.mtls);
        if self.mesh_revision != mesh.revision() {
            self.mesh_revision = mesh.revision();
            self.vip_sets.clear();
        }
        let key = VipKey {
            routes: mesh
                .traffic_routes()
                .iter()
                .enumerate()
                .filter_map(|(i, (_, r))| Some((i, selects(&r.sources)?)))
                .collect(),
            mesh_routes: source
                .routes
                .names()
                .into_iter()
                .map(str::to_string)
                .collect(),
            bind,
            trace: source.trace.map(|(name, _)| name.to_string()),
        };
        if let Some(set) = self.vip_sets.get(&key) {
            return Some(set.clone());
        }
        let mut set = ByName::default();
        for (service, (ip, port)) in mesh.service_vips() {
            let name = format!("outbound:{ip}:{port}");
            let place = Place {
                name,
                address: (ip, port),
                bind,
            };
            self.add(&mut set, mesh, source, place, service, Vec::new);
        }
        let set = Arc::new(VipSet {
            listeners: set.listeners.into_values().collect(),
            clusters: set.clusters.into_values().collect(),
            endpoints: set.endpoints.into_values().collect(),
        });
        self.vip_sets.insert(key, set.clone());
        Some(set)
    }

    /// The outbound to `service` from `source`.
    fn target(&mut self, mesh: &MeshView, source: &Source<'_>, service: &str) -> Arc<Target> {
        self.check(mesh, source.mtls);
        let decision = source.routes.decide(service, || protocol_of(mesh, service));
        let legacy = match decision {
            Some(_) => None,
            None => route::chosen(source.tags, mesh, service),
        };
        let routes_key = decision.as_ref().map(Decision::key);
        let legacy_name = legacy.map(|(name, _)| name);
        if !self.targets.contains_key(service) {
            self.targets.insert(service.to_string(), Vec::new());
        }
        let variants = self.targets.get_mut(service).expect("inserted");
        // Compared borrowed: a memo hit allocates nothing.
        let at = variants.iter().position(|(k, _)| match k {
            RouteKey::Routes(key) => routes_key.as_ref() == Some(key),
            RouteKey::TrafficRoute(name) => routes_key.is_none() && name.as_deref() == legacy_name,
        });
        if let Some(i) = at
            && variants[i].1.is_current(mesh)
        {
            return variants[i].1.clone();
        }
        let routing = match decision {
            Some(decision) => Routing {
                upstream: decision.default.clone(),
                subsets: decision.subsets(service),
                http_routes: decision.http_routes(service),
            },
            None => {
                let subsets = route::subsets_or_whole(legacy.map(|(_, r)| r), service);
                Routing {
                    upstream: subsets.clone(),
                    subsets,
                    http_routes: Vec::new(),
                }
            }
        };
        let built = Arc::new(Target::build(mesh, service, routing, source.mtls));
        let key = match routes_key {
            Some(key) => RouteKey::Routes(key),
            None => RouteKey::TrafficRoute(legacy_name.map(str::to_string)),
        };
        match at {
            Some(i) => variants[i].1 = built.clone(),
            None => variants.push((key, built.clone())),
        }
        built
    }

    /// The listener of an outbound that logs nothing, shared.
    fn listener(&mut self, mesh: &MeshView, outbound: Outbound<'_>) -> XdsResource {
        let (name, bind) = (&outbound.place.name, outbound.place.bind);
        let trace_name = outbound.trace.map(|(name, _)| name);
        if !self.listeners.contains_key(name) {
            self.listeners.insert(name.clone(), HashMap::new());
        }
        let by_service = self.listeners.get_mut(name).expect("inserted");
        let service = &outbound.target.service;
        if !by_service.contains_key(service) {
            by_service.insert(service.clone(), Vec::new());
        }
        let variants = by_service.get_mut(service).expect("inserted");
        let found = variants.iter().find(|v| {
            v.bind == bind
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
            bind,
            target: outbound.target.clone(),
            trace: trace_name.map(str::to_string),
            listener: listener.clone(),
        });
        listener
    }
}

/// The listener of an outbound, with its access logs.
fn proxy_listener(outbound: &Outbound<'_>, access_log: Vec<AccessLog>) -> XdsResource {
    let target = outbound.target;
    envoy::proxy_listener(ProxyListener {
        name: &outbound.place.name,
        address: outbound.place.address,
        bind: outbound.place.bind,
        direction: TrafficDirection::Outbound,
        upstream: &target.upstream,
        routes: &target.http_routes,
        // Named by where it goes, not by the proxy: the same listener for
        // every proxy of the mesh.
        stat_prefix: &target.service,
        protocol: target.protocol,
        filters_before: Vec::new(),
        transport: None,
        permissive: false,
        access_log,
        tracing: outbound.trace.map(|(_, t)| t),
    })
}
