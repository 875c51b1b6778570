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
