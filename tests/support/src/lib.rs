//! Fixtures of the integration tests and the benchmarks: real `kuma-cp`,
//! `kumactl`, `kuma-dp` and Envoy processes, throw-away PostgreSQL
//! clusters, the Kubernetes test cluster ([`cluster`]), the ADS load
//! generator of the benchmarks ([`bench`]) and the cases every store must
//! pass ([`store_cases`]). Every fixture picks its own ports, so tests run
//! in parallel. A library rather than a module each test binary includes:
//! compiled once, and nothing in it is dead code to a binary that uses
//! part of it.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository's root, where `make` installs Envoy and the other
/// tools into `.venv/`.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A program of the workspace, built beside the running test or benchmark
/// (`target/<profile>/deps/..` or `target/<profile>/examples/..`): Cargo
/// builds the binaries of the package before its integration tests.
pub fn bin(name: &str) -> PathBuf {
    let running = std::env::current_exe().expect("the running executable's path");
    running
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/")
        .join(name)
}

/// A port free now, and never handed out before in this process: tests
/// running at once ask for hundreds, and the system may offer a port it
/// just offered another (whose owner has not bound it yet).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// A running `kuma-cp`, killed on drop.
pub struct KumaCp {
    pub child: Child,
    pub api: String,
    pub health: String,
    pub bootstrap: String,
    pub xds: String,
    pub sds: String,
    pub tokens: String,
    /// `https://localhost:{port}` of the HTTPS API, when enabled.
    pub https_api: Option<String>,
    /// The GUI port's redirect server, when it was opened.
    pub gui: Option<String>,
    /// The CA of the control plane's generated certificate (what
    /// `kuma-dp --ca-cert-file` takes); none when it serves the user's
    /// files or plain text.
    pub ca_file: Option<PathBuf>,
    /// Whether the servers proxies talk to speak plain text
    /// (KUMA_DP_SERVER_INSECURE_PLAINTEXT).
    pub plaintext: bool,
    /// The work directory this fixture made for it, removed on drop.
    own_work_dir: Option<PathBuf>,
    /// What it logged until it listened on every port.
    pub startup_log: String,
    pub lines: mpsc::Receiver<String>,
}

/// A work directory of its own for each control plane started here (its
/// CA lives there), unless the test gives one to share across restarts.
fn fresh_work_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("kuma-cp-test.{}.{n}", std::process::id()))
}

/// Settings that give a control plane its own ports and parseable logs.
fn base_env() -> Vec<(String, String)> {
    [
        ("KUMA_API_SERVER_PORT", "0"),
        ("KUMA_XDS_SERVER_DIAGNOSTICS_PORT", "0"),
        ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
        ("KUMA_SDS_SERVER_GRPC_PORT", "0"),
        ("KUMA_BOOTSTRAP_SERVER_PORT", "0"),
        ("KUMA_GUI_SERVER_PORT", "0"),
        ("KUMA_DATAPLANE_TOKEN_SERVER_LOCAL_PORT", "0"),
        ("KUMA_LOGGING_FORMAT", "json"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn kuma_cp_command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin("kuma-cp"));
    cmd.arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in base_env() {
        cmd.env(k, v);
    }
    cmd.env("KUMA_GENERAL_WORK_DIR", fresh_work_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// `kuma_cp_command(env)` run by `wrapper` (prlimit, heaptrack), with
/// `args` before kuma-cp's own command line.
pub fn kuma_cp_under(wrapper: &str, args: &[String], env: &[(&str, &str)]) -> Command {
    let kuma_cp = kuma_cp_command(env);
    let mut cmd = Command::new(wrapper);
    cmd.args(args)
        .arg(kuma_cp.get_program())
        .args(kuma_cp.get_args())
        .env_clear();
    for (key, value) in kuma_cp.get_envs() {
        if let Some(value) = value {
            cmd.env(key, value);
        }
    }
    cmd
}

impl KumaCp {
    pub fn start(env: &[(&str, &str)]) -> KumaCp {
        Self::try_start(env).unwrap_or_else(|e| panic!("kuma-cp did not start: {e}"))
    }

    /// Starts `kuma-cp` and waits until its HTTP API and health servers
    /// have logged the addresses they listen on.
    pub fn try_start(env: &[(&str, &str)]) -> Result<KumaCp, String> {
        Self::try_start_command(kuma_cp_command(env))
    }

    pub fn try_start_command(mut cmd: Command) -> Result<KumaCp, String> {
        let setting = |name: &str| {
            cmd.get_envs()
                .filter(|(k, _)| *k == name)
                .filter_map(|(_, v)| v)
                .last()
                .map(|v| v.to_string_lossy().to_string())
        };
        let wants_https = setting("KUMA_API_SERVER_HTTPS_ENABLED").as_deref() == Some("true");
        let plaintext = setting("KUMA_DP_SERVER_INSECURE_PLAINTEXT").as_deref() == Some("true");
        let work_dir = setting("KUMA_GENERAL_WORK_DIR").map(PathBuf::from);
        // The CA of the generated certificate, unless the user's files or
        // plain text are served.
        let ca_file = work_dir
            .as_ref()
            .filter(|_| !plaintext && setting("KUMA_GENERAL_TLS_CERT_FILE").is_none())
            .map(|dir| dir.join("kuma-cp-ca.crt"));
        let own_work_dir = work_dir.filter(|dir| {
            dir.starts_with(std::env::temp_dir()) && dir.to_string_lossy().contains("kuma-cp-test.")
        });
        let proxies_scheme = if plaintext { "http" } else { "https" };
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        let mut api = None;
        let mut health = None;
        let mut bootstrap = None;
        let mut xds = None;
        let mut tokens = None;
        let mut sds = None;
        let mut https_api = None;
        let mut gui = None;
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none()
            || health.is_none()
            || bootstrap.is_none()
            || xds.is_none()
            || tokens.is_none()
            || (wants_https && https_api.is_none())
            // Without HTTPS the GUI port always gets its redirect server.
            || (!wants_https && gui.is_none())
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("no listening lines; output:\n{}", seen.join("\n")));
                }
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && v["message"] == "listening"
            {
                let addr: SocketAddr = v["address"]
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e| format!("{e}: {line}"))?;
                let url = format!("http://127.0.0.1:{}", addr.port());
                match v["server"].as_str() {
                    Some("HTTP API") => api = Some(url),
                    Some("health") => health = Some(url),
                    Some("bootstrap") => {
                        bootstrap = Some(format!("{proxies_scheme}://127.0.0.1:{}", addr.port()))
                    }
                    Some("xDS") => {
                        xds = Some(format!("{proxies_scheme}://127.0.0.1:{}", addr.port()))
                    }
                    Some("dataplane token") => tokens = Some(url),
                    Some("SDS") => {
                        sds = Some(format!("{proxies_scheme}://127.0.0.1:{}", addr.port()))
                    }
                    Some("HTTP API (HTTPS)") => {
                        https_api = Some(format!("https://localhost:{}", addr.port()))
                    }
                    Some("GUI redirect") => gui = Some(url),
                    _ => {}
                }
            }
            seen.push(line);
        }
        Ok(KumaCp {
            child,
            api: api.unwrap_or_default(),
            health: health.unwrap_or_default(),
            bootstrap: bootstrap.unwrap_or_default(),
            xds: xds.unwrap_or_default(),
            tokens: tokens.unwrap_or_default(),
            sds: sds.unwrap_or_default(),
            https_api,
            gui,
            ca_file,
            plaintext,
            own_work_dir,
            startup_log: seen.join("\n"),
            lines: rx,
        })
    }

    /// A gRPC endpoint for `url` (its xDS or SDS port) as this control
    /// plane serves it: TLS verified with its CA, or plain text.
    pub fn grpc_endpoint(&self, url: &str) -> tonic::transport::Endpoint {
        let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).expect("a URL");
        match &self.ca_file {
            Some(ca) if !self.plaintext => {
                let pem = std::fs::read_to_string(ca).expect("the control plane's CA");
                endpoint
                    .tls_config(
                        tonic::transport::ClientTlsConfig::new()
                            .ca_certificate(tonic::transport::Certificate::from_pem(pem))
                            .domain_name("127.0.0.1"),
                    )
                    .expect("TLS settings")
            }
            _ => endpoint,
        }
    }

    /// The flags `kuma-dp run` needs to reach this control plane as it
    /// serves: its CA, or plain text.
    pub fn dp_flags(&self) -> Vec<String> {
        match (&self.ca_file, self.plaintext) {
            (_, true) => vec!["--insecure-plaintext".into()],
            (Some(ca), false) => vec!["--ca-cert-file".into(), ca.display().to_string()],
            (None, false) => Vec::new(),
        }
    }

    /// A dataplane token from the local token server.
    pub fn token(&self, mesh: &str, name: &str) -> String {
        let body = serde_json::json!({"mesh": mesh, "name": name}).to_string();
        let answer = http("POST", &format!("{}/tokens", self.tokens), Some(&body));
        assert_eq!(
            answer.status, 200,
            "token for {mesh}.{name}: {}",
            answer.body
        );
        answer.body.as_str().expect("a token").to_string()
    }

    /// PUTs `body` at `path` of the HTTP API; it must be stored (200/201).
    pub fn put(&self, path: &str, body: &str) -> Answer {
        let answer = http("PUT", &format!("{}{path}", self.api), Some(body));
        assert!(
            answer.status == 200 || answer.status == 201,
            "PUT {path}: {} {}",
            answer.status,
            answer.body
        );
        answer
    }

    /// DELETEs `path` of the HTTP API; it must have been there.
    pub fn delete(&self, path: &str) {
        let answer = http("DELETE", &format!("{}{path}", self.api), None);
        assert_eq!(answer.status, 200, "DELETE {path}: {}", answer.body);
    }

    /// Switches mTLS with the builtin CA on in `mesh` (created if needed).
    pub fn enable_mtls(&self, mesh: &str) {
        self.put(&format!("/meshes/{mesh}"), MTLS);
    }

    /// What the process logged since the last call, every line ending in a
    /// newline, so that what successive calls return can be concatenated
    /// without gluing the last line of one onto the first of the next.
    pub fn log(&self) -> String {
        self.lines.try_iter().map(|line| line + "\n").collect()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kuma-cp did not stop within 15s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KumaCp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.own_work_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A mesh with mTLS on, from the builtin CA.
pub const MTLS: &str = r#"{"mtls": {"enabled": true, "ca": {"builtin": {}}}}"#;

/// An HTTP answer: status and body parsed as JSON (Null when empty).
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub etag: Option<String>,
}

pub fn http(method: &str, url: &str, body: Option<&str>) -> Answer {
    http_with(method, url, body, &[])
}

/// Over HTTPS any certificate is accepted: checks of what a control
/// plane's certificate proves go through kuma-dp and kumactl, which verify.
pub fn http_with(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let client = reqwest::blocking::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("an HTTP client");
    let mut req = client.request(method.parse().expect("method"), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp.text().unwrap_or_default();
    let body = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
    };
    Answer { status, body, etag }
}

/// One sample of `GET {api}/metrics`, e.g. `xds_streams{kind="delta"}`;
/// zero when absent.
pub fn metric(api: &str, sample: &str) -> f64 {
    let text = http("GET", &format!("{api}/metrics"), None).body;
    text.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// Open ADS streams of a control plane, of both kinds.
pub fn open_streams(api: &str) -> f64 {
    metric(api, "xds_streams{kind=\"delta\"}") + metric(api, "xds_streams{kind=\"sotw\"}")
}

/// Output of one `kumactl` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn kumactl(config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
    use std::io::Write;
    let mut child = Command::new(bin("kumactl"))
        .arg("--config-file")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kumactl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("kumactl finishes");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A `kumactl` configuration, in a directory of its own, whose current
/// control plane (`test`) is `cp`.
pub fn kumactl_config(cp: &KumaCp) -> (tempfile::TempDir, PathBuf) {
    kumactl_config_for(&cp.api, &[])
}

/// [`kumactl_config`] for the API at `address`, added with the `extra`
/// flags of `kumactl config control-planes add` (credentials).
pub fn kumactl_config_for(address: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kumactl");
    let mut args = vec![
        "config",
        "control-planes",
        "add",
        "--name",
        "test",
        "--address",
        address,
    ];
    args.extend_from_slice(extra);
    let add = kumactl(&config, &args, None);
    assert_eq!(add.code, 0, "{}", add.stderr);
    (dir, config)
}

/// Connections to `port` fail, for a while.
pub fn stays_blocked(port: u16) -> bool {
    (0..5).all(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !echo_works(port)
    })
}

/// Runs `kubernetes-validate` (installed by `make deps`) for Kubernetes
/// 1.30 on `files`; every one of their `objects` must pass.
pub fn kubernetes_validate(files: &[PathBuf], objects: usize) {
    let validator = crate::repository().join(".venv/bin/kubernetes-validate");
    assert!(
        validator.is_file(),
        "{} is missing: run `make deps`",
        validator.display()
    );
    let out = Command::new(&validator)
        .args(["--kubernetes-version", "1.30.0", "--strict"])
        .args(files)
        .output()
        .expect("kubernetes-validate runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(report.matches("passed").count(), objects, "{report}");
}

/// Runs `program ARGS`, which must succeed (set-up steps: `ip`,
/// `iptables`); its standard output.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `check` every 20 ms until it is true or `within` has passed.
/// A process's peak resident memory, as /proc reports it (`33204 kB`).
pub fn peak_rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}

pub fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub mod bench;
pub mod cluster;
mod dataplane;
mod kube_clients;
mod postgres;
pub mod store_cases;
pub use dataplane::*;
pub use kube_clients::*;
pub use postgres::*;

/// A control-plane certificate for the user's files: a fresh CA named
/// `ca_name` and a certificate it signs for 127.0.0.1 and localhost, valid
/// from `not_before` to `not_after` (rcgen's far-off defaults when None).
/// Answers the PEMs of the CA, the certificate and its key.
pub fn server_certificate(
    ca_name: &str,
    validity: Option<(time::OffsetDateTime, time::OffsetDateTime)>,
) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::default();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // A name of its own: a certificate whose issuer is its own subject is
    // self-signed to Envoy.
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    if let Some((not_before, not_after)) = validity {
        params.not_before = not_before;
        params.not_after = not_after;
    }
    let cert = params.signed_by(&key, &issuer).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}
