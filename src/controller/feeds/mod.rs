//! The watches that feed the in-memory state and say which namespaces a change may
//! re-plan: generated objects and names (`watches`), RBAC objects (`rbac`), Ingresses (`ingresses`), Gateways when the Gateway API is
//! installed (`gateways`), Nodes and
//! NodeReports with the audit-policy publisher (`nodes`), pod metadata while a Pod Security
//! preview found violations (`pods`), and decoding that survives objects
//! this version cannot read (`lenient`).

pub mod gateways;
pub mod ingresses;
pub mod initial_lists;
pub mod lean;
pub mod lenient;
pub mod nodes;
pub mod pods;
pub mod rbac;
pub mod tls_secrets;
pub mod versions;
pub mod watches;
