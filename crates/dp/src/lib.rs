//! `kuma-dp`: the agent beside each workload: fetches Envoy's bootstrap,
//! runs and supervises Envoy, forwards its tcp access logs. It depends on
//! neither the API server nor the xDS server.

pub mod dp;

use kuma_config::cli;
use kuma_core::{resources, version, xds};
use kuma_runtime::runtime;
