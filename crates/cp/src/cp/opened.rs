//! What opening the store gives: the store, this replica's leadership over
//! it, and its background work.

use crate::runtime::Leadership;
use crate::store::SharedStore;

/// The store, and the background work that keeps it (Kubernetes: the
/// leader election and the pod controller).
pub struct Opened {
    pub store: SharedStore,
    pub leadership: Leadership,
    pub tasks: Vec<super::component::Task>,
    #[cfg(feature = "kubernetes")]
    pub kube: Option<kube::Client>,
}

impl Opened {
    pub fn single_writer(store: SharedStore) -> Opened {
        Opened {
            store,
            leadership: Leadership::always(),
            tasks: Vec::new(),
            #[cfg(feature = "kubernetes")]
            kube: None,
        }
    }
}
