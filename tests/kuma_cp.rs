//! `kuma-cp` as a process: start-up failures are one clear line and a
//! non-zero exit; SIGTERM stops it cleanly; `version` answers.

mod common;

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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kuma-cp"))
        .args(["version", "--detailed"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("kuma-cp"),
        "{text}"
    );
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_kuma-cp"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("KUMA_STORE_POSTGRES_DB_NAME"),
        "run --help lists the settings"
    );
}
