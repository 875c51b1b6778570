//! `kuma-cp`: assembles the control plane from the crates of the
//! workspace for the chosen mode. Nothing imports it.

pub mod cp;

use kuma_api::{api, bootstrap};
use kuma_config::settings;
#[cfg(not(feature = "universal"))]
use kuma_core::store;
use kuma_core::{metrics, resources};
#[cfg(feature = "kubernetes")]
use kuma_injector::injector;
#[cfg(feature = "kubernetes")]
use kuma_k8s::k8s;
use kuma_runtime::runtime;
use kuma_security::security;
#[cfg(feature = "universal")]
use kuma_store_postgres::store;
use kuma_xds::xds;
