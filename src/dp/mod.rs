//! `kuma-dp run`: fetches the Envoy bootstrap from the control plane
//! (retrying with backoff while it is not up yet), writes it, starts Envoy,
//! forwards SIGTERM/SIGINT to it, and exits with its exit code.

pub mod tcp_log;

use crate::runtime::Backoff;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DpConfig {
    /// Bootstrap server, e.g. `http://127.0.0.1:5682`.
    pub cp_address: String,
    pub mesh: String,
    pub name: String,
    pub admin_port: Option<u16>,
    pub dataplane_token_file: Option<PathBuf>,
    /// Envoy: a path, or a name looked up on `PATH`.
    pub binary_path: String,
    pub config_dir: PathBuf,
    /// Envoy's `--drain-time-s`.
    pub drain_time_seconds: u64,
    /// Envoy's `--log-level`.
    pub envoy_log_level: EnvoyLogLevel,
}

/// Envoy's log levels (its `--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum EnvoyLogLevel {
    Trace,
    Debug,
    Info,
    #[value(alias = "warn")]
    Warning,
    Error,
    Critical,
    Off,
}

impl EnvoyLogLevel {
    fn as_arg(self) -> &'static str {
        match self {
            EnvoyLogLevel::Trace => "trace",
            EnvoyLogLevel::Debug => "debug",
            EnvoyLogLevel::Info => "info",
            EnvoyLogLevel::Warning => "warning",
            EnvoyLogLevel::Error => "error",
            EnvoyLogLevel::Critical => "critical",
            EnvoyLogLevel::Off => "off",
        }
    }
}

/// The bootstrap server's URL from `--cp-address`: a bare `host:port` is
/// taken as plain HTTP, the bootstrap server's protocol.
pub fn bootstrap_url(cp_address: &str) -> String {
    if cp_address.contains("://") {
        cp_address.to_string()
    } else {
        format!("http://{cp_address}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DpError {
    #[error(
        "Envoy not found: looked for \"{binary}\" in {searched}; install Envoy or pass --binary-path"
    )]
    EnvoyMissing { binary: String, searched: String },
    #[error("cannot write the bootstrap to {path}: {message}")]
    Write { path: String, message: String },
    #[error("cannot start Envoy {binary}: {source}")]
    Start {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the dataplane token file {path}: {source}")]
    TokenFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the bootstrap has no ADS gRPC service to put the dataplane token on")]
    NoAdsService,
    #[error("the control plane refused this dataplane: {0}")]
    Refused(String),
    #[error(
        "--cp-address {address} is {what}: it answered 404 to POST /bootstrap; point it at the bootstrap server (default port 5682), e.g. --cp-address http://HOST:5682"
    )]
    NotBootstrapServer { address: String, what: String },
    #[error(
        "{address} does not speak HTTPS (the bootstrap server answered in plain HTTP): use --cp-address {plain}"
    )]
    NotHttps { address: String, plain: String },
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("lost track of Envoy: {0}")]
    Wait(#[source] std::io::Error),
}

fn token_file_err(path: &Path) -> impl Fn(std::io::Error) -> DpError + '_ {
    move |source| DpError::TokenFile {
        path: path.display().to_string(),
        source,
    }
}

/// Finds the Envoy binary: a path as given, or the first match on `PATH`.
pub fn find_envoy(binary: &str) -> Result<PathBuf, DpError> {
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(DpError::EnvoyMissing {
                binary: binary.into(),
                searched: "that path".into(),
            })
        };
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .ok_or_else(|| DpError::EnvoyMissing {
            binary: binary.into(),
            searched: format!("PATH ({path})"),
        })
}

/// What one request for the bootstrap came to.
enum Answer {
    Bootstrap(serde_json::Value),
    /// Worth asking again (the control plane is not up, the Dataplane is
    /// not registered yet); why.
    Retry(String),
    /// Asking again cannot help.
    Stop(DpError),
}

/// Asks the control plane for the bootstrap until it answers, backing off
/// from 200 ms to 5 s and logging why each attempt failed; stops at once
/// on an answer that no retry can change (a refused token, an address that
/// is not a bootstrap server, HTTPS against plain HTTP).
pub async fn fetch_bootstrap(config: &DpConfig) -> Result<serde_json::Value, DpError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let base = config.cp_address.trim_end_matches('/');
    let url = format!("{base}/bootstrap");
    let token = match &config.dataplane_token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .map_err(token_file_err(file))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let body = json!({
        "mesh": config.mesh,
        "name": config.name,
        "adminPort": config.admin_port,
        "dataplaneTokenPath": config.dataplane_token_file.as_ref().map(|p| p.display().to_string()),
        "dataplaneToken": token,
        "version": {"kumaDp": {"version": crate::version::VERSION}},
    });
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match ask(&client, base, &url, &body).await {
            Answer::Bootstrap(bootstrap) => return Ok(bootstrap),
            Answer::Stop(e) => return Err(e),
            Answer::Retry(why) => {
                let retry_in = backoff.next_delay();
                tracing::warn!(url, ?retry_in, "cannot get the bootstrap: {why}");
                tokio::time::sleep(retry_in).await;
            }
        }
    }
}

async fn ask(client: &reqwest::Client, base: &str, url: &str, body: &serde_json::Value) -> Answer {
    let resp = match client.post(url).json(body).send().await {
        Ok(resp) => resp,
        Err(e) => {
            let cause = crate::cli::root_cause(&e).to_string();
            // rustls' words for a plain-HTTP answer to a TLS handshake.
            if url.starts_with("https://")
                && (cause.contains("InvalidContentType") || cause.contains("corrupt message"))
            {
                // The address to pass, not the request's URL: kuma-dp
                // adds /bootstrap itself.
                return Answer::Stop(DpError::NotHttps {
                    address: base.to_string(),
                    plain: base.replacen("https://", "http://", 1),
                });
            }
            return Answer::Retry(format!("control plane not reachable: {cause}"));
        }
    };
    let status = resp.status();
    if status.is_success() {
        return match resp.json().await {
            Ok(bootstrap) => Answer::Bootstrap(bootstrap),
            Err(e) => Answer::Retry(format!("unreadable answer: {e}")),
        };
    }
    let text = resp.text().await.unwrap_or_default();
    let why = crate::api::describe_error_body(status, &text);
    let title = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["title"].as_str().map(str::to_string));
    match status.as_u16() {
        401 | 403 => Answer::Stop(DpError::Refused(why)),
        // The bootstrap server's own 404 (the Dataplane is not registered
        // yet) heals; any other means the address is not a bootstrap server.
        404 if title.as_deref() != Some("Dataplane not found") => {
            Answer::Stop(not_a_bootstrap_server(client, base).await)
        }
        _ => Answer::Retry(why),
    }
}

/// Says what `base` is instead, when it can tell.
async fn not_a_bootstrap_server(client: &reqwest::Client, base: &str) -> DpError {
    let index: Option<serde_json::Value> = match client.get(base).send().await {
        Ok(resp) => resp.json().await.ok(),
        Err(_) => None,
    };
    let what = if index.is_some_and(|i| i["tagline"] == "Kuma") {
        "kuma-cp's HTTP API (default port 5681), the one kumactl talks to".to_string()
    } else {
        "not kuma-cp's bootstrap server".to_string()
    };
    DpError::NotBootstrapServer {
        address: base.to_string(),
        what,
    }
}

/// Puts the dataplane token into the metadata of Envoy's ADS stream (the
/// bootstrap server checked it already; it does not put it in the
/// bootstrap it answers).
pub fn add_token(bootstrap: &mut serde_json::Value, token_file: &Path) -> Result<(), DpError> {
    let token = std::fs::read_to_string(token_file).map_err(token_file_err(token_file))?;
    let services = bootstrap
        .pointer_mut("/dynamic_resources/ads_config/grpc_services")
        .and_then(|s| s.as_array_mut())
        .ok_or(DpError::NoAdsService)?;
    for service in services {
        service["initial_metadata"] = json!([{"key": "authorization", "value": token.trim()}]);
    }
    Ok(())
}

/// Envoy's bootstrap on disk. It holds the dataplane token, so it is
/// written where only this user can read it: a directory of this run's own
/// (mode 0700) under the config directory, the file itself 0600. Both are
/// removed when this is dropped, as `kuma-dp` exits.
pub struct BootstrapFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl Drop for BootstrapFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn write_bootstrap(
    config: &DpConfig,
    bootstrap: &serde_json::Value,
) -> Result<BootstrapFile, DpError> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = config.config_dir.join(format!(
        "{}.{}.{}",
        config.mesh,
        config.name,
        std::process::id()
    ));
    let path = dir.join(format!("bootstrap-{}-{}.yaml", config.mesh, config.name));
    let write_err = |e: std::io::Error| DpError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&config.config_dir).map_err(write_err)?;
    // A directory left by an earlier run with this process id goes first:
    // the new one must be created by us, with our mode.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(write_err)?;
    let file = BootstrapFile {
        dir: dir.clone(),
        path: path.clone(),
    };
    // JSON is YAML; Envoy picks the format from the extension.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(bootstrap.to_string().as_bytes()))
        .map_err(write_err)?;
    Ok(file)
}

/// Runs Envoy until it exits, forwarding SIGTERM and SIGINT.
pub async fn run_envoy(
    envoy: &Path,
    bootstrap: &Path,
    config: &DpConfig,
) -> Result<ExitStatus, DpError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DpError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DpError::Signals)?;
    let mut command = tokio::process::Command::new(envoy);
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
    // If kuma-dp dies without forwarding a signal, Envoy is told to stop
    // instead of running on unsupervised.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = command
        .arg("-c")
        .arg(bootstrap)
        // Many Envoys share a machine; hot restart would make them share
        // one shared-memory region.
        .arg("--disable-hot-restart")
        .arg("--drain-time-s")
        .arg(config.drain_time_seconds.to_string())
        .arg("--log-level")
        .arg(config.envoy_log_level.as_arg())
        .kill_on_drop(true)
        // Envoy's stdout carries the lines of tcp access log backends.
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| DpError::Start {
            binary: envoy.display().to_string(),
            source,
        })?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(tcp_log::forward(stdout));
    }
    tracing::info!(pid = child.id(), "Envoy started");
    loop {
        let signal = tokio::select! {
            status = child.wait() => return status.map_err(DpError::Wait),
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
        };
        if let Some(pid) = child.id() {
            tracing::info!(signal, "forwarding the signal to Envoy");
            // SAFETY: kill(2) on our own child's pid, no memory involved.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }
}

/// `kuma-dp run`: the exit code is Envoy's.
pub async fn run(config: DpConfig) -> Result<i32, DpError> {
    let envoy = find_envoy(&config.binary_path)?;
    let mut bootstrap = fetch_bootstrap(&config).await?;
    if let Some(file) = &config.dataplane_token_file {
        add_token(&mut bootstrap, file)?;
    }
    let file = write_bootstrap(&config, &bootstrap)?;
    tracing::info!(bootstrap = %file.path.display(), envoy = %envoy.display(), "starting Envoy");
    let status = run_envoy(&envoy, &file.path, &config).await?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// Whether the Envoy whose admin API listens on 127.0.0.1:`admin_port` is
/// ready: its `/ready` answers 200 (LIVE).
pub async fn envoy_ready(admin_port: u16) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap_or_default();
    client
        .get(format!("http://127.0.0.1:{admin_port}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}
