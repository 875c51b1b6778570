//! What the benchmarks share: an HTTP load loop, process readings, and a
//! simulated-proxy ADS load generator.

pub mod ads;
pub mod envoy_node;

use std::sync::Arc;
use std::time::{Duration, Instant};

/// kuma-cp's logging in a benchmark: warnings, and the lines that say
/// which port each server listens on (the benchmark reads them).
pub const QUIET: &str = "warn,kuma_runtime::runtime::listen=info";

/// Requests in flight at once.
pub const CONCURRENCY: usize = 32;

pub struct Load {
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// Sends `count` requests, `CONCURRENCY` at a time; `request(i)` builds the
/// i-th one.
pub async fn load(
    count: usize,
    request: impl Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Load {
    let client = reqwest::Client::new();
    let request = Arc::new(request);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, request, next) = (client.clone(), request.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return latencies;
                }
                let t = Instant::now();
                let resp = request(&client, i).send().await.expect("request");
                assert!(resp.status().is_success(), "request {i}: {}", resp.status());
                let _ = resp.bytes().await;
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |i: usize| all.get(i).copied().unwrap_or_default();
    Load {
        requests_per_second: count as f64 / elapsed.as_secs_f64(),
        p50: at(all.len() / 2),
        p99: at(all.len() * 99 / 100),
    }
}

/// A `kB` field of /proc/PID/status, e.g. `VmRSS:` or `VmHWM:` (peak).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// What each thread of a process has run so far, from its schedstat:
/// nanoseconds on a CPU and the times it was put on one. Precise where
/// /proc/PID/stat counts 10 ms clock ticks, which is what a window of
/// near-idle needs.
pub struct ThreadTimes(std::collections::HashMap<String, (u64, u64)>);

/// What a process ran over a window.
#[derive(Debug, Clone, Copy)]
pub struct Ran {
    pub cpu_seconds: f64,
    /// Times a thread of it was put on a CPU: each wake-up is at least one.
    pub times: u64,
}

impl ThreadTimes {
    pub fn read(pid: u32) -> ThreadTimes {
        let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|thread| {
                let stat = std::fs::read_to_string(thread.path().join("schedstat")).ok()?;
                let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
                let ns = fields.next()??;
                let times = fields.nth(1)??;
                Some((
                    thread.file_name().to_string_lossy().into_owned(),
                    (ns, times),
                ))
            })
            .collect();
        ThreadTimes(threads)
    }

    /// What ran since `earlier`: threads started since count whole; a
    /// thread that ended in between is not counted.
    pub fn since(&self, earlier: &ThreadTimes) -> Ran {
        let (ns, times) = self
            .0
            .iter()
            .map(|(tid, (ns, times))| {
                let (ns0, times0) = earlier.0.get(tid).copied().unwrap_or((0, 0));
                (ns.saturating_sub(ns0), times.saturating_sub(times0))
            })
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d));
        Ran {
            cpu_seconds: ns as f64 / 1e9,
            times,
        }
    }
}

/// What the last change leaves kuma-cp to do before it is idle: the
/// insights of the proxies that ACKed are written within the flush
/// interval (1 s), and a burst's freed memory is handed back once it has
/// been quiet for a second. An idle window starts after it.
pub const SETTLE: Duration = Duration::from_secs(5);

/// How long nothing changes while idle CPU is measured:
/// `KUMA_BENCH_IDLE_SECONDS`, 60 by default.
pub fn idle_window() -> Duration {
    let seconds = std::env::var("KUMA_BENCH_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// What process `pid` ran over [`idle_window`] once [`SETTLE`]d, while
/// the caller changes nothing; and the window.
pub fn idle(pid: u32) -> (Ran, Duration) {
    let window = idle_window();
    std::thread::sleep(SETTLE);
    let before = ThreadTimes::read(pid);
    std::thread::sleep(window);
    (ThreadTimes::read(pid).since(&before), window)
}

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}
