//! The command line: parses arguments, sets up logging and dispatches to a subcommand.

mod logging;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::api;

/// Enforce a declared Kubernetes security baseline and record every deviation.
#[derive(Parser, Debug)]
#[command(name = "kube-baseline", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub logging: logging::LoggingArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print every CustomResourceDefinition kube-baseline serves, as YAML.
    Crd,
}

/// Exit codes shared by every subcommand: 0 success/compliant, 1 drift, 2 error.
pub mod exit {
    pub const OK: u8 = 0;
    pub const DRIFT: u8 = 1;
    pub const ERROR: u8 = 2;
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = logging::init(&cli.logging) {
        eprintln!("error: {err}");
        return ExitCode::from(exit::ERROR);
    }
    match cli.command {
        Command::Crd => print_crds(),
    }
}

fn print_crds() -> ExitCode {
    let yaml = match api::crds_yaml() {
        Ok(yaml) => yaml,
        Err(err) => {
            eprintln!("error: cannot render the CRDs as YAML: {err}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(yaml.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            ExitCode::from(exit::ERROR)
        }
    }
}
