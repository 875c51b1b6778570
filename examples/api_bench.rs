//! `make bench`: HTTP API throughput and latency with 10,000 dataplanes
//! stored, on the memory and the Postgres store, plus `kumactl get
//! dataplanes` time and `kuma-cp` resident memory. Prints a table; asserts
//! nothing (timing goals live here, not in tests).

use kuma_test_support as common;
use kuma_test_support::bench as support;

use support::{Load, load, proc_status_kib};

use std::time::{Duration, Instant};

const DATAPLANES: usize = 10_000;
/// Pages requested: enough that the p99 is not the tenth slowest request.
const PAGES: usize = 5_000;

fn dataplane(i: usize) -> String {
    serde_json::json!({
        "type": "Dataplane", "mesh": "default", "name": format!("dp-{i:05}"),
        "networking": {
            "inbound": [{"interface": format!("10.0.{}.{}:10000:8080", i / 250, i % 250 + 1),
                         "tags": {"service": format!("svc-{}", i % 1000), "version": "1"}}],
            "outbound": [{"interface": ":20000", "service": format!("svc-{}", (i + 1) % 1000)}]
        }
    })
    .to_string()
}

fn row(store: &str, what: &str, l: &Load) {
    println!(
        "| {store:<8} | {what:<34} | {:>9.0} | {:>8.2} | {:>8.2} |",
        l.requests_per_second,
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3
    );
}

fn bench(store: &str, cp: &common::KumaCp, rt: &tokio::runtime::Runtime) -> (Duration, u64, u64) {
    let api = cp.api.clone();
    let base = api.clone();
    let put = rt.block_on(load(DATAPLANES, move |c, i| {
        c.put(format!("{base}/meshes/default/dataplanes/dp-{i:05}"))
            .header("content-type", "application/json")
            .body(dataplane(i))
    }));
    row(store, "PUT dataplane (create)", &put);
    let base = api.clone();
    let update = rt.block_on(load(DATAPLANES, move |c, i| {
        c.put(format!("{base}/meshes/default/dataplanes/dp-{i:05}"))
            .header("content-type", "application/json")
            .body(dataplane(i))
    }));
    row(store, "PUT dataplane (update)", &update);
    let base = api.clone();
    let get = rt.block_on(load(DATAPLANES, move |c, i| {
        c.get(format!(
            "{base}/meshes/default/dataplanes/dp-{:05}",
            (i * 7919) % DATAPLANES
        ))
    }));
    row(store, "GET dataplane", &get);
    let base = api.clone();
    let list = rt.block_on(load(PAGES, move |c, i| {
        c.get(format!(
            "{base}/meshes/default/dataplanes?size=100&offset={}",
            (i * 100) % DATAPLANES
        ))
    }));
    row(store, "GET dataplanes page of 100", &list);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config");
    let add = common::kumactl(
        &config,
        &[
            "config",
            "control-planes",
            "add",
            "--name",
            "bench",
            "--address",
            &api,
        ],
        None,
    );
    assert_eq!(add.code, 0, "{}", add.stderr);
    let t = Instant::now();
    let got = common::kumactl(&config, &["get", "dataplanes"], None);
    let kumactl_time = t.elapsed();
    assert_eq!(got.stdout.lines().count(), DATAPLANES + 1, "{}", got.stderr);
    let pid = cp.child.id();
    (
        kumactl_time,
        proc_status_kib(pid, "VmRSS:"),
        proc_status_kib(pid, "VmHWM:"),
    )
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "HTTP API with {DATAPLANES} dataplanes, {} concurrent clients, release build\n",
        support::CONCURRENCY
    );
    println!("| store    | operation                          |   req/s   | p50 ms   | p99 ms   |");
    println!("|----------|------------------------------------|-----------|----------|----------|");
    // Warnings only, but the "listening" lines the fixture reads ports from.
    let quiet = [("KUMA_LOGGING_LEVEL", support::QUIET)];
    let memory = common::KumaCp::start(&quiet);
    let mem = bench("memory", &memory, &rt);
    drop(memory);

    let cluster = common::PgCluster::start();
    let db = cluster.new_database("bench");
    db.migrate();
    let postgres = db.kuma_cp(&quiet);
    let pg = bench("postgres", &postgres, &rt);
    drop(postgres);

    println!("\n| store    | kumactl get dataplanes | kuma-cp RSS | kuma-cp peak RSS |");
    println!("|----------|------------------------|-------------|------------------|");
    for (store, (t, rss, peak)) in [("memory", mem), ("postgres", pg)] {
        println!(
            "| {store:<8} | {:>20.0} ms | {:>7.1} MiB | {:>12.1} MiB |",
            t.as_secs_f64() * 1e3,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
}
