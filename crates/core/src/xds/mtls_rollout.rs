//! Switching mTLS on or off in a live mesh without breaking a connection.
//!
//! Turned on at once, a mesh's inbounds would take only TLS before the
//! clients' outbounds speak it: a plain-text client in that window waits
//! on a handshake that never comes, or reads a TLS alert. So the switch
//! goes in steps ([`MtlsPhase`]): inbounds take both, then outbounds speak
//! TLS, then inbounds take TLS only; switching off goes back down the same
//! steps. A mesh moves to the next step once every connected proxy of it
//! has applied (ACKed) the listeners and clusters of the current one, or
//! after [`STEP_TIMEOUT`] when a proxy does not answer (logged with its
//! name), so that one stuck proxy cannot hold a mesh half-way.
//!
//! A mesh seen for the first time (a new mesh, a restarted control plane)
//! starts where its spec says: there is nothing live to keep.

use super::cache::SnapshotCache;
use super::generator::MtlsPhase;
use super::index::{ProxyId, ResourceIndex};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a step waits for proxies that do not apply it.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where each mesh is, and since when.
#[derive(Default)]
pub struct Rollout {
    meshes: HashMap<String, Step>,
}

#[derive(Debug, Clone, Copy)]
struct Step {
    /// `None`: mTLS off.
    phase: Option<MtlsPhase>,
    since: Instant,
}

/// The next phase from `phase` toward `enabled`, or `None` when there.
fn next(phase: Option<MtlsPhase>, enabled: bool) -> Option<Option<MtlsPhase>> {
    use MtlsPhase::*;
    match (phase, enabled) {
        (None, true) => Some(Some(Accepting)),
        (Some(Accepting), true) => Some(Some(Speaking)),
        (Some(Speaking), true) => Some(Some(Strict)),
        (Some(Strict), false) => Some(Some(Speaking)),
        (Some(Speaking), false) => Some(Some(Accepting)),
        (Some(Accepting), false) => Some(None),
        (Some(Strict), true) | (None, false) => None,
    }
}

impl Rollout {
    /// The phase `mesh`'s proxies are configured for (`None`: no mTLS).
    pub fn phase(&mut self, mesh: &str, enabled: bool) -> Option<MtlsPhase> {
        self.meshes
            .entry(mesh.to_string())
            .or_insert_with(|| Step {
                phase: enabled.then_some(MtlsPhase::Strict),
                since: Instant::now(),
            })
            .phase
    }

    /// Whether some mesh is between steps.
    pub fn in_progress(&self, index: &ResourceIndex) -> bool {
        self.meshes.iter().any(|(mesh, step)| {
            index
                .mesh(mesh)
                .is_some_and(|m| next(step.phase, m.spec.mtls_enabled()).is_some())
        })
    }

    /// Moves each switching mesh one step on when its proxies have applied
    /// the current one (or the step timed out); returns the meshes that
    /// moved, whose proxies need their configuration rebuilt.
    pub fn advance(&mut self, index: &ResourceIndex, cache: &SnapshotCache) -> Vec<String> {
        self.meshes.retain(|mesh, _| index.mesh(mesh).is_some());
        let connected = cache.connected();
        let mut moved = Vec::new();
        for (mesh, step) in self.meshes.iter_mut() {
            let Some(view) = index.mesh(mesh) else {
                continue;
            };
            let Some(to) = next(step.phase, view.spec.mtls_enabled()) else {
                continue;
            };
            let lagging: Vec<&ProxyId> = connected
                .iter()
                .filter(|id| id.mesh == *mesh)
                .filter(|id| view.dataplanes.contains_key(&id.name))
                .filter(|id| cache.applied(id) == Some(false))
                .collect();
            if !lagging.is_empty() {
                if step.since.elapsed() < STEP_TIMEOUT {
                    continue;
                }
                let names: Vec<&str> = lagging.iter().take(5).map(|id| id.name.as_str()).collect();
                tracing::warn!(
                    mesh = %mesh,
                    lagging = lagging.len(),
                    "mTLS switch: {} proxies did not apply step {:?} within {STEP_TIMEOUT:?} (e.g. {}); moving on to {to:?}",
                    lagging.len(),
                    step.phase,
                    names.join(", ")
                );
            }
            tracing::info!(mesh = %mesh, from = ?step.phase, to = ?to, "mTLS switch: next step");
            *step = Step {
                phase: to,
                since: Instant::now(),
            };
            moved.push(mesh.clone());
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switching_on_and_off_walks_every_step_in_order() {
        let mut on = Vec::new();
        let mut phase = None;
        while let Some(to) = next(phase, true) {
            on.push(to);
            phase = to;
        }
        use MtlsPhase::*;
        assert_eq!(on, [Some(Accepting), Some(Speaking), Some(Strict)]);
        let mut off = Vec::new();
        while let Some(to) = next(phase, false) {
            off.push(to);
            phase = to;
        }
        assert_eq!(off, [Some(Speaking), Some(Accepting), None]);
        // Turned back on half-way, it climbs from where it is.
        assert_eq!(next(Some(Accepting), true), Some(Some(Speaking)));
    }

    #[test]
    fn a_mesh_seen_first_starts_where_its_spec_says() {
        let mut rollout = Rollout::default();
        assert_eq!(rollout.phase("a", true), Some(MtlsPhase::Strict));
        assert_eq!(rollout.phase("b", false), None);
        // Later calls keep the phase until `advance` moves it.
        assert_eq!(rollout.phase("b", true), None);
    }
}
