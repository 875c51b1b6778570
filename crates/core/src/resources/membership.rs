//! Who may join a mesh: `Mesh.constraints.dataplaneProxy`, as Kuma 2.x
//! writes it.
//!
//! ```yaml
//! constraints:
//!   dataplaneProxy:
//!     requirements:            # a dataplane must match one of these
//!     - tags: {k8s.kuma.io/namespace: team-a}
//!     restrictions:            # and none of these
//!     - tags: {service: legacy}
//! ```
//!
//! A rule matches when every inbound of the dataplane has each of its tags
//! (`*`: any value): one inbound outside the rule is enough to refuse, so a
//! dataplane cannot join by also serving something allowed.

use super::DataplaneSpec;
use super::tags::Tags;
use super::validation::Cause;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Constraints {
    #[serde(default)]
    pub dataplane_proxy: DataplaneProxyConstraints,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneProxyConstraints {
    /// Empty: every dataplane qualifies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<TagsRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restrictions: Vec<TagsRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsRule {
    pub tags: Tags,
}

impl TagsRule {
    fn matches(&self, dataplane: &DataplaneSpec) -> bool {
        !dataplane.networking.inbound.is_empty()
            && dataplane.networking.inbound.iter().all(|inbound| {
                self.tags
                    .iter()
                    .all(|(k, v)| inbound.tags.get(k).is_some_and(|got| v == "*" || got == v))
            })
    }

    fn describe(&self) -> String {
        let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{{{}}}", tags.join(", "))
    }
}

/// The tag naming a Kubernetes dataplane's namespace.
pub const NAMESPACE_TAG: &str = "k8s.kuma.io/namespace";

impl Constraints {
    /// Whether objects of namespace `namespace` may be of this mesh: when
    /// its requirements name namespaces (`k8s.kuma.io/namespace`), only
    /// those (or `*`); otherwise every namespace.
    pub fn admits_namespace(&self, mesh: &str, namespace: &str) -> Result<(), String> {
        let named: Vec<&str> = self
            .dataplane_proxy
            .requirements
            .iter()
            .filter_map(|r| r.tags.get(NAMESPACE_TAG).map(String::as_str))
            .collect();
        if named.is_empty() || named.iter().any(|n| *n == "*" || *n == namespace) {
            return Ok(());
        }
        Err(format!(
            "mesh \"{mesh}\" admits the namespaces {} only (constraints.dataplaneProxy.requirements), not \"{namespace}\"",
            named.join(", ")
        ))
    }

    /// Whether `dataplane` may join the mesh `mesh`; the refusal says which
    /// rule it fails.
    pub fn admits(&self, mesh: &str, dataplane: &DataplaneSpec) -> Result<(), String> {
        let c = &self.dataplane_proxy;
        if !c.requirements.is_empty() && !c.requirements.iter().any(|r| r.matches(dataplane)) {
            let wanted: Vec<String> = c.requirements.iter().map(TagsRule::describe).collect();
            return Err(format!(
                "mesh \"{mesh}\" admits only dataplanes whose every inbound has the tags of one of {} (constraints.dataplaneProxy.requirements)",
                wanted.join(" or ")
            ));
        }
        if let Some(r) = c.restrictions.iter().find(|r| r.matches(dataplane)) {
            return Err(format!(
                "mesh \"{mesh}\" refuses dataplanes with the tags {} (constraints.dataplaneProxy.restrictions)",
                r.describe()
            ));
        }
        Ok(())
    }

    pub(crate) fn validate(&self) -> Vec<Cause> {
        let c = &self.dataplane_proxy;
        let rules = [
            ("requirements", &c.requirements),
            ("restrictions", &c.restrictions),
        ];
        let mut causes = Vec::new();
        for (list, rules) in rules {
            for (i, rule) in rules.iter().enumerate() {
                let field = format!("constraints.dataplaneProxy.{list}[{i}].tags");
                if rule.tags.is_empty() {
                    causes.push(Cause::new(field, "must name at least one tag"));
                } else {
                    causes.extend(super::tags::validate_tags(&field, &rule.tags, true));
                }
            }
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{InboundInterface, Networking};

    fn dataplane(inbounds: &[&[(&str, &str)]]) -> DataplaneSpec {
        DataplaneSpec {
            networking: Networking {
                address: None,
                gateway: None,
                inbound: inbounds
                    .iter()
                    .map(|tags| InboundInterface {
                        interface: "10.0.0.1:80:8080".into(),
                        tags: tags
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
                outbound: Vec::new(),
                transparent_proxying: None,
            },
        }
    }

    fn rule(tags: &[(&str, &str)]) -> TagsRule {
        TagsRule {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn every_inbound_must_meet_a_requirement_and_no_restriction() {
        let c = Constraints {
            dataplane_proxy: DataplaneProxyConstraints {
                requirements: vec![rule(&[("team", "a")]), rule(&[("team", "ops")])],
                restrictions: vec![rule(&[("service", "legacy")])],
            },
        };
        assert!(
            c.admits("a", &dataplane(&[&[("team", "a"), ("service", "web")]]))
                .is_ok()
        );
        assert!(
            c.admits("a", &dataplane(&[&[("team", "ops"), ("service", "x")]]))
                .is_ok()
        );
        let err = c
            .admits("a", &dataplane(&[&[("team", "b"), ("service", "web")]]))
            .unwrap_err();
        assert!(err.contains("{team=a} or {team=ops}"), "{err}");
        // One inbound of another team is enough to refuse.
        assert!(
            c.admits("a", &dataplane(&[&[("team", "a")], &[("team", "b")]]))
                .is_err()
        );
        let err = c
            .admits("a", &dataplane(&[&[("team", "a"), ("service", "legacy")]]))
            .unwrap_err();
        assert!(
            err.contains("refuses") && err.contains("service=legacy"),
            "{err}"
        );
        let any = Constraints {
            dataplane_proxy: DataplaneProxyConstraints {
                requirements: vec![rule(&[("team", "*")])],
                restrictions: Vec::new(),
            },
        };
        assert!(any.admits("a", &dataplane(&[&[("team", "z")]])).is_ok());
        assert!(any.admits("a", &dataplane(&[&[("service", "z")]])).is_err());
    }
}
