//! The command line: parses arguments, sets up logging and dispatches to a subcommand.

mod check;
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
    /// Run the controller: keep every SecurityBaseline enforced and its status current.
    Run(crate::controller::RunArgs),
    /// Run the node agent: observe the kubelet, kube-apiserver and audit policy of this node
    /// and publish them as its NodeReport (with --enforce, also write the rendered files).
    Agent(crate::agent::AgentArgs),
    /// Evaluate baselines against manifests or (read-only) the live cluster and print the
    /// drift; exit 0 compliant, 1 drift, 2 error.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::CheckArgs),
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
        Command::Run(args) => run_async(crate::controller::run(args)),
        Command::Agent(args) => run_async(crate::agent::run(args)),
        Command::Check(args) => check::run(args),
    }
}

/// Runs an async subcommand on a multi-threaded runtime; errors go to the log and exit 2.
/// The subcommand runs as a spawned task, on the runtime's workers: under `block_on` it
/// would run on the main thread, and every wake between it and the tasks it spawns (the
/// HTTP connections, the reconciles) would cross threads.
fn run_async<E: std::fmt::Display + Send + 'static>(
    future: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let task = runtime.spawn(future);
    let outcome = runtime.block_on(task);
    match outcome {
        Ok(Ok(())) => ExitCode::from(exit::OK),
        Err(panicked) => {
            eprintln!("error: the operator's main task ended abnormally: {panicked}");
            ExitCode::from(exit::ERROR)
        }
        Ok(Err(err)) => {
            tracing::error!("{err}");
            eprintln!("error: {err}");
            ExitCode::from(exit::ERROR)
        }
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
