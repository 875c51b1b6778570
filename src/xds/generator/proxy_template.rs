//! ProxyTemplate: the most specific template whose selectors match one of
//! a proxy's inbounds decides its configuration. With `imports:
//! [default-proxy]` the generated configuration is kept; without it only
//! the mesh's secrets are. Each raw resource then adds to it, or replaces
//! the generated resource of the same type and name.

use super::{ProxyConfig, XdsResource};
use crate::envoy_api;
use crate::resources::{DataplaneSpec, ParsedProxyTemplate, for_dataplane};
use crate::xds::index::MeshView;

/// The template that selects `dataplane`, and its name.
pub fn chosen<'m>(
    dataplane: &DataplaneSpec,
    mesh: &'m MeshView,
) -> Option<(&'m str, &'m ParsedProxyTemplate)> {
    let tags = dataplane.inbound_tags();
    for_dataplane(
        &tags,
        mesh.proxy_templates()
            .for_services(&dataplane.services())
            .map(|(name, t)| (name.as_str(), &t.spec.selectors[..], t.as_ref())),
    )
}

/// Lays the template's raw resources over `config`, each list kept in
/// name order.
pub fn apply(config: &mut ProxyConfig, template: &ParsedProxyTemplate) {
    for raw in &template.resources {
        let list = match raw.type_url.as_str() {
            envoy_api::LISTENER => &mut config.listeners,
            envoy_api::CLUSTER => &mut config.clusters,
            envoy_api::CLUSTER_LOAD_ASSIGNMENT => &mut config.endpoints,
            _ => continue,
        };
        let resource = XdsResource {
            name: raw.name.clone(),
            body: raw.body.clone(),
        };
        match list.binary_search_by(|r| r.name.cmp(&raw.name)) {
            Ok(i) => list[i] = resource,
            Err(i) => list.insert(i, resource),
        }
    }
}
