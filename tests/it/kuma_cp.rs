//! `kuma-cp` as a process: start-up failures are one clear line and a
//! non-zero exit; SIGTERM stops it cleanly; `version` answers.

use crate::common;

use common::{KumaCp, free_port, kuma_cp_command};

fn failed_start(env: &[(&str, &str)]) -> String {
    let out = kuma_cp_command(env).output().expect("kuma-cp runs");
    assert!(!out.status.success(), "kuma-cp should not start");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    stderr
}

#[test]
fn a_port_in_use_ends_the_start_with_one_line() {
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let line = failed_start(&[("KUMA_API_SERVER_PORT", &port)]);
    assert!(
        line.contains(&format!("cannot listen on 0.0.0.0:{port}")),
        "{line}"
    );
    assert!(line.contains("KUMA_API_SERVER_PORT"), "{line}");
}

#[test]
fn a_bad_setting_ends_the_start_with_one_line() {
    let line = failed_start(&[("KUMA_API_SERVER_PORT", "not-a-port")]);
    assert!(
        line.starts_with("Error: KUMA_API_SERVER_PORT=\"not-a-port\""),
        "{line}"
    );
    let line = failed_start(&[("KUMA_STORE_TYPE", "mysql")]);
    assert!(
        line.contains("KUMA_STORE_TYPE") && line.contains("`memory`, `postgres`, `kubernetes`"),
        "{line}"
    );
    let port = free_port().to_string();
    let line = failed_start(&[
        ("KUMA_STORE_TYPE", "postgres"),
        ("KUMA_STORE_POSTGRES_PORT", &port),
        ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "1"),
    ]);
    assert!(
        line.contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{line}"
    );
}

#[test]
fn config_file_env_and_flag_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kuma-cp.yaml");
    std::fs::write(
        &file,
        "defaults:\n  skipMeshCreation: true\napiServer:\n  maxPageSize: 5\n  defaultPageSize: 2\n",
    )
    .unwrap();
    let mut cmd = kuma_cp_command(&[("KUMA_API_SERVER_DEFAULT_PAGE_SIZE", "3")]);
    cmd.arg("-c").arg(&file);
    let cp = KumaCp::try_start_command(cmd).unwrap();
    let meshes = common::http("GET", &format!("{}/meshes", cp.api), None);
    assert_eq!(
        meshes.body["items"].as_array().unwrap().len(),
        0,
        "the file switched off the default mesh"
    );
    let too_big = common::http("GET", &format!("{}/meshes?size=6", cp.api), None);
    assert_eq!(too_big.status, 400, "the file's maxPageSize applies");
}

#[test]
fn sigterm_stops_cleanly() {
    let mut cp = KumaCp::start(&[]);
    let status = cp.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn version_answers() {
    let out = std::process::Command::new(common::bin("kuma-cp"))
        .args(["version", "--detailed"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("kuma-cp"),
        "{text}"
    );
    let help = std::process::Command::new(common::bin("kuma-cp"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("KUMA_STORE_POSTGRES_DB_NAME"),
        "run --help lists the settings"
    );
}

/// A fresh control plane's `/metrics`, read by a real Prometheus parser
/// (prometheus-client's, from PyPI): the content type names the format
/// the body is in, and every family is there, typed, before anything
/// happened.
#[test]
fn metrics_parse_as_what_their_content_type_says_with_every_family_from_the_start() {
    let cp = KumaCp::start(&[]);
    let answer = reqwest::blocking::get(format!("{}/metrics", cp.api)).unwrap();
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    let text = answer.text().unwrap();
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python3");
    let script = "import json, sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        print(json.dumps({f.name: [f.type, [[s.name, s.labels, s.value] for s in f.samples]]\n\
                          for f in text_string_to_metric_families(sys.stdin.read())}))";
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python runs (make deps installs prometheus-client)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let families: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, kind) in [
        ("xds_streams", "gauge"),
        ("xds_responses_sent", "counter"),
        ("xds_nacks", "counter"),
        ("xds_generation_seconds", "histogram"),
        ("xds_push_to_ack_seconds", "histogram"),
    ] {
        assert_eq!(families[name][0], kind, "{name}: {families}");
    }
    // A NACK counter per xDS type, at zero, before any NACK.
    let nacks = families["xds_nacks"][1].as_array().unwrap();
    for t in ["cds", "eds", "lds", "sds"] {
        assert!(
            nacks
                .iter()
                .any(|s| s[0] == "xds_nacks_total" && s[1]["type"] == t && s[2] == 0.0),
            "{nacks:?}"
        );
    }
}
