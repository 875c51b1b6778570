//! Why a proxy got what it got, as the HTTP API answers it:
//!
//! - [`policies`]: per proxy, inbound and outbound, the policy of each kind
//!   that applies and the selectors that matched, chosen by the very
//!   functions the generator chooses with;
//! - [`configuration`]: the Envoy resources generated for it, as JSON in
//!   Envoy's field names, private keys left out.

use super::cache::{Snapshot, hex};
use super::generator::permissions::InboundAccess;
use super::generator::{self, ProxyConfig, TypeUrl, access_log, proxy_template, route, tracing};
use super::index::{MeshView, Section, selecting_inbound};
use crate::envoy_api;
use crate::resources::tags::{SERVICE_TAG, Tags};
use crate::resources::{DataplaneSpec, Selector, TargetRefPolicy};
use envoy_types::pb::google::protobuf::Any;
use serde_json::{Value, json};

/// The selector of `selectors` that best matches one of `tag_sets`.
fn matched<'t>(
    selectors: &[Selector],
    tag_sets: impl IntoIterator<Item = &'t Tags> + Clone,
) -> Value {
    Selector::best_match(selectors, tag_sets)
        .map(|(_, s)| json!(s))
        .unwrap_or(Value::Null)
}

/// The policies that shape `dataplane`'s proxy, and why each applies.
pub fn policies(name: &str, dataplane: &DataplaneSpec, mesh: &MeshView) -> Value {
    let own = dataplane.inbound_tags();
    let routes = generator::mesh_route::Selecting::of(mesh, &own, false);
    let template = match proxy_template::chosen(dataplane, mesh) {
        Some((name, t)) => json!({
            "name": name,
            "selector": matched(&t.spec.selectors, own.iter().copied()),
            "imports": t.spec.imports,
        }),
        None => json!({"name": null, "imports": [crate::resources::DEFAULT_PROFILE]}),
    };
    let trace = tracing::chosen(dataplane, mesh).map(|(name, trace, backend)| {
        json!({
            "name": name,
            "selector": matched(&trace.selectors, own.iter().copied()),
            "backend": backend.name,
        })
    });
    let inbound: Vec<Value> = dataplane
        .networking
        .inbound
        .iter()
        .map(|inbound| {
            // Every permission whose destinations select the inbound
            // admits its sources (Envoy's RBAC is their union).
            let permissions: Vec<Value> = mesh
                .permissions()
                .for_services(&[inbound.service().unwrap_or_default()])
                .flat_map(|(name, p)| {
                    p.rules.iter().filter_map(move |rule| {
                        let destination =
                            Selector::best_match(&rule.destinations, [&inbound.tags])?;
                        Some(json!({
                            "name": name,
                            "destination": destination.1,
                            "sources": rule.sources,
                        }))
                    })
                })
                .collect();
            let section = Section {
                port: inbound.endpoint().map_or(0, |e| e.dataplane_port),
                name: inbound.name.as_deref(),
            };
            let mesh_permissions = mesh.has_mesh_traffic_permissions().then(|| {
                let selecting =
                    selecting_inbound(mesh.mesh_traffic_permissions(), &inbound.tags, section);
                let merged = match generator::permissions::inbound_access(mesh, &inbound.tags, section) {
                    InboundAccess::Groups(rules) => json!(rules
                        .iter()
                        .map(|r| json!({"subset": r.subset, "action": r.conf["action"], "origins": r.origins}))
                        .collect::<Vec<_>>()),
                    InboundAccess::Identities(rules) => json!(rules
                        .iter()
                        .map(|(name, conf)| json!({"identities": conf, "origins": [name]}))
                        .collect::<Vec<_>>()),
                };
                json!({
                    "policies": selecting
                        .iter()
                        .map(|(name, p)| json!({"name": name, "targetRef": p.target(), "from": p.from, "rules": p.rules}))
                        .collect::<Vec<_>>(),
                    "rules": merged,
                })
            });
            let mesh_tls = selecting_inbound(mesh.mesh_tlses(), &inbound.tags, section);
            let mesh_tls = (!mesh_tls.is_empty()).then(|| {
                json!({
                    "policies": mesh_tls
                        .iter()
                        .map(|(name, p)| json!({"name": name, "targetRef": p.target(), "from": p.from, "rules": p.rules}))
                        .collect::<Vec<_>>(),
                    "merged": generator::inbound_tls::conf(mesh, &inbound.tags, section),
                })
            });
            json!({
                "interface": inbound.interface,
                "tags": inbound.tags,
                "TrafficPermission": if mesh_permissions.is_some() { json!([]) } else { json!(permissions) },
                "MeshTrafficPermission": mesh_permissions,
                "MeshTLS": mesh_tls,
            })
        })
        .collect();
    let mut outbound: Vec<Value> = dataplane
        .networking
        .outbound
        .iter()
        .map(|o| (o.interface.clone(), o.service.as_str()))
        .chain(
            dataplane
                .networking
                .transparent_proxying
                .iter()
                .flat_map(|_| mesh.service_vips())
                .map(|(service, (ip, port))| (format!("{ip}:{port}"), service)),
        )
        .map(|(interface, service)| {
            let destination: Tags = [(SERVICE_TAG.to_string(), service.to_string())].into();
            let decision = routes.decide(service, || {
                generator::Protocol::of_service(service, mesh.providers(service).map(|(_, p)| p))
            });
            let mesh_routes = decision.as_ref().map(|d| {
                json!({
                    "policies": routes
                        .naming(service)
                        .into_iter()
                        .map(|(kind, name, to)| json!({"kind": kind, "name": name, "to": to}))
                        .collect::<Vec<_>>(),
                    "split": d.default
                        .iter()
                        .map(|s| json!({"cluster": s.cluster, "weight": s.weight}))
                        .collect::<Vec<_>>(),
                    "httpRules": d.http,
                })
            });
            let log = access_log::chosen(&own, mesh, service).map(|(name, rule)| {
                json!({
                    "name": name,
                    "source": matched(&rule.sources, own.iter().copied()),
                    "destination": matched(&rule.destinations, [&destination]),
                    "backend": access_log::backend(mesh, rule).map(|b| b.name.clone()),
                })
            });
            // Today's routes take the traffic they name from TrafficRoute.
            let legacy = route::chosen(&own, mesh, service).filter(|_| decision.is_none());
            let traffic_route = legacy.map(|(name, r)| {
                json!({
                    "name": name,
                    "source": matched(&r.sources, own.iter().copied()),
                    "destination": matched(&r.destinations, [&destination]),
                    "split": route::subsets(r)
                        .into_iter()
                        .map(|s| json!({"cluster": s.cluster, "weight": s.weight}))
                        .collect::<Vec<_>>(),
                })
            });
            json!({
                "interface": interface,
                "service": service,
                "TrafficLog": log,
                "TrafficRoute": traffic_route,
                "routes": mesh_routes,
            })
        })
        .collect();
    outbound.sort_by(|a, b| a["interface"].as_str().cmp(&b["interface"].as_str()));
    json!({
        "mesh": mesh.name,
        "dataplane": name,
        "ProxyTemplate": template,
        "TrafficTrace": trace,
        "inbound": inbound,
        "outbound": outbound,
    })
}

/// Where a configuration came from.
pub enum Source<'a> {
    /// What the control plane last sent the connected proxy.
    Sent(&'a Snapshot),
    /// Generated now: the proxy has no stream to this control plane, so
    /// its certificates are issued only when it connects.
    GeneratedNow(&'a ProxyConfig),
}

/// One resource as JSON; a secret without its private key.
fn resource(name: &str, version: Option<&str>, body: &Any) -> Value {
    let mut json = envoy_api::to_json(body).unwrap_or_else(|| json!({"@type": body.type_url}));
    if let Some(key) = json.pointer_mut("/tls_certificate/private_key") {
        *key = json!("[left out]");
    }
    json!({"name": name, "version": version, "resource": json})
}

/// The proxy's Envoy resources by type (`secrets`, `clusters`,
/// `endpoints`, `listeners`), each with its name, version and content.
pub fn configuration(source: Source<'_>) -> Value {
    let mut out = serde_json::Map::new();
    let (label, note) = match &source {
        Source::Sent(_) => (
            "sent",
            "what this control plane last sent the connected proxy",
        ),
        Source::GeneratedNow(_) => (
            "generated",
            "the proxy is not connected to this control plane: generated now from the current policies; certificates are issued when it connects",
        ),
    };
    out.insert("source".into(), json!(label));
    out.insert("note".into(), json!(note));
    for type_url in TypeUrl::ALL {
        let key = match type_url {
            TypeUrl::Secret => "secrets",
            TypeUrl::Cluster => "clusters",
            TypeUrl::ClusterLoadAssignment => "endpoints",
            TypeUrl::Listener => "listeners",
        };
        let resources: Vec<Value> = match &source {
            Source::Sent(snapshot) => snapshot
                .of_type(type_url)
                .resources
                .iter()
                .map(|r| resource(&r.name, Some(&hex(r.version)), &r.body))
                .collect(),
            Source::GeneratedNow(config) => config
                .of_type(type_url)
                .iter()
                .map(|r| resource(&r.name, None, &r.body))
                .collect(),
        };
        out.insert(key.into(), Value::Array(resources));
    }
    Value::Object(out)
}
