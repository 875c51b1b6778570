//! Stopping on SIGTERM or SIGINT.

/// Completes on SIGTERM or SIGINT. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// while the servers are still starting is not lost (nor fatal).
pub fn termination_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, stopping"),
                    _ = int.recv() => tracing::info!("SIGINT received, stopping"),
                }
            }
            _ => {
                // Without signal handlers the process still stops on ^C.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}
