//! The HTTP/2 server of the gRPC ports (ADS, SDS): every connected proxy
//! holds one connection to it for as long as it runs, so what a connection
//! keeps while nothing happens is what the control plane pays per proxy.
//!
//! hyper's HTTP/2 (the h2 crate, under tonic's server) keeps two 16 KiB
//! buffers per connection from its first byte to its last, a write buffer
//! allocated whole and a read buffer grown to a frame, plus a task per
//! stream: at 10,000 proxies with one connection each that was most of
//! kuma-cp's memory (README, Benchmarks). Neither is a setting. This server
//! speaks the part of HTTP/2 (RFC 9113) a gRPC server needs, as one future
//! per connection that keeps no buffer while idle and runs no timer once
//! the client opened HTTP/2; the streams are served by any `tower` service
//! taking tonic bodies, as tonic's server would call it.
//!
//! What it does not do: server push (gRPC has none), priorities (ignored,
//! as RFC 9113 allows), HTTP/1.1 (gRPC is HTTP/2 only), and indexing what
//! it sends (a stream answers one set of headers and one of trailers).

mod body;
mod connection;
mod frame;
mod headers;
mod hpack;
#[cfg(test)]
mod tests;

use axum::http;
use std::convert::Infallible;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tonic::body::Body;

/// What serves the streams: a `tower` service taking tonic bodies, as
/// tonic's server would call it.
pub trait StreamService:
    tower::Service<
        http::Request<Body>,
        Response = http::Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> StreamService for S where
    S: tower::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves one connection until the client leaves, breaks the protocol,
/// has not opened HTTP/2 (its preface and SETTINGS) `preface_within`
/// after connecting, or `shutdown` (then GOAWAY, and the streams open
/// finish first). Under load a client's first request may come long after
/// its preface: the wait for it is the stream's (ADS: 10 s from the
/// stream's opening), not the connection's.
pub async fn serve_connection<IO, S>(
    io: IO,
    service: S,
    shutdown: CancellationToken,
    preface_within: Duration,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    S: StreamService,
{
    connection::Connection::new(io, service, shutdown, preface_within).await
}
