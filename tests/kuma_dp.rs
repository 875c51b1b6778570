//! `kuma-dp` as a process: finding Envoy, waiting for the control plane,
//! forwarding signals, and the bootstrap server's answers.

mod common;

use common::{KumaCp, bin, envoy_binary, eventually, free_port, put_dataplane};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn a_missing_envoy_is_one_clear_line() {
    let out = Command::new(bin("kuma-dp"))
        .args(["run", "--name", "x", "--binary-path", "no-such-envoy"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Envoy not found: looked for \"no-such-envoy\" in PATH (/nonexistent)"),
        "{stderr}"
    );
}

#[test]
fn it_waits_for_the_control_plane_then_runs_envoy_and_forwards_sigterm() {
    let bootstrap_port = free_port();
    let bootstrap = format!("http://127.0.0.1:{bootstrap_port}");
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let log = dir.path().join("dp.log");
    let mut dp = common::Process(
        Command::new(bin("kuma-dp"))
            .args(["run", "--name", "web", "--admin-port", &admin.to_string()])
            .env("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &bootstrap)
            .arg("--binary-path")
            .arg(envoy_binary())
            .arg("--config-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("control plane not reachable")
    }));

    let port = bootstrap_port.to_string();
    // Authentication has tests of its own; this one has no token to give.
    let cp = KumaCp::start(&[
        ("KUMA_BOOTSTRAP_SERVER_PORT", &port),
        ("KUMA_DP_SERVER_AUTH_TYPE", "none"),
    ]);
    put_dataplane(
        &cp,
        "default",
        "web",
        (free_port(), free_port()),
        "web",
        &[],
    );
    let ready = || {
        reqwest::blocking::get(format!("http://127.0.0.1:{admin}/ready"))
            .and_then(|r| r.text())
            .is_ok_and(|t| t.contains("LIVE"))
    };
    assert!(
        eventually(Duration::from_secs(20), ready),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let status = dp.terminate().expect("kuma-dp exits");
    assert_eq!(status.code(), Some(0), "Envoy's exit code");
    assert!(
        eventually(Duration::from_secs(5), || !ready()),
        "Envoy still running"
    );
    drop(cp);
}

#[test]
fn the_bootstrap_server_refuses_unregistered_dataplanes_with_the_fix() {
    let cp = KumaCp::start(&[]);
    let answer = common::http(
        "POST",
        &format!("{}/bootstrap", cp.bootstrap),
        Some(r#"{"mesh":"default","name":"ghost"}"#),
    );
    assert_eq!(answer.status, 404);
    let details = answer.body["details"].as_str().unwrap();
    assert!(
        details.contains("Dataplane \"ghost\" of mesh \"default\" is not registered")
            && details.contains("kumactl apply"),
        "{details}"
    );

    put_dataplane(
        &cp,
        "default",
        "web",
        (free_port(), free_port()),
        "web",
        &[],
    );
    let answer = common::http(
        "POST",
        &format!("{}/bootstrap", cp.bootstrap),
        Some(r#"{"mesh":"default","name":"web","adminPort":9901,"dataplaneTokenPath":"/tmp/t"}"#),
    );
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["node"]["id"], "default.web");
    assert_eq!(
        answer.body["admin"]["address"]["socket_address"]["port_value"],
        9901
    );
    let xds_port: u16 = cp.xds.rsplit(':').next().unwrap().parse().unwrap();
    let ads = &answer.body["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]["lb_endpoints"]
        [0]["endpoint"]["address"]["socket_address"];
    assert_eq!(ads["port_value"], xds_port);

    let bad = common::http(
        "POST",
        &format!("{}/bootstrap", cp.bootstrap),
        Some(r#"{"mesh":"default"}"#),
    );
    assert_eq!(bad.status, 400);
}
