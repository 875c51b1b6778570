//! Workloads that should be in a mesh and are not: on Kubernetes, pods of
//! a namespace labelled for injection that have no sidecar, because they
//! were created before the injector was up (a common Kuma complaint,
//! kumahq/kuma#258). The pod controller keeps the list; the API serves it
//! at `/meshes/{mesh}/pods-without-sidecar`, and `kumactl inspect
//! dataplanes` prints it under the table.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PodWithoutSidecar {
    pub mesh: String,
    pub namespace: String,
    pub pod: String,
    pub reason: String,
}

/// Shared between the controller that fills it and the API that reads it.
#[derive(Clone, Default)]
pub struct OutsideMesh(Arc<RwLock<BTreeMap<(String, String), PodWithoutSidecar>>>);

impl OutsideMesh {
    pub fn set(&self, pod: PodWithoutSidecar) {
        let key = (pod.namespace.clone(), pod.pod.clone());
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, pod);
    }

    /// Forgets a pod; answers whether it was listed.
    pub fn remove(&self, namespace: &str, pod: &str) -> bool {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), pod.to_string()))
            .is_some()
    }

    /// The pods that would be in `mesh`, by namespace and name.
    pub fn of_mesh(&self, mesh: &str) -> Vec<PodWithoutSidecar> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.mesh == mesh)
            .cloned()
            .collect()
    }
}
