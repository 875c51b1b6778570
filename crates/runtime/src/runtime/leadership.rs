//! Whether this control plane may write. With several replicas on
//! Kubernetes only the holder of the leader lease writes (see
//! `crate::k8s::leader`); a single Universal control plane always may.

use tokio::sync::watch;

/// Whether this replica leads now; cheap to clone and to ask.
#[derive(Clone)]
pub struct Leadership(watch::Receiver<bool>);

impl Leadership {
    /// A control plane that always leads.
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        // The sender is dropped: the value stays `true` for good.
        drop(tx);
        Leadership(rx)
    }

    /// Follows an election's outcome.
    pub fn follow(outcome: watch::Receiver<bool>) -> Leadership {
        Leadership(outcome)
    }

    pub fn is_leader(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until this replica leads (forever if it never does).
    pub async fn acquired(&mut self) {
        if self.0.wait_for(|leading| *leading).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Waits until leadership changes (forever if it never does).
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
