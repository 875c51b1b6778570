//! Binding the servers' ports and serving on them until shutdown. Port 0
//! picks a free port; the port chosen is logged (`server`, `address`
//! fields), which is how tests and scripts that run many control planes at
//! once find it.

use crate::config::env_var_name;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A port that cannot be listened on, with the setting that chooses it.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {host}:{port} for the {server} server: {source} (set {variable} to another port)"
)]
pub struct ListenError {
    pub server: &'static str,
    pub host: String,
    pub port: u16,
    /// The `KUMA_*` variable that sets this port.
    pub variable: String,
    #[source]
    pub source: std::io::Error,
}

/// A listening socket and the server it is for.
pub struct Bound {
    pub name: &'static str,
    pub listener: TcpListener,
    pub address: SocketAddr,
}

/// Binds `0.0.0.0:port`, naming the setting in the error when it fails.
pub async fn bind(name: &'static str, setting: &str, port: u16) -> Result<Bound, ListenError> {
    bind_on(name, setting, "0.0.0.0", port).await
}

pub async fn bind_on(
    name: &'static str,
    setting: &str,
    host: &str,
    port: u16,
) -> Result<Bound, ListenError> {
    let error = |source| ListenError {
        server: name,
        host: host.to_string(),
        port,
        variable: env_var_name(setting),
        source,
    };
    let listener = TcpListener::bind((host, port)).await.map_err(error)?;
    let address = listener.local_addr().map_err(error)?;
    tracing::info!(server = name, %address, "listening");
    Ok(Bound {
        name,
        listener,
        address,
    })
}

impl Bound {
    /// Serves gRPC until shutdown.
    pub async fn serve_grpc<S>(self, service: S, shutdown: CancellationToken)
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
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
            .await
        {
            tracing::error!(server = name, error = %e, "server failed");
        }
    }

    /// Serves HTTP until shutdown, finishing requests in flight.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) {
        let name = self.name;
        if let Err(e) = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(server = name, error = %e, "server failed");
        }
    }

    /// Serves HTTPS until shutdown; see [`serve_tls`].
    pub async fn serve_tls(
        self,
        tls: rustls::ServerConfig,
        router: Router,
        shutdown: CancellationToken,
    ) {
        serve_tls(self.name, self.listener, tls, router, shutdown).await
    }
}

/// Serves `router` over HTTPS (HTTP/1.1 and HTTP/2) until shutdown. A
/// client that fails the handshake (for instance without a trusted client
/// certificate, when `tls` asks for one) is dropped and logged.
pub async fn serve_tls(
    name: &'static str,
    listener: TcpListener,
    tls: rustls::ServerConfig,
    router: Router,
    shutdown: CancellationToken,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    loop {
        let (socket, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(server = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            // A client that opens the connection and never finishes the
            // handshake does not hold a task forever.
            let stream = match tokio::time::timeout(
                Duration::from_secs(10),
                acceptor.accept(socket),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(server = name, %peer, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(server = name, %peer, "TLS handshake timed out");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
        });
    }
}
