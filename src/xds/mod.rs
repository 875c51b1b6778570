//! Envoy configuration: the index fed by the store, the pure generator,
//! the per-proxy snapshot cache, the reconciler that connects them, and the
//! ADS server that streams snapshots to proxies.

pub mod ads;
pub mod cache;
pub mod generator;
pub mod identity;
pub mod index;
pub mod insights;
pub mod reconciler;
