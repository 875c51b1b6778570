//! `kumactl`: the CLI over the HTTP API of `kuma-cp`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = kuma::kumactl::Cli::parse();
    kuma::cli::run(false, async {
        kuma::kumactl::run(cli).await.map(|()| ExitCode::SUCCESS)
    })
}
