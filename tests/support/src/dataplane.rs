//! Real data planes for the tests: `kuma-dp` processes running the Envoy
//! that `make test` installs into `.venv/`, and `kuma-tcp-echo` services.

use super::{KumaCp, bin, eventually, free_port};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Envoy: `KUMA_TEST_ENVOY`, or the one `make test` put in `.venv/`.
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var("KUMA_TEST_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repository().join(".venv/bin/envoy"));
    assert!(
        path.is_file(),
        "no Envoy at {} (run `make test`, which installs it)",
        path.display()
    );
    path
}

/// The real Envoy binary behind the `.venv/bin/envoy` launcher, for
/// Envoys run as another user (the launcher needs root's Python, which
/// UID 5678 cannot read).
pub fn envoy_executable() -> PathBuf {
    let launcher = envoy_binary();
    let lib = launcher.parent().unwrap().parent().unwrap().join("lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| python.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
        .unwrap_or(launcher)
}

/// A child process stopped with SIGTERM (then SIGKILL) on drop.
pub struct Process(pub Child);

impl Process {
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        for _ in 0..500 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        self.0.wait().ok()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}

/// `kuma-tcp-echo run --port N`.
pub fn echo_server(port: u16) -> Process {
    let child = Command::new(bin("kuma-tcp-echo"))
        .args(["run", "--port", &port.to_string(), "--address", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kuma-tcp-echo runs");
    assert!(
        eventually(Duration::from_secs(10), || TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "echo server on {port} did not start"
    );
    Process(child)
}

/// A running `kuma-dp` (and its Envoy) with its admin API.
pub struct Dataplane {
    pub process: Process,
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Dataplane {
    /// Starts `kuma-dp run` for dataplane `name` of `mesh` against the
    /// bootstrap server of `cp`.
    /// Starts `kuma-dp run` for dataplane `name` of `mesh` with a token
    /// from `cp`'s token server, and waits until its Envoy is live.
    pub fn start(cp: &KumaCp, mesh: &str, name: &str) -> Dataplane {
        let token = cp.token(mesh, name);
        let dp = Self::launch(cp, mesh, name, Some(&token), &[]);
        dp.wait_ready();
        dp
    }

    /// Starts `kuma-dp run` against `cp` as it serves (its CA, or plain
    /// text) without waiting; `token` (valid or not) is written to a file
    /// passed with `--dataplane-token-file`.
    pub fn launch(
        cp: &KumaCp,
        mesh: &str,
        name: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> Dataplane {
        let mut flags = cp.dp_flags();
        flags.extend(extra.iter().map(|f| f.to_string()));
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        Self::launch_at(&cp.bootstrap, mesh, name, token, &flags)
    }

    /// Starts `kuma-dp run --cp-address bootstrap` with exactly `extra`
    /// besides the dataplane's identity.
    pub fn launch_at(
        bootstrap: &str,
        mesh: &str,
        name: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> Dataplane {
        Self::spawn(|cmd, dir, admin_port| {
            cmd.args(["--cp-address", bootstrap, "--mesh", mesh, "--name", name])
                .args(["--admin-port", &admin_port.to_string()])
                .arg("--binary-path")
                .arg(envoy_binary())
                .arg("--config-dir")
                .arg(dir)
                .args(extra);
            if let Some(token) = token {
                let file = dir.join("token");
                std::fs::write(&file, token).expect("token file");
                cmd.arg("--dataplane-token-file").arg(file);
            }
        })
    }

    /// Starts `kuma-dp run` the way a pod's injected sidecar does: no
    /// flags, everything from the environment (`env`, plus the admin port,
    /// the Envoy binary and a config directory of its own).
    pub fn launch_sidecar(env: &[(&str, &str)]) -> Dataplane {
        Self::spawn(|cmd, dir, admin_port| {
            cmd.env_clear()
                .env("KUMA_DATAPLANE_ADMIN_PORT", admin_port.to_string())
                .env("KUMA_DATAPLANE_RUNTIME_BINARY_PATH", envoy_binary())
                .env("KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", dir)
                .envs(env.iter().copied());
        })
    }

    /// `kuma-dp run` as `configure` sets it up, given a directory and an
    /// admin port of its own; its log goes to `kuma-dp.log` there.
    fn spawn(configure: impl FnOnce(&mut Command, &std::path::Path, u16)) -> Dataplane {
        let dir = tempfile::tempdir().expect("tempdir");
        let admin_port = free_port();
        let mut cmd = Command::new(bin("kuma-dp"));
        cmd.arg("run");
        configure(&mut cmd, dir.path(), admin_port);
        let child = cmd
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("kuma-dp.log")).expect("log file"))
            .spawn()
            .expect("kuma-dp runs");
        Dataplane {
            process: Process(child),
            admin: format!("http://127.0.0.1:{admin_port}"),
            _dir: dir,
        }
    }

    /// Waits until Envoy reports LIVE.
    pub fn wait_ready(&self) {
        assert!(
            eventually(Duration::from_secs(30), || self
                .admin_get("/ready")
                .is_some_and(|s| s.contains("LIVE"))),
            "Envoy did not become ready; kuma-dp log:\n{}",
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("kuma-dp.log")).unwrap_or_default()
    }

    /// The directory `kuma-dp` was given with `--config-dir`.
    pub fn config_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Waits (30 s at most) for `kuma-dp` to exit, as a refused one does,
    /// and answers its exit status; panics with its log if it keeps running.
    pub fn exit_status(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        let exited = eventually(Duration::from_secs(30), || {
            status = self.process.0.try_wait().ok().flatten();
            status.is_some()
        });
        assert!(exited, "kuma-dp kept running; its log:\n{}", self.log());
        status.expect("an exit status")
    }

    /// GET on Envoy's admin API; None when it does not answer.
    pub fn admin_get(&self, path: &str) -> Option<String> {
        reqwest::blocking::Client::new()
            .get(format!("{}{path}", self.admin))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?
            .text()
            .ok()
    }

    /// Endpoints (`ip:port`) Envoy has for a cluster, from `/clusters`.
    pub fn endpoints(&self, cluster: &str) -> Vec<String> {
        let text = self.admin_get("/clusters").unwrap_or_default();
        let mut out: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{cluster}::")))
            .filter_map(|rest| rest.strip_suffix("::health_flags::healthy"))
            .map(str::to_string)
            .collect();
        out.sort();
        out
    }

    /// A counter of an endpoint from `/clusters`, e.g. `cx_total`.
    pub fn endpoint_stat(&self, cluster: &str, endpoint: &str, stat: &str) -> u64 {
        let prefix = format!("{cluster}::{endpoint}::{stat}::");
        self.admin_get("/clusters")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).and_then(|v| v.parse().ok()))
            .unwrap_or(0)
    }
}

/// Sends `payload` to 127.0.0.1:`port` and reads back as many bytes (or
/// fewer, if the peer closes or 5 s pass). The write side stays open:
/// half-closed TCP does not survive TLS between proxies, and real clients
/// do not rely on it.
pub fn echo_roundtrip(port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    echo_roundtrip_at(("127.0.0.1", port), payload)
}

/// [`echo_roundtrip`] to any address.
pub fn echo_roundtrip_at(
    address: impl std::net::ToSocketAddrs,
    payload: &[u8],
) -> std::io::Result<Vec<u8>> {
    let address = address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut writer = stream.try_clone()?;
    let data = payload.to_vec();
    let sender = std::thread::spawn(move || writer.write_all(&data));
    let mut out = vec![0u8; payload.len()];
    let mut read = 0;
    while read < out.len() {
        match stream.read(&mut out[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    out.truncate(read);
    let _ = sender.join();
    Ok(out)
}

/// True once bytes sent to `port` come back unchanged.
pub fn echo_works(port: u16) -> bool {
    echo_works_at(("127.0.0.1", port))
}

/// [`echo_works`] at any address.
pub fn echo_works_at(address: impl std::net::ToSocketAddrs) -> bool {
    echo_roundtrip_at(address, b"ping")
        .map(|b| b == b"ping")
        .unwrap_or(false)
}

/// An HTTP application on 127.0.0.1:`port` (python's http.server) serving
/// `/hello.txt` with `body`; it stops when the process handle is dropped,
/// the directory with it.
pub fn http_app(port: u16, body: &str) -> (Process, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("hello.txt"), body).expect("hello.txt");
    let server = Process(
        std::process::Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 runs"),
    );
    (server, dir)
}

/// PUTs a dataplane with one inbound (and optional outbounds) into `mesh`.
/// An echo server and, registered in `mesh` of `cp`, its dataplane
/// `echo-1` and a dataplane `client-1` with an outbound to it; no kuma-dp
/// started. The echo server runs while this lives.
pub struct EchoAndClient {
    /// The client's outbound port: bytes sent there reach the echo.
    pub outbound: u16,
    _echo: Process,
}

pub fn put_echo_and_client(cp: &KumaCp, mesh: &str) -> EchoAndClient {
    let (echo_port, echo_inbound, outbound) = (free_port(), free_port(), free_port());
    let echo = echo_server(echo_port);
    put_dataplane(cp, mesh, "echo-1", (echo_inbound, echo_port), "echo", &[]);
    put_dataplane(
        cp,
        mesh,
        "client-1",
        (free_port(), free_port()),
        "client",
        &[(outbound, "echo")],
    );
    EchoAndClient {
        outbound,
        _echo: echo,
    }
}

/// [`put_dataplane`] with an inbound on ports of its own.
pub fn put_proxy(cp: &KumaCp, mesh: &str, name: &str, service: &str, outbound: &[(u16, &str)]) {
    put_dataplane(
        cp,
        mesh,
        name,
        (free_port(), free_port()),
        service,
        outbound,
    );
}

pub fn put_dataplane(
    cp: &KumaCp,
    mesh: &str,
    name: &str,
    inbound: (u16, u16),
    service: &str,
    outbound: &[(u16, &str)],
) {
    let tags = serde_json::json!({ "service": service });
    put_tagged_dataplane(cp, mesh, name, inbound, tags, outbound);
}

/// [`put_dataplane`] with the inbound's tags given whole.
pub fn put_tagged_dataplane(
    cp: &KumaCp,
    mesh: &str,
    name: &str,
    inbound: (u16, u16),
    tags: serde_json::Value,
    outbound: &[(u16, &str)],
) {
    let outbound: Vec<_> = outbound
        .iter()
        .map(|(port, svc)| serde_json::json!({"interface": format!(":{port}"), "service": svc}))
        .collect();
    let body = serde_json::json!({
        "type": "Dataplane", "mesh": mesh, "name": name,
        "networking": {
            "inbound": [{"interface": format!("127.0.0.1:{}:{}", inbound.0, inbound.1), "tags": tags}],
            "outbound": outbound,
        }
    });
    cp.put(
        &format!("/meshes/{mesh}/dataplanes/{name}"),
        &body.to_string(),
    );
}

/// PUTs a TrafficPermission `name`: sources matching `source` may reach
/// `destination` (a service, or `*`).
pub fn allow(cp: &KumaCp, mesh: &str, name: &str, source: serde_json::Value, destination: &str) {
    let body = serde_json::json!({
        "type": "TrafficPermission", "mesh": mesh, "name": name,
        "rules": [{"sources": [{"match": source}], "destinations": [{"match": {"service": destination}}]}]
    });
    cp.put(
        &format!("/meshes/{mesh}/traffic-permissions/{name}"),
        &body.to_string(),
    );
}
