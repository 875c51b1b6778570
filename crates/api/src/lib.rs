//! `kuma-api`: the HTTP API (and the GUI it serves), the dataplane token
//! server and the Envoy bootstrap server. It may import every crate below
//! the servers; never `kuma-cp`, which assembles it.

pub mod api;
pub mod bootstrap;

use kuma_config::settings;
use kuma_core::{metrics, resources, store, version};
use kuma_runtime::runtime;
use kuma_security::security;
use kuma_xds::xds;
