//! What every server and program shares, whatever it serves: stopping on a
//! signal, one shutdown token every task watches, and listening sockets
//! (plain HTTP, gRPC, HTTPS) that finish in-flight work when told to stop.
//!
//! Shutdown is a [`CancellationToken`]: the program cancels it once, every
//! server and loop selects on `cancelled()`. Work that must finish before
//! exit (the last insight writes) runs on a [`TaskTracker`] the program
//! waits for.

mod http2;
mod leadership;
mod listen;
pub mod memory;
pub mod pem;
mod signals;

pub use leadership::Leadership;
pub use listen::{Bound, ListenError, Peer, Transport, bind, bind_on, serve_tls};
pub use signals::termination_signal;
pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;

use std::time::Duration;

/// Retry delays that double from `first` up to `max`, for loops that wait
/// on something not up yet (a control plane, a database connection).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max,
            next: first,
        }
    }

    /// The delay to wait now; the next one is twice as long, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// After a success: start again from the first delay.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// `store.postgres.dbName` -> `KUMA_STORE_POSTGRES_DB_NAME`.
pub fn env_var_name(key: &str) -> String {
    let mut out = String::from("KUMA");
    for part in key.split('.') {
        out.push('_');
        for c in part.chars() {
            if c.is_ascii_uppercase() {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
