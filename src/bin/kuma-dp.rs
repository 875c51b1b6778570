//! `kuma-dp`: runs beside a workload and supervises its Envoy.

use clap::{Parser, Subcommand};
use kuma_dp::dp::DpConfig;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kuma-dp",
    version,
    about = "Dataplane manager for Envoy-based Service Mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Launch the dataplane: fetch the bootstrap, then run Envoy
    Run {
        /// URL of the control plane's bootstrap server, spoken to in TLS
        /// whether written http://, https:// or HOST:PORT (KUMA_CONTROL_PLANE_URL
        /// is read too) [default: https://localhost:5682]
        #[arg(long = "cp-address", env = "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL")]
        cp_address: Option<String>,
        /// The CA that signed the control plane's certificate (PEM); the
        /// certificate's name must match the host of --cp-address. Without
        /// it a dataplane token is not sent. KUMA_CONTROL_PLANE_CA_CERT may
        /// hold the PEM itself
        #[arg(long = "ca-cert-file", env = "KUMA_CONTROL_PLANE_CA_CERT_FILE")]
        ca_cert_file: Option<PathBuf>,
        /// Accept any certificate from the control plane, even when sending
        /// a dataplane token: whoever answers at --cp-address gets it
        #[arg(
            long = "insecure-skip-tls-verify",
            env = "KUMA_CONTROL_PLANE_INSECURE_SKIP_TLS_VERIFY"
        )]
        insecure_skip_tls_verify: bool,
        /// Speak plain text to a control plane that serves it
        /// (KUMA_DP_SERVER_INSECURE_PLAINTEXT): token and keys in clear.
        /// Local development only
        #[arg(
            long = "insecure-plaintext",
            env = "KUMA_CONTROL_PLANE_INSECURE_PLAINTEXT"
        )]
        insecure_plaintext: bool,
        /// Mesh of the dataplane
        #[arg(long, env = "KUMA_DATAPLANE_MESH", default_value = "default")]
        mesh: String,
        /// Name of the Dataplane resource
        #[arg(long, env = "KUMA_DATAPLANE_NAME")]
        name: String,
        /// Port of Envoy's admin API on 127.0.0.1 (none when unset)
        #[arg(long = "admin-port", env = "KUMA_DATAPLANE_ADMIN_PORT")]
        admin_port: Option<u16>,
        /// File holding the dataplane token
        #[arg(
            long = "dataplane-token-file",
            env = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH"
        )]
        dataplane_token_file: Option<PathBuf>,
        /// Envoy binary: a path, or a name looked up on PATH
        #[arg(
            long = "binary-path",
            env = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH",
            default_value = "envoy"
        )]
        binary_path: String,
        /// Where the bootstrap is written [default: the system's temporary
        /// directory, then kuma-dp, e.g. /tmp/kuma-dp]
        #[arg(long = "config-dir", env = "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR")]
        config_dir: Option<PathBuf>,
        /// How long Envoy drains a listener it replaces or removes, e.g. 30s
        #[arg(long = "drain-time", env = "KUMA_DATAPLANE_DRAIN_TIME", default_value = "1s", value_parser = seconds)]
        drain_time: u64,
        /// Envoy's log level
        #[arg(
            long = "envoy-log-level",
            env = "KUMA_DATAPLANE_RUNTIME_ENVOY_LOG_LEVEL",
            value_enum,
            default_value = "warning"
        )]
        envoy_log_level: kuma_dp::dp::EnvoyLogLevel,
        /// kuma-dp's own log level (a tracing filter: info, debug, warn, ...)
        #[arg(
            long = "log-level",
            env = "KUMA_DATAPLANE_LOG_LEVEL",
            default_value = "info"
        )]
        log_level: String,
    },
    /// Exit 0 when Envoy is ready (its admin `/ready` says LIVE), 1 when
    /// not: the sidecar's readiness, liveness and startup probe
    Probe {
        /// Port of Envoy's admin API on 127.0.0.1
        #[arg(
            long = "admin-port",
            env = "KUMA_DATAPLANE_ADMIN_PORT",
            default_value_t = 9901
        )]
        admin_port: u16,
    },
    /// Print the version
    Version {
        /// With the build's details
        #[arg(long)]
        detailed: bool,
    },
}

/// `30s` or `30`: seconds.
fn seconds(value: &str) -> Result<u64, String> {
    value
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("\"{value}\" must be a number of seconds, e.g. 30s"))
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let log_level = match &command {
        Command::Run { log_level, .. } => log_level.clone(),
        _ => "info".to_string(),
    };
    kuma_config::cli::init_logging(
        &log_level,
        kuma_config::settings::LogFormat::Text,
        kuma_config::cli::LogTo::Stderr,
    );
    let config = match command {
        Command::Version { detailed } => {
            println!("{}", kuma_core::version::describe("kuma-dp", detailed));
            return ExitCode::SUCCESS;
        }
        Command::Run {
            cp_address,
            ca_cert_file,
            insecure_skip_tls_verify,
            insecure_plaintext,
            mesh,
            name,
            admin_port,
            dataplane_token_file,
            binary_path,
            config_dir,
            drain_time,
            envoy_log_level,
            log_level: _,
        } => {
            let address = cp_address
                .or_else(|| std::env::var("KUMA_CONTROL_PLANE_URL").ok())
                .unwrap_or_else(|| "https://localhost:5682".into());
            let inline_ca = std::env::var("KUMA_CONTROL_PLANE_CA_CERT").ok();
            let channel = kuma_dp::dp::read_ca(ca_cert_file.as_deref(), inline_ca.as_deref())
                .and_then(|ca| {
                    kuma_dp::dp::channel(
                        ca,
                        insecure_skip_tls_verify,
                        insecure_plaintext,
                        dataplane_token_file.is_some(),
                        &address,
                    )
                });
            let channel = match channel {
                Ok(channel) => channel,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            DpConfig {
                cp_address: kuma_dp::dp::bootstrap_url(&address, &channel),
                channel,
                mesh,
                name,
                admin_port,
                dataplane_token_file,
                binary_path,
                config_dir: config_dir.unwrap_or_else(|| std::env::temp_dir().join("kuma-dp")),
                drain_time_seconds: drain_time,
                envoy_log_level,
            }
        }
        Command::Probe { admin_port } => {
            return kuma_config::cli::run(false, async move {
                Ok::<_, std::convert::Infallible>(if kuma_dp::dp::envoy_ready(admin_port).await {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            });
        }
    };
    kuma_config::cli::run(false, async {
        let code = kuma_dp::dp::run(config).await?;
        Ok::<_, kuma_dp::dp::DpError>(ExitCode::from(code.clamp(0, 255) as u8))
    })
}
