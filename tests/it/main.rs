//! The integration tests, one module per area, in one binary (one link
//! for all of them): real `kuma-cp`, `kuma-dp` and Envoy processes, real
//! PostgreSQL, real HTTPS and gRPC, and (feature `kubernetes`, `make kube`)
//! a real Kubernetes control plane, which the modules that need one share
//! (`control_plane::ControlPlane::shared`). The transparent-proxy and pod
//! tests need root for network namespaces and iptables. `cargo test --test
//! it <module>::` runs one area.

#[cfg(feature = "kubernetes")]
#[path = "../cluster/mod.rs"]
mod cluster;
#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "kubernetes")]
use cluster::control_plane;

mod ads;
mod chart;
mod cli_help;
mod cross_mesh;
mod dataplane_e2e;
mod faults;
mod gui;
mod http_api;
mod http_api_docs;
mod injector;
mod k8s_admission;
mod k8s_api_server;
mod k8s_e2e;
mod k8s_ha;
mod k8s_helm;
mod k8s_journey;
mod k8s_pods;
mod k8s_store;
mod kuma_cp;
mod kuma_dp;
mod kumactl;
mod manifests;
mod mtls_e2e;
mod openapi;
mod policies_e2e;
mod postgres;
mod store_conformance;
mod tenancy;
mod tokens;
mod transparent_proxy;
