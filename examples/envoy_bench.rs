//! `make bench`: the simulation calibrated against real proxies. Starts
//! `KUMA_BENCH_ENVOYS` (default 200; each Envoy takes about 65 MiB) real
//! `kuma-dp` + Envoy processes, one outbound each, against a release
//! `kuma-cp` (TLS, dataplane tokens, as a user runs it), and as many
//! simulated proxies against another; prints kuma-cp's memory per connected
//! proxy in both and their ratio, and what kuma-cp runs while they idle.
//! Asserts nothing.

use kuma_test_support as common;
use kuma_test_support::bench as support;

use std::time::{Duration, Instant};
use support::ads::{AS_ENVOY, Observed, connect_all_sending};
use support::envoy_node;
use support::proc_status_kib;

/// Registers `n` dataplanes, `dp-i` of service `svc-(i % services)`, each
/// with one outbound to the next service.
fn register(cp: &common::KumaCp, n: usize) {
    let services = (n / 10).max(2);
    for i in 0..n {
        let next = format!("svc-{}", (i + 1) % services);
        common::put_proxy(
            cp,
            "default",
            &format!("dp-{i}"),
            &format!("svc-{}", i % services),
            &[(common::free_port(), next.as_str())],
        );
    }
}

/// kuma-cp's resident memory, read once it has been at rest for 3 s (it
/// hands back what a burst freed after a quiet second).
fn rss_at_rest(cp: &common::KumaCp) -> u64 {
    std::thread::sleep(Duration::from_secs(3));
    proc_status_kib(cp.child.id(), "VmRSS:")
}

fn main() {
    let n: usize = std::env::var("KUMA_BENCH_ENVOYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let quiet = [("KUMA_LOGGING_LEVEL", support::QUIET)];

    let cp = common::KumaCp::start(&quiet);
    register(&cp, n);
    let before = rss_at_rest(&cp);
    let started = Instant::now();
    let envoys: Vec<common::Dataplane> = (0..n)
        .map(|i| {
            let name = format!("dp-{i}");
            let token = cp.token("default", &name);
            common::Dataplane::launch(&cp, "default", &name, Some(&token), &[])
        })
        .collect();
    let live = || {
        envoys
            .iter()
            .filter(|e| e.admin_get("/ready").is_some_and(|r| r.contains("LIVE")))
            .count()
    };
    common::eventually(Duration::from_secs(120), || {
        common::open_streams(&cp.api) as usize == n && live() == n
    });
    let configured = started.elapsed();
    // Per proxy actually connected: an Envoy that could not start (its
    // admin port taken meanwhile, say) is not counted.
    let (live, streams) = (live(), common::open_streams(&cp.api) as usize);
    let real = rss_at_rest(&cp).saturating_sub(before) as f64 / streams.max(1) as f64;
    // Whatever Envoy and kuma-dp send on their own while nothing changes.
    let (real_idle, window) = support::idle(cp.child.id());
    // What these Envoys sent as their node: the simulated proxies send it.
    let server_info: serde_json::Value = envoys
        .iter()
        .find_map(|e| e.admin_get("/server_info"))
        .and_then(|info| serde_json::from_str(&info).ok())
        .expect("an Envoy's /server_info");
    let node = std::sync::Arc::new(envoy_node::with_id(&server_info["node"], ""));
    drop(envoys);
    drop(cp);

    let sim_cp = common::KumaCp::start(&[
        quiet[0],
        // The simulated proxies present no tokens.
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    register(&sim_cp, n);
    let before = rss_at_rest(&sim_cp);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let seen = Observed::new(n);
    let node_ids = (0..n).map(|i| format!("default.dp-{i}")).collect();
    let sim_started = Instant::now();
    let node_bytes = prost::Message::encoded_len(&*node);
    rt.block_on(connect_all_sending(
        &sim_cp.grpc_endpoint(&sim_cp.xds),
        (node_ids, node),
        AS_ENVOY,
        3,
        seen.clone(),
    ));
    common::eventually(Duration::from_secs(60), || {
        seen.complete.load(std::sync::atomic::Ordering::Relaxed) == n
    });
    let sim_configured = sim_started.elapsed();
    let simulated = rss_at_rest(&sim_cp).saturating_sub(before) as f64 / n as f64;
    let (sim_idle, _) = support::idle(sim_cp.child.id());

    println!(
        "\nReal Envoys against the simulation: {n} kuma-dp + Envoy processes (TLS, dataplane tokens, one outbound each) and {n} simulated proxies (one connection each, TLS, each sending the node the Envoys sent: {node_bytes} bytes, the recorded one xds_bench sends {} bytes), each against a release kuma-cp of its own\n",
        prost::Message::encoded_len(&envoy_node::recorded(""))
    );
    let idle = |ran: support::Ran| format!("{:.4} s, ran {} times", ran.cpu_seconds, ran.times);
    println!(
        "| proxies | all configured | kuma-cp RSS per connected proxy | kuma-cp idle CPU over {} s |",
        window.as_secs()
    );
    println!("|---|--:|--:|--:|");
    println!(
        "| {n} real Envoys ({live} LIVE, {streams} streams) | {:.1} s | {real:.1} KiB | {} |",
        configured.as_secs_f64(),
        idle(real_idle)
    );
    println!(
        "| {n} simulated | {:.2} s | {simulated:.1} KiB | {} |",
        sim_configured.as_secs_f64(),
        idle(sim_idle)
    );
    let ratio = real / simulated.max(0.1);
    let verdict = |met| if met { "met" } else { "MISSED" };
    let idle_met = real_idle.cpu_seconds < 0.05 * window.as_secs_f64() / 60.0;
    println!(
        "\n| goal | measured | |\n|---|---|---|\n| real Envoy within 1.5x of the simulation, per connected proxy | {ratio:.2}x | {} |\n| {n} real Envoys connected, nothing changing: under 0.05 CPU s over 60 s | {} | {} |",
        verdict(ratio <= 1.5),
        idle(real_idle),
        verdict(idle_met)
    );
}
