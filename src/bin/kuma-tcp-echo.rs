//! `kuma-tcp-echo run --port N`: the demo echo service.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kuma-tcp-echo",
    version,
    about = "A TCP server that echoes back what it receives"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve on a port
    Run {
        #[arg(long, default_value_t = 8000)]
        port: u16,
        #[arg(long, default_value = "0.0.0.0")]
        address: String,
    },
    /// Print the version
    Version {
        /// With the build's details
        #[arg(long)]
        detailed: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    kuma_config::cli::init_logging(
        "info",
        kuma_config::settings::LogFormat::Text,
        kuma_config::cli::LogTo::Stderr,
    );
    match Cli::parse().command {
        Command::Version { detailed } => {
            println!(
                "{}",
                kuma_core::version::describe("kuma-tcp-echo", detailed)
            );
            ExitCode::SUCCESS
        }
        Command::Run { port, address } => {
            let listener = match tokio::net::TcpListener::bind((address.as_str(), port)).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("Error: cannot listen on {address}:{port}: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Ok(local) = listener.local_addr() {
                tracing::info!(address = %local, "echoing");
            }
            kuma_tcp_echo::tcp_echo::serve(listener, kuma_runtime::runtime::termination_signal())
                .await;
            ExitCode::SUCCESS
        }
    }
}
