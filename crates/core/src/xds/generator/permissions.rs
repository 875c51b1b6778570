//! MeshTrafficPermission: which peers an inbound of an mTLS mesh lets in,
//! from the rules the engine (`xds::rules`) computes for that inbound.
//!
//! Peers are told by their certificates, so a rule's subset becomes a
//! principal: each held tag a SAN the peer must carry, each negated one a
//! SAN it must not. The inbound's RBAC filter allows the peers of every
//! rule whose action is `Allow` or `AllowWithShadowDeny` and nobody else;
//! its shadow rules deny those of `AllowWithShadowDeny`, so Envoy counts
//! them as it would count denied peers while letting them through.
//!
//! Policies in the `rules` form name peers by SPIFFE id; where one selects
//! an inbound it alone decides (Kuma's order: every `deny` of every rule
//! before any `allow`), and the `from` form is not consulted there.

use super::tls::{all_of, exact, not, prefix, rbac_network_filter, san_principal, tag_principal};
use crate::resources::tags::Tags;
use crate::resources::{
    IdentityConf, IdentityMatch, PermissionAction, PermissionConf, SpiffeIdMatchType, Subset,
};
use crate::xds::index::{MeshView, Section, selecting_inbound};
use crate::xds::rules::{self, Item, Rule};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac, permission, principal, rbac,
};
use std::collections::HashMap;

/// The name of the one policy in the filter's rules, as Kuma names it.
const POLICY_NAME: &str = "MeshTrafficPermission";

/// Who may reach one inbound, as the MeshTrafficPermissions selecting it
/// say.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundAccess<'m> {
    /// The `from` form: groups of peers by tags, merged per group.
    Groups(Vec<Rule>),
    /// The `rules` form: peers by SPIFFE id, each rule with the policy it
    /// comes from, least specific first.
    Identities(Vec<(&'m str, &'m IdentityConf)>),
}

/// The access of the mesh's MeshTrafficPermissions for an inbound with
/// `tags` at `section`: those whose `targetRef` selects it, least
/// specific first.
pub fn inbound_access<'m>(mesh: &'m MeshView, tags: &Tags, section: Section) -> InboundAccess<'m> {
    let selecting = selecting_inbound(mesh.mesh_traffic_permissions(), tags, section);
    let identities: Vec<(&str, &IdentityConf)> = selecting
        .iter()
        .flat_map(|(name, spec)| spec.rules.iter().map(move |r| (*name, &r.default)))
        .collect();
    if !identities.is_empty() {
        return InboundAccess::Identities(identities);
    }
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
    InboundAccess::Groups(rules::rules(&items, &[]))
}

/// The action of a rule; a conf without one (never stored: validation
/// requires it) lets nobody in.
pub fn action(rule: &Rule) -> PermissionAction {
    serde_json::from_value::<PermissionConf>(rule.conf.clone())
        .ok()
        .and_then(|c| c.action)
        .unwrap_or(PermissionAction::Deny)
}

/// The inbound's RBAC filter from its access; no rule lets nobody in.
pub fn rbac_filter(stat_prefix: &str, mesh: &str, access: &InboundAccess) -> Filter {
    let (rules, shadow) = match access {
        InboundAccess::Groups(rules) => by_groups(mesh, rules),
        InboundAccess::Identities(rules) => by_identities(rules),
    };
    rbac_network_filter(&format!("{stat_prefix}."), rules, shadow)
}

/// The enforced and the shadow RBAC of the `from` form.
fn by_groups(mesh: &str, rules: &[Rule]) -> (Rbac, Option<Rbac>) {
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
    (rules, shadow)
}

/// The enforced and the shadow RBAC of the `rules` form: peers some allow
/// matches and no deny does are let in; those of `allowWithShadowDeny`
/// are counted as denied.
fn by_identities(rules: &[(&str, &IdentityConf)]) -> (Rbac, Option<Rbac>) {
    let ids = |pick: fn(&IdentityConf) -> &[IdentityMatch]| -> Vec<Principal> {
        rules
            .iter()
            .flat_map(|(_, conf)| pick(conf))
            .filter_map(identity_principal)
            .collect()
    };
    let denied = ids(|c| &c.deny);
    let shadow_denied = ids(|c| &c.allow_with_shadow_deny);
    let mut allowed = ids(|c| &c.allow);
    allowed.extend(shadow_denied.iter().cloned());
    let allowed = if allowed.is_empty() {
        Vec::new()
    } else if denied.is_empty() {
        vec![any_of(allowed)]
    } else {
        vec![all_of(vec![any_of(allowed), not(any_of(denied))])]
    };
    let rules = rbac_of(rbac::Action::Allow, allowed);
    let shadow = (!shadow_denied.is_empty())
        .then(|| rbac_of(rbac::Action::Deny, vec![any_of(shadow_denied)]));
    (rules, shadow)
}

/// The peers whose certificate has a URI SAN `matched` names.
fn identity_principal(matched: &IdentityMatch) -> Option<Principal> {
    let id = matched.spiffe_id.as_ref()?;
    Some(san_principal(match id.kind {
        SpiffeIdMatchType::Exact => exact(id.value.clone()),
        SpiffeIdMatchType::Prefix => prefix(id.value.clone()),
    }))
}

/// A peer that one of `ids` matches (at least one).
fn any_of(mut ids: Vec<Principal>) -> Principal {
    if ids.len() == 1 {
        return ids.remove(0);
    }
    Principal {
        identifier: Some(principal::Identifier::OrIds(principal::Set { ids })),
    }
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
