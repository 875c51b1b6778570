//! Envoy configuration, the pure part: the index fed by events (from the
//! store's change feed in Universal mode), the rules engine and the
//! generator, the per-proxy snapshot cache, and the steps of an mTLS
//! switch. What runs it (the reconciler) and serves it (ADS and SDS) is in
//! `kuma-xds`.

pub mod cache;
pub mod credentials;
pub mod explain;
pub mod feed;
pub mod generator;
pub mod index;
pub mod mtls_rollout;
pub mod rules;
