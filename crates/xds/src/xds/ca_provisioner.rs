//! Creates the builtin CA of every mTLS mesh the index shows without one.
//! The CA is written to the store (a mesh-scoped Secret; on Kubernetes a
//! Secret in the system namespace) and comes back through the feed into the
//! index, where [`super::identity`] picks it up: the index stays the only
//! thing the data-plane side reads.

use super::index::IndexHandle;
use crate::runtime::{Backoff, CancellationToken, Leadership};
use crate::security::ca::{CA_SECRET, MeshCa};
use crate::store::SharedStore;
use std::time::Duration;

/// Runs until shutdown, looking again after every change of the index,
/// while this control plane leads (another replica creates them otherwise).
pub async fn run(
    store: SharedStore,
    index: IndexHandle,
    mut leadership: Leadership,
    shutdown: CancellationToken,
) {
    let mut changes = index.changes();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        if !leadership.is_leader() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = leadership.acquired() => {}
            }
        }
        let missing: Vec<String> = index
            .read()
            .meshes()
            .filter(|m| m.spec.mtls_enabled() && m.secret(CA_SECRET).is_none())
            .map(|m| m.name.clone())
            .collect();
        let mut failed = false;
        for mesh in missing {
            if let Err(e) = MeshCa::ensure(store.as_ref(), &mesh).await {
                tracing::warn!(mesh, error = %e, "cannot create the mesh CA; retrying");
                failed = true;
            }
        }
        let wait = if failed {
            backoff.next_delay()
        } else {
            backoff.reset();
            Duration::MAX
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
        }
    }
}
