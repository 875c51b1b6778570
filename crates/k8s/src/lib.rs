//! `kuma-k8s`: Kubernetes mode: the CRDs, the kubernetes store, pods
//! turned into Dataplanes, service-account identity, the leader lease. It
//! may import `kuma-core` and `kuma-runtime` only.

pub mod k8s;

use kuma_core::{resources, store, xds};
use kuma_runtime::runtime;
