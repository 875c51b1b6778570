//! `kuma-injector`: the admission webhook that adds the sidecar to pods.
//! It may import `kuma-k8s`, `kuma-config`, `kuma-core` and `kuma-runtime`.

pub mod injector;

use kuma_config::settings;
use kuma_core::resources;
use kuma_core::version;
use kuma_k8s::k8s;
use kuma_runtime::runtime;
