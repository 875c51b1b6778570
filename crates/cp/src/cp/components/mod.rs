//! The servers of the control plane, each a [`Component`](super::component::Component)
//! built from its own settings and the shared parts.

pub mod api;
pub mod bootstrap;
pub mod control_plane_cert;
pub mod gui;
pub mod health;
#[cfg(feature = "kubernetes")]
pub mod injector;
pub mod token_server;
pub mod xds;
