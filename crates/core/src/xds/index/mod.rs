//! The resource index: what the generator needs to know of each mesh, with
//! the reverse maps that tell which proxies a change affects.
//!
//! It is fed by [`IndexEvent`]s only, through [`ResourceIndex::apply`], the
//! one place a resource enters it: Universal mode turns the store's change
//! feed into events (`super::feed`), Kubernetes mode its watchers. Everything
//! after the index (reconciler, ADS, bootstrap) reads the index, so nothing
//! downstream knows where resources are kept.
//!
//! Everything is looked up by mesh first; nothing computed for one mesh
//! reads another.

mod handle;
mod policies;
mod targeted;

pub use handle::{IndexHandle, REGISTRATION_GRACE};
pub use policies::Policies;
use policies::Policy;
pub use targeted::{Scoped, Section, selecting, selecting_inbound};

use crate::resources::CA_SECRET;
use crate::resources::tags::{SERVICE_TAG, Tags};
use crate::resources::{
    DataplaneSpec, MeshGatewayRouteSpec, MeshGatewaySpec, MeshHttpRouteSpec, MeshSpec,
    MeshTcpRouteSpec, MeshTlsSpec, MeshTrafficPermissionSpec, ParsedProxyTemplate, Resource,
    ResourceKey, ResourceType, SecretSpec, Selector, Spec, TargetRefPolicy, TrafficLogSpec,
    TrafficPermissionSpec, TrafficRouteSpec, TrafficTraceSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

/// A change the index hears of, whatever the source.
#[derive(Debug, Clone)]
pub enum IndexEvent {
    /// A resource was created or changed: this is its current state.
    Apply(Resource),
    /// A resource is gone.
    Delete(ResourceKey),
    /// Everything there is, replacing what the index holds: at start, and
    /// whenever the source may have missed changes (a lagging subscriber,
    /// a lost database connection, a watch that expired).
    Reset(Vec<Resource>),
}

/// A proxy: its mesh and its dataplane's name. Envoy's node id is
/// `{mesh}.{name}`; mesh names hold no dot, so the first dot splits them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProxyId {
    pub mesh: String,
    pub name: String,
}

impl ProxyId {
    pub fn new(mesh: &str, name: &str) -> Self {
        ProxyId {
            mesh: mesh.to_string(),
            name: name.to_string(),
        }
    }

    pub fn from_node_id(node_id: &str) -> Option<Self> {
        let (mesh, name) = node_id.split_once('.')?;
        (!mesh.is_empty() && !name.is_empty()).then(|| Self::new(mesh, name))
    }

    pub fn node_id(&self) -> String {
        format!("{}.{}", self.mesh, self.name)
    }
}

impl std::fmt::Display for ProxyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.mesh, self.name)
    }
}

/// One mesh as the generator sees it.
#[derive(Debug, Default, Clone)]
pub struct MeshView {
    pub name: String,
    pub spec: Arc<MeshSpec>,
    permissions: Policies<TrafficPermissionSpec>,
    traffic_logs: Policies<TrafficLogSpec>,
    traffic_routes: Policies<TrafficRouteSpec>,
    traffic_traces: Policies<TrafficTraceSpec>,
    proxy_templates: Policies<ParsedProxyTemplate>,
    /// Today's permissions (`targetRef`), by name; once there is one, the
    /// legacy `permissions` are no longer consulted.
    mesh_traffic_permissions: Policies<Scoped<MeshTrafficPermissionSpec>>,
    /// Today's routes, by name: they take the traffic they name from the
    /// TrafficRoutes, an HTTP route from a TCP route.
    mesh_tcp_routes: Policies<Scoped<MeshTcpRouteSpec>>,
    mesh_http_routes: Policies<Scoped<MeshHttpRouteSpec>>,
    mesh_tlses: Policies<Scoped<MeshTlsSpec>>,
    pub dataplanes: HashMap<String, Arc<DataplaneSpec>>,
    /// The mesh's secrets (CA, token signing key, revocations), by name.
    secrets: HashMap<String, Arc<SecretSpec>>,
    /// service -> dataplanes with an inbound of that service.
    providers: HashMap<String, BTreeSet<String>>,
    /// service -> dataplanes with an outbound to that service.
    consumers: HashMap<String, BTreeSet<String>>,
    /// How many dataplanes reach every service of the mesh at its Service
    /// address (transparent proxying): they consume every service.
    transparent: usize,
    /// service -> its Service addresses, each with how many inbounds
    /// announce it.
    vips: BTreeMap<String, BTreeMap<(IpAddr, u16), usize>>,
    gateways: Policies<MeshGatewaySpec>,
    gateway_routes: Policies<MeshGatewayRouteSpec>,
    /// Dataplanes that are gateways.
    gateway_dataplanes: BTreeSet<String>,
    /// What this mesh's proxies and gateways need of other meshes.
    cross_mesh: Arc<CrossMeshView>,
    /// service -> a revision that changes whenever its providers do, so
    /// what was computed from them can tell it is stale.
    revisions: HashMap<String, u64>,
    /// Changes with the mesh's spec and any of its policies.
    policy_revision: u64,
    /// Changes with anything in the mesh.
    revision: u64,
}

/// Revisions are unique in the process: a mesh deleted and created again,
/// or an index reset, never repeats one.
fn next_revision() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// What one mesh's proxies need of the meshes it is linked with by
/// `Mesh.crossMesh`: the only thing of another mesh a proxy is given.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CrossMeshView {
    /// Mesh -> gateway service -> the addresses of its cross-mesh
    /// listeners, for the meshes this one trusts.
    pub reachable: BTreeMap<String, BTreeMap<String, Vec<(IpAddr, u16)>>>,
    /// The meshes that trust this one: its gateways take their proxies.
    pub trusted_by: BTreeSet<String>,
    /// The CA secrets of every mesh above, so that a new CA there
    /// rebuilds the proxies here.
    cas: BTreeMap<String, Arc<SecretSpec>>,
}

impl CrossMeshView {
    /// Every mesh this one is linked with, either way.
    pub fn linked(&self) -> impl Iterator<Item = &str> {
        self.cas.keys().map(String::as_str)
    }
}

impl MeshView {
    fn new(name: &str) -> Self {
        MeshView {
            name: name.to_string(),
            policy_revision: next_revision(),
            ..Default::default()
        }
    }

    /// Changes whenever the providers of `service` do (0: it has none).
    pub fn service_revision(&self, service: &str) -> u64 {
        self.revisions.get(service).copied().unwrap_or(0)
    }

    /// Changes whenever the mesh's spec or one of its policies does.
    pub fn policy_revision(&self) -> u64 {
        self.policy_revision
    }

    /// Changes whenever anything in the mesh does.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The proxies with an inbound (or gateway tags) that one of
    /// `selectors` matches.
    fn selected(&self, selectors: &[&Selector]) -> BTreeSet<ProxyId> {
        self.dataplanes
            .iter()
            .filter(|(_, dp)| {
                let gateway = dp.networking.gateway.iter().map(|g| &g.tags);
                dp.networking
                    .inbound
                    .iter()
                    .map(|i| &i.tags)
                    .chain(gateway)
                    .any(|tags| selectors.iter().any(|s| s.matches(tags)))
            })
            .map(|(n, _)| ProxyId::new(&self.name, n))
            .collect()
    }

    /// The proxies with an inbound (or gateway tags) that one of `policies`
    /// selects.
    fn targeted<P: TargetRefPolicy>(&self, policies: &[&Scoped<P>]) -> BTreeSet<ProxyId> {
        self.dataplanes
            .iter()
            .filter(|(_, dp)| {
                let gateway = dp.networking.gateway.iter().map(|g| (&g.tags, true));
                dp.networking
                    .inbound
                    .iter()
                    .map(|i| (&i.tags, false))
                    .chain(gateway)
                    .any(|(tags, gw)| policies.iter().any(|p| p.selects(tags, gw, None)))
            })
            .map(|(n, _)| ProxyId::new(&self.name, n))
            .collect()
    }

    /// The mesh's MeshTrafficPermissions, in name order.
    pub fn mesh_traffic_permissions(&self) -> &Policies<Scoped<MeshTrafficPermissionSpec>> {
        &self.mesh_traffic_permissions
    }

    /// The mesh's MeshTCPRoutes, filed by the service they target.
    pub fn mesh_tcp_routes(&self) -> &Policies<Scoped<MeshTcpRouteSpec>> {
        &self.mesh_tcp_routes
    }

    /// The mesh's MeshHTTPRoutes, filed by the service they target.
    pub fn mesh_http_routes(&self) -> &Policies<Scoped<MeshHttpRouteSpec>> {
        &self.mesh_http_routes
    }

    /// The mesh's MeshTLS policies, filed by the service they target.
    pub fn mesh_tlses(&self) -> &Policies<Scoped<MeshTlsSpec>> {
        &self.mesh_tlses
    }

    /// Whether the mesh has a MeshTrafficPermission, which retires its
    /// TrafficPermissions.
    pub fn has_mesh_traffic_permissions(&self) -> bool {
        !self.mesh_traffic_permissions.is_empty()
    }

    /// The mesh's traffic permissions.
    pub fn permissions(&self) -> &Policies<TrafficPermissionSpec> {
        &self.permissions
    }

    /// The mesh's traffic logs.
    pub fn traffic_logs(&self) -> &Policies<TrafficLogSpec> {
        &self.traffic_logs
    }

    /// The mesh's traffic routes.
    pub fn traffic_routes(&self) -> &Policies<TrafficRouteSpec> {
        &self.traffic_routes
    }

    /// The mesh's traffic traces.
    pub fn traffic_traces(&self) -> &Policies<TrafficTraceSpec> {
        &self.traffic_traces
    }

    /// The mesh's proxy templates, their raw resources parsed.
    pub fn proxy_templates(&self) -> &Policies<ParsedProxyTemplate> {
        &self.proxy_templates
    }

    pub fn secret(&self, name: &str) -> Option<&Arc<SecretSpec>> {
        self.secrets.get(name)
    }

    /// The MeshGateway that configures the gateway with `tags` (the first
    /// by name).
    pub fn gateway_for(&self, tags: &Tags) -> Option<&MeshGatewaySpec> {
        let service = tags
            .get(SERVICE_TAG)
            .map(String::as_str)
            .unwrap_or_default();
        self.gateways
            .for_services(&[service])
            .map(|(_, g)| g.as_ref())
            .find(|g| g.selects(tags))
    }

    /// The MeshGatewayRoute of the gateway with `tags` (the first by name).
    pub fn gateway_route_for(&self, tags: &Tags) -> Option<&MeshGatewayRouteSpec> {
        let service = tags
            .get(SERVICE_TAG)
            .map(String::as_str)
            .unwrap_or_default();
        self.gateway_routes
            .for_services(&[service])
            .map(|(_, r)| r.as_ref())
            .find(|r| r.selects(tags))
    }

    pub fn cross_mesh(&self) -> &CrossMeshView {
        &self.cross_mesh
    }

    /// Where this mesh's gateway service `service` takes other meshes'
    /// proxies: every cross-mesh listener of every gateway dataplane of it.
    fn cross_mesh_listeners(&self) -> BTreeMap<String, Vec<(IpAddr, u16)>> {
        let mut out: BTreeMap<String, Vec<(IpAddr, u16)>> = BTreeMap::new();
        for dp in self
            .gateway_dataplanes
            .iter()
            .filter_map(|n| self.dataplanes.get(n))
        {
            let (Some(gateway), Some(address)) = (&dp.networking.gateway, dp.gateway_address())
            else {
                continue;
            };
            let (Some(service), Some(conf)) = (gateway.service(), self.gateway_for(&gateway.tags))
            else {
                continue;
            };
            let ports = conf.conf.listeners.iter().filter(|l| l.cross_mesh);
            out.entry(service.to_string())
                .or_default()
                .extend(ports.map(|l| (address, l.port)));
        }
        out
    }

    /// Dataplanes serving `service`, in name order (stable output).
    pub fn providers(&self, service: &str) -> impl Iterator<Item = (&str, &DataplaneSpec)> {
        self.providers
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|name| Some((name.as_str(), self.dataplanes.get(name)?.as_ref())))
    }

    /// The name of `service`'s port (Kuma's inbound `name`; on
    /// Kubernetes, the Service port's), from one of its providers.
    pub fn port_name(&self, service: &str) -> Option<&str> {
        self.providers(service)
            .flat_map(|(_, dataplane)| dataplane.networking.inbound.iter())
            .find(|inbound| inbound.service() == Some(service))?
            .name
            .as_deref()
    }

    /// Every service of the mesh with a Service address, and its
    /// addresses, in order (stable output).
    pub fn service_vips(&self) -> impl Iterator<Item = (&str, (IpAddr, u16))> {
        self.vips
            .iter()
            .flat_map(|(service, vips)| vips.keys().map(move |vip| (service.as_str(), *vip)))
    }

    /// Who consumes any of `services`: the dataplanes with an outbound to
    /// one of them, and, when there are any, every transparent proxy of the
    /// mesh, named as the whole mesh rather than one by one (on Kubernetes
    /// that is every proxy, and listing 10,000 of them per change would cost
    /// more than looking at the connected ones).
    fn consumers_of(&self, services: &[&str]) -> Affected {
        let proxies = services
            .iter()
            .filter_map(|s| self.consumers.get(*s))
            .flatten()
            .map(|c| ProxyId::new(&self.name, c))
            .collect();
        let meshes = if services.is_empty() || self.transparent == 0 {
            BTreeSet::new()
        } else {
            [self.name.clone()].into()
        };
        Affected {
            proxies,
            meshes,
            everything: false,
        }
    }

    fn link(&mut self, name: &str, dp: &DataplaneSpec) {
        for s in dp.services() {
            self.providers
                .entry(s.to_string())
                .or_default()
                .insert(name.to_string());
            self.revisions.insert(s.to_string(), next_revision());
        }
        for o in &dp.networking.outbound {
            self.consumers
                .entry(o.service.clone())
                .or_default()
                .insert(name.to_string());
        }
        if dp.networking.transparent_proxying.is_some() {
            self.transparent += 1;
        }
        if dp.networking.gateway.is_some() {
            self.gateway_dataplanes.insert(name.to_string());
        }
        for (service, vip) in vips(dp) {
            *self
                .vips
                .entry(service.to_string())
                .or_default()
                .entry(vip)
                .or_default() += 1;
        }
    }

    fn unlink(&mut self, name: &str, dp: &DataplaneSpec) {
        for s in dp.services() {
            if let Some(set) = self.providers.get_mut(s) {
                set.remove(name);
                if set.is_empty() {
                    self.providers.remove(s);
                    self.revisions.remove(s);
                } else {
                    self.revisions.insert(s.to_string(), next_revision());
                }
            }
        }
        for o in &dp.networking.outbound {
            if let Some(set) = self.consumers.get_mut(&o.service) {
                set.remove(name);
                if set.is_empty() {
                    self.consumers.remove(&o.service);
                }
            }
        }
        if dp.networking.transparent_proxying.is_some() {
            self.transparent -= 1;
        }
        self.gateway_dataplanes.remove(name);
        for (service, vip) in vips(dp) {
            if let Some(by_vip) = self.vips.get_mut(service) {
                if let Some(count) = by_vip.get_mut(&vip) {
                    *count -= 1;
                    if *count == 0 {
                        by_vip.remove(&vip);
                    }
                }
                if by_vip.is_empty() {
                    self.vips.remove(service);
                }
            }
        }
    }
}

/// The (service, Service address) pairs a dataplane's inbounds announce.
fn vips(dp: &DataplaneSpec) -> impl Iterator<Item = (&str, (IpAddr, u16))> {
    dp.networking.inbound.iter().filter_map(|i| {
        let vip = i.vip()?.ok()?;
        Some((i.service()?, (vip.address, vip.port)))
    })
}

/// Proxies whose configuration may have changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Affected {
    pub proxies: BTreeSet<ProxyId>,
    /// Every proxy of these meshes.
    pub meshes: BTreeSet<String>,
    /// Every proxy (the index was reset).
    pub everything: bool,
}

impl Affected {
    pub fn contains(&self, id: &ProxyId) -> bool {
        self.everything || self.meshes.contains(&id.mesh) || self.proxies.contains(id)
    }

    /// Whether telling which proxies are affected needs a look at every
    /// connected proxy, rather than only the few named.
    pub fn is_wide(&self) -> bool {
        self.everything || !self.meshes.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        !self.everything && self.meshes.is_empty() && self.proxies.is_empty()
    }

    pub fn merge(&mut self, other: Affected) {
        self.proxies.extend(other.proxies);
        self.meshes.extend(other.meshes);
        self.everything |= other.everything;
    }

    fn mesh(mesh: &str) -> Affected {
        Affected {
            meshes: [mesh.to_string()].into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct ResourceIndex {
    meshes: HashMap<String, MeshView>,
    /// Some mesh has a cross-mesh view to keep (or to clear).
    cross_mesh_in_use: bool,
}

impl ResourceIndex {
    pub fn meshes(&self) -> impl Iterator<Item = &MeshView> {
        self.meshes.values()
    }

    pub fn mesh(&self, mesh: &str) -> Option<&MeshView> {
        self.meshes.get(mesh)
    }

    /// Whether the dataplane `id` may be in its mesh
    /// (`Mesh.constraints`); `Ok` when either is not known here.
    pub fn admits(&self, id: &ProxyId) -> Result<(), String> {
        match (self.mesh(&id.mesh), self.dataplane(id)) {
            (Some(mesh), Some(dataplane)) => mesh.spec.admits(&id.mesh, dataplane),
            _ => Ok(()),
        }
    }

    pub fn dataplane(&self, id: &ProxyId) -> Option<&Arc<DataplaneSpec>> {
        self.meshes.get(&id.mesh)?.dataplanes.get(&id.name)
    }

    /// Applies one event; answers which proxies it may have changed.
    pub fn apply(&mut self, event: IndexEvent) -> Affected {
        let mut affected = self.apply_one(event);
        self.refresh_cross_mesh(&mut affected);
        affected
    }

    /// Recomputes what each mesh needs of the meshes it is linked with;
    /// every proxy of a mesh whose view changed is affected. Nothing to do
    /// (one look at each mesh) unless some mesh names another.
    fn refresh_cross_mesh(&mut self, affected: &mut Affected) {
        let linking = self.meshes.values().any(|m| m.spec.cross_mesh.is_some());
        if !linking && !self.cross_mesh_in_use {
            return;
        }
        let mut fresh: BTreeMap<String, CrossMeshView> = BTreeMap::new();
        for (a, view) in &self.meshes {
            let Some(cross) = &view.spec.cross_mesh else {
                continue;
            };
            for b in cross.meshes().filter(|b| *b != a) {
                let Some(peer) = self.meshes.get(b) else {
                    continue;
                };
                let ca = |m: &MeshView| m.secrets.get(CA_SECRET).cloned();
                let mine = fresh.entry(a.clone()).or_default();
                mine.reachable
                    .insert(b.to_string(), peer.cross_mesh_listeners());
                if let Some(ca) = ca(peer) {
                    mine.cas.insert(b.to_string(), ca);
                }
                let theirs = fresh.entry(b.to_string()).or_default();
                theirs.trusted_by.insert(a.clone());
                if let Some(ca) = ca(view) {
                    theirs.cas.insert(a.clone(), ca);
                }
            }
        }
        self.cross_mesh_in_use = !fresh.is_empty();
        for (name, view) in self.meshes.iter_mut() {
            let new = fresh.remove(name).unwrap_or_default();
            if *view.cross_mesh != new {
                view.cross_mesh = Arc::new(new);
                affected.meshes.insert(name.clone());
            }
        }
    }

    fn apply_one(&mut self, event: IndexEvent) -> Affected {
        match event {
            IndexEvent::Apply(resource) => self.upsert(&resource.key, resource.spec),
            IndexEvent::Delete(key) => self.remove(&key),
            IndexEvent::Reset(resources) => {
                let mut fresh = ResourceIndex::default();
                for resource in resources {
                    fresh.upsert(&resource.key, resource.spec);
                }
                *self = fresh;
                Affected {
                    everything: true,
                    ..Default::default()
                }
            }
        }
    }

    fn upsert(&mut self, key: &ResourceKey, spec: Spec) -> Affected {
        let (mesh, name) = (key.mesh.as_str(), key.name.as_str());
        match spec {
            Spec::Mesh(spec) => self.upsert_mesh(name, spec),
            Spec::Dataplane(spec) => self.upsert_dataplane(mesh, name, spec),
            Spec::TrafficPermission(spec) => {
                self.set_policy(mesh, name, Some(spec), |v| &mut v.permissions)
            }
            Spec::Secret(spec) => self.set_secret(mesh, name, Some(spec)),
            Spec::TrafficLog(spec) => {
                self.set_policy(mesh, name, Some(spec), |v| &mut v.traffic_logs)
            }
            Spec::TrafficRoute(spec) => {
                self.set_policy(mesh, name, Some(spec), |v| &mut v.traffic_routes)
            }
            Spec::TrafficTrace(spec) => {
                self.set_policy(mesh, name, Some(spec), |v| &mut v.traffic_traces)
            }
            Spec::ProxyTemplate(spec) => {
                self.set_policy(mesh, name, Some(spec.parsed()), |v| &mut v.proxy_templates)
            }
            Spec::MeshGateway(spec) => self.set_policy(mesh, name, Some(spec), |v| &mut v.gateways),
            Spec::MeshGatewayRoute(spec) => {
                self.set_policy(mesh, name, Some(spec), |v| &mut v.gateway_routes)
            }
            Spec::MeshTrafficPermission(document) => {
                self.set_target_ref_policy(mesh, name, Some(Scoped::from(*document)), |v| {
                    &mut v.mesh_traffic_permissions
                })
            }
            Spec::MeshTcpRoute(document) => {
                self.set_target_ref_policy(mesh, name, Some(Scoped::from(*document)), |v| {
                    &mut v.mesh_tcp_routes
                })
            }
            Spec::MeshHttpRoute(document) => {
                self.set_target_ref_policy(mesh, name, Some(Scoped::from(*document)), |v| {
                    &mut v.mesh_http_routes
                })
            }
            Spec::MeshTls(document) => {
                self.set_target_ref_policy(mesh, name, Some(Scoped::from(*document)), |v| {
                    &mut v.mesh_tlses
                })
            }
            // Insights are what proxies did, not what they are sent; who
            // may use the API shapes no proxy.
            Spec::DataplaneInsight(_) | Spec::AccessRole(_) | Spec::AccessRoleBinding(_) => {
                Affected::default()
            }
        }
    }

    fn remove(&mut self, key: &ResourceKey) -> Affected {
        let (mesh, name) = (key.mesh.as_str(), key.name.as_str());
        match key.kind {
            ResourceType::Mesh => self.remove_mesh(name),
            ResourceType::Dataplane => self.remove_dataplane(mesh, name),
            ResourceType::TrafficPermission => {
                self.set_policy::<TrafficPermissionSpec>(mesh, name, None, |v| &mut v.permissions)
            }
            ResourceType::Secret => self.set_secret(mesh, name, None),
            ResourceType::TrafficLog => {
                self.set_policy::<TrafficLogSpec>(mesh, name, None, |v| &mut v.traffic_logs)
            }
            ResourceType::TrafficRoute => {
                self.set_policy::<TrafficRouteSpec>(mesh, name, None, |v| &mut v.traffic_routes)
            }
            ResourceType::TrafficTrace => {
                self.set_policy::<TrafficTraceSpec>(mesh, name, None, |v| &mut v.traffic_traces)
            }
            ResourceType::ProxyTemplate => {
                self.set_policy::<ParsedProxyTemplate>(mesh, name, None, |v| &mut v.proxy_templates)
            }
            ResourceType::MeshGateway => {
                self.set_policy::<MeshGatewaySpec>(mesh, name, None, |v| &mut v.gateways)
            }
            ResourceType::MeshGatewayRoute => {
                self.set_policy::<MeshGatewayRouteSpec>(mesh, name, None, |v| &mut v.gateway_routes)
            }
            ResourceType::MeshTrafficPermission => self
                .set_target_ref_policy::<MeshTrafficPermissionSpec>(mesh, name, None, |v| {
                    &mut v.mesh_traffic_permissions
                }),
            ResourceType::MeshTcpRoute => {
                self.set_target_ref_policy::<MeshTcpRouteSpec>(mesh, name, None, |v| {
                    &mut v.mesh_tcp_routes
                })
            }
            ResourceType::MeshHttpRoute => {
                self.set_target_ref_policy::<MeshHttpRouteSpec>(mesh, name, None, |v| {
                    &mut v.mesh_http_routes
                })
            }
            ResourceType::MeshTls => {
                self.set_target_ref_policy::<MeshTlsSpec>(mesh, name, None, |v| &mut v.mesh_tlses)
            }
            ResourceType::DataplaneInsight
            | ResourceType::AccessRole
            | ResourceType::AccessRoleBinding
            | ResourceType::GlobalSecret => Affected::default(),
        }
    }

    /// The mesh about to change.
    fn view(&mut self, mesh: &str) -> &mut MeshView {
        let view = self
            .meshes
            .entry(mesh.to_string())
            .or_insert_with(|| MeshView::new(mesh));
        view.revision = next_revision();
        view
    }

    fn upsert_mesh(&mut self, mesh: &str, spec: MeshSpec) -> Affected {
        let view = self.view(mesh);
        view.spec = Arc::new(spec);
        view.policy_revision = next_revision();
        Affected::mesh(mesh)
    }

    fn remove_mesh(&mut self, mesh: &str) -> Affected {
        self.meshes.remove(mesh);
        Affected::mesh(mesh)
    }

    /// Secrets shape no configuration but the certificates: a new CA means
    /// new certificates for the whole mesh; other secrets (token keys,
    /// revocations) are read where tokens are checked.
    fn set_secret(&mut self, mesh: &str, name: &str, spec: Option<SecretSpec>) -> Affected {
        let view = self.view(mesh);
        let changed = match spec {
            Some(spec) => {
                let spec = Arc::new(spec);
                view.secrets.insert(name.to_string(), spec.clone()) != Some(spec)
            }
            None => view.secrets.remove(name).is_some(),
        };
        if changed && name == CA_SECRET {
            Affected::mesh(mesh)
        } else {
            Affected::default()
        }
    }

    /// A dataplane appeared or changed: it is affected, and so is every
    /// proxy consuming a service it serves (before or after the change).
    fn upsert_dataplane(&mut self, mesh: &str, name: &str, spec: DataplaneSpec) -> Affected {
        let view = self.view(mesh);
        let spec = Arc::new(spec);
        let old = view.dataplanes.insert(name.to_string(), spec.clone());
        let mut services = spec.services();
        if let Some(old) = &old {
            services.extend(old.services());
        }
        let mut affected = view.consumers_of(&services);
        affected.proxies.insert(ProxyId::new(mesh, name));
        if let Some(old) = old {
            view.unlink(name, &old);
        }
        view.link(name, &spec);
        affected
    }

    fn remove_dataplane(&mut self, mesh: &str, name: &str) -> Affected {
        let Some(view) = self.meshes.get_mut(mesh) else {
            return Affected::default();
        };
        let Some(old) = view.dataplanes.remove(name) else {
            return Affected::default();
        };
        view.revision = next_revision();
        view.unlink(name, &old);
        view.consumers_of(&old.services())
    }

    /// A policy appeared, changed or went (`None`). The proxies its proxy
    /// selectors pick, before or after the change, are affected, no others.
    fn set_policy<P: Policy>(
        &mut self,
        mesh: &str,
        name: &str,
        spec: Option<P>,
        policies: fn(&mut MeshView) -> &mut Policies<P>,
    ) -> Affected {
        let view = self.view(mesh);
        view.policy_revision = next_revision();
        let map = policies(view);
        let old = match spec {
            Some(spec) => map.insert(name, spec),
            None => map.remove(name),
        };
        let new = map.get(name).cloned();
        let selectors: Vec<&Selector> = old
            .iter()
            .chain(new.iter())
            .flat_map(|p| p.proxy_selectors())
            .collect();
        Affected {
            proxies: view.selected(&selectors),
            ..Default::default()
        }
    }

    /// Adds, replaces or (`None`) removes a `targetRef` policy. It changes
    /// the proxies its old and new top-level `targetRef` select; the first
    /// of its kind in a mesh and the last one removed change every proxy,
    /// whose legacy policies of the same job they retire or bring back.
    fn set_target_ref_policy<P: TargetRefPolicy>(
        &mut self,
        mesh: &str,
        name: &str,
        spec: Option<Scoped<P>>,
        policies: fn(&mut MeshView) -> &mut Policies<Scoped<P>>,
    ) -> Affected {
        let view = self.view(mesh);
        view.policy_revision = next_revision();
        let map = policies(view);
        let had_any = !map.is_empty();
        let old = match spec {
            Some(spec) => map.insert(name, spec),
            None => map.remove(name),
        };
        let new = map.get(name).cloned();
        if had_any == map.is_empty() {
            return Affected {
                meshes: [mesh.to_string()].into(),
                ..Default::default()
            };
        }
        let changed: Vec<&Scoped<P>> = old.iter().chain(new.iter()).map(Arc::as_ref).collect();
        Affected {
            proxies: view.targeted(&changed),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{InboundInterface, Networking, OutboundInterface};

    fn dp(service: &str, outbound: &[&str]) -> DataplaneSpec {
        DataplaneSpec {
            networking: Networking {
                address: None,
                gateway: None,
                inbound: vec![InboundInterface {
                    interface: "127.0.0.1:1000:2000".into(),
                    tags: [("service".to_string(), service.to_string())].into(),
                    ..Default::default()
                }],
                outbound: outbound
                    .iter()
                    .enumerate()
                    .map(|(i, s)| OutboundInterface {
                        mesh: None,
                        interface: format!(":{}", 3000 + i),
                        service: s.to_string(),
                    })
                    .collect(),
                ..Default::default()
            },
        }
    }

    fn ids(a: &Affected) -> Vec<String> {
        a.proxies.iter().map(ProxyId::to_string).collect()
    }

    #[test]
    fn a_new_provider_affects_its_consumers_only() {
        let mut index = ResourceIndex::default();
        index.upsert_mesh("m", MeshSpec::default());
        index.upsert_dataplane("m", "web", dp("web", &["redis"]));
        index.upsert_dataplane("m", "other", dp("other", &["db"]));
        let a = index.upsert_dataplane("m", "redis-1", dp("redis", &[]));
        assert_eq!(ids(&a), ["m.redis-1", "m.web"]);
        let a = index.remove_dataplane("m", "redis-1");
        assert_eq!(ids(&a), ["m.web"]);
        assert_eq!(index.mesh("m").unwrap().providers("redis").count(), 0);
    }

    #[test]
    fn a_changed_service_affects_consumers_of_old_and_new() {
        let mut index = ResourceIndex::default();
        index.upsert_dataplane("m", "a", dp("x", &["redis"]));
        index.upsert_dataplane("m", "b", dp("y", &["db"]));
        index.upsert_dataplane("m", "s", dp("redis", &[]));
        let a = index.upsert_dataplane("m", "s", dp("db", &[]));
        assert_eq!(ids(&a), ["m.a", "m.b", "m.s"]);
    }

    #[test]
    fn meshes_do_not_see_each_other() {
        let mut index = ResourceIndex::default();
        index.upsert_dataplane("a", "web", dp("web", &["redis"]));
        let affected = index.upsert_dataplane("b", "redis-1", dp("redis", &[]));
        assert_eq!(ids(&affected), ["b.redis-1"]);
        assert_eq!(index.mesh("a").unwrap().providers("redis").count(), 0);
    }

    #[test]
    fn a_permission_affects_the_proxies_its_destinations_select() {
        let mut index = ResourceIndex::default();
        index.upsert_dataplane("m", "web", dp("web", &["redis"]));
        index.upsert_dataplane("m", "redis-1", dp("redis", &[]));
        index.upsert_dataplane("m", "db-1", dp("db", &[]));
        let to = |service: &str| crate::resources::TrafficPermissionSpec {
            rules: vec![crate::resources::TrafficPermissionRule {
                sources: vec![Selector {
                    match_tags: [("service".to_string(), "web".to_string())].into(),
                }],
                destinations: vec![Selector {
                    match_tags: [("service".to_string(), service.to_string())].into(),
                }],
            }],
        };
        assert_eq!(
            ids(&index.set_policy("m", "p", Some(to("redis")), |v| &mut v.permissions)),
            ["m.redis-1"]
        );
        // Moved to db: the old destination and the new one.
        assert_eq!(
            ids(&index.set_policy("m", "p", Some(to("db")), |v| &mut v.permissions)),
            ["m.db-1", "m.redis-1"]
        );
        assert_eq!(
            ids(&index.set_policy::<TrafficPermissionSpec>("m", "p", None, |v| &mut v.permissions)),
            ["m.db-1"]
        );
    }

    #[test]
    fn a_transparent_proxy_consumes_every_service_at_its_vip() {
        let mut index = ResourceIndex::default();
        let mut client = dp("client", &[]);
        client.networking.transparent_proxying = Some(Default::default());
        index.upsert_dataplane("m", "client", client);
        let mut echo = dp("echo", &[]);
        echo.networking.inbound[0].service_vip = Some("10.96.0.5:80".into());
        let a = index.upsert_dataplane("m", "echo-1", echo.clone());
        assert!(a.contains(&ProxyId::new("m", "client")));
        assert!(!a.contains(&ProxyId::new("other", "client")));
        index.upsert_dataplane("m", "echo-2", echo);
        let vips: Vec<_> = index.mesh("m").unwrap().service_vips().collect();
        assert_eq!(vips, [("echo", ("10.96.0.5".parse().unwrap(), 80))]);
        index.remove_dataplane("m", "echo-1");
        assert_eq!(index.mesh("m").unwrap().service_vips().count(), 1);
        let a = index.remove_dataplane("m", "echo-2");
        assert!(a.contains(&ProxyId::new("m", "client")));
        assert_eq!(index.mesh("m").unwrap().service_vips().count(), 0);
    }

    fn apply_yaml(index: &mut ResourceIndex, doc: &str) -> Affected {
        let value: serde_json::Value = serde_yaml_ng::from_str(doc).unwrap();
        let r = Resource::from_json(value, crate::resources::Identity::FromDocument).unwrap();
        index.apply(IndexEvent::Apply(r))
    }

    #[test]
    fn a_mesh_sees_the_gateways_of_the_meshes_it_trusts_and_nothing_else() {
        let mut index = ResourceIndex::default();
        for doc in [
            "{type: Mesh, name: a, crossMesh: {gateways: [{mesh: b}]}}",
            "{type: Mesh, name: b}",
            "{type: Mesh, name: c}",
            "{type: Dataplane, mesh: b, name: edge-1, networking: {address: 10.0.0.9, gateway: {type: BUILTIN, tags: {service: edge}}}}",
            "{type: Dataplane, mesh: b, name: api-1, networking: {inbound: [{interface: '10.0.0.2:80:8080', tags: {service: api}}]}}",
        ] {
            apply_yaml(&mut index, doc);
        }
        let a = |index: &ResourceIndex| index.mesh("a").unwrap().cross_mesh().clone();
        // No MeshGateway yet: the gateway listens nowhere.
        assert_eq!(a(&index).reachable["b"].get("edge"), None);
        let affected = apply_yaml(
            &mut index,
            "{type: MeshGateway, mesh: b, name: edge, selectors: [{match: {service: edge}}], conf: {listeners: [{port: 8080, protocol: TCP, crossMesh: true}, {port: 9090, protocol: TCP}]}}",
        );
        assert!(
            affected.meshes.contains("a"),
            "mesh a's proxies are rebuilt"
        );
        assert!(!affected.meshes.contains("c"));
        let reachable = a(&index).reachable;
        assert_eq!(
            reachable["b"]["edge"],
            vec![("10.0.0.9".parse().unwrap(), 8080)],
            "only the cross-mesh listener, and only the gateway: {reachable:?}"
        );
        assert!(
            index
                .mesh("b")
                .unwrap()
                .cross_mesh()
                .trusted_by
                .contains("a")
        );
        assert_eq!(
            *index.mesh("c").unwrap().cross_mesh(),
            CrossMeshView::default()
        );
        // Mesh a stops trusting b: it sees nothing of b again.
        apply_yaml(&mut index, "{type: Mesh, name: a}");
        assert_eq!(
            *index.mesh("a").unwrap().cross_mesh(),
            CrossMeshView::default()
        );
        assert!(index.mesh("b").unwrap().cross_mesh().trusted_by.is_empty());
    }

    #[test]
    fn node_ids_split_at_the_first_dot() {
        let id = ProxyId::from_node_id("default.web.1").unwrap();
        assert_eq!((id.mesh.as_str(), id.name.as_str()), ("default", "web.1"));
        assert!(ProxyId::from_node_id("nodot").is_none());
        assert!(ProxyId::from_node_id(".x").is_none());
    }
}
