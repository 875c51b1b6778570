//! MeshTrafficPermission: which peers an inbound of an mTLS mesh lets in,
//! from the rules the engine (`xds::rules`) computes for that inbound.
//!
//! Peers are told by their certificates, so a rule's subset becomes a
//! principal: each held tag a SAN the peer must carry, each negated one a
//! SAN it must not. The inbound's RBAC filter allows the peers of every
//! rule whose action is `Allow` or `AllowWithShadowDeny` and nobody else;
//! its shadow rules deny those of `AllowWithShadowDeny`, so Envoy counts
//! them as it would count denied peers while letting them through.

use super::tls::{all_of, not, rbac_network_filter, tag_principal};
use crate::resources::tags::Tags;
use crate::resources::{PermissionAction, PermissionConf, Subset};
use crate::xds::index::{MeshView, selecting_inbound};
use crate::xds::rules::{self, Item, Rule};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, rbac,
};
use std::collections::HashMap;

/// The name of the one policy in the filter's rules, as Kuma names it.
const POLICY_NAME: &str = "MeshTrafficPermission";

/// The rules of the mesh's MeshTrafficPermissions for an inbound with
/// `tags` on `port`: those whose `targetRef` selects it, least specific
/// first, their `from` items merged per group of peers.
pub fn inbound_rules(mesh: &MeshView, tags: &Tags, port: u16) -> Vec<Rule> {
    let selecting = selecting_inbound(mesh.mesh_traffic_permissions(), tags, port);
    let froms: Vec<(&str, Subset, serde_json::Value)> = selecting
        .into_iter()
        .flat_map(|(name, spec)| {
            spec.from.iter().map(move |from| {
                let conf = serde_json::to_value(&from.default).unwrap_or_default();
                (name, from.target_ref.subset(), conf)
            })
        })
        .collect();
    let items: Vec<Item> = froms
        .iter()
        .map(|(policy, subset, conf)| Item {
            policy,
            subset: subset.clone(),
            conf,
        })
        .collect();
    rules::rules(&items, &[])
}

/// The action of a rule; a conf without one (never stored: validation
/// requires it) lets nobody in.
pub fn action(rule: &Rule) -> PermissionAction {
    serde_json::from_value::<PermissionConf>(rule.conf.clone())
        .ok()
        .and_then(|c| c.action)
        .unwrap_or(PermissionAction::Deny)
}

/// The inbound's RBAC filter from its `rules`; no rule lets nobody in.
pub fn rbac_filter(stat_prefix: &str, mesh: &str, rules: &[Rule]) -> Filter {
    let mut allowed = Vec::new();
    let mut shadow_denied = Vec::new();
    for rule in rules {
        match action(rule) {
            PermissionAction::Allow => allowed.push(principal(mesh, &rule.subset)),
            PermissionAction::AllowWithShadowDeny => {
                allowed.push(principal(mesh, &rule.subset));
                shadow_denied.push(principal(mesh, &rule.subset));
            }
            PermissionAction::Deny => {}
        }
    }
    let rules = rbac_of(rbac::Action::Allow, allowed);
    let shadow = (!shadow_denied.is_empty()).then(|| rbac_of(rbac::Action::Deny, shadow_denied));
    rbac_network_filter(&format!("{stat_prefix}."), rules, shadow)
}

/// An RBAC with one policy for `principals` (none: no policy, which an
/// ALLOW filter reads as "nobody").
fn rbac_of(action: rbac::Action, principals: Vec<Principal>) -> Rbac {
    let policies = if principals.is_empty() {
        HashMap::new()
    } else {
        HashMap::from([(
            POLICY_NAME.to_string(),
            Policy {
                permissions: vec![Permission {
                    rule: Some(permission::Rule::Any(true)),
                }],
                principals,
                ..Default::default()
            },
        )])
    };
    Rbac {
        action: action as i32,
        policies,
        ..Default::default()
    }
}

/// The peers of `subset`, by the SANs of their certificates.
fn principal(mesh: &str, subset: &Subset) -> Principal {
    all_of(
        subset
            .tags()
            .iter()
            .map(|tag| {
                let id = tag_principal(mesh, &tag.key, Some(&tag.value));
                if tag.not { not(id) } else { id }
            })
            .collect(),
    )
}
