//! The keys a list walks, in the database's order, remembered between
//! lists.
//!
//! Every list answers its total (`X-Total-Count`, the `next` link) and a
//! page at a numeric `offset`. Counting 10,000 dataplanes is an index scan
//! of them all, and `OFFSET 5000` walks 5,000 rows to throw them away (1.4
//! ms, more than the page itself), repeated for every page. With the keys
//! at hand the total is their number and the page starts at the key at its
//! offset (`name >= $n` within a mesh, `(mesh, name) >= ($m, $n)` across
//! meshes: a seek in the primary key). The keys
//! are read as Postgres orders them, never sorted here, so the seek agrees
//! with the database's collation.
//!
//! Keys only change by a create or a delete of their kind, and every
//! control plane on the database hears of each through the change feed:
//! keys are kept until one is heard, or this process made one itself. They
//! are kept only while the feed's connection is up (a change made while it
//! is down would go unheard), and never for tag-filtered lists or for
//! dataplane insights, which the feed does not announce.

use crate::resources::ResourceType;
use crate::store::{ChangeEvent, ListQuery};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A list's kind, and its mesh (`None` across meshes).
type ListKey = (ResourceType, Option<String>);

/// A resource's place in a list: its mesh (`""` for meshes themselves)
/// and name.
pub(super) type PageKey = (String, String);

#[derive(Default)]
pub(super) struct Keys {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Moves on every create, delete or resync heard, so keys read before
    /// one are not kept after it. Updates leave keys as they were.
    generation: u64,
    /// Whether the change feed is listening.
    live: bool,
    lists: HashMap<ListKey, Arc<[PageKey]>>,
}

/// What the kept keys know of a list.
pub(super) enum Kept {
    Known(Arc<[PageKey]>),
    /// To be read; they may be kept if no create or delete is heard after
    /// `generation`.
    Unread {
        generation: u64,
    },
    /// A list whose keys are never kept (see [`kept_under`]).
    Never,
}

/// What a list's keys are kept under, unless they are never kept: a tag
/// filter is not a create or delete away from changing, and a kind the
/// feed does not announce would go stale unheard.
fn kept_under(query: &ListQuery) -> Option<ListKey> {
    (query.tags.is_empty() && query.kind.is_announced()).then(|| (query.kind, query.mesh.clone()))
}

impl Keys {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Every mutation is one assignment or one map operation.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, query: &ListQuery) -> Kept {
        let Some(key) = kept_under(query) else {
            return Kept::Never;
        };
        let state = self.state();
        match state.lists.get(&key) {
            Some(keys) => Kept::Known(keys.clone()),
            None => Kept::Unread {
                generation: state.generation,
            },
        }
    }

    /// Keeps the `keys` of `query`, read at `generation`, unless a create
    /// or delete was heard since or the feed is down.
    pub fn remember(&self, query: &ListQuery, generation: u64, keys: Arc<[PageKey]>) {
        let mut state = self.state();
        if let Some(key) = kept_under(query)
            && state.live
            && generation == state.generation
        {
            state.lists.insert(key, keys);
        }
    }

    /// A change, from the feed or from this process's own write.
    pub fn heard(&self, change: &ChangeEvent) {
        let mut state = self.state();
        match change {
            // An update leaves every list's keys as they were.
            ChangeEvent::Updated(_) => {}
            ChangeEvent::Created(key) | ChangeEvent::Deleted(key) => {
                state.generation += 1;
                // A mesh's deletion takes everything in it along.
                if key.kind == ResourceType::Mesh {
                    state.lists.clear();
                } else {
                    state.lists.retain(|(kind, mesh), _| {
                        *kind != key.kind || mesh.as_ref().is_some_and(|m| *m != key.mesh)
                    });
                }
            }
            ChangeEvent::Resync => {
                state.generation += 1;
                state.lists.clear();
            }
        }
    }

    /// The feed started or stopped listening: what was kept may be stale
    /// either way.
    pub fn listening(&self, live: bool) {
        let mut state = self.state();
        state.generation += 1;
        state.live = live;
        state.lists.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResourceKey;

    fn live() -> Keys {
        let kept = Keys::default();
        kept.listening(true);
        kept
    }

    fn names(n: usize) -> Arc<[PageKey]> {
        (0..n)
            .map(|i| ("a".to_string(), format!("dp-{i}")))
            .collect()
    }

    fn known(kept: &Keys, kind: ResourceType, mesh: Option<&str>) -> Option<usize> {
        match kept.get(&ListQuery::of(kind, mesh)) {
            Kept::Known(keys) => Some(keys.len()),
            Kept::Unread { .. } | Kept::Never => None,
        }
    }

    fn remember(kept: &Keys, kind: ResourceType, mesh: Option<&str>, n: usize) {
        let query = ListQuery::of(kind, mesh);
        if let Kept::Unread { generation } = kept.get(&query) {
            kept.remember(&query, generation, names(n));
        }
    }

    #[test]
    fn keys_are_kept_until_their_kind_changes_in_their_mesh() {
        let kept = live();
        remember(&kept, ResourceType::Dataplane, Some("a"), 10);
        remember(&kept, ResourceType::Dataplane, Some("b"), 20);
        remember(&kept, ResourceType::Dataplane, None, 30);
        remember(&kept, ResourceType::TrafficRoute, Some("a"), 1);
        kept.heard(&ChangeEvent::Updated(ResourceKey::new(
            ResourceType::Dataplane,
            "a",
            "x",
        )));
        assert_eq!(
            known(&kept, ResourceType::Dataplane, Some("a")),
            Some(10),
            "an update keeps the keys"
        );
        kept.heard(&ChangeEvent::Created(ResourceKey::new(
            ResourceType::Dataplane,
            "a",
            "x",
        )));
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("a")), None);
        assert_eq!(
            known(&kept, ResourceType::Dataplane, None),
            None,
            "across meshes too"
        );
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("b")), Some(20));
        assert_eq!(known(&kept, ResourceType::TrafficRoute, Some("a")), Some(1));
        kept.heard(&ChangeEvent::Deleted(ResourceKey::mesh("b")));
        assert_eq!(
            known(&kept, ResourceType::Dataplane, Some("b")),
            None,
            "the mesh took them along"
        );
    }

    #[test]
    fn keys_read_before_a_change_are_not_kept() {
        let kept = live();
        let query = ListQuery::of(ResourceType::Dataplane, Some("a"));
        let Kept::Unread { generation } = kept.get(&query) else {
            panic!("nothing kept yet");
        };
        kept.heard(&ChangeEvent::Created(ResourceKey::new(
            ResourceType::Dataplane,
            "b",
            "x",
        )));
        kept.remember(&query, generation, names(10));
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("a")), None);
    }

    #[test]
    fn keys_read_while_resources_are_updated_are_kept() {
        let kept = live();
        let query = ListQuery::of(ResourceType::Dataplane, Some("a"));
        let Kept::Unread { generation } = kept.get(&query) else {
            panic!("nothing kept yet");
        };
        kept.heard(&ChangeEvent::Updated(ResourceKey::new(
            ResourceType::Dataplane,
            "a",
            "x",
        )));
        kept.remember(&query, generation, names(10));
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("a")), Some(10));
    }

    #[test]
    fn nothing_is_kept_while_the_feed_is_down_nor_for_insights_nor_tag_filters() {
        let kept = live();
        remember(&kept, ResourceType::Dataplane, Some("a"), 10);
        kept.listening(false);
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("a")), None);
        remember(&kept, ResourceType::Dataplane, Some("a"), 10);
        assert_eq!(known(&kept, ResourceType::Dataplane, Some("a")), None);
        kept.listening(true);
        remember(&kept, ResourceType::DataplaneInsight, Some("a"), 10);
        assert_eq!(
            known(&kept, ResourceType::DataplaneInsight, Some("a")),
            None
        );
        let tagged = ListQuery {
            tags: [("service".to_string(), "web".to_string())].into(),
            ..ListQuery::of(ResourceType::Dataplane, Some("a"))
        };
        assert!(
            matches!(kept.get(&tagged), Kept::Never),
            "a tag-filtered list is never kept"
        );
        let Kept::Unread { generation } =
            kept.get(&ListQuery::of(ResourceType::Dataplane, Some("b")))
        else {
            panic!("nothing kept for b");
        };
        kept.remember(&tagged, generation, names(3));
        assert!(
            matches!(kept.get(&tagged), Kept::Never),
            "not even when told to"
        );
    }
}
