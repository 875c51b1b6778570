//! A Kuma-compatible service-mesh control plane, with Envoy as the data
//! plane: the thin binaries `kuma-cp`, `kuma-dp`, `kumactl`,
//! `kuma-injector` and `kuma-tcp-echo` (`src/bin/`), and the workspace's
//! crates (`crates/`) under the module paths the integration tests and the
//! benchmarks name (`kuma::xds::index`, …). Each crate's first lines say
//! what it owns and what it may import.
//!
//! How data flows, and where each step lives:
//!
//! ```text
//!  store (memory | postgres)             the HTTP API and kumactl write here
//!     | change feed                      (store, api, kumactl)
//!     v
//!  xds::feed  --IndexEvent-->  xds::index   (per mesh: dataplanes by service,
//!                                   |        permissions, secrets)
//!                                   | which proxies a change affects
//!                                   v
//!  xds::reconciler --> xds::generator (pure) --> xds::cache (per proxy)
//!                                                     |
//!                     xds::ads (ADS and SDS streams) <-+--> Envoy, via kuma-dp
//!                            | insights written back to the store
//! ```
//!
//! - The index is fed by one event type ([`xds::index::IndexEvent`]: apply,
//!   delete, reset). [`xds::feed`] makes those events from a store's change
//!   feed; everything after the index reads the index, never a store, so a
//!   second source (Kubernetes watchers) plugs in without changes
//!   downstream.
//! - The generator is a pure function of a dataplane and its mesh, and the
//!   same input encodes to the same bytes: resource versions are hashes of
//!   those bytes, so a rebuild that changed nothing pushes nothing.
//! - Meshes are tenants: the index, the CA ([`security::ca`]) and the tokens
//!   ([`security::tokens`]) are looked up by mesh first.
//! - [`runtime`] holds what every server shares (shutdown, signals,
//!   listening sockets); [`cp`] wires the components of `kuma-cp` together
//!   from its [`config`], and nothing imports `cp`.

pub use kuma_api::{api, bootstrap};
pub use kuma_config::{cli, settings};
#[cfg(not(feature = "universal"))]
pub use kuma_core::store;
pub use kuma_core::{envoy_api, metrics, resources, version};
pub use kuma_cp::cp;
pub use kuma_cp::cp::config;
pub use kuma_dp::dp;
#[cfg(feature = "kubernetes")]
pub use kuma_injector::injector;
#[cfg(feature = "kubernetes")]
pub use kuma_install::install;
#[cfg(feature = "kubernetes")]
pub use kuma_k8s::k8s;
pub use kuma_runtime::runtime;
pub use kuma_security::security;
#[cfg(feature = "universal")]
pub use kuma_store_postgres::store;
pub use kuma_tcp_echo::tcp_echo;
pub use kuma_xds::xds;
pub use kumactl::kumactl;
