//! What every program's `main` does the same way: set up logging, run on a
//! Tokio runtime, and turn an error into one line on standard error and
//! exit code 1.

use crate::settings::{self, ConfigError, LogFormat, Override, Settings};
use std::fmt::Display;
use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;

/// Runs `main` to completion. `multi_thread` for servers; command-line
/// tools need one thread.
pub fn run<E: Display>(
    multi_thread: bool,
    main: impl Future<Output = Result<ExitCode, E>>,
) -> ExitCode {
    let runtime = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where a program's log lines go.
#[derive(Debug, Clone, Copy)]
pub enum LogTo {
    Stdout,
    Stderr,
}

/// Logs at `filter` (a `tracing` filter such as `info` or `kuma=debug`;
/// `info` when it does not parse). Colour codes only when the output is a
/// terminal, never in a file or a pipe.
pub fn init_logging(filter: &str, format: LogFormat, to: LogTo) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = match to {
        LogTo::Stdout => std::io::stdout().is_terminal(),
        LogTo::Stderr => std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || -> Box<dyn std::io::Write> {
            match to {
                LogTo::Stdout => Box::new(std::io::stdout()),
                LogTo::Stderr => Box::new(std::io::stderr()),
            }
        });
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// The innermost cause of an error: what a person can act on ("Connection
/// refused" rather than "error sending request").
pub fn root_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> &'a (dyn std::error::Error + 'static) {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause
}

/// Parses a server's command line, with every setting of `S` and its
/// environment variable listed under `run --help`.
pub fn parse_server_cli<C: clap::Parser, S: Settings>() -> C {
    let command = C::command().mut_subcommand("run", |c| c.after_help(settings::env_help::<S>()));
    match C::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    }
}

/// A server's settings (file, environment, flags), with its logging set
/// up from them.
pub fn server_settings<S: Settings>(
    file: Option<&str>,
    overrides: &[Override],
) -> Result<S, ConfigError> {
    let loaded: S = settings::from_env(file, overrides)?;
    let logging = loaded.logging();
    init_logging(&logging.level, logging.format, LogTo::Stdout);
    Ok(loaded)
}
