//! Plumbing of a running controller, independent of what it reconciles: leader election
//! and its write fence (`leader`), metrics (`metrics`), Events (`events`), the default adaptive pacing
//! (`adaptive_limit`), the optional hard rate cap (`throttle`) and the HTTP endpoints
//! (`http`).

pub mod adaptive_limit;
pub mod events;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod throttle;
