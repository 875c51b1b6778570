//! `MeshTrafficPermission`: which clients may reach the inbounds a policy
//! selects, as Kuma 2.x writes it
//! (`pkg/plugins/policies/meshtrafficpermission/api/v1alpha1`).
//!
//! ```yaml
//! type: MeshTrafficPermission
//! name: allow-orders
//! mesh: default
//! spec:
//!   targetRef: {kind: MeshService, name: backend}
//!   from:
//!   - targetRef: {kind: MeshService, name: orders}
//!     default: {action: Allow}
//! ```
//!
//! Clients are told by their mTLS identity, so a permission means something
//! only in a mesh with mTLS on. Once one exists in a mesh, the mesh's
//! `TrafficPermission`s are no longer consulted.

use super::target_ref::{TargetRef, TargetRefKind, TargetRefPolicy};
use super::validation::Cause;
use serde::{Deserialize, Serialize};

/// The kinds a permission's top-level `targetRef` accepts here.
pub const TOP_LEVEL_KINDS: [TargetRefKind; 5] = [
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
    TargetRefKind::Dataplane,
];

/// The kinds a `from` item's `targetRef` accepts: groups of clients.
pub const FROM_KINDS: [TargetRefKind; 4] = [
    TargetRefKind::Mesh,
    TargetRefKind::MeshSubset,
    TargetRefKind::MeshService,
    TargetRefKind::MeshServiceSubset,
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTrafficPermissionSpec {
    /// The proxies whose inbounds the permission guards; every proxy of
    /// the mesh when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default)]
    pub from: Vec<PermissionFrom>,
}

/// One group of clients and what happens to their connections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionFrom {
    pub target_ref: TargetRef,
    #[serde(default)]
    pub default: PermissionConf,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Action {
    Allow,
    Deny,
    /// Let the connection through, and count it as Envoy would count a
    /// denied one (its `rbac.shadow_denied` statistic): for trying a
    /// deny before enforcing it.
    AllowWithShadowDeny,
}

impl TargetRefPolicy for MeshTrafficPermissionSpec {
    fn target_ref(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn validate(&self) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(target) = &self.target_ref {
            causes.extend(target.validate("targetRef", &TOP_LEVEL_KINDS));
        }
        if self.from.is_empty() {
            causes.push(Cause::new(
                "from",
                "must list at least one group of clients (targetRef and default.action)",
            ));
        }
        for (i, item) in self.from.iter().enumerate() {
            let path = format!("from[{i}]");
            causes.extend(
                item.target_ref
                    .validate(&format!("{path}.targetRef"), &FROM_KINDS),
            );
            if item.default.action.is_none() {
                causes.push(Cause::new(
                    format!("{path}.default.action"),
                    "must be set: Allow, Deny or AllowWithShadowDeny",
                ));
            }
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kumas_example_parses_and_a_bad_one_names_each_field() {
        let spec: MeshTrafficPermissionSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "MeshService", "name": "backend"},
            "from": [{"targetRef": {"kind": "MeshSubset", "tags": {"kuma.io/zone": "east"}},
                      "default": {"action": "AllowWithShadowDeny"}}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let bad: MeshTrafficPermissionSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "MeshService"},
            "from": [{"targetRef": {"kind": "Mesh"}}]
        }))
        .unwrap();
        let fields: Vec<String> = bad.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["targetRef.name", "from[0].default.action"]);
    }
}
