//! TrafficRoute: where an outbound's traffic goes. With no route, all of
//! it goes to the service's cluster. With one, the most specific route
//! whose sources select the proxy and whose destinations select the
//! service splits it by weight between subsets, each a cluster of its own
//! holding the endpoints whose tags match the subset's.

use crate::resources::tags::{SERVICE_TAG, Tags};
use crate::resources::{TrafficRouteSpec, for_connection};
use crate::xds::index::MeshView;

/// One place traffic goes: a cluster, the service and tags its endpoints
/// have, and its share.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    pub cluster: String,
    pub service: String,
    /// Tags the endpoints must have beyond `service`; empty for all of them.
    pub tags: Tags,
    pub weight: u32,
}

impl Subset {
    /// All of `service`.
    pub fn whole(service: &str) -> Subset {
        Subset::of(service, Tags::new(), 1)
    }

    /// The endpoints of `service` with `tags` (all of them when empty):
    /// a cluster named `service{k=v,...}`, shared by every route that
    /// sends traffic there.
    pub fn of(service: &str, tags: Tags, weight: u32) -> Subset {
        let cluster = if tags.is_empty() {
            service.to_string()
        } else {
            let named: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{service}{{{}}}", named.join(","))
        };
        Subset {
            cluster,
            service: service.to_string(),
            tags,
            weight,
        }
    }

    /// Whether an inbound with `tags` belongs to the subset.
    pub fn selects(&self, tags: &Tags) -> bool {
        tags.get(SERVICE_TAG) == Some(&self.service)
            && self.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// The subsets of `route` (the one that applies to an outbound, see
/// [`chosen`]), or without one, the whole of `service`. Parts of weight 0
/// are left out: they receive nothing.
pub fn subsets_or_whole(route: Option<&TrafficRouteSpec>, service: &str) -> Vec<Subset> {
    match route {
        Some(route) => subsets(route),
        None => vec![Subset::whole(service)],
    }
}

/// The subsets a route splits into, parts of weight 0 left out.
pub fn subsets(route: &TrafficRouteSpec) -> Vec<Subset> {
    route
        .conf
        .iter()
        .filter(|part| part.weight > 0)
        .map(|part| {
            let mut tags = part.destination.clone();
            let service = tags.remove(SERVICE_TAG).unwrap_or_default();
            Subset::of(&service, tags, part.weight)
        })
        .collect()
}

/// The most specific TrafficRoute for connections from a proxy with
/// `source_tags` to `service`, and its name.
pub fn chosen<'m>(
    source_tags: &[&Tags],
    mesh: &'m MeshView,
    service: &str,
) -> Option<(&'m str, &'m TrafficRouteSpec)> {
    let routes = mesh
        .traffic_routes()
        .for_services(&[service])
        .map(|(name, r)| {
            (
                name.as_str(),
                &r.sources[..],
                &r.destinations[..],
                r.as_ref(),
            )
        });
    for_connection(source_tags, service, routes)
}
