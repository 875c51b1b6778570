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

/// The CA kuma-dp verifies the control plane with: its PEM (for Envoy),
/// its certificates as the bootstrap request's client takes them, and
/// where it came from (for messages).
#[derive(Debug, Clone)]
pub struct ControlPlaneCa {
    pem: String,
    roots: Vec<reqwest::Certificate>,
    from: String,
}

/// How `kuma-dp` and its Envoy talk to the control plane.
#[derive(Debug, Clone)]
pub enum Channel {
    /// TLS, the control plane's certificate verified with this CA.
    Verified(ControlPlaneCa),
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
    ca: Option<ControlPlaneCa>,
    skip_verify: bool,
    plaintext: bool,
    has_token: bool,
    address: &str,
) -> Result<Channel, DpError> {
    Ok(match (plaintext, ca, skip_verify) {
        (true, _, _) => Channel::Plaintext,
        (false, Some(ca), false) => Channel::Verified(ca),
        (false, _, true) => Channel::Unverified,
        (false, None, false) if !has_token => Channel::Unverified,
        (false, None, false) => {
            return Err(DpError::NoCa {
                address: address.to_string(),
            });
        }
    })
}

/// The CA kuma-dp verifies the control plane with, checked to hold a
/// certificate: from `file`, else `inline` (`KUMA_CONTROL_PLANE_CA_CERT`,
/// what the Kubernetes injector sets).
pub fn read_ca(
    file: Option<&Path>,
    inline: Option<&str>,
) -> Result<Option<ControlPlaneCa>, DpError> {
    let (pem, from) = match (file, inline) {
        (Some(file), _) => {
            let from = format!("--ca-cert-file {}", file.display());
            match std::fs::read_to_string(file) {
                Ok(pem) => (pem, from),
                Err(e) => {
                    return Err(DpError::CaCert {
                        from,
                        message: e.to_string(),
                    });
                }
            }
        }
        (None, Some(pem)) if !pem.trim().is_empty() => {
            (pem.to_string(), "KUMA_CONTROL_PLANE_CA_CERT".to_string())
        }
        _ => return Ok(None),
    };
    match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
        Ok(roots) if !roots.is_empty() => Ok(Some(ControlPlaneCa { pem, roots, from })),
        _ => Err(DpError::CaCert {
            from,
            message: "no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into(),
        }),
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
    #[error("TLS with the control plane at {address} failed: {problem}")]
    Tls { address: String, problem: String },
    #[error("cannot handle signals: {0}")]
    Signals(#[source] std::io::Error),
    #[error("lost track of Envoy: {0}")]
    Wait(#[source] std::io::Error),
}

/// The dataplane token in the token file, if there is one.
fn read_token(config: &DpConfig) -> Result<Option<String>, DpError> {
    let Some(file) = &config.dataplane_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(file).map_err(|source| DpError::TokenFile {
        path: file.display().to_string(),
        source,
    })?;
    Ok(Some(token.trim().to_string()))
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
pub async fn fetch_bootstrap(
    config: &DpConfig,
    token: Option<&str>,
) -> Result<serde_json::Value, DpError> {
    let base = config.cp_address.trim_end_matches('/');
    let url = format!("{base}/bootstrap");
    let mut client = reqwest::Client::builder().timeout(Duration::from_secs(10));
    match &config.channel {
        Channel::Verified(ca) => {
            tracing::info!(
                address = base,
                "verifying the control plane with the CA of {}",
                ca.from
            );
            client = client.tls_built_in_root_certs(false);
            for root in &ca.roots {
                client = client.add_root_certificate(root.clone());
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
        Err(e) => return Answer::from_send_error(client, &e, base, channel).await,
    };
    let status = resp.status();
    if status.is_success() {
        return match resp.json().await {
            Ok(bootstrap) => Answer::Bootstrap(bootstrap),
            Err(e) => Answer::Retry(format!("unreadable answer: {e}")),
        };
    }
    let text = resp.text().await.unwrap_or_default();
    let why = crate::resources::describe_error_body(status, &text);
    let title = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["title"].as_str().map(str::to_string));
    match status.as_u16() {
        401 | 403 => Answer::Stop(DpError::Refused(why)),
        // The bootstrap server's own 404 (the Dataplane is not registered
        // yet) heals; any other means the address is not a bootstrap server.
        404 if title.as_deref() != Some("Dataplane not found") => Answer::Stop(
            not_a_bootstrap_server(base, is_kuma_api(client, base).await),
        ),
        _ => Answer::Retry(why),
    }
}

impl Answer {
    /// What a request that got no HTTP answer means: a certificate that
    /// cannot be trusted or a protocol mismatch stops, anything else (not
    /// up yet, a network blip) is retried.
    async fn from_send_error(
        client: &reqwest::Client,
        error: &reqwest::Error,
        base: &str,
        channel: &Channel,
    ) -> Answer {
        // The address to name is the one to pass, not the request's URL:
        // kuma-dp adds /bootstrap itself.
        let address = base.to_string();
        let stop = match (rustls_error(error), channel) {
            // Plain text where TLS was expected: perhaps kumactl's API port.
            (Some(rustls::Error::InvalidMessage(_)), _) => {
                let plain = base.replacen("https://", "http://", 1);
                if is_kuma_api(client, &plain).await {
                    not_a_bootstrap_server(&plain, true)
                } else {
                    DpError::NotHttps { address }
                }
            }
            (Some(rustls::Error::InvalidCertificate(problem)), Channel::Verified(ca)) => {
                DpError::Unverified {
                    address,
                    from: ca.from.clone(),
                    problem: certificate_problem(problem),
                }
            }
            (Some(other), _) => DpError::Tls {
                address,
                problem: other.to_string(),
            },
            (None, Channel::Plaintext) => {
                let cause = crate::cli::root_cause(error).to_string();
                // A TLS server answers a client that opens in plain text
                // with an alert record (no HTTP response), or drops it.
                if cause.contains("invalid HTTP version parsed")
                    || cause.contains("connection closed before message completed")
                    || cause.contains("connection reset")
                {
                    DpError::NotPlaintext { address }
                } else {
                    return Answer::Retry(format!("control plane not reachable: {cause}"));
                }
            }
            (None, _) => {
                let cause = crate::cli::root_cause(error);
                return Answer::Retry(format!("control plane not reachable: {cause}"));
            }
        };
        Answer::Stop(stop)
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

/// Whether `base` answers as kuma-cp's HTTP API: its index says "Kuma".
async fn is_kuma_api(client: &reqwest::Client, base: &str) -> bool {
    let index: Option<serde_json::Value> = match client.get(base).send().await {
        Ok(resp) => resp.json().await.ok(),
        Err(_) => None,
    };
    index.is_some_and(|i| i["tagline"] == "Kuma")
}

/// `base` is not a bootstrap server; says what it is instead.
fn not_a_bootstrap_server(base: &str, is_api: bool) -> DpError {
    let what = if is_api {
        "kuma-cp's HTTP API (default port 5681), the one kumactl talks to"
    } else {
        "not kuma-cp's bootstrap server"
    };
    DpError::NotBootstrapServer {
        address: base.to_string(),
        what: what.to_string(),
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
            Channel::Verified(ca) => {
                tls["validation_context"]["trusted_ca"] = json!({"inline_string": ca.pem});
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
pub fn add_token(bootstrap: &mut serde_json::Value, token: &str) -> Result<(), DpError> {
    let services = bootstrap
        .pointer_mut("/dynamic_resources/ads_config/grpc_services")
        .and_then(|s| s.as_array_mut())
        .ok_or(DpError::NoAdsService)?;
    for service in services {
        service["initial_metadata"] = json!([{"key": "authorization", "value": token}]);
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
    fn rewrite(&self, bootstrap: &serde_json::Value) -> Result<(), DpError> {
        let scratch = self.dir.join("bootstrap.next");
        let _ = std::fs::remove_file(&scratch);
        write_private(&scratch, bootstrap)
            .and_then(|()| std::fs::rename(&scratch, &self.path))
            .map_err(|e| DpError::Write {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })
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
    use std::os::unix::fs::DirBuilderExt;
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
    write_private(&path, bootstrap).map_err(write_err)?;
    Ok(file)
}

/// Writes `bootstrap` to a new file only its user can read (it holds the
/// token). JSON is YAML; Envoy picks the format from the extension.
fn write_private(path: &Path, bootstrap: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bootstrap.to_string().as_bytes()))
}

/// Envoy's bootstrap as the control plane answers it for the token file
/// as it is now, with the CA to verify the control plane and the token:
/// the file is read once, so the token Envoy presents is the one the
/// bootstrap server checked.
async fn bootstrap_for(config: &DpConfig) -> Result<serde_json::Value, DpError> {
    let token = read_token(config)?;
    let mut bootstrap = fetch_bootstrap(config, token.as_deref()).await?;
    add_ca(&mut bootstrap, &config.channel);
    if let Some(token) = &token {
        add_token(&mut bootstrap, token)?;
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
