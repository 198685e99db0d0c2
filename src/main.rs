//! The `kube-baseline` binary: every mode (controller, checks, CRD printer) behind one CLI.

use std::process::ExitCode;

fn main() -> ExitCode {
    kube_baseline::cli::main()
}
