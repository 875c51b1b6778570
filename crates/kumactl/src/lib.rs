//! `kumactl`: the CLI over the HTTP API. It may import the crates below
//! the servers (and, with the feature `kubernetes`, `kuma-k8s` and
//! `kuma-install`); never a server.

pub mod kumactl;

use kuma_config::cli;
use kuma_core::{resources, store, version};
#[cfg(feature = "kubernetes")]
use kuma_install::install;
#[cfg(feature = "kubernetes")]
use kuma_k8s::k8s;
use kuma_security::security;
