//! Giving memory freed by a burst of work back to the operating system.
//!
//! Configuring thousands of proxies allocates and frees far more than it
//! keeps: every response is encoded, written and dropped. glibc's
//! allocator keeps what was freed in its arenas for reuse, and an arena
//! only shrinks from its top, which the long-lived allocations made
//! meanwhile pin. Measured with 10,000 proxies that see 1,000 services
//! each: resident memory grew by 163.6 KiB per proxy, of which the heap
//! still in use (heaptrack) was a fifth; trimmed, 32.9 KiB. So once the
//! work that churns memory has been quiet for a while, the free pages are
//! handed back (`malloc_trim`), once per burst: an idle control plane
//! does nothing.

use super::CancellationToken;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Moves whenever work that churns memory is done.
static CHURN: AtomicU64 = AtomicU64::new(0);

/// Notes work that allocated and freed much (a response encoded and sent).
pub fn churned() {
    CHURN.fetch_add(1, Ordering::Relaxed);
}

/// Hands free memory back once churn has stopped for `quiet`; ends with
/// `shutdown`.
pub async fn release_after_bursts(quiet: Duration, shutdown: CancellationToken) {
    after_bursts(&CHURN, quiet, shutdown, release_free_memory).await
}

/// Calls `release` once each time `churn` stops moving for `quiet`.
async fn after_bursts(
    churn: &AtomicU64,
    quiet: Duration,
    shutdown: CancellationToken,
    mut release: impl FnMut(),
) {
    let mut seen = churn.load(Ordering::Relaxed);
    let mut burst = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(quiet) => {}
            () = shutdown.cancelled() => return,
        }
        let now = churn.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            burst = true;
        } else if burst {
            burst = false;
            release();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_free_memory() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under
    // its locks; it neither reads nor moves memory in use.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released == 1,
        "returned free memory to the system"
    );
}

/// Other allocators return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_free_memory() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test(start_paused = true)]
    async fn memory_is_released_once_per_burst_and_never_while_idle() {
        let released = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let count = released.clone();
        // Its own counter: other tests send responses meanwhile.
        static WORK: AtomicU64 = AtomicU64::new(0);
        let task = tokio::spawn(after_bursts(
            &WORK,
            Duration::from_secs(1),
            shutdown.clone(),
            move || {
                count.fetch_add(1, Ordering::Relaxed);
            },
        ));
        let quiet = Duration::from_secs(1);
        let released_after = |wait: Duration| {
            let released = released.clone();
            async move {
                tokio::time::sleep(wait).await;
                released.load(Ordering::Relaxed)
            }
        };
        assert_eq!(released_after(quiet * 10).await, 0, "idle from the start");
        // A burst: work every half interval for three intervals.
        for _ in 0..6 {
            WORK.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(quiet / 2).await;
        }
        assert_eq!(released_after(quiet * 3).await, 1, "once the burst ended");
        assert_eq!(
            released_after(quiet * 60).await,
            1,
            "and not again while idle"
        );
        WORK.fetch_add(1, Ordering::Relaxed);
        assert_eq!(released_after(quiet * 3).await, 2, "the next burst");
        shutdown.cancel();
        task.await.expect("ends with shutdown");
    }
}
