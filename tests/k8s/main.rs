//! The tests against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler from `make kube`, and a node
//! of ours: see [`kuma_test_support::cluster`]), one module per area, in one
//! binary (one link for all of them).
//!
//! Each area runs in a process of its own, `cargo test --test k8s --
//! AREA::` (`make test` runs them one after another): an area's tests share
//! that process's cluster, and several areas install cluster-wide webhooks
//! and RBAC, or revoke tokens, that the others must not see. A process
//! that is asked to run tests of two areas refuses the second
//! ([`ControlPlane::shared`](kuma_test_support::cluster::ControlPlane::shared)).
//! Needs root (network namespaces, iptables), as the node does.

#![cfg(feature = "kubernetes")]

mod admission;
mod api_server;
mod e2e;
mod ha;
mod helm;
mod injector;
mod journey;
mod pods;
mod store;
mod transparent_proxy;
