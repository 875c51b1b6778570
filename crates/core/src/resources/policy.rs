//! Policies that select dataplanes by tags: `TrafficPermission` and
//! `TrafficLog`.

use super::tags::{SERVICE_TAG, Tags, validate_tags};
use super::validation::{Cause, nested};
use serde::{Deserialize, Serialize};

/// `match: {tag: value}`; a value of `*` matches any value of that tag.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "match")]
    pub match_tags: Tags,
}

/// How specifically a selector matched: more matched tags beat fewer,
/// then more exact values beat more `*`. The derived order compares in
/// that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Specificity {
    pub tags: usize,
    pub exact: usize,
}

impl std::ops::Add for Specificity {
    type Output = Specificity;
    fn add(self, other: Specificity) -> Specificity {
        Specificity {
            tags: self.tags + other.tags,
            exact: self.exact + other.exact,
        }
    }
}

/// The one selector engine of every policy kind: among the candidates
/// that match (those with a specificity), the most specific wins, and a
/// tie goes to the name that sorts first, so the choice never depends on
/// the order policies arrived in.
pub fn most_specific<'a, T>(
    candidates: impl IntoIterator<Item = (&'a str, Option<Specificity>, T)>,
) -> Option<(&'a str, T)> {
    candidates
        .into_iter()
        .filter_map(|(name, specificity, item)| Some((specificity?, name, item)))
        .min_by(|(s1, n1, _), (s2, n2, _)| s2.cmp(s1).then(n1.cmp(n2)))
        .map(|(_, name, item)| (name, item))
}

/// The most specific of `policies` (name, selectors, item) that selects
/// a dataplane by one of its inbounds' tags: ProxyTemplate, TrafficTrace.
pub fn for_dataplane<'a, T>(
    tags: &[&Tags],
    policies: impl IntoIterator<Item = (&'a str, &'a [Selector], T)>,
) -> Option<(&'a str, T)> {
    most_specific(policies.into_iter().map(|(name, selectors, item)| {
        (name, Selector::best(selectors, tags.iter().copied()), item)
    }))
}

/// The most specific of `policies` (name, sources, destinations, item)
/// for a connection from a dataplane with `source_tags` to `service`: a
/// source and a destination selector must both match, and their
/// specificities add up. TrafficLog, TrafficRoute.
pub fn for_connection<'a, T>(
    source_tags: &[&Tags],
    service: &str,
    policies: impl IntoIterator<Item = (&'a str, &'a [Selector], &'a [Selector], T)>,
) -> Option<(&'a str, T)> {
    let destination: Tags = [(SERVICE_TAG.to_string(), service.to_string())].into();
    most_specific(
        policies
            .into_iter()
            .map(|(name, sources, destinations, item)| {
                let from = Selector::best(sources, source_tags.iter().copied());
                let to = Selector::best(destinations, [&destination]);
                (name, from.zip(to).map(|(f, t)| f + t), item)
            }),
    )
}

impl Selector {
    /// True when every tag of the selector is in `tags` (or is `*`).
    pub fn matches(&self, tags: &Tags) -> bool {
        self.specificity(tags).is_some()
    }

    /// How specifically it matches `tags`; `None` when it does not.
    pub fn specificity(&self, tags: &Tags) -> Option<Specificity> {
        let mut exact = 0;
        for (k, v) in &self.match_tags {
            let t = tags.get(k)?;
            if v != "*" {
                if t != v {
                    return None;
                }
                exact += 1;
            }
        }
        Some(Specificity {
            tags: self.match_tags.len(),
            exact,
        })
    }

    /// The best specificity of any of `selectors` against any of `tag_sets`.
    pub fn best<'t>(
        selectors: &[Selector],
        tag_sets: impl IntoIterator<Item = &'t Tags> + Clone,
    ) -> Option<Specificity> {
        Self::best_match(selectors, tag_sets).map(|(s, _)| s)
    }

    /// [`Selector::best`] and the selector that achieved it (the first of
    /// equals): what explains why a policy applies.
    pub fn best_match<'s, 't>(
        selectors: &'s [Selector],
        tag_sets: impl IntoIterator<Item = &'t Tags> + Clone,
    ) -> Option<(Specificity, &'s Selector)> {
        selectors
            .iter()
            .filter_map(|s| {
                let best = tag_sets
                    .clone()
                    .into_iter()
                    .filter_map(|t| s.specificity(t))
                    .max()?;
                Some((best, s))
            })
            .fold(
                None,
                |chosen: Option<(Specificity, &Selector)>, (spec, s)| match chosen {
                    Some((best, _)) if best >= spec => chosen,
                    _ => Some((spec, s)),
                },
            )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tags::of_pairs as tags;

    fn selector(pairs: &[(&str, &str)]) -> Selector {
        Selector {
            match_tags: tags(pairs),
        }
    }

    #[test]
    fn selectors_match_and_rank_as_documented() {
        let dp = tags(&[("service", "web"), ("version", "2"), ("zone", "east")]);
        // selector -> (tags matched, exact values), or no match
        type Row = (
            &'static [(&'static str, &'static str)],
            Option<(usize, usize)>,
        );
        let table: &[Row] = &[
            (&[("service", "web")], Some((1, 1))),
            (&[("service", "*")], Some((1, 0))),
            (&[("service", "web"), ("version", "2")], Some((2, 2))),
            (&[("service", "web"), ("version", "*")], Some((2, 1))),
            (&[("service", "api")], None),
            (&[("region", "*")], None),
        ];
        for (pairs, expected) in table {
            let got = selector(pairs).specificity(&dp).map(|s| (s.tags, s.exact));
            assert_eq!(got, *expected, "{pairs:?}");
        }
    }

    #[test]
    fn the_most_specific_wins_and_ties_go_to_the_first_name() {
        let dp = tags(&[("service", "web"), ("version", "2")]);
        let spec = |pairs: &[(&str, &str)]| selector(pairs).specificity(&dp);
        let pick = |candidates: Vec<(&'static str, Option<Specificity>)>| {
            most_specific(candidates.into_iter().map(|(n, s)| (n, s, ()))).map(|(n, _)| n)
        };
        // More tags beat fewer.
        assert_eq!(
            pick(vec![
                ("a-broad", spec(&[("service", "web")])),
                ("z-narrow", spec(&[("service", "web"), ("version", "2")])),
            ]),
            Some("z-narrow")
        );
        // Exact beats `*` for as many tags.
        assert_eq!(
            pick(vec![
                ("a-wild", spec(&[("service", "*")])),
                ("b-exact", spec(&[("service", "web")])),
            ]),
            Some("b-exact")
        );
        // A tie goes to the name that sorts first, whatever the order given.
        for order in [["b", "a"], ["a", "b"]] {
            assert_eq!(
                pick(
                    order
                        .iter()
                        .map(|n| (*n, spec(&[("service", "web")])))
                        .collect()
                ),
                Some("a")
            );
        }
        // Nothing that does not match is chosen.
        assert_eq!(pick(vec![("x", spec(&[("service", "api")]))]), None);
    }
}
