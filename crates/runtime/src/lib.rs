//! `kuma-runtime`: what every server and program shares (shutdown,
//! signals, listening sockets, PEM files, leadership). It is the lowest
//! crate of the workspace and imports none of the others.

pub mod runtime;
