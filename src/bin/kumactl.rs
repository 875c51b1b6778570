//! `kumactl`: the CLI over the HTTP API of `kuma-cp`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kumactl::kumactl::Cli::parse();
    kuma_config::cli::run(false, async {
        kumactl::kumactl::run(cli).await.map(|()| ExitCode::SUCCESS)
    })
}
