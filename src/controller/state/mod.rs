//! What the reconcilers read and remember: the context they share (`context`), the
//! indexes (`cache`), the namespace store's form of a Namespace (`namespace_store`), per-namespace results (`results`), writes whose watch events have not
//! arrived (`writes_in_flight`), the per-object write budget (`repair_budget`) and the Pod
//! Security previews (`previews`).

pub mod cache;
pub mod context;
pub mod namespace_store;
pub mod previews;
pub mod repair_budget;
pub mod results;
pub mod writes_in_flight;
