//! Envoy under `kuma-dp`: started on the bootstrap, told of SIGTERM and
//! SIGINT, its log read for a stream the control plane refuses, and
//! hot-restarted onto a new bootstrap when the dataplane token file
//! changes, so that a re-issued token reaches Envoy without dropping a
//! connection (the ADS token is in the bootstrap, which Envoy reads once).

use super::{BootstrapFile, DpConfig, DpError, tcp_log};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// How often the token file is looked at for a change.
const TOKEN_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What Envoy writes when its ADS stream closes with an error:
/// `... gRPC config stream to ads_cluster closed: 16, <message>`.
const STREAM_CLOSED: &str = "gRPC config stream to ads_cluster closed";

/// Runs Envoy until the current one exits (its status is kuma-dp's),
/// forwarding signals, reporting refusals, and hot-restarting it when the
/// token file changes.
pub async fn supervise(
    envoy: &Path,
    bootstrap: BootstrapFile,
    config: &DpConfig,
) -> Result<ExitStatus, DpError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(DpError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DpError::Signals)?;
    let base_id_path = bootstrap.dir.join("base-id");
    let mut epoch = 0u32;
    let mut current = spawn(envoy, &bootstrap.path, config, Epoch::First(&base_id_path))?;
    // Envoys of earlier epochs, draining until the current one stops them.
    let mut draining: Vec<Child> = Vec::new();
    let mut token = TokenFile::new(config.dataplane_token_file.as_deref());
    let mut tick = tokio::time::interval(TOKEN_WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reload: Option<tokio::task::JoinHandle<Result<serde_json::Value, DpError>>> = None;
    loop {
        let signal = tokio::select! {
            status = current.wait() => return status.map_err(DpError::Wait),
            _ = term.recv() => libc::SIGTERM,
            _ = int.recv() => libc::SIGINT,
            _ = tick.tick(), if reload.is_none() => {
                draining.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                if token.changed() {
                    tracing::info!("the dataplane token file changed: asking for a bootstrap with it");
                    let config = config.clone();
                    reload = Some(tokio::spawn(async move { super::bootstrap_for(&config).await }));
                }
                continue;
            }
            done = async { reload.as_mut().expect("guarded").await }, if reload.is_some() => {
                reload = None;
                match done {
                    Ok(Ok(next)) => {
                        bootstrap.rewrite(&next)?;
                        let base_id = std::fs::read_to_string(&base_id_path).unwrap_or_default();
                        epoch += 1;
                        let next = spawn(envoy, &bootstrap.path, config, Epoch::Next { base_id: base_id.trim(), epoch })?;
                        tracing::info!(epoch, "Envoy hot-restarted on the new token: the old one drains its connections and stops");
                        draining.push(std::mem::replace(&mut current, next));
                    }
                    Ok(Err(e)) => tracing::warn!("Envoy keeps its token: the new one was not accepted: {e}"),
                    Err(e) => tracing::warn!("Envoy keeps its token: {e}"),
                }
                continue;
            }
        };
        tracing::info!(signal, "forwarding the signal to Envoy");
        for child in draining.iter().chain(std::iter::once(&current)) {
            if let Some(pid) = child.id() {
                // SAFETY: kill(2) on our own child's pid, no memory involved.
                unsafe {
                    libc::kill(pid as libc::pid_t, signal);
                }
            }
        }
    }
}

/// Which Envoy of a hot-restart sequence to start.
enum Epoch<'a> {
    /// The first: it picks a base id no other Envoy here uses and writes it
    /// to this file (many Envoys share a machine).
    First(&'a Path),
    /// A later one: it takes its listeners over from the Envoy before it.
    Next { base_id: &'a str, epoch: u32 },
}

fn spawn(
    envoy: &Path,
    bootstrap: &Path,
    config: &DpConfig,
    epoch: Epoch<'_>,
) -> Result<Child, DpError> {
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
    command.arg("-c").arg(bootstrap);
    match epoch {
        Epoch::First(base_id_path) => {
            command
                .arg("--use-dynamic-base-id")
                .arg("--base-id-path")
                .arg(base_id_path)
                .args(["--restart-epoch", "0"]);
        }
        Epoch::Next { base_id, epoch } => {
            command
                .args(["--base-id", base_id])
                .args(["--restart-epoch", &epoch.to_string()]);
        }
    }
    let mut child = command
        .arg("--drain-time-s")
        .arg(config.drain_time_seconds.to_string())
        // The Envoy before a hot restart stops once its connections had the
        // drain time to finish.
        .arg("--parent-shutdown-time-s")
        .arg((config.drain_time_seconds + 5).to_string())
        .arg("--log-level")
        .arg(config.envoy_log_level.as_arg())
        .kill_on_drop(true)
        // Envoy's stdout carries the lines of tcp access log backends; its
        // stderr is read for a refused stream.
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|source| DpError::Start {
            binary: envoy.display().to_string(),
            source,
        })?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(tcp_log::forward(stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(watch_log(stderr, config.dataplane_token_file.clone()));
    }
    tracing::info!(pid = child.id(), "Envoy started");
    Ok(child)
}

/// Passes Envoy's log through and says, once per reason, why the control
/// plane refuses its stream and what recovers it.
async fn watch_log(stderr: tokio::process::ChildStderr, token_file: Option<PathBuf>) {
    use std::io::Write;
    let mut lines = BufReader::new(stderr).lines();
    let mut said = None;
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = writeln!(std::io::stderr(), "{line}");
        let Some(why) = refusal(&line) else {
            continue;
        };
        if said.as_deref() == Some(why) {
            continue;
        }
        let fix = match &token_file {
            Some(file) => format!(
                "write a fresh token to {} (kuma-dp restarts Envoy on it without dropping connections)",
                file.display()
            ),
            None => "start kuma-dp with --dataplane-token-file".to_string(),
        };
        tracing::error!(
            "the control plane refuses this proxy's configuration stream: {why}; {fix}"
        );
        said = Some(why.to_string());
    }
}

/// The reason in an Envoy log line about its ADS stream closed by an
/// authentication or authorization refusal (gRPC status 16 or 7).
fn refusal(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once(STREAM_CLOSED)?;
    let rest = rest.trim_start_matches([':', ' ']);
    let (code, message) = rest.split_once(", ")?;
    matches!(code, "16" | "7").then(|| message.trim())
}

/// The token file as last read, to tell when it changes.
struct TokenFile<'a> {
    path: Option<&'a Path>,
    seen: Option<(SystemTime, u64)>,
}

impl<'a> TokenFile<'a> {
    fn new(path: Option<&'a Path>) -> TokenFile<'a> {
        let mut file = TokenFile { path, seen: None };
        file.seen = file.stamp();
        file
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(self.path?).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Whether the file changed since the last call (or the start); an
    /// empty or missing file is a change still being made.
    fn changed(&mut self) -> bool {
        let now = self.stamp();
        if now == self.seen || now.is_none_or(|(_, len)| len == 0) {
            return false;
        }
        self.seen = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_stream_is_read_from_envoys_log_and_other_closes_are_not() {
        let line = "[2026-12-06 23:50:00.000][12][warning][config] [source/extensions/config_subscription/grpc/grpc_stream.h:193] DeltaAggregatedResources gRPC config stream to ads_cluster closed: 16, the dataplane token's signature is not valid";
        assert_eq!(
            refusal(line),
            Some("the dataplane token's signature is not valid")
        );
        let unavailable = "StreamAggregatedResources gRPC config stream to ads_cluster closed since 31s ago: 14, upstream connect error";
        assert_eq!(refusal(unavailable), None);
        assert_eq!(refusal("[info] all clusters initialized"), None);
    }

    #[test]
    fn the_token_file_counts_as_changed_once_per_change_and_not_while_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first").unwrap();
        let mut file = TokenFile::new(Some(&path));
        assert!(!file.changed());
        std::fs::write(&path, "").unwrap();
        assert!(!file.changed(), "truncated on the way to a new token");
        std::fs::write(&path, "second token").unwrap();
        assert!(file.changed());
        assert!(!file.changed());
        assert!(!TokenFile::new(None).changed());
    }
}
