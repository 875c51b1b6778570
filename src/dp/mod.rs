//! `kuma-dp run`: fetches the Envoy bootstrap from the control plane
//! (retrying with backoff while it is not up yet), writes it, starts Envoy,
//! forwards SIGTERM/SIGINT to it, and exits with its exit code.

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

/// Asks the control plane for the bootstrap until it answers, backing off
/// from 200 ms to 5 s and logging why each attempt failed.
pub async fn fetch_bootstrap(config: &DpConfig) -> serde_json::Value {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default();
    let url = format!("{}/bootstrap", config.cp_address.trim_end_matches('/'));
    let body = json!({
        "mesh": config.mesh,
        "name": config.name,
        "adminPort": config.admin_port,
        "dataplaneTokenPath": config.dataplane_token_file.as_ref().map(|p| p.display().to_string()),
    });
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let why = match client.post(&url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => match resp.json().await {
                Ok(bootstrap) => return bootstrap,
                Err(e) => format!("unreadable answer: {e}"),
            },
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                crate::api::describe_error_body(status, &text)
            }
            Err(e) => format!(
                "control plane not reachable: {}",
                crate::cli::root_cause(&e)
            ),
        };
        let retry_in = backoff.next_delay();
        tracing::warn!(url, ?retry_in, "cannot get the bootstrap: {why}");
        tokio::time::sleep(retry_in).await;
    }
}

/// Puts the dataplane token into the metadata of Envoy's ADS stream. The
/// token stays on this machine: it is read here, not sent to the bootstrap
/// server.
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

pub fn write_bootstrap(
    config: &DpConfig,
    bootstrap: &serde_json::Value,
) -> Result<PathBuf, DpError> {
    let path = config
        .config_dir
        .join(format!("bootstrap-{}-{}.yaml", config.mesh, config.name));
    let write_err = |e: std::io::Error| DpError::Write {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&config.config_dir).map_err(write_err)?;
    // JSON is YAML; Envoy picks the format from the extension.
    std::fs::write(&path, bootstrap.to_string()).map_err(write_err)?;
    Ok(path)
}

/// Runs Envoy until it exits, forwarding SIGTERM and SIGINT.
pub async fn run_envoy(
    envoy: &Path,
    bootstrap: &Path,
    drain_time_seconds: u64,
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
        .arg(drain_time_seconds.to_string())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DpError::Start {
            binary: envoy.display().to_string(),
            source,
        })?;
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
    if let Some(file) = &config.dataplane_token_file {
        // Fail before waiting on the control plane if the file is unreadable.
        std::fs::metadata(file).map_err(token_file_err(file))?;
    }
    let mut bootstrap = fetch_bootstrap(&config).await;
    if let Some(file) = &config.dataplane_token_file {
        add_token(&mut bootstrap, file)?;
    }
    let path = write_bootstrap(&config, &bootstrap)?;
    tracing::info!(bootstrap = %path.display(), envoy = %envoy.display(), "starting Envoy");
    let status = run_envoy(&envoy, &path, config.drain_time_seconds).await?;
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
