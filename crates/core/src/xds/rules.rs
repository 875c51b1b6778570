//! The rules engine of today's Kuma policies (`targetRef`), one for every
//! kind: which policies of a kind shape a proxy, in what order, and what
//! their `default` confs add up to for each group of peers. Pure: policies
//! in, rules out; the generator turns rules into Envoy configuration.
//!
//! Kuma's algorithm, as its `pkg/plugins/policies/core/rules` computes it:
//!
//! 1. The policies whose top-level `targetRef` selects the proxy (or the
//!    inbound; `xds::index::targeted` finds them) are ordered least specific first: by the kind of that
//!    reference ([`TargetRefKind`]'s order), then by name, the name that
//!    sorts first coming last so that it wins a tie.
//! 2. Their items (`from` entries) are listed in that order, each naming a
//!    group of peers ([`Subset`]) and a conf.
//! 3. For every region of peers that the items' groups cut out (every
//!    consistent combination of their tag conditions, each either held or
//!    negated) the confs of the items whose group contains the region are
//!    merged in order: JSON merge patch (RFC 7396), later over earlier,
//!    with the lists a kind names appended instead of replaced.
//!
//! The regions do not overlap, so a peer is in at most one rule's subset;
//! rules come with more positive conditions first, as Kuma lists them.

use crate::resources::{Subset, Tag};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The most distinct tag conditions whose combinations are cut into
/// regions (2^16 of them); see [`rules`].
const MAX_TAGS_CUT: usize = 16;

/// One item of one policy: a group of peers and what the policy says for
/// them.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub policy: &'a str,
    pub subset: Subset,
    pub conf: &'a Value,
}

/// What applies to the peers of `subset`: the merged conf, and the
/// policies that contributed to it, in the order they were merged.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rule {
    pub subset: Subset,
    pub conf: Value,
    pub origins: Vec<String>,
}

/// The rules of `items` (already in policy order), with `append` naming
/// the top-level fields of a conf whose lists add up rather than replace.
pub fn rules(items: &[Item<'_>], append: &[&str]) -> Vec<Rule> {
    let mut regions = BTreeSet::new();
    for component in components(items) {
        let tags: BTreeSet<&Tag> = component
            .iter()
            .flat_map(|&i| items[i].subset.tags())
            .collect();
        let tags: Vec<&Tag> = tags.into_iter().collect();
        if tags.len() > MAX_TAGS_CUT {
            // Too many to combine: each item's own group is a region, most
            // specific first, as Kuma does where it needs no negations.
            regions.extend(component.iter().map(|&i| items[i].subset.clone()));
            continue;
        }
        // Each tag held (bit clear) or negated (bit set).
        for signs in 0u32..(1u32 << tags.len()) {
            if let Some(region) = region(&tags, signs) {
                regions.insert(region);
            }
        }
    }
    let mut rules: Vec<Rule> = regions
        .into_iter()
        .filter_map(|region| {
            let relevant: Vec<&Item> = items
                .iter()
                .filter(|item| item.subset.includes(&region))
                .collect();
            if relevant.is_empty() {
                return None;
            }
            let confs: Vec<&Value> = relevant.iter().map(|i| i.conf).collect();
            let mut origins: Vec<String> = Vec::new();
            for item in &relevant {
                if !origins.iter().any(|o| o == item.policy) {
                    origins.push(item.policy.to_string());
                }
            }
            Some(Rule {
                subset: region,
                conf: merge(&confs, append),
                origins,
            })
        })
        .collect();
    rules.sort_by_key(|r| std::cmp::Reverse(r.subset.positive()));
    rules
}

/// The rule whose subset holds a peer with `tags`.
pub fn rule_for<'r>(rules: &'r [Rule], tags: &crate::resources::tags::Tags) -> Option<&'r Rule> {
    rules.iter().find(|r| r.subset.contains(tags))
}

/// Groups the items whose peers may overlap (transitively): regions are cut
/// within a group only, which keeps their number down when policies speak
/// of unrelated tags. Groups in the order of their first item.
fn components(items: &[Item<'_>]) -> Vec<Vec<usize>> {
    let mut group: Vec<usize> = (0..items.len()).collect();
    fn root(group: &mut [usize], mut i: usize) -> usize {
        while group[i] != i {
            group[i] = group[group[i]];
            i = group[i];
        }
        i
    }
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            if items[i].subset.intersects(&items[j].subset) {
                let (a, b) = (root(&mut group, i), root(&mut group, j));
                group[a.max(b)] = a.min(b);
            }
        }
    }
    let mut components: Vec<Vec<usize>> = Vec::new();
    let mut roots: Vec<usize> = Vec::new();
    for i in 0..items.len() {
        let r = root(&mut group, i);
        match roots.iter().position(|&x| x == r) {
            Some(at) => components[at].push(i),
            None => {
                roots.push(r);
                components.push(vec![i]);
            }
        }
    }
    components
}

/// One combination of `tags`, held or negated by `signs`, simplified: a
/// key held with one value drops its negations; a key held with two
/// values is no region at all.
fn region(tags: &[&Tag], signs: u32) -> Option<Subset> {
    let mut out: Vec<Tag> = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let not = signs & (1 << i) != 0;
        out.push(Tag {
            key: tag.key.clone(),
            value: tag.value.clone(),
            not,
        });
    }
    let mut simplified: Vec<Tag> = Vec::new();
    let keys: BTreeSet<&str> = out.iter().map(|t| t.key.as_str()).collect();
    for key in keys {
        let of_key: Vec<&Tag> = out.iter().filter(|t| t.key == key).collect();
        let held: Vec<&&Tag> = of_key.iter().filter(|t| !t.not).collect();
        match held.len() {
            0 => simplified.extend(of_key.iter().map(|t| (*t).clone())),
            1 => simplified.push((**held[0]).clone()),
            _ => return None,
        }
    }
    Some(Subset::new(simplified))
}

/// Merges confs in order, each a JSON merge patch over the ones before,
/// except the top-level lists named in `append`, which add up.
pub fn merge(confs: &[&Value], append: &[&str]) -> Value {
    let mut merged = Value::Object(Map::new());
    let mut appended: Map<String, Value> = Map::new();
    for conf in confs {
        merge_patch(&mut merged, conf);
        for field in append {
            if let Some(Value::Array(items)) = conf.get(*field) {
                let list = appended
                    .entry(field.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.extend(items.iter().cloned());
                }
            }
        }
    }
    if let Value::Object(fields) = &mut merged {
        fields.extend(appended);
    }
    merged
}

/// Merges lists of keyed entries (`{<key>: ..., default: {...}}`, as
/// MeshHTTPRoute's rules keyed by their `matches`), lists in order: an
/// entry whose key comes again later is merged into that later one, which
/// keeps its place; the merged entry's `default` is the merge of all of
/// theirs, in order.
pub fn merge_by_key(lists: &[&[Value]], key: &str) -> Vec<Value> {
    // (key, defaults so far); None once merged into a later entry.
    let mut entries: Vec<Option<(&Value, Vec<&Value>)>> = Vec::new();
    for list in lists {
        for entry in *list {
            let this_key = entry.get(key).unwrap_or(&Value::Null);
            let mut defaults = Vec::new();
            for slot in entries.iter_mut() {
                if slot.as_ref().is_some_and(|(k, _)| *k == this_key)
                    && let Some((_, earlier)) = slot.take()
                {
                    defaults.extend(earlier);
                }
            }
            defaults.extend(entry.get("default"));
            entries.push(Some((this_key, defaults)));
        }
    }
    entries
        .into_iter()
        .flatten()
        .map(|(k, defaults)| {
            let mut merged = Map::new();
            merged.insert(key.to_string(), k.clone());
            merged.insert("default".to_string(), merge(&defaults, &[]));
            Value::Object(merged)
        })
        .collect()
}

/// RFC 7396: objects merge key by key, `null` removes, anything else
/// replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (key, value) in patch {
            if value.is_null() {
                fields.remove(key);
            } else {
                merge_patch(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::TargetRef;
    use crate::resources::tags::of_pairs as tags;
    use serde_json::json;

    fn reference(doc: Value) -> TargetRef {
        serde_json::from_value(doc).unwrap()
    }

    fn action(rules: &[Rule], peer: &[(&str, &str)]) -> Option<String> {
        rule_for(rules, &tags(peer)).map(|r| r.conf["action"].as_str().unwrap().to_string())
    }

    #[test]
    fn a_later_item_wins_for_the_peers_it_names_and_others_keep_the_earlier() {
        let deny = json!({"action": "Deny"});
        let allow = json!({"action": "Allow"});
        let items = [
            Item {
                policy: "mesh-wide",
                subset: reference(json!({"kind": "Mesh"})).subset(),
                conf: &deny,
            },
            Item {
                policy: "orders",
                subset: reference(json!({"kind": "MeshService", "name": "orders"})).subset(),
                conf: &allow,
            },
        ];
        let rules = rules(&items, &[]);
        assert_eq!(
            action(&rules, &[("service", "orders")]).as_deref(),
            Some("Allow")
        );
        assert_eq!(
            action(&rules, &[("service", "web")]).as_deref(),
            Some("Deny")
        );
        assert_eq!(action(&rules, &[]).as_deref(), Some("Deny"));
        let orders = rule_for(&rules, &tags(&[("service", "orders")])).unwrap();
        assert_eq!(orders.origins, ["mesh-wide", "orders"]);
        assert_eq!(rules.len(), 2, "{rules:#?}");
    }

    /// Kuma's example of overlapping groups (MADR 007): team a is allowed,
    /// the east zone denied; a peer of team a in the east gets what the
    /// later item says, and the regions never overlap.
    #[test]
    fn overlapping_groups_cut_disjoint_regions() {
        let allow = json!({"action": "Allow"});
        let deny = json!({"action": "Deny"});
        let items = [
            Item {
                policy: "p",
                subset: reference(json!({"kind": "MeshSubset", "tags": {"team": "a"}})).subset(),
                conf: &allow,
            },
            Item {
                policy: "p",
                subset: reference(json!({"kind": "MeshSubset", "tags": {"zone": "east"}})).subset(),
                conf: &deny,
            },
        ];
        let rules = rules(&items, &[]);
        assert_eq!(
            action(&rules, &[("team", "a"), ("zone", "east")]).as_deref(),
            Some("Deny")
        );
        assert_eq!(
            action(&rules, &[("team", "a"), ("zone", "west")]).as_deref(),
            Some("Allow")
        );
        assert_eq!(
            action(&rules, &[("team", "b"), ("zone", "east")]).as_deref(),
            Some("Deny")
        );
        assert_eq!(action(&rules, &[("team", "b")]), None, "no item names them");
        for peer in [
            tags(&[("team", "a"), ("zone", "east")]),
            tags(&[("team", "a")]),
            tags(&[("zone", "east")]),
        ] {
            let holding = rules.iter().filter(|r| r.subset.contains(&peer)).count();
            assert_eq!(holding, 1, "{peer:?} in {holding} regions: {rules:#?}");
        }
    }

    #[test]
    fn confs_merge_as_json_merge_patches_with_named_lists_appended() {
        let a = json!({"timeouts": {"idle": "1s", "connect": "2s"}, "mods": [1], "list": [1]});
        let b = json!({"timeouts": {"idle": "5s", "connect": null}, "mods": [2], "list": [2]});
        let merged = merge(&[&a, &b], &["mods"]);
        assert_eq!(
            merged,
            json!({"timeouts": {"idle": "5s"}, "mods": [1, 2], "list": [2]})
        );
    }

    #[test]
    fn keyed_entries_merge_into_their_last_appearance() {
        let first = [
            json!({"matches": ["/a"], "default": {"backend": "a1", "filter": "f"}}),
            json!({"matches": ["/b"], "default": {"backend": "b1"}}),
        ];
        let second = [json!({"matches": ["/a"], "default": {"backend": "a2"}})];
        let merged = merge_by_key(&[&first, &second], "matches");
        assert_eq!(
            merged,
            [
                json!({"matches": ["/b"], "default": {"backend": "b1"}}),
                json!({"matches": ["/a"], "default": {"backend": "a2", "filter": "f"}}),
            ]
        );
    }

    #[test]
    fn the_same_items_give_the_same_rules_whatever_their_order_of_arrival() {
        let confs = [json!({"action": "Allow"}), json!({"action": "Deny"})];
        let subsets = [
            reference(json!({"kind": "MeshSubset", "tags": {"team": "a"}})).subset(),
            reference(json!({"kind": "MeshSubset", "tags": {"team": "b", "zone": "x"}})).subset(),
            reference(json!({"kind": "MeshService", "name": "s"})).subset(),
        ];
        let build = |order: &[usize]| {
            let items: Vec<Item> = order
                .iter()
                .map(|&i| Item {
                    policy: "p",
                    subset: subsets[i].clone(),
                    conf: &confs[i % 2],
                })
                .collect();
            let mut r = rules(&items, &[]);
            r.sort_by(|x, y| x.subset.cmp(&y.subset));
            r.into_iter().map(|r| r.subset).collect::<Vec<_>>()
        };
        assert_eq!(build(&[0, 1, 2]), build(&[2, 1, 0]));
    }
}
