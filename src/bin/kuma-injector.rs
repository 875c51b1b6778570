//! `kuma-injector`: the Kubernetes admission webhook that adds the
//! `kuma-sidecar` container (and `kuma-init`) to the pods of labelled
//! namespaces.

use clap::{Parser, Subcommand};
use kuma_injector::injector::InjectorSettings;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kuma-injector",
    version,
    about = "Kuma Sidecar Injector: a mutating admission webhook for Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the webhook
    Run {
        /// Configuration file (YAML); environment variables override it
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<String>,
    },
    /// Print the version
    Version {
        /// With the build's details
        #[arg(long)]
        detailed: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Config(#[from] kuma_config::settings::ConfigError),
    #[error("cannot load the Kubernetes client configuration (KUBECONFIG or in-cluster): {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Injector(#[from] kuma_injector::injector::InjectorError),
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Version { detailed } => {
            println!(
                "{}",
                kuma_core::version::describe("kuma-injector", detailed)
            );
            Ok(())
        }
        Command::Run { config_file } => {
            let config: InjectorSettings =
                kuma_config::cli::server_settings(config_file.as_deref(), &[])?;
            let client = kube::Client::try_default().await?;
            let bound = kuma_injector::injector::bind(&config.injector).await?;
            let shutdown = kuma_runtime::runtime::CancellationToken::new();
            let stop = shutdown.clone();
            let signal = kuma_runtime::runtime::termination_signal();
            tokio::spawn(async move {
                signal.await;
                stop.cancel();
            });
            let injector = kuma_injector::injector::Injector {
                system_namespace: config.system_namespace.clone(),
                config: config.injector,
                client,
            };
            kuma_injector::injector::serve(injector, bound, shutdown).await;
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli: Cli = kuma_config::cli::parse_server_cli::<Cli, InjectorSettings>();
    kuma_config::cli::run(true, async {
        run(cli.command).await.map(|()| ExitCode::SUCCESS)
    })
}
