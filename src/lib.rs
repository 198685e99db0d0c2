//! kube-baseline: a Kubernetes operator that enforces a declared security baseline and
//! records every deviation.
//!
//! Three layers, one direction of dependency (docs/architecture.md §1):
//! - [`api`]: the CRD types, no I/O;
//! - [`domain`]: pure, synchronous functions (desired objects, drift, checks);
//! - [`controller`] and [`cli`]: the shells that talk to the cluster and the user.

pub mod agent;
pub mod api;
pub mod cli;
pub mod controller;
pub mod domain;
