//! ProxyTemplate: the most specific template whose selectors match one of
//! a proxy's inbounds decides its configuration. With `imports:
//! [default-proxy]` the generated configuration is kept; without it only
//! the mesh's secrets are. Each raw resource then adds to it, or replaces
//! the generated resource of the same type and name.

use super::{ProxyConfig, TypeUrl, XdsResource};
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
        // Parsed raw resources have one of the served types (RAW_TYPES).
        let Some(type_url) = TypeUrl::parse(&raw.type_url) else {
            continue;
        };
        let list = config.of_type_mut(type_url);
        let resource = XdsResource::from_any(raw.name.clone(), raw.body.clone());
        match list.binary_search_by(|r| r.name.cmp(&raw.name)) {
            Ok(i) => list[i] = resource,
            Err(i) => list.insert(i, resource),
        }
    }
}
