//! The integration tests that need no Kubernetes control plane, one module
//! per area, in one binary (one link for all of them): real `kuma-cp`,
//! `kuma-dp` and Envoy processes, real PostgreSQL, real HTTPS and gRPC.
//! `cargo test --test it <module>::` runs one area.
//!
//! The tests against a real Kubernetes control plane are the other binary,
//! `tests/k8s`, whose areas each run in a process of their own. The
//! fixtures of both are the library `kuma-test-support` (`tests/support`),
//! named `common` here.

use kuma_test_support as common;

mod ads;
mod chart;
mod cli_help;
mod cross_mesh;
mod dataplane_e2e;
mod faults;
mod gui;
mod http_api;
mod http_api_docs;
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
