//! `kuma-store-postgres`: the PostgreSQL store (`store::postgres`), beside
//! the store trait and memory store of `kuma-core` it re-exports under the
//! same `store` path. It may import `kuma-core`, `kuma-config` and
//! `kuma-runtime` only.

pub mod store {
    pub mod postgres;
    pub use kuma_core::store::*;
}

use kuma_config::settings;
use kuma_core::resources;
use kuma_runtime::runtime;
