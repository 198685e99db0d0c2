//! The `kube-baseline` binary: every mode (controller, checks, CRD printer) behind one CLI.

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: at 10,000 namespaces the operator's peak RSS was
/// 70 MiB with it against 73–76 with glibc (BENCHMARKS.md, "Memory at 10,000: jemalloc").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    kube_baseline::cli::main()
}
