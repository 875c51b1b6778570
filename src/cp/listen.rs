//! Binding the servers' ports. Port 0 picks a free port; the port chosen is
//! logged (`server`, `address` fields), which is how tests and scripts that
//! run many control planes at once find it.

use super::{CpError, Shutdown};
use crate::config::env_var_name;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// A listening socket and the server it is for.
pub struct Bound {
    pub name: &'static str,
    pub listener: TcpListener,
    pub address: SocketAddr,
}

/// Binds `0.0.0.0:port`, naming the setting in the error when it fails.
pub async fn bind(name: &'static str, setting: &str, port: u16) -> Result<Bound, CpError> {
    bind_on(name, setting, "0.0.0.0", port).await
}

pub async fn bind_on(
    name: &'static str,
    setting: &str,
    host: &str,
    port: u16,
) -> Result<Bound, CpError> {
    let listener = TcpListener::bind((host, port)).await.map_err(|e| {
        CpError::Listen(format!(
            "cannot listen on {host}:{port} for the {name} server: {e} (set {} to another port)",
            env_var_name(setting)
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| CpError::Listen(format!("{name} server: {e}")))?;
    tracing::info!(server = name, %address, "listening");
    Ok(Bound {
        name,
        listener,
        address,
    })
}

impl Bound {
    /// Serves gRPC until shutdown.
    pub async fn serve_grpc<S>(self, service: S, shutdown: Shutdown)
    where
        S: tonic::codegen::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let name = self.name;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(self.listener);
        if let Err(e) = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.wait())
            .await
        {
            tracing::error!(server = name, error = %e, "server failed");
        }
    }

    /// Serves HTTP until shutdown, finishing requests in flight.
    pub async fn serve(self, router: axum::Router, shutdown: Shutdown) {
        let name = self.name;
        if let Err(e) = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.wait())
            .await
        {
            tracing::error!(server = name, error = %e, "server failed");
        }
    }
}
