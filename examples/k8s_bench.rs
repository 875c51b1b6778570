//! `make bench`: Kubernetes mode at scale. The in-process API server of the
//! tests holds N pods (with the sidecar) behind N/100 Services; a release
//! `kuma-cp` in Kubernetes mode turns them into Dataplanes, and a load
//! generator speaking real delta ADS simulates some of the proxies. Prints
//! a table; asserts nothing.
//!
//! Every pod is a transparent proxy, so every proxy gets every service of
//! its mesh: what it costs to push that to every proxy at once is the
//! performance issue's subject, so only `CONNECTED` proxies connect here.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/kube_api/mod.rs"]
mod kube_api;
#[allow(dead_code)] // the HTTP load loop is api_bench's
mod support;

use kube_api::KubeApi;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::ads::{Observed, connect_all, wait_for};
use support::proc_status_kib;

const PODS_PER_SERVICE: usize = 100;
/// Simulated proxies (the first pods).
const CONNECTED: usize = 500;
const PODS: &str = "/api/v1/namespaces/demo/pods";
const SERVICES: &str = "/api/v1/namespaces/demo/services";
const DATAPLANES: &str = "/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes";

fn service(k: usize, target_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{k}")},
           "spec": {"selector": {"app": format!("svc-{k}")},
                    "clusterIP": format!("10.96.{}.{}", k / 250, k % 250 + 1),
                    "ports": [{"port": 80, "targetPort": target_port}]}})
}

fn pod(i: usize, services: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": format!("pod-{i}"), "labels": {"app": format!("svc-{}", i % services)},
                        "annotations": {"kuma.io/sidecar-injected": "true",
                                        "kuma.io/transparent-proxying": "enabled"}},
           "spec": {"containers": [{"name": "app", "image": "app"}]},
           "status": {"phase": "Running",
                      "podIP": format!("10.{}.{}.{}", i / 62_500, (i / 250) % 250, i % 250 + 1),
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

fn bench(n: usize, rt: &tokio::runtime::Runtime) {
    let services = (n / PODS_PER_SERVICE).max(1);
    let api = KubeApi::start();
    api.apply(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}),
    );
    for k in 0..services {
        api.apply(SERVICES, service(k, 8080));
    }
    let kubeconfig = api.kubeconfig.to_str().expect("utf-8").to_string();
    // The simulated proxies present no service-account tokens.
    let cp = common::KumaCp::start(&[
        ("KUMA_LOGGING_LEVEL", "warn,kuma::runtime::listen=info"),
        ("KUMA_ENVIRONMENT", "kubernetes"),
        ("KUMA_STORE_TYPE", "kubernetes"),
        ("KUBECONFIG", &kubeconfig),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    let pid = cp.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = proc_status_kib(pid, "VmRSS:");

    // Pods created (as fast as the API server takes them) -> every
    // Dataplane written.
    let started = Instant::now();
    for i in 0..n {
        api.apply(PODS, pod(i, services));
    }
    while api.count(DATAPLANES) < n && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let generated = started.elapsed();
    let dataplanes = api.count(DATAPLANES);
    std::thread::sleep(Duration::from_millis(500));
    let rss_pods = proc_status_kib(pid, "VmRSS:");

    // Some proxies connect and get their configuration.
    let connected = CONNECTED.min(n);
    let seen = Observed::new(connected);
    let node_ids = (0..connected)
        .map(|i| format!("default.pod-{i}.demo"))
        .collect();
    let connect_started = Instant::now();
    rt.block_on(connect_all(&cp.xds, node_ids, 3, seen.clone()));
    while seen.complete.load(Ordering::Relaxed) < connected
        && connect_started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let configured = connect_started.elapsed();
    let configured_count = seen.complete.load(Ordering::Relaxed);
    let bytes_per_proxy = seen.bytes.load(Ordering::Relaxed) as f64 / connected as f64;

    // A Service's target port changes: its pods' Dataplanes are rewritten,
    // and every proxy (all consume every service) gets the new endpoints.
    let watched: Vec<usize> = (0..connected).collect();
    let before: Vec<u64> = watched
        .iter()
        .map(|c| seen.last_eds[*c].load(Ordering::Relaxed))
        .collect();
    let t0 = seen.now();
    api.apply(SERVICES, service(0, 8081));
    let acked = wait_for(
        &seen.last_eds,
        &watched,
        &before,
        t0,
        Duration::from_secs(30),
    );

    let peak = proc_status_kib(pid, "VmHWM:");
    let per_pod = rss_pods.saturating_sub(rss_before) as f64 / n as f64;
    println!(
        "| {n:>6} | {services:>4} | {dataplanes:>6} of {n} | {:>6.2} s | {configured_count} of {connected} in {:>5.2} s | {:>8.0} B | {} | {:>6.1} MiB | {:>5.2} KiB |",
        generated.as_secs_f64(),
        configured.as_secs_f64(),
        bytes_per_proxy,
        acked.describe(&[50, 99]),
        peak as f64 / 1024.0,
        per_pod,
    );
}

fn main() {
    let sizes: Vec<usize> = std::env::var("KUMA_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "\nKubernetes mode: pods with the sidecar in the in-process API server, N/{PODS_PER_SERVICE} Services, a release kuma-cp; the first {CONNECTED} pods' proxies simulated over delta ADS\n"
    );
    println!(
        "| pods   | Services | Dataplanes | pods created -> all Dataplanes written | proxies configured | bytes per proxy | Service port changed -> every proxy ACKed p50 / p99 | peak RSS | RSS per pod |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in sizes {
        bench(n, &rt);
    }
}
