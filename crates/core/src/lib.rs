//! `kuma-core`: the resources and their validation, the store trait and
//! the memory store, the index, the rules engine, the generator and the
//! snapshot cache, the metrics they count. Pure data and pure functions
//! over it: no HTTP server, no gRPC server, no Kubernetes client, no
//! Postgres among its dependencies; above it only `kuma-runtime`.

pub mod envoy_api;
pub mod metrics;
pub mod resources;
pub mod store;
pub mod version;
pub mod xds;

use kuma_runtime::runtime;
