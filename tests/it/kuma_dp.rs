//! `kuma-dp` as a process: finding Envoy, waiting for the control plane,
//! forwarding signals, and the bootstrap server's answers.

use crate::common;

use common::{Dataplane, KumaCp, bin, envoy_binary, eventually, free_port, put_proxy};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A control plane with dataplane `web` of mesh `default` registered.
fn with_web() -> KumaCp {
    let cp = KumaCp::start(&[]);
    put_proxy(&cp, "default", "web", "web", &[]);
    cp
}

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
    put_proxy(&cp, "default", "web", "web", &[]);
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

    put_proxy(&cp, "default", "web", "web", &[]);
    // The token is checked here as the stream will check it.
    let ask = |token: &str| {
        common::http(
            "POST",
            &format!("{}/bootstrap", cp.bootstrap),
            Some(
                &serde_json::json!({"mesh": "default", "name": "web", "adminPort": 9901,
                                    "dataplaneTokenPath": "/tmp/t", "dataplaneToken": token})
                .to_string(),
            ),
        )
    };
    let refused = ask("");
    assert_eq!(refused.status, 401);
    assert!(
        refused.body["details"]
            .as_str()
            .unwrap_or("")
            .contains("no dataplane token was presented"),
        "{}",
        refused.body
    );
    assert_eq!(ask(&cp.token("default", "other")).status, 401);
    let answer = ask(&cp.token("default", "web"));
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

/// `kuma-dp run` for dataplane `web` against `cp_address` (with `token`,
/// if any, and `flags`), which must stop by itself: its exit status and
/// what it said.
fn run_until_it_stops(
    cp_address: &str,
    token: Option<&str>,
    flags: &[&str],
) -> (std::process::ExitStatus, String) {
    let mut dp = Dataplane::launch_at(cp_address, "default", "web", token, flags);
    let mut status = None;
    eventually(Duration::from_secs(20), || {
        status = dp.process.0.try_wait().unwrap();
        status.is_some()
    });
    let said = dp.log();
    let status =
        status.unwrap_or_else(|| panic!("kuma-dp kept retrying what cannot work:\n{said}"));
    (status, said)
}

#[test]
fn kuma_dp_says_what_is_wrong_and_stops_when_retrying_cannot_help() {
    let cp = with_web();
    let good = cp.token("default", "web");
    let ca = cp.dp_flags();
    let ca: Vec<&str> = ca.iter().map(String::as_str).collect();

    // The HTTP API's address, an easy mistake since kumactl uses it.
    let (status, said) = run_until_it_stops(&cp.api, Some(&good), &ca);
    assert!(!status.success());
    assert!(
        said.contains("kuma-cp's HTTP API (default port 5681)") && said.contains("5682"),
        "{said}"
    );

    // No token, or another dataplane's: refused in one line, no Envoy.
    let (status, said) = run_until_it_stops(&cp.bootstrap, None, &ca);
    assert!(!status.success());
    assert!(
        said.contains("the control plane refused this dataplane")
            && said.contains("no dataplane token was presented"),
        "{said}"
    );
    assert!(!said.contains("Envoy started"), "{said}");
    let (status, said) = run_until_it_stops(
        &cp.bootstrap,
        Some(&cp.token("default", "other-dataplane")),
        &ca,
    );
    assert!(
        !status.success() && said.contains("is for dataplane \"other-dataplane\""),
        "{said}"
    );
}

/// kuma-dp sends its token only to a control plane its CA vouches for,
/// and says in one line what is wrong before any Envoy starts.
#[test]
fn kuma_dp_verifies_the_control_plane_before_sending_its_token() {
    let cp = with_web();
    let token = cp.token("default", "web");
    let refused = |address: &str, flags: &[&str], expected: &[&str]| {
        let (status, said) = run_until_it_stops(address, Some(&token), flags);
        assert!(!status.success(), "{said}");
        for words in expected {
            assert!(said.contains(words), "expected \"{words}\" in:\n{said}");
        }
        assert!(!said.contains("Envoy started"), "{said}");
        assert_eq!(
            said.lines().filter(|l| l.contains("Error")).count(),
            1,
            "one line: {said}"
        );
    };

    // No CA: no token sent, and how to get the CA.
    refused(
        &cp.bootstrap,
        &[],
        &["--ca-cert-file", "kumactl inspect control-plane-ca"],
    );

    // Another control plane's CA.
    let other = KumaCp::start(&[]);
    let wrong_ca = other.ca_file.as_ref().unwrap().to_str().unwrap();
    refused(
        &cp.bootstrap,
        &["--ca-cert-file", wrong_ca],
        &["not signed by that CA", wrong_ca],
    );

    // The right CA, but a name the certificate does not carry.
    let right_ca = cp.ca_file.as_ref().unwrap().to_str().unwrap();
    let port = cp.bootstrap.rsplit(':').next().unwrap();
    refused(
        &format!("https://127.0.0.2:{port}"),
        &["--ca-cert-file", right_ca],
        &[
            "does not name the host",
            "KUMA_GENERAL_TLS_SUBJECT_ALT_NAMES",
        ],
    );

    // An expired certificate, served from the user's files.
    let dir = tempfile::tempdir().unwrap();
    let (ca, expired, key) = common::server_certificate(
        "test CA",
        Some((
            rcgen::date_time_ymd(2020, 1, 1),
            rcgen::date_time_ymd(2021, 1, 1),
        )),
    );
    for (file, pem) in [("ca.crt", ca), ("tls.crt", expired), ("tls.key", key)] {
        std::fs::write(dir.path().join(file), pem).unwrap();
    }
    let path = |file: &str| dir.path().join(file).display().to_string();
    let stale = KumaCp::start(&[
        ("KUMA_GENERAL_TLS_CERT_FILE", &path("tls.crt")),
        ("KUMA_GENERAL_TLS_KEY_FILE", &path("tls.key")),
    ]);
    refused(
        &stale.bootstrap,
        &["--ca-cert-file", &path("ca.crt")],
        &["has expired"],
    );

    // Plain text, on either side, only when both say so.
    let plain = KumaCp::start(&[("KUMA_DP_SERVER_INSECURE_PLAINTEXT", "true")]);
    assert!(
        plain.startup_log.contains("PLAIN TEXT"),
        "the control plane says it loudly"
    );
    refused(
        &plain.bootstrap.replacen("http://", "https://", 1),
        &["--ca-cert-file", right_ca],
        &["answered in plain text", "--insecure-plaintext"],
    );
    refused(
        &cp.bootstrap,
        &["--insecure-plaintext"],
        &["speaks TLS", "drop --insecure-plaintext"],
    );
}

#[test]
fn a_bare_address_works_and_envoy_says_only_what_matters() {
    let cp = with_web();
    let bare = cp.bootstrap.trim_start_matches("https://").to_string();
    let flags = cp.dp_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let dp = Dataplane::launch_at(
        &bare,
        "default",
        "web",
        Some(&cp.token("default", "web")),
        &flags,
    );
    dp.wait_ready();
    // Envoy at its default level, warning: no page of info lines per
    // proxy, and no warning about a deprecated runtime key.
    let said = dp.log();
    let envoy_lines = said.lines().filter(|l| l.starts_with('[')).count();
    assert!(envoy_lines < 5, "{said}");
    assert!(!said.contains("deprecated"), "{said}");
}

/// The bootstrap holds the dataplane token: it is readable by its user
/// only, in a directory only its user can enter, and gone when kuma-dp
/// exits.
#[test]
fn the_bootstrap_with_the_token_is_private_and_removed_at_exit() {
    use std::os::unix::fs::PermissionsExt;
    let cp = with_web();
    let token = cp.token("default", "web");
    let mut dp = Dataplane::launch(&cp, "default", "web", Some(&token), &[]);
    dp.wait_ready();
    let written: Vec<std::path::PathBuf> = std::fs::read_dir(dp.config_dir())
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|f| f.path())
        .filter(|p| p.to_string_lossy().contains("bootstrap-default-web"))
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    let file = &written[0];
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(file), 0o600, "{}", file.display());
    assert_eq!(mode(file.parent().unwrap()), 0o700);
    assert!(
        std::fs::read_to_string(file).unwrap().contains(&token),
        "the file checked is the one with the token"
    );
    dp.process.terminate();
    assert!(!file.exists(), "the bootstrap outlived kuma-dp");
    assert!(!file.parent().unwrap().exists());
}
