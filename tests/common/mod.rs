//! Fixtures for the integration tests: real `kuma-cp` and `kumactl`
//! processes, and throw-away PostgreSQL clusters. Every fixture picks its
//! own ports, so tests run in parallel.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A program of this crate: the one Cargo built for this test, or (for the
/// benchmarks, which Cargo gives no such path) the release build.
pub fn bin(name: &str) -> PathBuf {
    let built = match name {
        "kuma-cp" => option_env!("CARGO_BIN_EXE_kuma-cp"),
        "kumactl" => option_env!("CARGO_BIN_EXE_kumactl"),
        _ => None,
    };
    built.map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/release")
            .join(name)
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `kuma-cp`, killed on drop.
pub struct KumaCp {
    pub child: Child,
    pub api: String,
    pub health: String,
    pub lines: mpsc::Receiver<String>,
}

/// Settings that give a control plane its own ports and parseable logs.
fn base_env() -> Vec<(String, String)> {
    [
        ("KUMA_API_SERVER_PORT", "0"),
        ("KUMA_XDS_SERVER_DIAGNOSTICS_PORT", "0"),
        ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
        ("KUMA_SDS_SERVER_GRPC_PORT", "0"),
        ("KUMA_BOOTSTRAP_SERVER_PORT", "0"),
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
    for (k, v) in env {
        cmd.env(k, v);
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
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.is_none() || health.is_none() {
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
                    _ => {}
                }
            }
            seen.push(line);
        }
        Ok(KumaCp {
            child,
            api: api.unwrap_or_default(),
            health: health.unwrap_or_default(),
            lines: rx,
        })
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
    }
}

/// An HTTP answer: status and body parsed as JSON (Null when empty).
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    pub etag: Option<String>,
}

pub fn http(method: &str, url: &str, body: Option<&str>) -> Answer {
    http_with(method, url, body, &[])
}

pub fn http_with(method: &str, url: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    let client = reqwest::blocking::Client::new();
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

/// Polls `check` every 20 ms until it is true or `within` has passed.
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

// ---------------------------------------------------------------- Postgres

pub fn pg_bin(name: &str) -> PathBuf {
    let dir =
        std::env::var("KUMA_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    PathBuf::from(dir).join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL program as the `postgres` user when we are root
/// (PostgreSQL refuses to run as root).
fn pg_command(name: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(name));
        c
    } else {
        Command::new(pg_bin(name))
    }
}

/// A throw-away PostgreSQL cluster in a temporary directory, stopped on
/// drop. The superuser is `kuma`, trusted on 127.0.0.1.
pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = std::env::temp_dir().join(format!(
            "kuma-test-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("pg dir");
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(
                status.map(|s| s.success()).unwrap_or(false),
                "chown of {}",
                dir.display()
            );
        }
        let data = dir.join("data");
        let out = pg_command("initdb")
            .args(["-A", "trust", "-U", "kuma", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .expect("initdb runs (install postgresql-15)");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = PgCluster {
            port: free_port(),
            dir,
        };
        cluster.run_ctl("start");
        cluster
    }

    fn run_ctl(&self, action: &str) {
        let data = self.dir.join("data");
        let mut cmd = pg_command("pg_ctl");
        cmd.arg("-D").arg(&data).args(["-w", "-t", "60"]);
        if action == "start" {
            cmd.arg("-l")
                .arg(self.dir.join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
                    self.port,
                    self.dir.display()
                ));
        } else {
            cmd.args(["-m", "fast"]);
        }
        let out = cmd.arg(action).output().expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl {action}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn stop(&self) {
        self.run_ctl("stop");
    }

    pub fn restart(&self) {
        self.run_ctl("start");
    }

    /// Creates a fresh database and returns the `KUMA_STORE_*` settings
    /// that point at it.
    pub fn new_database(&self, name: &str) -> PgDatabase {
        let out = Command::new(pg_bin("psql"))
            .args(["-h", "127.0.0.1", "-U", "kuma", "-d", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-c", &format!("CREATE DATABASE \"{name}\"")])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "create database: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PgDatabase {
            port: self.port,
            name: name.to_string(),
        }
    }
}

impl PgCluster {
    fn destroy(&self) {
        let _ = pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.destroy();
    }
}

static SHARED: std::sync::OnceLock<PgCluster> = std::sync::OnceLock::new();

unsafe extern "C" {
    fn atexit(callback: extern "C" fn()) -> i32;
}

extern "C" fn destroy_shared() {
    if let Some(cluster) = SHARED.get() {
        cluster.destroy();
    }
}

/// One cluster for every test of a test binary; each test makes its own
/// database in it. Statics are never dropped, so the cluster is stopped
/// from an `atexit` handler when the test binary exits.
pub fn shared_cluster() -> &'static PgCluster {
    SHARED.get_or_init(|| {
        let cluster = PgCluster::start();
        // SAFETY: registers a plain function with no captured state.
        unsafe {
            atexit(destroy_shared);
        }
        cluster
    })
}

/// A fresh database in the shared cluster, migrated to the current schema.
pub fn migrated_database(test: &str) -> PgDatabase {
    let db = shared_cluster().new_database(&format!("{test}_{}", std::process::id()));
    db.migrate();
    db
}

pub struct PgDatabase {
    pub port: u16,
    pub name: String,
}

impl PgDatabase {
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("KUMA_STORE_TYPE".into(), "postgres".into()),
            ("KUMA_STORE_POSTGRES_HOST".into(), "127.0.0.1".into()),
            ("KUMA_STORE_POSTGRES_PORT".into(), self.port.to_string()),
            ("KUMA_STORE_POSTGRES_USER".into(), "kuma".into()),
            ("KUMA_STORE_POSTGRES_PASSWORD".into(), "kuma".into()),
            ("KUMA_STORE_POSTGRES_DB_NAME".into(), self.name.clone()),
            ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT".into(), "2".into()),
        ]
    }

    pub fn config(&self) -> kuma::config::PostgresConfig {
        kuma::config::PostgresConfig {
            port: self.port,
            db_name: self.name.clone(),
            connection_timeout: 2,
            max_open_connections: 10,
            ..Default::default()
        }
    }

    /// `kuma-cp migrate up` against this database.
    pub fn migrate(&self) {
        let out = Command::new(bin("kuma-cp"))
            .args(["migrate", "up"])
            .envs(self.env())
            .output()
            .expect("kuma-cp migrate runs");
        assert!(
            out.status.success(),
            "migrate up: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a `kuma-cp` on this database, with extra settings.
    pub fn kuma_cp(&self, extra: &[(&str, &str)]) -> KumaCp {
        let env = self.env();
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        KumaCp::start(&all)
    }
}
