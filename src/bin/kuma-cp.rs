//! `kuma-cp`: the control plane.

use clap::{Parser, Subcommand};
use kuma_config::settings::{self, Override};
use kuma_cp::cp::config::Config;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kuma-cp",
    version,
    about = "Universal Control Plane for Envoy-based Service Mesh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Launch the control plane
    Run {
        /// Configuration file (YAML); environment variables override it
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<String>,
        /// Log level or tracing filter (overrides KUMA_LOGGING_LEVEL)
        #[arg(long = "log-level")]
        log_level: Option<String>,
    },
    /// Manage the PostgreSQL schema
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Print the version
    Version {
        /// With the build's details
        #[arg(long)]
        detailed: bool,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every migration the database lacks
    Up {
        /// Configuration file (YAML) naming the database; environment variables override it
        #[arg(short = 'c', long = "config-file")]
        config_file: Option<String>,
    },
}

fn load(config_file: Option<&str>, overrides: &[Override]) -> Result<Config, String> {
    settings::from_env(config_file, overrides).map_err(|e| e.to_string())
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Version { detailed } => {
            println!("{}", kuma_core::version::describe("kuma-cp", detailed));
            Ok(())
        }
        Command::Run {
            config_file,
            log_level,
        } => {
            let overrides: Vec<Override> = log_level
                .into_iter()
                .map(|l| ("logging.level", l))
                .collect();
            let config = kuma_config::cli::server_settings(config_file.as_deref(), &overrides)
                .map_err(|e| e.to_string())?;
            kuma_cp::cp::run(config, kuma_runtime::runtime::termination_signal())
                .await
                .map_err(|e| e.to_string())
        }
        Command::Migrate {
            action: MigrateAction::Up { config_file },
        } => migrate_up(load(config_file.as_deref(), &[])?).await,
    }
}

#[cfg(feature = "universal")]
async fn migrate_up(config: Config) -> Result<(), String> {
    if config.store.store_type != kuma_cp::cp::config::StoreType::Postgres {
        return Err(format!(
            "migrations apply to the postgres store only; KUMA_STORE_TYPE is {:?}",
            config.store.store_type
        ));
    }
    let applied = kuma_store_postgres::store::postgres::migrate_up(&config.store.postgres)
        .await
        .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        println!("database schema is up to date");
    } else {
        println!("applied migrations: {applied:?}");
    }
    Ok(())
}

#[cfg(not(feature = "universal"))]
async fn migrate_up(_config: Config) -> Result<(), String> {
    Err("this build has no postgres store (cargo feature \"universal\")".into())
}

fn main() -> ExitCode {
    let cli: Cli = kuma_config::cli::parse_server_cli::<Cli, Config>();
    kuma_config::cli::run(true, async {
        run(cli.command).await.map(|()| ExitCode::SUCCESS)
    })
}
