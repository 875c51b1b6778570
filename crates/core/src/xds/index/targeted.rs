//! Which `targetRef` policies select a proxy, and in what order: the first
//! step of the rules engine (`xds::rules`), over the policies as the index
//! files them (by the service their top-level targetRef names, so that a
//! proxy is matched against a handful of candidates, not every policy).

use super::policies::{Filed, Policies};
use crate::resources::tags::{SERVICE_TAG, Tags};
use crate::resources::{
    NAMESPACE_TAG, PolicyDocument, ServicePort, Subset, TargetRef, TargetRefKind, TargetRefPolicy,
};
use std::collections::BTreeSet;

/// A `targetRef` policy as the index keeps it: its spec, and on Kubernetes
/// the application namespace it was created in. Kuma applies a policy of
/// an application namespace to the proxies of that namespace only, and
/// over one of the system namespace (or of Universal) with the same
/// top-level kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoped<P> {
    pub spec: P,
    pub namespace: Option<String>,
    /// The top-level targetRef, read once: a proxy is matched against
    /// every candidate policy, and this is what it is matched by.
    target: TargetRef,
    subset: Subset,
}

/// One inbound as a `sectionName` names it: by its port, or its name.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub port: u16,
    pub name: Option<&'a str>,
}

impl<P: TargetRefPolicy> Scoped<P> {
    pub fn new(mut spec: P, namespace: Option<String>) -> Scoped<P> {
        if let Some(namespace) = &namespace {
            spec.default_namespace(namespace);
        }
        let target = spec.target();
        let subset = target.subset();
        Scoped {
            spec,
            namespace,
            target,
            subset,
        }
    }

    /// Whether the policy selects a proxy (or inbound) with `tags`. An
    /// inbound's `section` (its name, or its port) is matched when the
    /// targetRef names one; `None` stands for any section.
    pub fn selects(&self, tags: &Tags, gateway: bool, section: Option<Section>) -> bool {
        let in_namespace = self
            .namespace
            .as_ref()
            .is_none_or(|ns| tags.get(NAMESPACE_TAG) == Some(ns));
        let port = section.map(|s| s.port.to_string());
        let in_section = match (
            self.target.kind,
            self.target.section_name.as_deref(),
            section,
        ) {
            (TargetRefKind::Dataplane, Some(wanted), Some(section)) => {
                Some(wanted) == section.name || Some(wanted) == port.as_deref()
            }
            (TargetRefKind::MeshService | TargetRefKind::MeshServiceSubset, _, _) => {
                tags.get(SERVICE_TAG).is_some_and(|service| {
                    self.target.names_service(&ServicePort {
                        service,
                        // Without an inbound, any port of the service.
                        name: section.map_or(self.target.section_name.as_deref(), |s| s.name),
                    })
                })
            }
            _ => true,
        };
        in_namespace && in_section && self.target.selects_by(&self.subset, tags, gateway)
    }

    /// Kuma's policy role, in its order: the system's (Universal, or the
    /// system namespace), a producer's (routes of an application
    /// namespace), a workload owner's (any other policy there).
    fn role(&self) -> u8 {
        match (&self.namespace, self.spec.is_route()) {
            (None, _) => 0,
            (Some(_), true) => 1,
            (Some(_), false) => 2,
        }
    }
}

impl<P: TargetRefPolicy> From<PolicyDocument<P>> for Scoped<P> {
    fn from(document: PolicyDocument<P>) -> Scoped<P> {
        Scoped::new(document.spec, document.namespace)
    }
}

/// The index files a policy under the service its top-level targetRef
/// names (a candidate for that service's proxies only), or anywhere.
impl<P> Filed for Scoped<P> {
    fn services(&self) -> Option<BTreeSet<&str>> {
        let service = self
            .subset
            .tags()
            .iter()
            .find(|t| t.key == SERVICE_TAG && !t.not)?;
        Some([service.value.as_str()].into())
    }
}

/// The services of `tags`, the candidates worth looking at for a proxy.
pub fn services_of<'t>(tags: &[&'t Tags]) -> Vec<&'t str> {
    tags.iter()
        .filter_map(|t| t.get(SERVICE_TAG).map(String::as_str))
        .collect()
}

/// The policies that select a proxy with inbounds of `tags`, least
/// specific first (see the module's doc): by the kind of their top-level
/// targetRef, then their role, then by name, the name that sorts first
/// coming last so that it wins a tie.
pub fn selecting<'m, P: TargetRefPolicy + 'm>(
    policies: &'m Policies<Scoped<P>>,
    tags: &[&Tags],
    gateway: bool,
) -> Vec<(&'m str, &'m P)> {
    ordered(policies, &services_of(tags), |p| {
        tags.iter().any(|t| p.selects(t, gateway, None))
    })
}

/// [`selecting`] for one inbound of a sidecar: its tags, and its port and
/// name (what a `sectionName` names).
pub fn selecting_inbound<'m, P: TargetRefPolicy + 'm>(
    policies: &'m Policies<Scoped<P>>,
    tags: &Tags,
    section: Section,
) -> Vec<(&'m str, &'m P)> {
    ordered(policies, &services_of(&[tags]), |p| {
        p.selects(tags, false, Some(section))
    })
}

/// The candidates of `services` that `selected` keeps, least specific
/// first.
fn ordered<'m, P: TargetRefPolicy + 'm>(
    policies: &'m Policies<Scoped<P>>,
    services: &[&str],
    selected: impl Fn(&Scoped<P>) -> bool,
) -> Vec<(&'m str, &'m P)> {
    let mut chosen: Vec<(&str, TargetRefKind, u8, &P)> = policies
        .for_services(services)
        .map(|(name, p)| (name.as_str(), p.as_ref()))
        .filter(|(_, p)| selected(p))
        .map(|(name, p)| (name, p.target.kind, p.role(), &p.spec))
        .collect();
    chosen.sort_by(|(n1, k1, r1, _), (n2, k2, r2, _)| k1.cmp(k2).then(r1.cmp(r2)).then(n2.cmp(n1)));
    chosen.into_iter().map(|(n, _, _, p)| (n, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::MeshTrafficPermissionSpec;
    use crate::resources::tags::of_pairs as tags;
    use serde_json::{Value, json};

    fn permission(target: Value, namespace: Option<&str>) -> Scoped<MeshTrafficPermissionSpec> {
        Scoped::new(
            serde_json::from_value(json!({"targetRef": target, "from": []})).unwrap(),
            namespace.map(str::to_string),
        )
    }

    #[test]
    fn policies_are_ordered_by_the_kind_of_their_target_then_role_then_name() {
        let policies = [
            (
                "b-service",
                permission(json!({"kind": "MeshService", "name": "x"}), None),
            ),
            ("mesh", permission(json!({"kind": "Mesh"}), None)),
            ("team", permission(json!({"kind": "Mesh"}), Some("team-a"))),
            (
                "other-team",
                permission(json!({"kind": "Mesh"}), Some("team-b")),
            ),
            (
                "subset",
                permission(json!({"kind": "MeshSubset", "tags": {"a": "b"}}), None),
            ),
            (
                "a-service",
                permission(json!({"kind": "MeshService", "name": "x"}), None),
            ),
        ];
        let proxy = tags(&[
            ("service", "x"),
            ("a", "b"),
            ("k8s.kuma.io/namespace", "team-a"),
        ]);
        let mut filed = Policies::default();
        for (name, p) in policies {
            filed.insert(name, p);
        }
        let chosen = selecting(&filed, &[&proxy], false);
        let names: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
        // Least specific first; the application namespace's own over the
        // system's; of two equals, the name sorting first last. Another
        // team's namespace does not reach this proxy.
        assert_eq!(names, ["mesh", "team", "subset", "b-service", "a-service"]);
    }

    #[test]
    fn a_section_name_picks_one_inbound_by_its_port_or_its_name() {
        let mut filed = Policies::default();
        filed.insert(
            "metrics-port",
            permission(json!({"kind": "Dataplane", "sectionName": "9090"}), None),
        );
        filed.insert("everything", permission(json!({"kind": "Mesh"}), None));
        filed.insert(
            "admin",
            permission(json!({"kind": "Dataplane", "sectionName": "admin"}), None),
        );
        let inbound = tags(&[("service", "web")]);
        let names = |port, name| -> Vec<&str> {
            selecting_inbound(&filed, &inbound, Section { port, name })
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(names(9090, None), ["everything", "metrics-port"]);
        assert_eq!(names(8080, None), ["everything"]);
        assert_eq!(names(9901, Some("admin")), ["everything", "admin"]);
        assert_eq!(names(9901, None), ["everything"]);
        // The proxy as a whole (what a change rebuilds) is selected by all.
        assert_eq!(selecting(&filed, &[&inbound], false).len(), 3);
    }
}
