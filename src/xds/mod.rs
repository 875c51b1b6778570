//! Envoy configuration: the index fed by events (from the store's change
//! feed in Universal mode), the pure generator, the per-proxy snapshot
//! cache, the reconciler that connects them, the ADS server that streams
//! snapshots to proxies, and the provisioner of mesh CAs.

pub mod ads;
pub mod auth;
pub mod ca_provisioner;
pub mod cache;
pub mod credentials;
pub mod explain;
pub mod feed;
pub mod generator;
pub mod identity;
pub mod index;
pub mod insights;
pub mod mtls_rollout;
pub mod reconciler;
pub mod rules;
