//! `kuma-config`: every setting of `kuma-cp`, from flags, environment,
//! file and defaults, and the command-line helpers the programs share.
//! It may import `kuma-core` and `kuma-runtime` only.

pub mod cli;
pub mod config;

use kuma_core::{resources, version};
use kuma_runtime::runtime;
