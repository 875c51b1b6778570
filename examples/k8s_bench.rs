//! `make bench`: Kubernetes mode at scale against a real Kubernetes control
//! plane (`make kube`). N pods with the sidecar behind 100 Services, made
//! by 100 Deployments through the real controller-manager, bound by the
//! real scheduler to a test node whose kubelet marks each bound pod running
//! and ready (it starts no processes: a hollow kubelet, as kubemark's). A
//! release `kuma-cp`, as the chart's ServiceAccount, turns them into
//! Dataplanes; a load generator speaking real delta ADS simulates the first
//! `CONNECTED` pods' proxies. Prints a table and each goal as met or
//! MISSED; asserts nothing.
//!
//! Every pod is a transparent proxy, so every proxy gets every service of
//! its mesh.

use kuma_test_support::bench as support;
use kuma_test_support::cluster::control_plane;

use control_plane::{ControlPlane, NODE};
use serde_json::{Value, json};
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::ads::{Observed, connect_all, wait_for};
use support::proc_status_kib;

const SERVICES: usize = 100;
/// Simulated proxies (the first pods).
const CONNECTED: usize = 500;
/// The user the API server knows the chart's kuma-cp as.
const KUMA_CP: &str = "system:serviceaccount:kuma-system:kuma-control-plane";

fn service(k: usize, target_port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": format!("svc-{k}")},
           "spec": {"selector": {"app": format!("svc-{k}")},
                    "ports": [{"port": 80, "targetPort": target_port}]}})
}

fn deployment(k: usize, replicas: usize) -> Value {
    let app = format!("svc-{k}");
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                    "template": {
                        "metadata": {"labels": {"app": app},
                                     "annotations": {"kuma.io/sidecar-injected": "true",
                                                     "kuma.io/transparent-proxying": "enabled"}},
                        "spec": {"containers": [{"name": "app", "image": "app"}],
                                 "terminationGracePeriodSeconds": 0}}}})
}

/// When the hollow kubelet marked pods ready: how many, and the last time
/// (ns since `started`).
struct Readied {
    count: AtomicUsize,
    last: AtomicU64,
    started: Instant,
    stop: AtomicBool,
}

/// What the hollow kubelet does to a pod.
enum Work {
    /// Bound and new: report it running and ready.
    Ready(String),
    /// Being deleted: its containers are gone, finish the deletion.
    Finish(String, Value),
}

/// The hollow kubelet: watches the pods bound to the test node and writes
/// each one's status (running, an IP, ready) with the kubelet's
/// credentials, as a kubelet whose containers all start at once would, and
/// finishes their deletions.
fn hollow_kubelet(cp: &'static ControlPlane, ns: String, readied: Arc<Readied>) {
    let (tx, rx) = std::sync::mpsc::channel::<Work>();
    let rx = Arc::new(std::sync::Mutex::new(rx));
    for _ in 0..8 {
        let (rx, readied, ns) = (rx.clone(), readied.clone(), ns.clone());
        std::thread::spawn(move || {
            loop {
                let next = rx.lock().unwrap().recv();
                let name = match next {
                    Ok(Work::Ready(name)) => name,
                    Ok(Work::Finish(name, uid)) => {
                        cp.request_as(
                            &cp.tokens.kubelet,
                            "DELETE",
                            &format!("/api/v1/namespaces/{ns}/pods/{name}"),
                            Some((
                                "application/json",
                                json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
                                    .to_string(),
                            )),
                        );
                        continue;
                    }
                    Err(_) => return,
                };
                let n = readied.count.load(Ordering::Relaxed) + 1;
                let ip = format!("10.{}.{}.{}", n / 62_500, (n / 250) % 250, n % 250 + 1);
                let now = control_plane::now();
                let code = cp.report_pod((&ns, &name), (&ip, &now), "Running", true);
                if code < 300 {
                    readied.count.fetch_add(1, Ordering::Relaxed);
                    let at = readied.started.elapsed().as_nanos() as u64;
                    readied.last.fetch_max(at, Ordering::Relaxed);
                }
            }
        });
    }
    // One watch of the pods bound here; each new binding is queued once.
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cp.ca_pem.as_bytes()).expect("CA"))
        .no_proxy()
        .timeout(None)
        .build()
        .expect("client");
    let url = format!(
        "{}/api/v1/namespaces/{ns}/pods?watch=true&fieldSelector=spec.nodeName%3D{NODE}",
        cp.url
    );
    let mut queued = std::collections::HashSet::new();
    while !readied.stop.load(Ordering::Relaxed) {
        let Ok(resp) = client.get(&url).bearer_auth(&cp.tokens.kubelet).send() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        for line in std::io::BufReader::new(resp).lines().map_while(Result::ok) {
            let event: Value = serde_json::from_str(&line).unwrap_or_default();
            let pod = &event["object"];
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            if !pod["metadata"]["deletionTimestamp"].is_null() {
                let uid = pod["metadata"]["uid"].clone();
                let _ = tx.send(Work::Finish(name.to_string(), uid));
            } else if pod["status"]["podIP"].is_null() && queued.insert(name.to_string()) {
                let _ = tx.send(Work::Ready(name.to_string()));
            }
        }
    }
}

/// A goal of a run: what, what was measured, and whether it was met.
type Goal = (String, String, bool);

/// One run of `n` pods; prints its row and answers its goals.
fn bench(n: usize, rt: &tokio::runtime::Runtime) -> Vec<Goal> {
    let cp = ControlPlane::shared();
    let _only = cp.exclusive();
    let ns = cp.namespace("bench", json!({}));
    let readied = Arc::new(Readied {
        count: AtomicUsize::new(0),
        last: AtomicU64::new(0),
        started: Instant::now(),
        stop: AtomicBool::new(false),
    });
    {
        let (ns, readied) = (ns.clone(), readied.clone());
        std::thread::spawn(move || hollow_kubelet(cp, ns, readied));
    }
    for k in 0..SERVICES {
        cp.apply(
            &format!("/api/v1/namespaces/{ns}/services"),
            service(k, 8080),
        );
    }
    // The simulated proxies present no service-account tokens.
    let kuma_cp = cp.kuma_cp(&[
        ("KUMA_LOGGING_LEVEL", support::QUIET),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    let pid = kuma_cp.child.id();
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = proc_status_kib(pid, "VmRSS:");
    let writes_before = cp.writes_by(KUMA_CP, "dataplanes");
    let reads_before = cp.requests_by(KUMA_CP, "", &["get", "list"]);

    // Deployments -> pods (controller-manager) -> bound (scheduler) ->
    // ready (hollow kubelet) -> Dataplanes (kuma-cp).
    let dataplanes = format!("/apis/kuma.io/v1alpha1/namespaces/{ns}/dataplanes");
    let started = Instant::now();
    let since = readied.started.elapsed().as_nanos() as u64;
    for k in 0..SERVICES {
        let replicas = n / SERVICES + usize::from(k < n % SERVICES);
        cp.apply(
            &format!("/apis/apps/v1/namespaces/{ns}/deployments"),
            deployment(k, replicas),
        );
    }
    let mut written = 0;
    let mut all_written_at = None;
    while started.elapsed() < Duration::from_secs(600) {
        written = cp.count(&dataplanes);
        if written >= n && readied.count.load(Ordering::Relaxed) >= n {
            all_written_at = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = readied.count.load(Ordering::Relaxed);
    let last_ready =
        Duration::from_nanos(readied.last.load(Ordering::Relaxed).saturating_sub(since));
    let lag = all_written_at.map(|at| at.saturating_sub(last_ready));
    std::thread::sleep(Duration::from_secs(3));
    let rss_pods = proc_status_kib(pid, "VmRSS:");
    let writes = cp
        .writes_by(KUMA_CP, "dataplanes")
        .saturating_sub(writes_before);
    let reads = cp
        .requests_by(KUMA_CP, "", &["get", "list"])
        .saturating_sub(reads_before);

    // Some proxies connect and get their configuration.
    let pods: Vec<String> = cp
        .list(&format!("/api/v1/namespaces/{ns}/pods?limit={CONNECTED}"))
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let connected = pods.len();
    let seen = Observed::new(connected);
    let node_ids = pods.iter().map(|p| format!("default.{p}.{ns}")).collect();
    let connect_started = Instant::now();
    rt.block_on(connect_all(
        &kuma_cp.grpc_endpoint(&kuma_cp.xds),
        node_ids,
        support::ads::AS_ENVOY,
        3,
        seen.clone(),
    ));
    while seen.complete.load(Ordering::Relaxed) < connected
        && connect_started.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let configured = seen.complete.load(Ordering::Relaxed);

    // A Service's target port changes: its pods' Dataplanes are rewritten,
    // and every proxy (all consume every service) gets the new endpoints.
    let watched: Vec<usize> = (0..connected).collect();
    let before: Vec<u64> = watched
        .iter()
        .map(|c| seen.last_eds[*c].load(Ordering::Relaxed))
        .collect();
    let t0 = seen.now();
    cp.apply(
        &format!("/api/v1/namespaces/{ns}/services"),
        service(0, 8081),
    );
    let acked = wait_for(
        &seen.last_eds,
        &watched,
        &before,
        t0,
        Duration::from_secs(30),
    );
    readied.stop.store(true, Ordering::Relaxed);

    let per_pod = rss_pods.saturating_sub(rss_before) as f64 / n as f64;
    let span = |d: Duration| d.as_secs_f64().max(1e-3);
    println!(
        "| {n:>6} | {SERVICES} | {ready} of {n} in {:.1} s ({:.0}/s) | {written} of {n} in {} | {} | {writes} ({:.2} per pod) | {reads} | {configured} of {connected} | {} | {per_pod:.2} KiB |",
        last_ready.as_secs_f64(),
        ready as f64 / span(last_ready),
        all_written_at.map_or("-".to_string(), |d| format!(
            "{:.1} s ({:.0}/s)",
            d.as_secs_f64(),
            written as f64 / span(d)
        )),
        lag.map_or("never all written".to_string(), |l| format!(
            "{:.2} s",
            l.as_secs_f64()
        )),
        writes as f64 / n as f64,
        acked.describe(&[50, 99]),
    );
    vec![
        (
            format!("{n} pods: last Dataplane written under 5 s after the last pod ready"),
            lag.map_or(format!("{written} of {n} written"), |l| {
                format!("{:.2} s", l.as_secs_f64())
            }),
            lag.is_some_and(|l| l < Duration::from_secs(5)),
        ),
        (
            format!("{n} pods: a Service change ACKed by every connected proxy, p99 under 2 s"),
            format!("p99 {}", acked.describe(&[99])),
            acked.met(99, Duration::from_secs(2)),
        ),
        (
            // Each pod changes three times: created, bound, ready.
            format!("{n} pods: at most one Dataplane write per pod event"),
            format!("{writes} writes for {n} pods ({} events)", 3 * n),
            written >= n && writes <= 3 * n,
        ),
        (
            format!("{n} pods: no polling (lists and gets while the pods came)"),
            format!("{reads} reads"),
            reads <= SERVICES,
        ),
    ]
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
        "\nKubernetes mode on a real control plane: N pods with the sidecar from {SERVICES} Deployments behind {SERVICES} Services, made by the controller-manager, bound by the scheduler, marked ready by a hollow kubelet; a release kuma-cp as the chart's ServiceAccount; the first {CONNECTED} pods' proxies simulated over delta ADS\n"
    );
    println!(
        "| pods | Services | pods ready (by the kubelet) | Dataplanes written | lag after the last ready pod | kuma-cp's Dataplane writes | kuma-cp's reads meanwhile | proxies configured | Service port changed -> every proxy ACKed p50 / p99 | RSS per pod |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let cp = ControlPlane::shared();
    // A hollow node: no kubelet endpoint answers on its port.
    cp.register_node(10250);
    let goals: Vec<Goal> = sizes.into_iter().flat_map(|n| bench(n, &rt)).collect();
    println!("\nGoals, from the runs above\n");
    println!("| goal | measured | |");
    println!("|---|---|---|");
    for (what, measured, met) in goals {
        let verdict = if met { "met" } else { "MISSED" };
        println!("| {what} | {measured} | {verdict} |");
    }
}
