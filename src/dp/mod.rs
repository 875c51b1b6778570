//! `kuma-dp run`: fetches the Envoy bootstrap from the control plane
//! (retrying with backoff while it is not up yet), writes it, starts Envoy,
//! forwards SIGTERM/SIGINT to it, and exits with its exit code.

mod envoy;
pub mod tcp_log;

use crate::runtime::Backoff;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct DpConfig {
    /// Bootstrap server, e.g. `https://127.0.0.1:5682`.
    pub cp_address: String,
    /// How the control plane is reached and verified.
    pub channel: Channel,
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

/// How `kuma-dp` and its Envoy talk to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    /// TLS, the control plane's certificate verified with this CA (PEM).
    Verified { ca_pem: String, from: String },
    /// TLS, any certificate accepted: explicitly asked for, or nothing
    /// secret to send (no dataplane token).
    Unverified,
    /// Plain text, explicitly asked for.
    Plaintext,
}

/// The bootstrap server's URL from `--cp-address`. The channel decides the
/// scheme: `http://` (as Kuma's examples write it) or a bare `host:port`
/// is spoken to in TLS unless plain text was asked for.
pub fn bootstrap_url(cp_address: &str, channel: &Channel) -> String {
    let rest = cp_address
        .strip_prefix("https://")
        .or_else(|| cp_address.strip_prefix("http://"))
        .unwrap_or(cp_address);
    match channel {
        Channel::Plaintext => format!("http://{rest}"),
        _ => format!("https://{rest}"),
    }
}

/// The channel the flags ask for. A token is sent only to a verified
/// control plane, unless verification (or TLS) was explicitly waived.
pub fn channel(
    ca: Option<(String, String)>,
    skip_verify: bool,
    plaintext: bool,
    has_token: bool,
    address: &str,
) -> Result<Channel, DpError> {
    Ok(match (plaintext, ca, skip_verify) {
        (true, _, _) => Channel::Plaintext,
        (false, Some((ca_pem, from)), false) => Channel::Verified { ca_pem, from },
        (false, _, true) => Channel::Unverified,
        (false, None, false) if !has_token => Channel::Unverified,
        (false, None, false) => {
            return Err(DpError::NoCa {
                address: address.to_string(),
            });
        }
    })
}

/// The CA PEM kuma-dp verifies the control plane with, checked to hold a
/// certificate: from `file`, else `inline` (`KUMA_CONTROL_PLANE_CA_CERT`,
/// what the Kubernetes injector sets). Answers the PEM and where it came from.
pub fn read_ca(
    file: Option<&Path>,
    inline: Option<&str>,
) -> Result<Option<(String, String)>, DpError> {
    let (pem, from) = match (file, inline) {
        (Some(file), _) => (
            std::fs::read_to_string(file).map_err(|e| DpError::CaCert {
                from: format!("--ca-cert-file {}", file.display()),
                message: e.to_string(),
            })?,
            format!("--ca-cert-file {}", file.display()),
        ),
        (None, Some(pem)) if !pem.trim().is_empty() => {
            (pem.to_string(), "KUMA_CONTROL_PLANE_CA_CERT".to_string())
        }
        _ => return Ok(None),
    };
    if reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_or(true, |c| c.is_empty()) {
        return Err(DpError::CaCert {
            from,
            message: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        });
    }
    Ok(Some((pem, from)))
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
        "--cp-address {address} is {what}; point it at the bootstrap server (default port 5682), e.g. --cp-address https://HOST:5682"
    )]
    NotBootstrapServer { address: String, what: String },
    #[error(
        "the control plane at {address} answered in plain text (its KUMA_DP_SERVER_INSECURE_PLAINTEXT is set): kuma-dp sends its token and receives keys in clear only when told to, with --insecure-plaintext (KUMA_CONTROL_PLANE_INSECURE_PLAINTEXT)"
    )]
    NotHttps { address: String },
    #[error(
        "the control plane at {address} speaks TLS: drop --insecure-plaintext (KUMA_CONTROL_PLANE_INSECURE_PLAINTEXT) and give --ca-cert-file"
    )]
    NotPlaintext { address: String },
    #[error(
        "kuma-dp sends its dataplane token only to a control plane it has verified: pass --ca-cert-file (KUMA_CONTROL_PLANE_CA_CERT_FILE) with the control plane's CA, which `kumactl inspect control-plane-ca` prints (kuma-cp keeps it as kuma-cp-ca.crt in its work directory, $HOME/.kuma), or --insecure-skip-tls-verify to send it to {address} unverified"
    )]
    NoCa { address: String },
    #[error("the CA of {from}: {message}")]
    CaCert { from: String, message: String },
    #[error(
        "the control plane at {address} is not the one the CA of {from} vouches for: {problem}"
    )]
    Unverified {
        address: String,
        from: String,
        problem: String,
    },
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
    let base = config.cp_address.trim_end_matches('/');
    let url = format!("{base}/bootstrap");
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
    match &config.channel {
        Channel::Verified { ca_pem, from } => {
            tracing::info!(
                address = base,
                "verifying the control plane with the CA of {from}"
            );
            client = client.tls_built_in_root_certs(false);
            let roots = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).map_err(|e| {
                DpError::CaCert {
                    from: from.clone(),
                    message: e.to_string(),
                }
            })?;
            for root in roots {
                client = client.add_root_certificate(root);
            }
        }
        Channel::Unverified => {
            if config.dataplane_token_file.is_none() {
                tracing::warn!(
                    address = base,
                    "the control plane is not verified (no --ca-cert-file); nothing secret is sent, but its answers are trusted as they come"
                );
            } else {
                tracing::warn!(
                    address = base,
                    "--insecure-skip-tls-verify: the dataplane token goes to whoever answers at this address"
                );
            }
            client = client.danger_accept_invalid_certs(true);
        }
        Channel::Plaintext => tracing::warn!(
            address = base,
            "--insecure-plaintext: the dataplane token and the workload's keys cross the network in clear"
        ),
    }
    let client = client.build().unwrap_or_default();
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
        match ask(&client, base, &url, &body, &config.channel).await {
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

async fn ask(
    client: &reqwest::Client,
    base: &str,
    url: &str,
    body: &serde_json::Value,
    channel: &Channel,
) -> Answer {
    let resp = match client.post(url).json(body).send().await {
        Ok(resp) => resp,
        // Plain text where TLS was expected: perhaps kumactl's API port.
        Err(e) if matches!(rustls_error(&e), Some(rustls::Error::InvalidMessage(_))) => {
            let plain = base.replacen("https://", "http://", 1);
            return Answer::Stop(match not_a_bootstrap_server(client, &plain).await {
                api @ DpError::NotBootstrapServer { .. } if is_api(&api) => api,
                _ => DpError::NotHttps {
                    address: base.to_string(),
                },
            });
        }
        Err(e) => return Answer::from_send_error(&e, base, channel),
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

impl Answer {
    /// What a request that got no HTTP answer means: a certificate that
    /// cannot be trusted or a protocol mismatch stops, anything else (not
    /// up yet, a network blip) is retried.
    fn from_send_error(error: &reqwest::Error, base: &str, channel: &Channel) -> Answer {
        // The address to name is the one to pass, not the request's URL:
        // kuma-dp adds /bootstrap itself.
        let address = base.to_string();
        if let Some(tls) = rustls_error(error) {
            return Answer::Stop(match (tls, channel) {
                (rustls::Error::InvalidCertificate(problem), Channel::Verified { from, .. }) => {
                    DpError::Unverified {
                        address,
                        from: from.clone(),
                        problem: certificate_problem(problem),
                    }
                }
                (other, _) => DpError::Unverified {
                    address,
                    from: "kuma-dp".into(),
                    problem: other.to_string(),
                },
            });
        }
        let cause = crate::cli::root_cause(error).to_string();
        if matches!(channel, Channel::Plaintext)
            && (cause.contains("invalid HTTP version parsed")
                || cause.contains("connection closed before message completed")
                || cause.contains("connection reset"))
        {
            // A TLS server answers a client that opens in plain text with
            // an alert record (no HTTP response), or drops it.
            return Answer::Stop(DpError::NotPlaintext { address });
        }
        Answer::Retry(format!("control plane not reachable: {cause}"))
    }
}

/// The TLS failure under a request's error, if that is what it was. An
/// `io::Error` hides the error it wraps from `source()`, so each one is
/// opened too.
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cause = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// A certificate problem in a user's words.
fn certificate_problem(problem: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    match problem {
        E::UnknownIssuer | E::BadSignature => {
            "its certificate is not signed by that CA (wrong CA, or another control plane)".into()
        }
        E::Expired | E::ExpiredContext { .. } => "its certificate has expired".into(),
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "its certificate is not valid yet (check both machines' clocks)".into()
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => format!(
            "its certificate does not name the host of --cp-address ({problem:?}); connect by a name it has, or add the name to the control plane's certificate (KUMA_GENERAL_TLS_SUBJECT_ALT_NAMES)"
        ),
        other => format!("its certificate is refused: {other:?}"),
    }
}

/// What kumactl's port is called in [`not_a_bootstrap_server`].
const THE_API: &str = "kuma-cp's HTTP API (default port 5681), the one kumactl talks to";

fn is_api(error: &DpError) -> bool {
    matches!(error, DpError::NotBootstrapServer { what, .. } if what == THE_API)
}

/// Says what `base` is instead, when it can tell.
async fn not_a_bootstrap_server(client: &reqwest::Client, base: &str) -> DpError {
    let index: Option<serde_json::Value> = match client.get(base).send().await {
        Ok(resp) => resp.json().await.ok(),
        Err(_) => None,
    };
    let what = if index.is_some_and(|i| i["tagline"] == "Kuma") {
        THE_API.to_string()
    } else {
        "not kuma-cp's bootstrap server".to_string()
    };
    DpError::NotBootstrapServer {
        address: base.to_string(),
        what,
    }
}

/// Gives Envoy the CA to verify the control plane's xDS port with, when
/// the bootstrap says that port speaks TLS; with verification skipped,
/// Envoy is told to accept any certificate there too.
pub fn add_ca(bootstrap: &mut serde_json::Value, channel: &Channel) {
    let Some(clusters) = bootstrap
        .pointer_mut("/static_resources/clusters")
        .and_then(|c| c.as_array_mut())
    else {
        return;
    };
    for cluster in clusters {
        let Some(tls) = cluster.pointer_mut("/transport_socket/typed_config/common_tls_context")
        else {
            continue;
        };
        match channel {
            Channel::Verified { ca_pem, .. } => {
                tls["validation_context"]["trusted_ca"] = json!({"inline_string": ca_pem});
            }
            _ => {
                if let Some(tls) = tls.as_object_mut() {
                    tls.remove("validation_context");
                }
            }
        }
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

impl BootstrapFile {
    /// Replaces the bootstrap whole (written aside, then renamed over it),
    /// for the next Envoy of a hot restart.
    fn rewrite(&self, bootstrap: &serde_json::Value, config: &DpConfig) -> Result<(), DpError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let scratch = self.dir.join("bootstrap.next");
        let write_err = |e: std::io::Error| DpError::Write {
            path: self.path.display().to_string(),
            message: e.to_string(),
        };
        let _ = std::fs::remove_file(&scratch);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&scratch)
            .and_then(|mut f| f.write_all(bootstrap.to_string().as_bytes()))
            .and_then(|()| std::fs::rename(&scratch, &self.path))
            .map_err(write_err)?;
        tracing::debug!(mesh = %config.mesh, name = %config.name, "bootstrap rewritten");
        Ok(())
    }
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

/// Envoy's bootstrap as the control plane answers it for the token file
/// as it is now, with the CA to verify the control plane and the token.
async fn bootstrap_for(config: &DpConfig) -> Result<serde_json::Value, DpError> {
    let mut bootstrap = fetch_bootstrap(config).await?;
    add_ca(&mut bootstrap, &config.channel);
    if let Some(file) = &config.dataplane_token_file {
        add_token(&mut bootstrap, file)?;
    }
    Ok(bootstrap)
}

/// `kuma-dp run`: the exit code is Envoy's.
pub async fn run(config: DpConfig) -> Result<i32, DpError> {
    let envoy = find_envoy(&config.binary_path)?;
    let bootstrap = bootstrap_for(&config).await?;
    let file = write_bootstrap(&config, &bootstrap)?;
    tracing::info!(bootstrap = %file.path.display(), envoy = %envoy.display(), "starting Envoy");
    let status = envoy::supervise(&envoy, file, &config).await?;
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
