//! Nodes and the control plane, pure: the agent (or `check`) turns processes and files into
//! a NodeReport's observations; these modules turn observations and a baseline into drift.
//! Layered without a circle: `flags`, `config_files` and `findings` at the bottom; the
//! component checks (`kubelet`, `audit_policy`, `control_plane` for the
//! kube-controller-manager, kube-scheduler and etcd, `api_server` over it) on them; `evaluate` (which
//! nodes, and every check of one node) on top.

pub mod api_server;
pub mod audit_policy;
pub mod config_files;
pub mod control_plane;
pub mod evaluate;
pub mod files;
pub mod findings;
pub mod flags;
pub mod kubelet;
pub mod live;

#[cfg(test)]
mod control_plane_tests;
#[cfg(test)]
mod tests;
