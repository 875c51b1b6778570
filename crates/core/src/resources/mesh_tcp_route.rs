//! `MeshTCPRoute`: where the connections a proxy opens to a service go,
//! split by weight between services and subsets of them, as Kuma 2.x
//! writes it (`pkg/plugins/policies/meshtcproute/api/v1alpha1`).
//!
//! ```yaml
//! type: MeshTCPRoute
//! name: tcp-route
//! mesh: default
//! spec:
//!   targetRef: {kind: Mesh}
//!   to:
//!   - targetRef: {kind: MeshService, name: backend}
//!     rules:
//!     - default:
//!         backendRefs:
//!         - {kind: MeshServiceSubset, name: backend, tags: {version: v1}, weight: 90}
//!         - {kind: MeshServiceSubset, name: backend, tags: {version: v2}, weight: 10}
//! ```
//!
//! A MeshHTTPRoute for the same traffic of an HTTP service wins over it,
//! and either wins over a TrafficRoute.

use super::target_ref::{BackendRef, TargetRef, TargetRefKind, TargetRefPolicy};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

/// The proxies whose outbounds a route shapes.
pub const ROUTE_TOP_LEVEL_KINDS: [TargetRefKind; 5] = [
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
    TargetRefKind::Dataplane,
];

/// The destinations a route's `to` items name.
pub const ROUTE_TO_KINDS: [TargetRefKind; 1] = [TargetRefKind::MeshService];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTcpRouteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub to: Vec<TcpRouteTo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteTo {
    pub target_ref: TargetRef,
    pub rules: Vec<TcpRouteRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteRule {
    pub default: TcpRouteConf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRouteConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_refs: Option<Vec<BackendRef>>,
}

impl TargetRefPolicy for MeshTcpRouteSpec {
    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn is_route(&self) -> bool {
        true
    }

    fn default_namespace(&mut self, namespace: &str) {
        for to in &mut self.to {
            to.target_ref.default_namespace(namespace);
            let backends = to
                .rules
                .iter_mut()
                .flat_map(|r| &mut r.default.backend_refs);
            for backend in backends.flatten() {
                backend.default_namespace(namespace);
            }
        }
    }

    fn validate(&self) -> Vec<Cause> {
        let destinations = self.to.iter().map(|to| &to.target_ref);
        let mut causes = validate_targets(self.target_ref.as_ref(), destinations);
        for (i, to) in self.to.iter().enumerate() {
            let path = format!("to[{i}]");
            if to.rules.len() != 1 {
                causes.push(Cause::new(
                    format!("{path}.rules"),
                    "must hold exactly one rule: a TCP connection has nothing to match on",
                ));
            }
            for (r, rule) in to.rules.iter().enumerate() {
                let field = format!("{path}.rules[{r}].default.backendRefs");
                causes.extend(validate_backends(
                    &field,
                    rule.default.backend_refs.as_deref(),
                ));
            }
        }
        causes
    }
}

/// What every route checks of its references: the top-level one (which
/// proxies), and at least one `to` item, each naming a destination.
pub(crate) fn validate_targets<'a>(
    target_ref: Option<&TargetRef>,
    destinations: impl ExactSizeIterator<Item = &'a TargetRef>,
) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(target) = target_ref {
        causes.extend(target.validate("targetRef", &ROUTE_TOP_LEVEL_KINDS));
        causes.extend(target.validate_whole_proxies("targetRef"));
    }
    if destinations.len() == 0 {
        causes.push(Cause::new("to", "must name at least one destination"));
    }
    for (i, destination) in destinations.enumerate() {
        causes.extend(destination.validate(&format!("to[{i}].targetRef"), &ROUTE_TO_KINDS));
    }
    causes
}

/// A rule's backends: at least one, each a valid reference, not all of
/// weight 0.
pub(crate) fn validate_backends(field: &str, backends: Option<&[BackendRef]>) -> Vec<Cause> {
    let Some(backends) = backends.filter(|b| !b.is_empty()) else {
        return vec![Cause::new(field, "must name at least one backend")];
    };
    let mut causes: Vec<Cause> = backends
        .iter()
        .enumerate()
        .flat_map(|(i, b)| b.validate(&format!("{field}[{i}]")))
        .collect();
    if backends.iter().all(|b| b.weight() == 0) {
        causes.push(Cause::new(
            field,
            "has only backends of weight 0: nothing would receive the traffic",
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_split_parses_and_a_route_without_backends_is_refused() {
        let spec: MeshTcpRouteSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                    "rules": [{"default": {"backendRefs": [
                        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v1"}, "weight": 90},
                        {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}, "weight": 10}
                    ]}}]}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let empty: MeshTcpRouteSpec = serde_json::from_value(serde_json::json!({
            "to": [{"targetRef": {"kind": "Mesh"}, "rules": [{"default": {}}]}]
        }))
        .unwrap();
        let fields: Vec<String> = empty.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            ["to[0].targetRef.kind", "to[0].rules[0].default.backendRefs"]
        );
    }
}
