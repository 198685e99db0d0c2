//! Logging set-up: human-readable or JSON lines on stderr, level from `RUST_LOG` or a flag.

use std::io::IsTerminal;

use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output options shared by every subcommand.
#[derive(Args, Debug, Clone)]
pub struct LoggingArgs {
    /// Log filter (e.g. `info`, `kube_baseline=debug`); overrides RUST_LOG.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Error from an invalid log filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid log filter {filter:?}: {source}")]
pub struct LoggingError {
    filter: String,
    source: tracing_subscriber::filter::ParseError,
}

/// Installs the global subscriber. Logs go to stderr so stdout stays clean for output.
pub fn init(args: &LoggingArgs) -> Result<(), LoggingError> {
    let filter = match &args.log_level {
        Some(filter) => EnvFilter::try_new(filter).map_err(|source| LoggingError {
            filter: filter.clone(),
            source,
        })?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match args.log_format {
        // Colour only on a terminal: redirected logs stay greppable.
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init(),
    }
    Ok(())
}
