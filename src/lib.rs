//! A Kuma-compatible service-mesh control plane.
//!
//! Data flows as `../DESIGN.md` draws it: [`store`] keeps [`resources`] and
//! publishes changes; the [`api`] serves them over HTTP; [`cp`] wires the
//! servers of `kuma-cp` together from its [`config`]. [`kumactl`] is the CLI
//! over the HTTP API.

pub mod api;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod cp;
pub mod dp;
pub mod kumactl;
pub mod metrics;
pub mod resources;
pub mod runtime;
pub mod security;
pub mod store;
pub mod tcp_echo;
pub mod version;
pub mod xds;
