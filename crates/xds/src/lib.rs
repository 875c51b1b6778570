//! `kuma-xds`: what runs and serves the generator of `kuma-core`: the
//! reconciler that rebuilds changed proxies, the ADS and SDS streams, how a
//! stream proves its dataplane, workload identities and mesh CAs, and the
//! insights written back. It may import `kuma-core`, `kuma-security` and
//! `kuma-runtime`; never the HTTP API or Kubernetes (which answers through
//! `xds::credentials`).

pub mod xds {
    pub mod ads;
    pub mod auth;
    pub mod ca_provisioner;
    pub mod identity;
    pub mod insights;
    pub mod reconciler;
    pub mod settings;
    pub use kuma_core::xds::*;
}

use kuma_config::settings;
use kuma_core::{metrics, resources, store};
use kuma_runtime::runtime;
use kuma_security::security;
