//! A Kuma-compatible service-mesh control plane, with Envoy as the data
//! plane: the library behind `kuma-cp`, `kuma-dp`, `kumactl` and
//! `kuma-tcp-echo` (thin binaries in `src/bin/`).
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

pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod cp;
pub mod dp;
pub mod envoy_api;
#[cfg(feature = "kubernetes")]
pub mod injector;
#[cfg(feature = "kubernetes")]
pub mod install;
#[cfg(feature = "kubernetes")]
pub mod k8s;
pub mod kumactl;
pub mod metrics;
pub mod resources;
pub mod runtime;
pub mod security;
pub mod store;
pub mod tcp_echo;
pub mod version;
pub mod xds;
