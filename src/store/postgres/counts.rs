//! How many resources of a kind a mesh holds, remembered between lists.
//!
//! Every list answers its total (`X-Total-Count`, the `next` link), and
//! counting 10,000 dataplanes is an index scan of them all (1 to 2.5 ms,
//! more than the page itself), repeated for every page. A count is only
//! changed by a create or a delete of its kind, and every control plane on
//! the database hears of each through the change feed: a count is kept
//! until one is heard, or this process made one itself. Counts are kept
//! only while the feed's connection is up (a change made while it is down
//! would go unheard), and never for tag-filtered lists or for dataplane
//! insights, which the feed does not announce.

use crate::resources::ResourceType;
use crate::store::{ChangeEvent, ListQuery};
use std::collections::HashMap;
use std::sync::Mutex;

/// A list's count: its kind, and its mesh (`None` across meshes).
type CountKey = (ResourceType, Option<String>);

#[derive(Default)]
pub(super) struct Counts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Moves on every change heard, so a count read before a change is
    /// not kept after it.
    generation: u64,
    /// Whether the change feed is listening.
    live: bool,
    counts: HashMap<CountKey, usize>,
}

/// What the kept counts know of a list's count.
pub(super) enum Count {
    Known(usize),
    /// To be read; it may be kept if nothing changed since `generation`,
    /// which is `None` for lists whose count is never kept.
    Unknown {
        generation: Option<u64>,
    },
}

/// The key a list's count is kept under, unless it is never kept: a tag
/// filter is not a create or delete away from changing, and a kind the
/// feed does not announce would go stale unheard.
fn kept_under(query: &ListQuery) -> Option<CountKey> {
    (query.tags.is_empty() && query.kind.is_announced()).then(|| (query.kind, query.mesh.clone()))
}

impl Counts {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation is one assignment or one map operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, query: &ListQuery) -> Count {
        let Some(key) = kept_under(query) else {
            return Count::Unknown { generation: None };
        };
        let state = self.state();
        match state.counts.get(&key) {
            Some(count) => Count::Known(*count),
            None => Count::Unknown {
                generation: Some(state.generation),
            },
        }
    }

    /// Keeps the `count` of `query`, read at `generation`, unless a change
    /// was heard since or the feed is down.
    pub fn remember(&self, query: &ListQuery, generation: Option<u64>, count: usize) {
        let mut state = self.state();
        if let Some(key) = kept_under(query)
            && state.live
            && generation == Some(state.generation)
        {
            state.counts.insert(key, count);
        }
    }

    /// A change, from the feed or from this process's own write.
    pub fn heard(&self, change: &ChangeEvent) {
        let mut state = self.state();
        state.generation += 1;
        match change {
            ChangeEvent::Created(key) | ChangeEvent::Deleted(key) => {
                // A mesh's deletion takes everything in it along.
                if key.kind == ResourceType::Mesh {
                    state.counts.clear();
                } else {
                    state.counts.retain(|(kind, mesh), _| {
                        *kind != key.kind || mesh.as_ref().is_some_and(|m| *m != key.mesh)
                    });
                }
            }
            ChangeEvent::Updated(_) => {}
            ChangeEvent::Resync => state.counts.clear(),
        }
    }

    /// The feed started or stopped listening: what was kept may be stale
    /// either way.
    pub fn listening(&self, live: bool) {
        let mut state = self.state();
        state.generation += 1;
        state.live = live;
        state.counts.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceKey;

    fn live() -> Counts {
        let counts = Counts::default();
        counts.listening(true);
        counts
    }

    fn known(counts: &Counts, kind: ResourceType, mesh: Option<&str>) -> Option<usize> {
        match counts.get(&ListQuery::of(kind, mesh)) {
            Count::Known(n) => Some(n),
            Count::Unknown { .. } => None,
        }
    }

    fn remember(counts: &Counts, kind: ResourceType, mesh: Option<&str>, n: usize) {
        let query = ListQuery::of(kind, mesh);
        if let Count::Unknown { generation } = counts.get(&query) {
            counts.remember(&query, generation, n);
        }
    }

    #[test]
    fn a_count_is_kept_until_its_kind_changes_in_its_mesh() {
        let counts = live();
        remember(&counts, ResourceType::Dataplane, Some("a"), 10);
        remember(&counts, ResourceType::Dataplane, Some("b"), 20);
        remember(&counts, ResourceType::Dataplane, None, 30);
        remember(&counts, ResourceType::TrafficRoute, Some("a"), 1);
        counts.heard(&ChangeEvent::Updated(ResourceKey::new(
            ResourceType::Dataplane,
            "a",
            "x",
        )));
        assert_eq!(
            known(&counts, ResourceType::Dataplane, Some("a")),
            Some(10),
            "an update counts the same"
        );
        counts.heard(&ChangeEvent::Created(ResourceKey::new(
            ResourceType::Dataplane,
            "a",
            "x",
        )));
        assert_eq!(known(&counts, ResourceType::Dataplane, Some("a")), None);
        assert_eq!(
            known(&counts, ResourceType::Dataplane, None),
            None,
            "across meshes too"
        );
        assert_eq!(known(&counts, ResourceType::Dataplane, Some("b")), Some(20));
        assert_eq!(
            known(&counts, ResourceType::TrafficRoute, Some("a")),
            Some(1)
        );
        counts.heard(&ChangeEvent::Deleted(ResourceKey::mesh("b")));
        assert_eq!(
            known(&counts, ResourceType::Dataplane, Some("b")),
            None,
            "the mesh took them along"
        );
    }

    #[test]
    fn a_count_read_before_a_change_is_not_kept() {
        let counts = live();
        let query = ListQuery::of(ResourceType::Dataplane, Some("a"));
        let Count::Unknown { generation } = counts.get(&query) else {
            panic!("nothing kept yet");
        };
        counts.heard(&ChangeEvent::Created(ResourceKey::new(
            ResourceType::Dataplane,
            "b",
            "x",
        )));
        counts.remember(&query, generation, 10);
        assert_eq!(known(&counts, ResourceType::Dataplane, Some("a")), None);
    }

    #[test]
    fn nothing_is_kept_while_the_feed_is_down_nor_for_insights_nor_tag_filters() {
        let counts = live();
        remember(&counts, ResourceType::Dataplane, Some("a"), 10);
        counts.listening(false);
        assert_eq!(known(&counts, ResourceType::Dataplane, Some("a")), None);
        remember(&counts, ResourceType::Dataplane, Some("a"), 10);
        assert_eq!(known(&counts, ResourceType::Dataplane, Some("a")), None);
        counts.listening(true);
        remember(&counts, ResourceType::DataplaneInsight, Some("a"), 10);
        assert_eq!(
            known(&counts, ResourceType::DataplaneInsight, Some("a")),
            None
        );
        let tagged = ListQuery {
            tags: [("service".to_string(), "web".to_string())].into(),
            ..ListQuery::of(ResourceType::Dataplane, Some("a"))
        };
        let Count::Unknown { generation } = counts.get(&tagged) else {
            panic!("nothing kept yet");
        };
        counts.remember(&tagged, generation, 3);
        assert!(
            matches!(counts.get(&tagged), Count::Unknown { generation: None }),
            "a tag-filtered count is never kept"
        );
    }
}
