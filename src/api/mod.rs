//! The API layer: CRD types (serde + schema + CEL rules), no I/O.

mod node_report;
mod security_baseline;

pub use node_report::*;
pub use security_baseline::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::sync::LazyLock;

use kube::CustomResourceExt;

/// API group of every kube-baseline kind.
pub const GROUP: &str = "kube-baseline.dev";
/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "kube-baseline";
/// Label on every object the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "kube-baseline";
/// Label naming the baseline that generated an object.
pub const BASELINE_LABEL: &str = "kube-baseline.dev/baseline";
/// Annotation on an apply that adopts an object that is not ours (`adoptExisting`): the
/// write guard admission policy (config/rbac/write_guard.yaml) admits only that.
pub const ADOPT_ANNOTATION: &str = "kube-baseline.dev/adopt";
/// Text in the write guard's refusal, by which the controller recognizes it.
pub const WRITE_GUARD: &str = "kube-baseline-write-guard";
/// Finalizer that lets the operator clean up before a baseline disappears.
pub const FINALIZER: &str = "kube-baseline.dev/cleanup";
/// Namespace the operator is installed into by default.
pub const DEFAULT_INSTALL_NAMESPACE: &str = "kube-baseline-system";

/// Every CRD the operator serves, in the order `kube-baseline crd` prints them.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![SecurityBaseline::crd(), NodeReport::crd()]
}

/// The YAML `kube-baseline crd` prints and `crds/` holds: every CRD, `---`-separated.
pub fn crds_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// The SecurityBaseline CRD's OpenAPI schema as JSON (built once): what `check` validates
/// baselines against offline, as admission would.
pub static SECURITY_BASELINE_SCHEMA: LazyLock<serde_json::Value> =
    LazyLock::new(openapi_schema::<SecurityBaseline>);
/// The NodeReport CRD's OpenAPI schema as JSON (built once): its bounds are what the agent
/// fits a report to before publishing it.
pub static NODE_REPORT_SCHEMA: LazyLock<serde_json::Value> =
    LazyLock::new(openapi_schema::<NodeReport>);

/// The OpenAPI v3 schema of `K`'s CRD (its one version) as JSON; Null if it has none.
fn openapi_schema<K: CustomResourceExt>() -> serde_json::Value {
    K::crd()
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default()
}

/// Validates a SecurityBaseline (as JSON, so values the Rust types cannot hold are checked
/// too) against the CEL rules of its CRD, offline, the way admission would.
pub fn validate_baseline_cel(
    object: &serde_json::Value,
) -> Result<(), kube::core::cel::ValidationErrors> {
    kube::core::cel::Validator::new().validate(&SECURITY_BASELINE_SCHEMA, object, None)
}

#[cfg(test)]
mod tests;
