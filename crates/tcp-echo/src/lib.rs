//! `kuma-tcp-echo`: the demo TCP echo server.

pub mod tcp_echo;
