//! The generator: a pure function from a dataplane and its mesh to the
//! Envoy resources of its proxy. No locks, no I/O, no clocks, so it is
//! tested with golden files and benchmarked on its own.
//!
//! - one inbound listener per inbound interface, `{address}:{dataplane-port}`,
//!   proxying TCP to the local cluster `localhost:{service-port}`;
//! - one outbound listener per outbound interface, proxying TCP to the
//!   cluster named after the service, whose endpoints (EDS) are every ready
//!   inbound of that service in the same mesh;
//! - for a transparent proxy, one outbound listener more per Service
//!   address of every service of the mesh (bound on that address, or, when
//!   the node redirects traffic, left unbound for the redirect to reach).

pub mod access_log;
mod encode;
mod envoy;
mod gateway;
mod http;
pub mod inbound_tls;
pub mod mesh_route;
pub mod outbound;
pub mod permissions;
pub mod proxy_template;
pub mod route;
pub mod tls;
pub mod tracing;

pub use crate::envoy_api::TypeUrl;
use envoy::ProxyListener;
pub use envoy::XdsResource;
pub use http::Protocol;
pub use outbound::Outbounds;
pub use tls::{MtlsPhase, ProxyTls};

use super::index::{MeshView, Section};
use crate::resources::DataplaneSpec;
use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use itertools::{EitherOrBoth, Itertools};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Everything one proxy is sent, by type, each sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxyConfig {
    pub secrets: Vec<XdsResource>,
    pub listeners: Vec<XdsResource>,
    pub clusters: Vec<XdsResource>,
    pub endpoints: Vec<XdsResource>,
}

impl ProxyConfig {
    /// The resources of one type.
    pub fn of_type(&self, type_url: TypeUrl) -> &Vec<XdsResource> {
        match type_url {
            TypeUrl::Secret => &self.secrets,
            TypeUrl::Listener => &self.listeners,
            TypeUrl::Cluster => &self.clusters,
            TypeUrl::ClusterLoadAssignment => &self.endpoints,
        }
    }

    fn of_type_mut(&mut self, type_url: TypeUrl) -> &mut Vec<XdsResource> {
        match type_url {
            TypeUrl::Secret => &mut self.secrets,
            TypeUrl::Listener => &mut self.listeners,
            TypeUrl::Cluster => &mut self.clusters,
            TypeUrl::ClusterLoadAssignment => &mut self.endpoints,
        }
    }
}

/// The local cluster an inbound forwards to.
pub fn local_cluster_name(service_port: u16) -> String {
    format!("localhost:{service_port}")
}

/// The configuration of one proxy. `tls` is given when its mesh has mTLS
/// on: then every inbound requires a mesh certificate and a permission, and
/// every outbound verifies the destination's SPIFFE id. A ProxyTemplate
/// that selects the proxy has the last word.
pub fn generate(
    dataplane: &DataplaneSpec,
    mesh: &MeshView,
    tls: Option<ProxyTls<'_>>,
) -> ProxyConfig {
    generate_sharing(dataplane, mesh, tls, &mut Outbounds::default())
}

/// [`generate`], taking what outbounds share from the mesh's memo
/// `outbounds` (and adding to it): the same configuration, with what other
/// proxies of the mesh also get encoded once for all of them.
pub fn generate_sharing(
    dataplane: &DataplaneSpec,
    mesh: &MeshView,
    tls: Option<ProxyTls<'_>>,
    outbounds: &mut Outbounds,
) -> ProxyConfig {
    let template = proxy_template::chosen(dataplane, mesh).map(|(_, t)| t);
    let mut config = match template {
        Some(t) if !t.imports_default() => ProxyConfig {
            secrets: tls.as_ref().map(tls::secrets).unwrap_or_default(),
            ..Default::default()
        },
        _ => default_proxy(dataplane, mesh, tls, outbounds),
    };
    if let Some(template) = template {
        proxy_template::apply(&mut config, template);
    }
    config
}

/// The `default-proxy` profile: what every proxy gets unless a template
/// says otherwise.
fn default_proxy(
    dataplane: &DataplaneSpec,
    mesh: &MeshView,
    tls: Option<ProxyTls<'_>>,
    outbounds: &mut Outbounds,
) -> ProxyConfig {
    if let Some(gateway) = &dataplane.networking.gateway {
        return gateway::proxy(dataplane, gateway, mesh, tls);
    }
    let mut own = outbound::ByName::default();
    let service = dataplane.services().first().copied().unwrap_or("");
    let source_tags = dataplane.inbound_tags();
    let transparent = dataplane.networking.transparent_proxying.as_ref();
    // Redirected inbound traffic reaches the inbound listeners through the
    // redirect listener: they must not bind the application's ports.
    let bind_inbound = transparent.is_none_or(|t| t.redirect_port_inbound == 0);
    let tracing = tracing::of_proxy(dataplane, mesh);
    let trace_config = tracing.as_ref().map(|t| &t.config);
    if let Some(t) = &tracing {
        own.clusters
            .insert(t.collector.name.clone(), t.collector.clone());
    }

    for inbound in &dataplane.networking.inbound {
        // Validated on the way into the store; an unparsable one cannot be
        // served, so it is skipped rather than failing the whole proxy.
        let Ok(ep) = inbound.endpoint() else { continue };
        let cluster = local_cluster_name(ep.service_port);
        let name = format!("inbound:{}:{}", ep.address, ep.dataplane_port);
        let section = Section {
            port: ep.dataplane_port,
            name: inbound.name.as_deref(),
        };
        let protocol = Protocol::of_tag(inbound.tags.get("protocol").map(String::as_str));
        let (filters, transport, permissive) = match tls {
            Some(tls) => {
                // A MeshTrafficPermission in the mesh retires its
                // TrafficPermissions, as in Kuma.
                let rbac = if mesh.has_mesh_traffic_permissions() {
                    let access = permissions::inbound_access(mesh, &inbound.tags, section);
                    permissions::rbac_filter(&name, &mesh.name, &access)
                } else {
                    let legacy = mesh
                        .permissions()
                        .for_services(&[inbound.service().unwrap_or_default()])
                        .map(|(n, p)| (n.as_str(), p.as_ref()));
                    tls::rbac_filter(&name, &mesh.name, &inbound.tags, legacy)
                };
                let taking = inbound_tls::of_inbound(mesh, &inbound.tags, section, tls.phase);
                (
                    vec![rbac],
                    Some(tls::downstream(taking.params)),
                    taking.permissive,
                )
            }
            None => (Vec::new(), None, false),
        };
        own.listeners.insert(
            name.clone(),
            envoy::proxy_listener(ProxyListener {
                name: &name,
                address: (ep.address, ep.dataplane_port),
                bind: bind_inbound,
                direction: TrafficDirection::Inbound,
                upstream: &[(cluster.clone(), 1)],
                routes: &[],
                stat_prefix: &name,
                protocol,
                filters_before: filters,
                transport,
                permissive,
                access_log: Vec::new(),
                tracing: trace_config,
            }),
        );
        own.clusters.insert(
            cluster.clone(),
            envoy::static_cluster(
                &cluster,
                std::net::Ipv4Addr::LOCALHOST.into(),
                ep.service_port,
                protocol,
            ),
        );
    }

    // Each service's clusters, endpoints and (unless logged) listeners come
    // from the mesh's memo: encoded once for every proxy that reaches it.
    let routes = mesh_route::Selecting::of(mesh, &source_tags, false);
    let source = outbound::Source {
        tags: &source_tags,
        routes: &routes,
        trace: tracing.as_ref().map(|t| (t.policy.as_str(), &t.config)),
        mtls: tls.is_some_and(|t| t.phase.outbound_tls()),
    };
    // A transparent proxy's outbounds to every service at its Service
    // address: shared with the proxies alike, unless they log.
    let vip_set =
        transparent.and_then(|t| outbounds.vip_set(mesh, &source, t.redirect_port_outbound == 0));
    let mut add_outbound = |name: String, address: (IpAddr, u16), bind: bool, service: &str| {
        let place = outbound::Place {
            name,
            address,
            bind,
        };
        let logs = || access_log::outbound(dataplane, &source_tags, mesh, service);
        outbounds.add(&mut own, mesh, &source, place, service, logs);
    };
    for o in &dataplane.networking.outbound {
        let Ok(ep) = o.endpoint() else {
            continue;
        };
        // Another mesh is reached through its gateway, below.
        if o.mesh.is_none() {
            let name = format!("outbound:{}:{}", ep.address, ep.port);
            add_outbound(name, (ep.address, ep.port), true, &o.service);
        }
    }
    if let Some(transparent) = transparent {
        let bind = transparent.redirect_port_outbound == 0;
        let own_vips = mesh.service_vips().filter(|_| vip_set.is_none());
        for (target, (ip, port)) in own_vips {
            add_outbound(format!("outbound:{ip}:{port}"), (ip, port), bind, target);
        }
        let redirects = [
            (transparent.redirect_port_outbound, "outbound"),
            (transparent.redirect_port_inbound, "inbound"),
        ];
        for (port, direction) in redirects.into_iter().filter(|(port, _)| *port != 0) {
            let name = format!("{direction}:0.0.0.0:{port}");
            let passthrough = format!("{direction}:passthrough");
            own.listeners.insert(
                name.clone(),
                envoy::redirect_listener(&name, port, &passthrough),
            );
            own.clusters.insert(
                passthrough.clone(),
                envoy::original_destination_cluster(&passthrough),
            );
        }
    }
    // Over mTLS only: without it there is no path to another mesh.
    for o in dataplane
        .networking
        .outbound
        .iter()
        .filter(|_| tls.is_some())
    {
        let (Some(peer), Ok(ep)) = (&o.mesh, o.endpoint()) else {
            continue;
        };
        let target = gateway::cross_mesh_target(mesh, service, peer, &o.service, ep);
        own.listeners
            .insert(target.listener.name.clone(), target.listener);
        own.endpoints
            .insert(target.cluster.name.clone(), target.endpoints);
        own.clusters
            .insert(target.cluster.name.clone(), target.cluster);
    }
    let shared = vip_set.as_deref();
    ProxyConfig {
        secrets: tls.as_ref().map(tls::secrets).unwrap_or_default(),
        listeners: merged(own.listeners, shared.map(|s| &s.listeners[..])),
        clusters: merged(own.clusters, shared.map(|s| &s.clusters[..])),
        endpoints: merged(own.endpoints, shared.map(|s| &s.endpoints[..])),
    }
}

/// The proxy's own resources and the shared ones, in name order; its own
/// win a name both have (an explicit outbound at a Service address).
fn merged(own: BTreeMap<String, XdsResource>, shared: Option<&[XdsResource]>) -> Vec<XdsResource> {
    let shared = shared.unwrap_or_default().iter();
    own.into_values()
        .merge_join_by(shared, |o, s| o.name.cmp(&s.name))
        .map(|pair| match pair {
            EitherOrBoth::Left(own) | EitherOrBoth::Both(own, _) => own,
            EitherOrBoth::Right(shared) => shared.clone(),
        })
        .collect()
}

/// Where the ready inbounds of `service` whose tags `selects` take
/// traffic, in provider order.
fn ready_endpoints<'a>(
    mesh: &'a MeshView,
    service: &'a str,
    selects: impl Fn(&crate::resources::tags::Tags) -> bool + Copy + 'a,
) -> impl Iterator<Item = (IpAddr, u16)> + 'a {
    mesh.providers(service).flat_map(move |(_, provider)| {
        provider
            .networking
            .inbound
            .iter()
            .filter(move |i| selects(&i.tags) && i.is_ready())
            .filter_map(|i| i.endpoint().ok())
            .map(|e| (e.address, e.dataplane_port))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{Identity, Resource};
    use crate::xds::index::{IndexEvent, ProxyId, ResourceIndex};
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as RbacFilter;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use prost::Message;

    fn resources(docs: &str) -> Vec<Resource> {
        serde_yaml_ng::Deserializer::from_str(docs)
            .map(|doc| {
                let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
                Resource::from_json(value, Identity::FromDocument).unwrap()
            })
            .collect()
    }

    fn index(docs: &str) -> ResourceIndex {
        let mut index = ResourceIndex::default();
        for r in resources(docs) {
            index.apply(IndexEvent::Apply(r));
        }
        index
    }

    /// The generated resources, decoded, as readable text.
    fn render(config: &ProxyConfig) -> String {
        let mut out = String::new();
        for l in &config.listeners {
            let mut listener = Listener::decode(l.body.value.as_slice()).unwrap();
            let mut proxies = Vec::new();
            for chain in &mut listener.filter_chains {
                for f in &mut chain.filters {
                    if let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type {
                        proxies.push(if any.type_url.ends_with("TcpProxy") {
                            format!("{:#?}", TcpProxy::decode(any.value.as_slice()).unwrap())
                        } else if any.type_url.ends_with("HttpConnectionManager") {
                            format!(
                                "{:#?}",
                                HttpConnectionManager::decode(any.value.as_slice()).unwrap()
                            )
                        } else {
                            format!("{:#?}", RbacFilter::decode(any.value.as_slice()).unwrap())
                        });
                        // Shown decoded below rather than as bytes.
                        any.value.clear();
                    }
                }
            }
            out.push_str(&format!("# listener {}\n{listener:#?}\n", l.name));
            for filter in proxies {
                out.push_str(&format!("# filter of {}\n{filter}\n", l.name));
            }
        }
        for secret in &config.secrets {
            out.push_str(&format!(
                "# secret {}\n{:#?}\n",
                secret.name,
                envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret::decode(
                    secret.body.value.as_slice()
                )
                .unwrap()
            ));
        }
        for c in &config.clusters {
            out.push_str(&format!(
                "# cluster {}\n{:#?}\n",
                c.name,
                Cluster::decode(c.body.value.as_slice()).unwrap()
            ));
        }
        for e in &config.endpoints {
            out.push_str(&format!(
                "# endpoints {}\n{:#?}\n",
                e.name,
                ClusterLoadAssignment::decode(e.body.value.as_slice()).unwrap()
            ));
        }
        out
    }

    /// Compares with `golden/<name>.txt`; `UPDATE_GOLDEN=1` rewrites it.
    /// Applies the resources of `yaml` to `index`.
    fn apply(index: &mut ResourceIndex, yaml: &str) {
        for r in resources(yaml) {
            index.apply(IndexEvent::Apply(r));
        }
    }

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/xds/generator/golden")
            .join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            expected == actual,
            "{} differs; rerun with UPDATE_GOLDEN=1 and review the diff",
            path.display()
        );
    }

    const MESH: &str = "
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  inbound:
  - interface: 192.168.0.1:10000:8080
    tags: {service: web}
  outbound:
  - interface: :20000
    service: redis
---
type: Dataplane
mesh: default
name: redis-1
networking:
  inbound:
  - interface: 192.168.0.2:10001:6379
    tags: {service: redis}
---
type: Dataplane
mesh: default
name: redis-2
networking:
  inbound:
  - interface: 192.168.0.3:10001:6379
    tags: {service: redis, version: '2'}
---
type: Mesh
name: other
---
type: Dataplane
mesh: other
name: redis-x
networking:
  inbound:
  - interface: 10.0.0.9:10001:6379
    tags: {service: redis}
";

    const PERMISSIONS: &str = "
type: TrafficPermission
mesh: default
name: web-to-redis
rules:
- sources: [{match: {service: web, version: '*'}}]
  destinations: [{match: {service: redis}}]
---
type: TrafficPermission
mesh: default
name: all-to-redis-2
rules:
- sources: [{match: {service: '*'}}]
  destinations: [{match: {service: redis, version: '2'}}]
---
type: TrafficPermission
mesh: default
name: admin-to-anything
rules:
- sources: [{match: {service: admin}}]
  destinations: [{match: {service: '*'}}]
";

    /// The PEM inputs are placeholders: the generator only carries them.
    static PLACEHOLDER_SECRETS: std::sync::LazyLock<(XdsResource, XdsResource)> =
        std::sync::LazyLock::new(|| {
            (
                tls::identity_secret("CERT PEM", "KEY PEM"),
                tls::validation_secret(tls::MESH_CA_SECRET, "CA PEM"),
            )
        });

    fn placeholder_tls() -> ProxyTls<'static> {
        ProxyTls {
            phase: MtlsPhase::Strict,
            identity: &PLACEHOLDER_SECRETS.0,
            mesh_ca: &PLACEHOLDER_SECRETS.1,
            peer_cas: &[],
        }
    }

    /// Every resource's name and bytes, in order.
    fn bytes(config: &ProxyConfig) -> Vec<(String, Vec<u8>)> {
        [
            &config.secrets,
            &config.listeners,
            &config.clusters,
            &config.endpoints,
        ]
        .into_iter()
        .flatten()
        .map(|r| (r.name.clone(), r.body.value.clone()))
        .collect()
    }

    /// Same input, same bytes: resource versions are hashes of these bytes,
    /// so any difference would push unchanged configuration to Envoy again.
    /// Every proxy of the golden mesh, with and without mTLS, built twice
    /// from indexes whose permissions (three of them select redis-2) were
    /// applied in every order.
    #[test]
    fn the_same_input_encodes_to_the_same_bytes() {
        let permissions = resources(PERMISSIONS);
        let orders: [[usize; 3]; 6] = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for proxy in ["web-1", "redis-1", "redis-2"] {
            for tls in [None, Some(placeholder_tls())] {
                let mut seen: Option<Vec<(String, Vec<u8>)>> = None;
                for order in orders {
                    let mut index = index(MESH);
                    for i in order {
                        index.apply(IndexEvent::Apply(permissions[i].clone()));
                    }
                    let id = ProxyId::new("default", proxy);
                    let dp = index.dataplane(&id).unwrap();
                    let mesh = index.mesh("default").unwrap();
                    for _ in 0..2 {
                        let encoded = bytes(&generate(dp, mesh, tls));
                        match &seen {
                            Some(first) => assert!(
                                *first == encoded,
                                "{proxy} (mTLS: {}) encoded differently with permissions in order {order:?}",
                                tls.is_some()
                            ),
                            None => seen = Some(encoded),
                        }
                    }
                }
            }
        }
    }

    const HTTP_MESH: &str = "
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  inbound:
  - interface: 192.168.0.1:10000:8080
    tags: {service: web}
  outbound:
  - interface: :20000
    service: api
  - interface: :20001
    service: backend
  - interface: :20002
    service: mixed
---
type: Dataplane
mesh: default
name: api-1
networking:
  inbound:
  - interface: 192.168.0.2:10001:8080
    tags: {service: api, protocol: http}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  inbound:
  - interface: 192.168.0.3:10002:9090
    tags: {service: backend, protocol: grpc}
---
type: Dataplane
mesh: default
name: mixed-1
networking:
  inbound:
  - interface: 192.168.0.4:10003:8080
    tags: {service: mixed, protocol: http}
---
type: Dataplane
mesh: default
name: mixed-2
networking:
  inbound:
  - interface: 192.168.0.5:10003:8080
    tags: {service: mixed}
";

    fn filter_of(config: &ProxyConfig, listener: &str) -> String {
        let l = config
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .unwrap();
        let decoded = Listener::decode(l.body.value.as_slice()).unwrap();
        decoded.filter_chains[0]
            .filters
            .last()
            .unwrap()
            .name
            .clone()
    }

    /// HTTP services get the HTTP connection manager on both sides, gRPC
    /// an HTTP/2 upstream; a service whose providers disagree stays TCP.
    #[test]
    fn http_services_golden() {
        let index = index(HTTP_MESH);
        let mesh = index.mesh("default").unwrap();
        let of = |name: &str| {
            generate(
                index.dataplane(&ProxyId::new("default", name)).unwrap(),
                mesh,
                None,
            )
        };
        let web = of("web-1");
        let hcm = "envoy.filters.network.http_connection_manager";
        assert_eq!(filter_of(&web, "outbound:127.0.0.1:20000"), hcm);
        assert_eq!(filter_of(&web, "outbound:127.0.0.1:20001"), hcm);
        assert_eq!(
            filter_of(&web, "outbound:127.0.0.1:20002"),
            "envoy.filters.network.tcp_proxy"
        );
        assert_eq!(
            filter_of(&web, "inbound:192.168.0.1:10000"),
            "envoy.filters.network.tcp_proxy"
        );
        assert_eq!(filter_of(&of("api-1"), "inbound:192.168.0.2:10001"), hcm);
        golden("web-1-http", &render(&web));
        golden("backend-1-grpc", &render(&of("backend-1")));
    }

    /// MeshHTTPRoute and MeshTCPRoute: web's outbound to api (HTTP) gets
    /// the routes' matches, filters and split before its default route;
    /// to mixed (TCP) the TCP route's split; only web, whom they select.
    #[test]
    fn mesh_routes_golden() {
        let mut index = index(HTTP_MESH);
        apply(
            &mut index,
            "
type: MeshHTTPRoute
mesh: default
name: api-routes
spec:
  targetRef: {kind: MeshService, name: web}
  to:
  - targetRef: {kind: MeshService, name: api}
    rules:
    - matches: [{path: {type: PathPrefix, value: /v2}, method: GET}]
      default:
        filters:
        - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
        - {type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-v, value: '2'}]}}
        backendRefs: [{kind: MeshServiceSubset, name: api, tags: {version: '2'}}]
    - matches: [{headers: [{name: x-team, value: a}], queryParams: [{type: Exact, name: q, value: '1'}]}]
      default:
        filters: [{type: RequestMirror, requestMirror: {percentage: '12.5', backendRef: {kind: MeshService, name: backend}}}]
---
type: MeshTCPRoute
mesh: default
name: mixed-split
spec:
  to:
  - targetRef: {kind: MeshService, name: mixed}
    rules:
    - default:
        backendRefs:
        - {kind: MeshServiceSubset, name: mixed, tags: {version: a}, weight: 90}
        - {kind: MeshServiceSubset, name: mixed, tags: {version: b}, weight: 10}
",
        );
        let mesh = index.mesh("default").unwrap();
        let web = generate(
            index.dataplane(&ProxyId::new("default", "web-1")).unwrap(),
            mesh,
            None,
        );
        let rendered = render(&web);
        for cluster in [
            "api{version=2}",
            "backend",
            "mixed{version=a}",
            "mixed{version=b}",
        ] {
            assert!(
                web.clusters.iter().any(|c| c.name == cluster),
                "no cluster {cluster}"
            );
        }
        golden("web-1-mesh-routes", &rendered);
    }

    /// The access log of an outbound: the most specific TrafficLog rule
    /// names the backend; a TrafficLog change affects its sources only.
    #[test]
    fn the_most_specific_traffic_log_picks_the_backend() {
        let mut index = index(&MESH.replace(
            "type: Mesh\nname: default\n",
            "type: Mesh\nname: default\nlogging:\n  defaultBackend: everything\n  backends:\n  - {name: everything, file: {path: /logs/all}}\n  - {name: redis, file: {path: /logs/redis}}\n",
        ));
        let logs = "
type: TrafficLog
mesh: default
name: a-broad
rules:
- sources: [{match: {service: '*'}}]
  destinations: [{match: {service: '*'}}]
---
type: TrafficLog
mesh: default
name: z-narrow
rules:
- sources: [{match: {service: web}}]
  destinations: [{match: {service: redis}}]
  conf: {backend: redis}
";
        let mut affected = Vec::new();
        for r in resources(logs) {
            affected.push(index.apply(IndexEvent::Apply(r)).proxies);
        }
        // The broad one selects every proxy, the narrow one web-1 alone.
        assert_eq!(affected[0].len(), 3);
        assert_eq!(
            affected[1]
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>(),
            ["web-1"]
        );
        let web = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
        let config = generate(web, index.mesh("default").unwrap(), None);
        // The path is inside the listener's encoded bytes.
        let outbound = config
            .listeners
            .iter()
            .find(|l| l.name == "outbound:127.0.0.1:20000")
            .unwrap();
        let bytes = String::from_utf8_lossy(&outbound.body.value);
        assert!(
            bytes.contains("/logs/redis") && !bytes.contains("/logs/all"),
            "{bytes}"
        );
    }

    /// A TrafficRoute splits web's outbound to redis 90/10 between the
    /// version-2 subset and the whole service; each is a cluster with its
    /// own endpoints, and a proxy the route's sources miss keeps one.
    #[test]
    fn a_traffic_route_splits_between_subsets_golden() {
        let mut index = index(MESH);
        let route = "
type: TrafficRoute
mesh: default
name: web-to-redis
sources: [{match: {service: web}}]
destinations: [{match: {service: redis}}]
conf:
- {weight: 90, destination: {service: redis, version: '2'}}
- {weight: 10, destination: {service: redis}}
- {weight: 0, destination: {service: redis, version: '3'}}
";
        let affected: Vec<ProxyId> = resources(route)
            .into_iter()
            .flat_map(|r| index.apply(IndexEvent::Apply(r)).proxies)
            .collect();
        assert_eq!(affected, [ProxyId::new("default", "web-1")]);
        let mesh = index.mesh("default").unwrap();
        let web = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
        let config = generate(web, mesh, None);
        let clusters: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(clusters, ["localhost:8080", "redis", "redis{version=2}"]);
        let subset = config
            .endpoints
            .iter()
            .find(|e| e.name == "redis{version=2}")
            .unwrap();
        let subset = ClusterLoadAssignment::decode(subset.body.value.as_slice()).unwrap();
        assert_eq!(subset.endpoints[0].lb_endpoints.len(), 1, "redis-2 only");
        golden("web-1-route", &render(&config));
    }

    /// A TrafficTrace selecting web: its HTTP listeners, in and out, report
    /// to the mesh's default zipkin backend through a cluster of its own.
    #[test]
    fn a_traced_proxy_reports_spans_from_its_http_listeners_golden() {
        let mut index = index(&HTTP_MESH.replace(
            "type: Mesh\nname: default\n",
            "type: Mesh\nname: default\ntracing:\n  defaultBackend: zipkin\n  backends:\n  - {name: zipkin, type: zipkin, sampling: 50.0, conf: {url: 'http://collector.local:9411/api/v2/spans'}}\n",
        ));
        let trace = "
type: TrafficTrace
mesh: default
name: web
selectors: [{match: {service: web}}]
";
        for r in resources(trace) {
            index.apply(IndexEvent::Apply(r));
        }
        let mesh = index.mesh("default").unwrap();
        let of = |name: &str| {
            generate(
                index.dataplane(&ProxyId::new("default", name)).unwrap(),
                mesh,
                None,
            )
        };
        let web = of("web-1");
        assert!(web.clusters.iter().any(|c| c.name == "tracing:zipkin"));
        assert!(
            !of("api-1")
                .clusters
                .iter()
                .any(|c| c.name == "tracing:zipkin")
        );
        golden("web-1-traced", &render(&web));
    }

    /// A template with `default-proxy` replaces the generated resource of
    /// the same name and keeps the rest; one without keeps only its own.
    #[test]
    fn a_proxy_template_replaces_by_name_and_without_default_proxy_stands_alone() {
        let template = |imports: &str| {
            format!(
                "
type: ProxyTemplate
mesh: default
name: web
selectors: [{{match: {{service: web}}}}]
imports: {imports}
resources:
- name: redis
  resource: |
    '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: redis
    connectTimeout: 9s
    type: STATIC
"
            )
        };
        for (imports, clusters) in [
            ("[default-proxy]", vec!["localhost:8080", "redis"]),
            ("[]", vec!["redis"]),
        ] {
            let mut index = index(MESH);
            let affected: Vec<ProxyId> = resources(&template(imports))
                .into_iter()
                .flat_map(|r| index.apply(IndexEvent::Apply(r)).proxies)
                .collect();
            assert_eq!(affected, [ProxyId::new("default", "web-1")]);
            let web = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
            let config = generate(web, index.mesh("default").unwrap(), None);
            let names: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, clusters, "imports {imports}");
            let redis = config.clusters.iter().find(|c| c.name == "redis").unwrap();
            let redis = Cluster::decode(redis.body.value.as_slice()).unwrap();
            assert_eq!(redis.connect_timeout.unwrap().seconds, 9, "the template's");
            assert_eq!(config.listeners.is_empty(), imports == "[]");
        }
    }

    /// Policies of every kind in mesh `other`, selecting everything: no
    /// proxy of mesh `default` is affected or changed.
    #[test]
    fn a_policy_of_one_mesh_never_applies_to_a_dataplane_of_another() {
        let mut index = index(MESH);
        let web = ProxyId::new("default", "web-1");
        let before = bytes(&generate(
            index.dataplane(&web).unwrap(),
            index.mesh("default").unwrap(),
            None,
        ));
        let policies = "
type: TrafficRoute
mesh: other
name: r
sources: [{match: {service: '*'}}]
destinations: [{match: {service: '*'}}]
conf: [{weight: 1, destination: {service: redis, version: '2'}}]
---
type: TrafficLog
mesh: other
name: l
rules: [{sources: [{match: {service: '*'}}], destinations: [{match: {service: '*'}}]}]
---
type: TrafficTrace
mesh: other
name: t
selectors: [{match: {service: '*'}}]
---
type: ProxyTemplate
mesh: other
name: p
selectors: [{match: {service: '*'}}]
";
        for r in resources(policies) {
            let affected = index.apply(IndexEvent::Apply(r));
            assert!(affected.proxies.iter().all(|p| p.mesh == "other"));
            assert!(!affected.contains(&web));
        }
        let after = bytes(&generate(
            index.dataplane(&web).unwrap(),
            index.mesh("default").unwrap(),
            None,
        ));
        assert!(before == after, "a policy of mesh other changed web-1");
    }

    #[test]
    fn consumer_golden() {
        let index = index(MESH);
        let dp = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
        let config = generate(dp, index.mesh("default").unwrap(), None);
        assert_eq!(config.endpoints.len(), 1);
        golden("web-1", &render(&config));
    }

    #[test]
    fn provider_golden() {
        let index = index(MESH);
        let dp = index
            .dataplane(&ProxyId::new("default", "redis-2"))
            .unwrap();
        golden(
            "redis-2",
            &render(&generate(dp, index.mesh("default").unwrap(), None)),
        );
    }

    /// mTLS: secrets, TLS on both sides, and RBAC from the permissions.
    #[test]
    fn mtls_golden() {
        let mut index = index(MESH);
        for r in resources(PERMISSIONS).into_iter().take(1) {
            index.apply(IndexEvent::Apply(r));
        }
        let tls = placeholder_tls();
        let mesh = index.mesh("default").unwrap();
        let redis = index
            .dataplane(&ProxyId::new("default", "redis-2"))
            .unwrap();
        let config = generate(redis, mesh, Some(tls));
        let names: Vec<&str> = config.secrets.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["identity_cert", "mesh_ca"]);
        golden("redis-2-mtls", &render(&config));
        let web = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
        golden("web-1-mtls", &render(&generate(web, mesh, Some(tls))));
    }

    /// MeshTLS Permissive with TLS 1.2 to 1.3: redis-2's inbound has a TLS
    /// chain (RBAC, TLS parameters) and a plain-text chain, told apart by
    /// the TLS inspector; without the policy, web's stays strict.
    #[test]
    fn mesh_tls_permissive_golden() {
        let mut index = index(MESH);
        apply(
            &mut index,
            "
type: MeshTLS
mesh: default
name: redis-permissive
spec:
  targetRef: {kind: MeshSubset, tags: {kuma.io/service: redis}}
  from:
  - targetRef: {kind: Mesh}
    default: {mode: Permissive}
---
type: MeshTLS
mesh: default
name: versions
spec:
  from:
  - targetRef: {kind: Mesh}
    default: {tlsVersion: {min: TLS12, max: TLS13}}
",
        );
        let mesh = index.mesh("default").unwrap();
        let of = |name: &str| {
            let dp = index.dataplane(&ProxyId::new("default", name)).unwrap();
            render(&generate(dp, mesh, Some(placeholder_tls())))
        };
        let redis = of("redis-2");
        assert!(redis.contains("raw_buffer") && redis.contains("tls_inspector"));
        assert!(!of("web-1").contains("raw_buffer"), "web stays strict");
        golden("redis-2-mesh-tls-permissive", &redis);
    }

    /// MeshTrafficPermissions: the inbound's RBAC allows the peers of the
    /// Allow rules, shadow-denies those of AllowWithShadowDeny, and the
    /// mesh's TrafficPermission is no longer in it.
    #[test]
    fn mesh_traffic_permission_golden() {
        let mut index = index(MESH);
        for r in resources(PERMISSIONS).into_iter().take(1) {
            index.apply(IndexEvent::Apply(r));
        }
        apply(
            &mut index,
            "
type: MeshTrafficPermission
mesh: default
name: redis-clients
spec:
  targetRef: {kind: MeshService, name: redis}
  from:
  - targetRef: {kind: Mesh}
    default: {action: Deny}
  - targetRef: {kind: MeshService, name: web}
    default: {action: Allow}
  - targetRef: {kind: MeshSubset, tags: {version: v2}}
    default: {action: AllowWithShadowDeny}
",
        );
        let mesh = index.mesh("default").unwrap();
        let redis = index
            .dataplane(&ProxyId::new("default", "redis-2"))
            .unwrap();
        let config = generate(redis, mesh, Some(placeholder_tls()));
        let rendered = render(&config);
        assert!(
            !rendered.contains("rule-0"),
            "the TrafficPermission is retired"
        );
        golden("redis-2-mesh-traffic-permission", &rendered);
    }

    /// MeshTrafficPermission's `rules` form: peers by SPIFFE id, every
    /// deny before any allow, the shadow denials apart; the `from` form of
    /// another policy selecting the same inbound is not in it.
    #[test]
    fn mesh_traffic_permission_rules_golden() {
        let mut index = index(MESH);
        apply(
            &mut index,
            "
type: MeshTrafficPermission
mesh: default
name: mesh-identities
spec:
  rules:
  - default:
      allow: [{spiffeID: {type: Prefix, value: 'spiffe://default/'}}]
      allowWithShadowDeny: [{spiffeID: {type: Exact, value: 'spiffe://default/legacy'}}]
",
        );
        apply(
            &mut index,
            "
type: MeshTrafficPermission
mesh: default
name: redis-deny
spec:
  targetRef: {kind: Dataplane, labels: {kuma.io/service: redis}}
  rules:
  - default:
      deny: [{spiffeID: {type: Exact, value: 'spiffe://default/web'}}]
",
        );
        apply(
            &mut index,
            "
type: MeshTrafficPermission
mesh: default
name: from-form
spec:
  from:
  - targetRef: {kind: MeshSubset, tags: {version: from-form}}
    default: {action: Allow}
",
        );
        let mesh = index.mesh("default").unwrap();
        let redis = index
            .dataplane(&ProxyId::new("default", "redis-2"))
            .unwrap();
        let rendered = render(&generate(redis, mesh, Some(placeholder_tls())));
        assert!(
            !rendered.contains("from-form"),
            "the from form is consulted"
        );
        golden("redis-2-mesh-traffic-permission-rules", &rendered);
    }

    /// Kubernetes: a transparent proxy reaches every service at its Service
    /// address; a not-ready pod's endpoint is left out.
    #[test]
    fn a_transparent_proxy_gets_a_listener_per_service_vip_and_ready_endpoints_only() {
        let index = index(
            "
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: client
networking:
  inbound:
  - interface: 10.0.0.1:8080:8080
    tags: {service: client}
  transparentProxying: {}
---
type: Dataplane
mesh: default
name: echo-ready
networking:
  inbound:
  - interface: 10.0.0.2:7000:7000
    tags: {service: echo}
    serviceVip: 10.96.0.5:80
---
type: Dataplane
mesh: default
name: echo-starting
networking:
  inbound:
  - interface: 10.0.0.3:7000:7000
    tags: {service: echo}
    serviceVip: 10.96.0.5:80
    health: {ready: false}
",
        );
        let client = index.dataplane(&ProxyId::new("default", "client")).unwrap();
        let config = generate(client, index.mesh("default").unwrap(), None);
        let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["inbound:10.0.0.1:8080", "outbound:10.96.0.5:80"]);
        let bound = |config: &ProxyConfig, name: &str| {
            let l = config.listeners.iter().find(|l| l.name == name).unwrap();
            Listener::decode(l.body.value.as_slice())
                .unwrap()
                .bind_to_port
                .is_none_or(|b| b.value)
        };
        assert!(
            bound(&config, "outbound:10.96.0.5:80"),
            "no redirection: bound"
        );
        let text = render(&config);
        assert!(text.contains("10.0.0.2"), "the ready pod is an endpoint");
        assert!(!text.contains("10.0.0.3"), "the starting pod is not");

        // With the node redirecting (kuma-init): two redirect listeners,
        // and the others no longer bind.
        let mut redirected = client.as_ref().clone();
        redirected.networking.transparent_proxying = Some(crate::resources::TransparentProxying {
            redirect_port_inbound: 15006,
            redirect_port_outbound: 15001,
        });
        let config = generate(&redirected, index.mesh("default").unwrap(), None);
        let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "inbound:0.0.0.0:15006",
                "inbound:10.0.0.1:8080",
                "outbound:0.0.0.0:15001",
                "outbound:10.96.0.5:80"
            ]
        );
        assert!(!bound(&config, "inbound:10.0.0.1:8080"));
        assert!(!bound(&config, "outbound:10.96.0.5:80"));
        assert!(bound(&config, "outbound:0.0.0.0:15001"));
        let clusters: Vec<&str> = config.clusters.iter().map(|c| c.name.as_str()).collect();
        assert!(
            clusters.contains(&"outbound:passthrough") && clusters.contains(&"inbound:passthrough")
        );
    }

    /// The memo changes nothing a proxy gets: through a run of changes
    /// (providers coming, going and turning unready, a route, mTLS), every
    /// proxy built from the warm memo equals one built from nothing. And
    /// what two proxies share is one encoding.
    #[test]
    fn the_outbound_memo_shares_encodings_and_never_serves_a_stale_one() {
        let mut index = index(
            "
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  inbound:
  - interface: 10.0.0.1:8080:8080
    tags: {service: web, version: '1'}
    serviceVip: 10.96.0.1:80
  transparentProxying: {}
---
type: Dataplane
mesh: default
name: api-1
networking:
  inbound:
  - interface: 10.0.0.2:8080:8080
    tags: {service: api, version: '1'}
    serviceVip: 10.96.0.2:80
  transparentProxying: {}
",
        );
        let mut outbounds = Outbounds::default();
        let changes = [
            "{type: Dataplane, mesh: default, name: api-2, networking: {inbound: [{interface: '10.0.0.3:8080:8080', tags: {service: api, version: '2'}, serviceVip: '10.96.0.2:80'}], transparentProxying: {}}}",
            "{type: Dataplane, mesh: default, name: api-2, networking: {inbound: [{interface: '10.0.0.3:8080:8080', tags: {service: api, version: '2'}, serviceVip: '10.96.0.2:80', health: {ready: false}}], transparentProxying: {}}}",
            "{type: TrafficRoute, mesh: default, name: split, sources: [{match: {service: web}}], destinations: [{match: {service: api}}], conf: [{weight: 50, destination: {service: api, version: '1'}}, {weight: 50, destination: {service: api, version: '2'}}]}",
            "{type: Dataplane, mesh: default, name: db-1, networking: {inbound: [{interface: '10.0.0.4:5432:5432', tags: {service: db, protocol: http}, serviceVip: '10.96.0.3:5432'}], transparentProxying: {}}}",
            "{type: TrafficLog, mesh: default, name: web-logs, rules: [{sources: [{match: {service: web}}], destinations: [{match: {service: '*'}}]}]}",
            "{type: Mesh, name: default, logging: {backends: [{name: file, file: {path: /tmp/access.log}}]}, mtls: {enabled: true, ca: {builtin: {}}}}",
        ];
        let names = ["web-1", "api-1", "api-2", "db-1"];
        for change in changes {
            for r in resources(change) {
                index.apply(IndexEvent::Apply(r));
            }
            let mesh = index.mesh("default").unwrap();
            let tls = mesh.spec.mtls_enabled().then(placeholder_tls);
            let mut built = Vec::new();
            for name in names {
                let Some(dp) = index.dataplane(&ProxyId::new("default", name)) else {
                    continue;
                };
                let warm = generate_sharing(dp, mesh, tls, &mut outbounds);
                assert_eq!(warm, generate(dp, mesh, tls), "{name} after {change}");
                built.push(warm);
            }
            // api-1 and db-1 reach web at the same address, with no route
            // or log of their own: one listener, one cluster, for both.
            let (api, db) = (&built[1], built.last().unwrap());
            let web = |c: &ProxyConfig| {
                let listener = c
                    .listeners
                    .iter()
                    .find(|l| l.name == "outbound:10.96.0.1:80");
                let cluster = c.clusters.iter().find(|l| l.name == "web");
                (listener.unwrap().clone(), cluster.unwrap().clone())
            };
            if change.contains("db-1") || change.contains("mtls") {
                assert!(web(api).0.same(&web(db).0) && web(api).1.same(&web(db).1));
            }
        }
    }

    #[test]
    fn endpoints_come_from_the_same_mesh_only() {
        let index = index(MESH);
        let dp = index.dataplane(&ProxyId::new("default", "web-1")).unwrap();
        let text = render(&generate(dp, index.mesh("default").unwrap(), None));
        assert!(text.contains("192.168.0.2") && text.contains("192.168.0.3"));
        assert!(
            !text.contains("10.0.0.9"),
            "an endpoint of mesh other leaked"
        );
    }

    /// A MeshTCPRoute naming a port of its service by name applies to that
    /// port only; one naming a port the service lacks decides nothing.
    #[test]
    fn a_route_names_a_port_by_its_name() {
        let mut index = index(MESH);
        apply(
            &mut index,
            "
type: Dataplane
mesh: default
name: backend-1
networking:
  inbound:
  - interface: 127.0.0.1:9100:9101
    name: main
    tags: {service: backend, version: '1'}
",
        );
        let route = |name: &str, port: &str| {
            format!(
                "
type: MeshTCPRoute
mesh: default
name: {name}
spec:
  to:
  - targetRef: {{kind: MeshService, name: backend, sectionName: {port}}}
    rules:
    - default:
        backendRefs: [{{kind: MeshServiceSubset, name: backend, tags: {{version: '1'}}}}]
"
            )
        };
        apply(&mut index, &route("other-port", "admin"));
        let mesh = index.mesh("default").unwrap();
        let client: crate::resources::tags::Tags =
            [("service".to_string(), "web".to_string())].into();
        let routes = mesh_route::Selecting::of(mesh, &[&client], false);
        assert_eq!(mesh.port_name("backend"), Some("main"));
        assert!(
            routes.decide("backend", || Protocol::Tcp).is_none(),
            "{:?}",
            routes.naming("backend")
        );
        apply(&mut index, &route("main-port", "main"));
        let mesh = index.mesh("default").unwrap();
        let routes = mesh_route::Selecting::of(mesh, &[&client], false);
        assert!(routes.decide("backend", || Protocol::Tcp).is_some());
    }
}
