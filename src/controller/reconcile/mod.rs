//! The reconcilers: one per Namespace (`namespaces`, through `apply`), one per SecurityBaseline
//! (`baselines`: finalizer and status), and the pacing of re-plans after a spec change
//! (`replan`).

pub mod apply;
pub mod baselines;
pub mod namespaces;
pub mod queue;
pub mod replan;
pub mod reports;
