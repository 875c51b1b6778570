//! `kuma-tcp-echo`: a TCP server that writes back every byte it reads, one
//! task per connection.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// Serves until `shutdown` completes. Connection errors end only that
/// connection.
pub async fn serve(listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((mut socket, peer)) => {
                    tokio::spawn(async move {
                        let (mut reader, mut writer) = socket.split();
                        match tokio::io::copy(&mut reader, &mut writer).await {
                            Ok(bytes) => tracing::debug!(%peer, bytes, "connection closed"),
                            Err(e) => tracing::debug!(%peer, error = %e, "connection failed"),
                        }
                        let _ = writer.shutdown().await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
