//! The pure core: no kube::Client, no async, no I/O. Everything here is unit-tested with
//! inline YAML. The controller, the agent and `check` all call these functions, so they
//! always agree.

pub mod checks;
pub mod field_ownership;
pub mod generated;
pub mod node;
pub mod plan;
pub mod pod_security;
pub mod rbac_audit;
pub mod reports;
pub mod selection;
pub mod snapshot;
pub mod status;
pub mod tls;
pub mod versions;
pub mod waivers;

#[cfg(test)]
pub(crate) mod fuzz_tests;
