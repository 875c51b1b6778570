//! Policies that select dataplanes by tags: `TrafficPermission` and
//! `TrafficLog`.

use super::tags::{Tags, validate_tags};
use super::validation::{Cause, nested};
use serde::{Deserialize, Serialize};

/// `match: {tag: value}`; a value of `*` matches any value of that tag.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "match")]
    pub match_tags: Tags,
}

impl Selector {
    /// True when every tag of the selector is in `tags` (or is `*`).
    pub fn matches(&self, tags: &Tags) -> bool {
        self.match_tags
            .iter()
            .all(|(k, v)| tags.get(k).is_some_and(|t| v == "*" || t == v))
    }

    fn validate(&self) -> Vec<Cause> {
        if self.match_tags.is_empty() {
            return vec![Cause::new("match", "must have at least one tag")];
        }
        validate_tags("match", &self.match_tags, true)
    }
}

/// At least one selector, each with at least one valid tag; causes are
/// reported under `field[i]`. Shared by every kind that selects proxies.
pub(crate) fn validate_selectors(field: &str, selectors: &[Selector]) -> Vec<Cause> {
    if selectors.is_empty() {
        return vec![Cause::new(field, "must have at least one selector")];
    }
    selectors
        .iter()
        .enumerate()
        .flat_map(|(i, s)| nested(&format!("{field}[{i}]"), s.validate()).collect::<Vec<_>>())
        .collect()
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficPermissionSpec {
    #[serde(default)]
    pub rules: Vec<TrafficPermissionRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficPermissionRule {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
}

/// Both policies: at least one rule, each selecting sources and
/// destinations.
fn validate_rules<'a>(
    rules: impl ExactSizeIterator<Item = (&'a [Selector], &'a [Selector])>,
) -> Vec<Cause> {
    if rules.len() == 0 {
        return vec![Cause::new("rules", "must have at least one rule")];
    }
    let mut causes = Vec::new();
    for (i, (sources, destinations)) in rules.enumerate() {
        causes.extend(validate_selectors(&format!("rules[{i}].sources"), sources));
        causes.extend(validate_selectors(
            &format!("rules[{i}].destinations"),
            destinations,
        ));
    }
    causes
}

impl TrafficPermissionSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        validate_rules(
            self.rules
                .iter()
                .map(|r| (&r.sources[..], &r.destinations[..])),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficLogSpec {
    #[serde(default)]
    pub rules: Vec<TrafficLogRule>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficLogRule {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficLogConf>,
}

/// Which of the mesh's logging backends to use; the mesh default when unset.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrafficLogConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}

impl TrafficLogSpec {
    pub(crate) fn validate(&self) -> Vec<Cause> {
        let mut causes = validate_rules(
            self.rules
                .iter()
                .map(|r| (&r.sources[..], &r.destinations[..])),
        );
        for (i, r) in self.rules.iter().enumerate() {
            if let Some(TrafficLogConf { backend: Some(b) }) = &r.conf
                && b.is_empty()
            {
                causes.push(Cause::new(
                    format!("rules[{i}].conf.backend"),
                    "must name a logging backend of the mesh, or be left out",
                ));
            }
        }
        causes
    }
}
