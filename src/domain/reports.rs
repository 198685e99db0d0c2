//! Policy reports of a baseline's findings, in the OpenReports API (`openreports.io/v1alpha1`
//! `Report` / `ClusterReport`) or its predecessor (`wgpolicyk8s.io/v1alpha2` `PolicyReport`
//! / `ClusterPolicyReport`), for dashboards that read them (Policy Reporter and others).
//!
//! Pure: which results a (baseline, namespace) or a baseline's cluster-scoped findings give,
//! the report object, and a hash of its content (the controller writes a report only when
//! that hash differs from the one the cluster holds). Results: `fail` for drift,
//! `error` for `Unknown`, `skip` for a waived finding, `pass` for each check evaluated there
//! with no finding at all. The summary counts every result; the list is bounded.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::api::{
    BASELINE_LABEL, DriftEntry, DriftReason, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    PodSecurityRollout, SecurityBaselineSpec, WaivedEntry,
};
use crate::domain::generated::{BaselineRef, check_ids, desired_objects, owner_reference};

/// `source` of every report and result.
pub const SOURCE: &str = "kube-baseline";
/// Annotation holding the hash of a report's content (results without timestamps, summary).
pub const CONTENT_HASH_ANNOTATION: &str = "kube-baseline.dev/report-content";
/// Results listed per report by default (the summary still counts all); `--report-max-results`.
pub const DEFAULT_MAX_RESULTS: u16 = 1000;

/// Which reports API to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportApi {
    /// `openreports.io/v1alpha1` Report and ClusterReport.
    OpenReports,
    /// `wgpolicyk8s.io/v1alpha2` PolicyReport and ClusterPolicyReport.
    PolicyReport,
}

/// Group, version, kind and plural of one report resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportResource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl ReportResource {
    pub fn api_version(self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

impl ReportApi {
    /// The namespaced report resource.
    pub fn namespaced(self) -> ReportResource {
        match self {
            Self::OpenReports => ReportResource {
                group: "openreports.io",
                version: "v1alpha1",
                kind: "Report",
                plural: "reports",
            },
            Self::PolicyReport => ReportResource {
                group: "wgpolicyk8s.io",
                version: "v1alpha2",
                kind: "PolicyReport",
                plural: "policyreports",
            },
        }
    }

    /// The cluster-scoped report resource.
    pub fn cluster(self) -> ReportResource {
        match self {
            Self::OpenReports => ReportResource {
                group: "openreports.io",
                version: "v1alpha1",
                kind: "ClusterReport",
                plural: "clusterreports",
            },
            Self::PolicyReport => ReportResource {
                group: "wgpolicyk8s.io",
                version: "v1alpha2",
                kind: "ClusterPolicyReport",
                plural: "clusterpolicyreports",
            },
        }
    }
}

/// A result's outcome, in the order results are listed (what needs action first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Fail,
    Error,
    Skip,
    Pass,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Error => "error",
            Self::Skip => "skip",
            Self::Pass => "pass",
        }
    }

    /// `Unknown` could not be evaluated (`error`); every other reason is a failed check.
    pub fn of(reason: DriftReason) -> Self {
        match reason {
            DriftReason::Unknown => Self::Error,
            DriftReason::Missing
            | DriftReason::Modified
            | DriftReason::Unexpected
            | DriftReason::Violation
            | DriftReason::Conflict => Self::Fail,
        }
    }
}

/// The object a result is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResultResource {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// One result of a report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReportResult {
    pub outcome: Outcome,
    /// The check ID (`rule`).
    pub check: String,
    pub resource: Option<ResultResource>,
    pub message: String,
    /// `reason` (the drift reason), `cis` (CIS ids), `waiver` (for `skip`).
    pub properties: BTreeMap<String, String>,
}

/// Counts of every result, listed or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub pass: usize,
    pub fail: usize,
    pub error: usize,
    pub skip: usize,
}

/// A report's content: results (at most the configured limit) and the exact summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportBody {
    pub results: Vec<ReportResult>,
    pub summary: Summary,
    /// The limit the results were cut to.
    pub max_results: usize,
}

impl ReportBody {
    /// Results left out by the limit.
    pub fn omitted(&self) -> usize {
        let total = self.summary.pass + self.summary.fail + self.summary.error + self.summary.skip;
        total.saturating_sub(self.results.len())
    }
}

/// The results of `findings` (drift), `waived` findings and the `evaluated` checks: a pass
/// for each evaluated check with neither a finding nor a waived finding here. Sorted
/// (fail, error, skip, pass; then by check and object), cut to `max_results`.
pub fn build(
    findings: &[DriftEntry],
    waived: &[WaivedEntry],
    evaluated: &[&str],
    max_results: usize,
) -> ReportBody {
    let mut results: Vec<ReportResult> = findings
        .iter()
        .map(|f| {
            result(
                Outcome::of(f.reason),
                &f.check,
                resource(&f.kind, &f.namespace, &f.name),
                &f.message,
                f.reason,
                None,
            )
        })
        .chain(waived.iter().map(|w| {
            result(
                Outcome::Skip,
                &w.check,
                resource(&w.kind, &w.namespace, &w.name),
                &w.message,
                w.reason,
                Some(&w.waiver),
            )
        }))
        .collect();
    let found: BTreeSet<&str> = findings
        .iter()
        .map(|f| f.check.as_str())
        .chain(waived.iter().map(|w| w.check.as_str()))
        .collect();
    let passed: BTreeSet<&str> = evaluated
        .iter()
        .copied()
        .filter(|check| !found.contains(check))
        .collect();
    results.extend(passed.into_iter().map(|check| ReportResult {
        outcome: Outcome::Pass,
        check: check.to_owned(),
        resource: None,
        message: "evaluated; no finding".to_owned(),
        properties: cis_property(check),
    }));
    results.sort();
    results.dedup();
    let mut summary = Summary::default();
    for r in &results {
        match r.outcome {
            Outcome::Fail => summary.fail += 1,
            Outcome::Error => summary.error += 1,
            Outcome::Skip => summary.skip += 1,
            Outcome::Pass => summary.pass += 1,
        }
    }
    results.truncate(max_results);
    ReportBody {
        results,
        summary,
        max_results,
    }
}

fn resource(kind: &str, namespace: &str, name: &str) -> Option<ResultResource> {
    (!kind.is_empty() || !name.is_empty()).then(|| ResultResource {
        kind: kind.to_owned(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

fn result(
    outcome: Outcome,
    check: &str,
    resource: Option<ResultResource>,
    message: &str,
    reason: DriftReason,
    waiver: Option<&str>,
) -> ReportResult {
    let mut properties = cis_property(check);
    properties.insert("reason".to_owned(), reason.as_str().to_owned());
    if let Some(waiver) = waiver {
        properties.insert("waiver".to_owned(), waiver.to_owned());
    }
    ReportResult {
        outcome,
        check: check.to_owned(),
        resource,
        message: message.to_owned(),
        properties,
    }
}

fn cis_property(check: &str) -> BTreeMap<String, String> {
    crate::domain::checks::find(check)
        .filter(|info| !info.cis.is_empty())
        .map(|info| BTreeMap::from([("cis".to_owned(), info.cis.join(","))]))
        .unwrap_or_default()
}

/// The checks a baseline evaluates in each namespace it selects: the generated objects',
/// Pod Security's, the RBAC audit's and the TLS checks' it turns on.
pub fn namespace_checks(spec: &SecurityBaselineSpec) -> Vec<&'static str> {
    let reference = BaselineRef {
        name: "report",
        uid: "",
    };
    let mut checks: BTreeSet<&'static str> = desired_objects(spec, reference, "report")
        .iter()
        .map(|d| d.check)
        .collect();
    if let Some(pod_security) = &spec.pod_security {
        if pod_security.enforce.is_some()
            || pod_security.audit.is_some()
            || pod_security.warn.is_some()
        {
            checks.insert(check_ids::POD_SECURITY);
        }
        // Only a Gated rollout previews every namespace it selects.
        if pod_security.rollout == Some(PodSecurityRollout::Gated) {
            checks.insert(check_ids::POD_SECURITY_PREVIEW);
        }
    }
    if spec.rbac.audit.enabled {
        checks.extend(crate::domain::rbac_audit::CHECKS.iter().map(|c| c.id));
    }
    if let Some(tls) = &spec.tls {
        use crate::domain::tls::check_ids as tls_ids;
        if tls.ingress {
            checks.extend([
                tls_ids::INGRESS_TLS_MISSING,
                tls_ids::INGRESS_TLS_HOST_COVERAGE,
            ]);
            if tls.certificates {
                checks.extend([
                    tls_ids::TLS_SECRET,
                    tls_ids::TLS_CERTIFICATE_MALFORMED,
                    tls_ids::TLS_CERTIFICATE_EXPIRED,
                    tls_ids::TLS_CERTIFICATE_EXPIRING,
                    tls_ids::TLS_CERTIFICATE_HOST,
                ]);
            }
        }
        if tls.gateway {
            checks.extend(crate::domain::tls::gateway::CHECKS.iter().map(|c| c.id));
        }
    }
    checks.into_iter().collect()
}

/// What the cluster-scoped checks were evaluated over, besides the spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterScope {
    /// Nodes the node checks selected.
    pub nodes_selected: usize,
    /// Whether the version checks had the API server's version to judge.
    pub versions_read: bool,
}

/// The checks a baseline evaluates outside namespaces: on the selected nodes (a kubelet
/// check passes only when some node was checked), on the control plane, and the version
/// checks once the version was read.
pub fn cluster_checks(spec: &SecurityBaselineSpec, scope: ClusterScope) -> Vec<&'static str> {
    let mut checks: BTreeSet<&'static str> = BTreeSet::new();
    if scope.nodes_selected > 0
        && let Some(kubelet) = &spec.kubelet
    {
        checks.extend(crate::domain::node::kubelet::requested_checks(
            &kubelet.settings,
        ));
        if let Some(files) = &kubelet.files {
            checks.extend(crate::domain::node::files::requested_kubelet_checks(files));
        }
    }
    // Unobserved, these are Unknown findings (error), never a pass.
    checks.extend(crate::domain::node::api_server::control_plane_checks(spec));
    if scope.versions_read
        && let Some(versions) = &spec.kubernetes_version
    {
        use crate::domain::versions::check_ids as version_ids;
        if versions.support_window {
            checks.insert(version_ids::CONTROL_PLANE_EOL);
        }
        if versions.skew {
            checks.extend([version_ids::KUBELET_SKEW, version_ids::APISERVER_SKEW]);
        }
        if versions.deprecated_apis {
            checks.insert(version_ids::DEPRECATED_API);
        }
    }
    checks.into_iter().collect()
}

/// Whether a baseline has cluster-scoped checks (and so a cluster report).
pub fn has_cluster_checks(spec: &SecurityBaselineSpec) -> bool {
    crate::domain::node::evaluate::has_node_checks(spec) || spec.kubernetes_version.is_some()
}

/// The name of a baseline's report (the same in every namespace, and for the cluster).
pub fn report_name(baseline: &str) -> String {
    crate::domain::generated::generated_name(baseline, "report")
}

const CRITICAL_CHECKS: &[&str] = &[
    "rbac.anonymous-grant",
    "kubelet.anonymous-auth",
    "kubelet.authorization-mode",
    "apiserver.authorization-mode",
    "apiserver.anonymous-auth",
    "etcd.client-cert-auth",
];
const HIGH_CHECKS: &[&str] = &[
    "network.default-deny",
    "pod-security.labels",
    "rbac.admin-binding",
    "rbac.secrets-read",
    "rbac.wildcard",
    "rbac.workload-create-with-tokens",
    "rbac.escalation-verbs",
    "rbac.nodes-proxy",
    "kubelet.read-only-port",
    "kubelet.webhook-authentication",
    "apiserver.admission-plugins",
    "apiserver.encryption-at-rest",
    "apiserver.token-auth-file",
    "etcd.client-tls",
    "ingress.tls-missing",
    "tls.certificate-expired",
    "version.control-plane-eol",
];
const LOW_CHECKS: &[&str] = &[
    "network.allow-dns",
    "network.allow-same-namespace",
    "role.provisioned",
];

/// How severe a finding of `check` is, in the reports' scale (critical, high, medium, low):
/// what an attacker gains when it fails.
pub fn severity(check: &str) -> &'static str {
    if CRITICAL_CHECKS.contains(&check) || check.ends_with("-live") {
        "critical"
    } else if HIGH_CHECKS.contains(&check) {
        "high"
    } else if LOW_CHECKS.contains(&check) {
        "low"
    } else {
        "medium"
    }
}

/// The category of `check`, from its area (the part before the first dot).
pub fn category(check: &str) -> &'static str {
    match check.split('.').next().unwrap_or_default() {
        "network" => "Network policies",
        "pod-security" => "Pod Security",
        "role" | "rbac" => "RBAC",
        "quota" => "Resource limits",
        "audit" | "audit-policy" => "Audit logging",
        "kubelet" => "Kubelet",
        "apiserver" | "controller-manager" | "scheduler" => "Control plane",
        "etcd" => "etcd",
        "files" => "File permissions",
        "ingress" | "gateway" | "tls" => "TLS",
        "version" => "Kubernetes versions",
        _ => "Other",
    }
}

/// Where a report is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportScope<'a> {
    Namespace(&'a str),
    Cluster,
}

/// A hash of the content (results without timestamps, summary, limit): equal hashes, same
/// report; the timestamp alone never causes a write.
pub fn content_hash(body: &ReportBody) -> String {
    let content = json!({
        "results": body.results.iter().map(|r| result_json(r, "", None)).collect::<Vec<_>>(),
        "summary": summary_json(body.summary),
        "maxResults": body.max_results,
    });
    let digest = ring::digest::digest(&ring::digest::SHA256, content.to_string().as_bytes());
    digest
        .as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The report object to apply (server-side) for `baseline` at `scope`; `timestamp` (Unix
/// seconds) is when its content last changed.
pub fn report_object(
    api: ReportApi,
    scope: ReportScope<'_>,
    baseline: BaselineRef<'_>,
    body: &ReportBody,
    timestamp: i64,
) -> Value {
    let resource = match scope {
        ReportScope::Namespace(_) => api.namespaced(),
        ReportScope::Cluster => api.cluster(),
    };
    let mut metadata = json!({
        "name": report_name(baseline.name),
        "labels": {
            MANAGED_BY_LABEL: MANAGED_BY_VALUE,
            BASELINE_LABEL: baseline.name,
        },
        "annotations": { CONTENT_HASH_ANNOTATION: content_hash(body) },
        "ownerReferences": [owner_reference(baseline)],
    });
    let mut object = json!({
        "apiVersion": resource.api_version(),
        "kind": resource.kind,
        "results": body
            .results
            .iter()
            .map(|r| result_json(r, baseline.name, Some(timestamp)))
            .collect::<Vec<_>>(),
        "summary": summary_json(body.summary),
    });
    if let ReportScope::Namespace(namespace) = scope {
        metadata["namespace"] = json!(namespace);
        object["scope"] = json!({ "apiVersion": "v1", "kind": "Namespace", "name": namespace });
    }
    if api == ReportApi::OpenReports {
        object["source"] = json!(SOURCE);
        object["configuration"] = json!({ "limits": { "maxResults": body.max_results } });
    }
    object["metadata"] = metadata;
    object
}

fn summary_json(summary: Summary) -> Value {
    json!({
        "pass": summary.pass,
        "fail": summary.fail,
        "warn": 0,
        "error": summary.error,
        "skip": summary.skip,
    })
}

/// One result; `policy` is the baseline (left empty in the content hash: the report is the
/// baseline's already).
fn result_json(r: &ReportResult, policy: &str, timestamp: Option<i64>) -> Value {
    let mut value = json!({
        "source": SOURCE,
        "policy": policy,
        "rule": r.check,
        "result": r.outcome.as_str(),
        "category": category(&r.check),
        "severity": severity(&r.check),
        "scored": true,
        "message": r.message,
    });
    if !r.properties.is_empty() {
        value["properties"] = json!(r.properties);
    }
    if let Some(resource) = &r.resource {
        let mut reference = json!({ "kind": resource.kind, "name": resource.name });
        if let Some(api_version) = api_version_of(&resource.kind) {
            reference["apiVersion"] = json!(api_version);
        }
        if !resource.namespace.is_empty() {
            reference["namespace"] = json!(resource.namespace);
        }
        value["resources"] = json!([reference]);
    }
    if let Some(seconds) = timestamp {
        value["timestamp"] = json!({ "seconds": seconds, "nanos": 0 });
    }
    value
}

/// The apiVersion of the kinds findings name (None for pseudo-kinds like ControlPlane).
fn api_version_of(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Namespace" | "Node" | "Pod" | "Secret" | "ServiceAccount" | "ResourceQuota"
        | "LimitRange" => "v1",
        "NetworkPolicy" | "Ingress" => "networking.k8s.io/v1",
        "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io/v1"
        }
        "Gateway" => "gateway.networking.k8s.io/v1",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
