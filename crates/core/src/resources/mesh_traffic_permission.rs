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
//! Kuma 2.12 added a second form, `rules`, which names clients by the
//! SPIFFE id of their certificate instead of by tags:
//!
//! ```yaml
//! spec:
//!   targetRef: {kind: Dataplane, labels: {app: backend}}
//!   rules:
//!   - default:
//!       deny: [{spiffeID: {type: Exact, value: spiffe://default/legacy}}]
//!       allow: [{spiffeID: {type: Prefix, value: spiffe://default/}}]
//! ```
//!
//! A client any `deny` matches is refused; else one an `allow` or
//! `allowWithShadowDeny` matches is let in; else it is refused. Once a
//! policy in the `rules` form selects an inbound, the `from` form is no
//! longer consulted there, as in Kuma.
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<PermissionFrom>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<PermissionRule>,
}

/// One rule of the `rules` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionRule {
    pub default: IdentityConf,
}

/// Clients by identity: refused, let in, let in and counted as refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IdentityConf {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<IdentityMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_with_shadow_deny: Vec<IdentityMatch>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<IdentityMatch>,
}

/// A client whose certificate carries a matching SPIFFE id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityMatch {
    #[serde(rename = "spiffeID", default, skip_serializing_if = "Option::is_none")]
    pub spiffe_id: Option<SpiffeIdMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpiffeIdMatch {
    #[serde(rename = "type")]
    pub kind: SpiffeIdMatchType,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SpiffeIdMatchType {
    Exact,
    Prefix,
}

impl IdentityConf {
    fn validate(&self, path: &str) -> Vec<Cause> {
        let lists = [
            ("deny", &self.deny),
            ("allowWithShadowDeny", &self.allow_with_shadow_deny),
            ("allow", &self.allow),
        ];
        if lists.iter().all(|(_, list)| list.is_empty()) {
            return vec![Cause::new(
                path,
                "must hold at least one of allow, allowWithShadowDeny, deny",
            )];
        }
        let mut causes = Vec::new();
        for (field, list) in lists {
            for (i, matched) in list.iter().enumerate() {
                let at = format!("{path}.{field}[{i}].spiffeID");
                match &matched.spiffe_id {
                    None => causes.push(Cause::new(
                        at,
                        "must be set: {type: Exact or Prefix, value: a SPIFFE id}",
                    )),
                    Some(id) if !id.value.starts_with("spiffe://") => causes.push(Cause::new(
                        format!("{at}.value"),
                        format!("must be a SPIFFE id (spiffe://...), got {:?}", id.value),
                    )),
                    Some(_) => {}
                }
            }
        }
        causes
    }
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
        match (self.from.is_empty(), self.rules.is_empty()) {
            (true, true) => causes.push(Cause::new(
                "from",
                "must list at least one group of clients (targetRef and default.action), or rules at least one rule (default.allow, deny or allowWithShadowDeny)",
            )),
            (false, false) => causes.push(Cause::new(
                "from",
                "must be left out when rules is set: a policy has one form or the other",
            )),
            _ => {}
        }
        for (i, rule) in self.rules.iter().enumerate() {
            causes.extend(rule.default.validate(&format!("rules[{i}].default")));
        }
        for (i, item) in self.from.iter().enumerate() {
            let path = format!("from[{i}]");
            let at = format!("{path}.targetRef");
            causes.extend(item.target_ref.validate(&at, &FROM_KINDS));
            causes.extend(item.target_ref.validate_peers(&at));
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

    #[test]
    fn the_rules_form_parses_and_each_bad_match_is_named() {
        let spec: MeshTrafficPermissionSpec = serde_json::from_value(serde_json::json!({
            "targetRef": {"kind": "Dataplane", "labels": {"app": "backend"}, "sectionName": "8080"},
            "rules": [{"default": {
                "allowWithShadowDeny": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/legacy"}}],
                "allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]}}]
        }))
        .unwrap();
        assert!(spec.validate().is_empty(), "{:?}", spec.validate());
        let bad: MeshTrafficPermissionSpec = serde_json::from_value(serde_json::json!({
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}],
            "rules": [
                {"default": {}},
                {"default": {"deny": [{}, {"spiffeID": {"type": "Exact", "value": "backend"}}]}}
            ]
        }))
        .unwrap();
        let fields: Vec<String> = bad.validate().into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            [
                "from",
                "rules[0].default",
                "rules[1].default.deny[0].spiffeID",
                "rules[1].default.deny[1].spiffeID.value"
            ]
        );
        let unknown = serde_json::from_value::<MeshTrafficPermissionSpec>(serde_json::json!({
            "rules": [{"default": {"deny": [{"spiffeID": {"type": "Suffix", "value": "spiffe://x"}}]}}]
        }));
        assert!(unknown.is_err());
    }
}
