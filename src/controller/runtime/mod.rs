//! Plumbing of a running controller, independent of what it reconciles: leader election
//! and its write fence (`leader`), metrics (`metrics`), the client-side rate limit
//! (`throttle`) and the HTTP endpoints (`http`).

pub mod http;
pub mod leader;
pub mod metrics;
pub mod throttle;
