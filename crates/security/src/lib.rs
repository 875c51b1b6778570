//! `kuma-security`: the control plane's certificate, the meshes' CAs and
//! the workload certificates they sign, dataplane and user tokens, and the
//! RBAC decisions of the HTTP API. It may import `kuma-core`,
//! `kuma-config` and `kuma-runtime` only.

pub mod security;

use kuma_core::{resources, store};
use kuma_runtime::runtime;
