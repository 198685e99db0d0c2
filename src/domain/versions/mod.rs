//! Keeping Kubernetes up to date (`spec.kubernetesVersion`), pure: the shells observe the
//! kube-apiserver versions (`/version`, NodeReports), the Nodes' kubelet versions and, when
//! asked, `/metrics`; [`evaluate`] judges them at a given instant against the embedded
//! release table ([`releases`]) and the baseline's settings. Report only: every finding is a
//! Violation or Unknown, never repaired.
//!
//! Layered without a circle: `version`, `releases` and `observed` at the bottom; the checks
//! (`support`, `skew`, `deprecated`) on them; [`evaluate`] on top.

pub mod deprecated;
mod observed;
pub mod releases;
pub mod skew;
pub mod support;
pub mod version;

use jiff::Timestamp;

use crate::api::{
    DriftEntry, DriftReason, KubernetesVersionSettings, KubernetesVersionStatus, NodeReportSpec,
    ObservationState,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::api_server::{CONTROL_PLANE_KIND, CONTROL_PLANE_NAME};
use crate::domain::node::findings::truncate;

pub use deprecated::family_lines as deprecated_family;
pub use releases::TABLE_DATE;
pub use support::{EndOfLife, EolSource};
pub use version::KubeVersion;

/// Check IDs of the version checks.
pub mod check_ids {
    pub const CONTROL_PLANE_EOL: &str = "version.control-plane-eol";
    pub const KUBELET_SKEW: &str = "version.kubelet-skew";
    pub const APISERVER_SKEW: &str = "version.apiserver-skew";
    pub const DEPRECATED_API: &str = "version.deprecated-api";
}

/// The version checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::CONTROL_PLANE_EOL,
        description: "The oldest kube-apiserver's minor release is within its support window (release table or spec.kubernetesVersion.endOfLifeOverrides)",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::KUBELET_SKEW,
        description: "Each Node's kubelet is not newer than the oldest kube-apiserver and at most 3 minors (2 below 1.25) older than the newest",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::APISERVER_SKEW,
        description: "The observed kube-apiservers are at most one minor release apart",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::DEPRECATED_API,
        description: "No API version removed in the next minor release or earlier was requested (apiserver_requested_deprecated_apis)",
        cis: &[],
    },
];

/// Longest message a DriftEntry may carry (its schema's maxLength).
pub(crate) const MESSAGE_MAX: usize = 1024;

/// What the shells observed, as plain facts.
#[derive(Debug, Clone, Default)]
pub struct VersionInputs<'a> {
    /// kube-apiserver versions observed: (where, gitVersion or why it could not be read).
    /// "where" is e.g. "/version" or the node name of a NodeReport.
    pub api_servers: &'a [(String, Result<String, String>)],
    /// Nodes: (name, `status.nodeInfo.kubeletVersion`, possibly empty).
    pub kubelets: &'a [(String, String)],
    /// `/metrics`: None = not asked, `Some(Err)` = could not be read (e.g. 403),
    /// `Some(Ok)` = its Prometheus text (several MB; only one family is kept).
    pub deprecated_metrics: Option<Result<&'a str, String>>,
}

/// The version checks' findings, and what the shells need to show and schedule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VersionVerdict {
    /// Sorted and deduplicated.
    pub findings: Vec<DriftEntry>,
    /// The judged (oldest) kube-apiserver minor's end of life, with `supportWindow` and when
    /// known: for status and the end-of-life metric.
    pub end_of_life: Option<EndOfLife>,
    /// The earliest future instant at which a finding changes by time alone (the end of life
    /// passing): requeue then instead of polling.
    pub next_change: Option<Timestamp>,
}

impl VersionVerdict {
    /// The status block of a baseline with version checks: the API server's version as
    /// read (`api_server`, empty when unknown), the end of life judged by, the table's date.
    pub fn status(&self, api_server: &str) -> KubernetesVersionStatus {
        KubernetesVersionStatus {
            api_server: truncate(api_server.to_owned(), 64),
            end_of_life: self
                .end_of_life
                .as_ref()
                .map(|eol| eol.last_day.to_string())
                .unwrap_or_default(),
            end_of_life_source: self
                .end_of_life
                .as_ref()
                .map(|eol| truncate(eol.source.to_string(), 300))
                .unwrap_or_default(),
            release_table: TABLE_DATE.to_owned(),
        }
    }
}

/// Every enabled version check of `settings` against `inputs` at `now`.
pub fn evaluate(
    settings: &KubernetesVersionSettings,
    inputs: &VersionInputs<'_>,
    now: Timestamp,
) -> VersionVerdict {
    let servers = observed::ApiServers::read(inputs.api_servers);
    let mut verdict = VersionVerdict::default();
    if settings.support_window {
        let judged = support::control_plane_eol(&servers, &settings.end_of_life_overrides, now);
        verdict.findings.extend(judged.finding);
        verdict.next_change = judged
            .end_of_life
            .as_ref()
            .map(EndOfLife::first_unsupported_instant)
            .filter(|instant| *instant > now);
        verdict.end_of_life = judged.end_of_life;
    }
    if settings.skew {
        verdict
            .findings
            .extend(skew::kubelet_skew(inputs.kubelets, &servers));
        verdict.findings.extend(skew::apiserver_skew(&servers));
    }
    if settings.deprecated_apis {
        let current = servers.oldest().map(|s| s.version);
        verdict.findings.extend(deprecated::deprecated_api_findings(
            inputs.deprecated_metrics.as_ref(),
            current,
        ));
    }
    verdict.findings.sort();
    verdict.findings.dedup();
    verdict
}

/// The kube-apiserver versions the node agents reported, as observations for
/// [`VersionInputs::api_servers`], named after their nodes: `Ok(gitVersion)`, or `Err(why)`
/// when a report shows a kube-apiserver (Observed) without a version (the agent could not
/// ask it, or is older than this field). Reports showing none (NotFound), or whose
/// kube-apiserver could not be observed (Error: the control-plane checks already say so),
/// add nothing.
///
/// The callers pass only the reports of the nodes under check (a report counts only while
/// its Node is known: `domain::node::evaluate`), paired with the node's name.
pub fn reported_api_servers<'a>(
    reports: impl IntoIterator<Item = (&'a str, &'a NodeReportSpec)>,
) -> Vec<(String, Result<String, String>)> {
    reports
        .into_iter()
        .filter(|(_, report)| report.api_server.header.state == ObservationState::Observed)
        .map(|(node, report)| {
            let api = &report.api_server;
            let version = if !api.version.is_empty() {
                Ok(api.version.clone())
            } else if !api.version_message.is_empty() {
                Err(api.version_message.clone())
            } else {
                Err(format!(
                    "the NodeReport (agent {}) has no apiServer.version: an agent older than \
                     this check?",
                    if report.agent_version.is_empty() {
                        "of unknown version"
                    } else {
                        report.agent_version.as_str()
                    }
                ))
            };
            (node.to_owned(), version)
        })
        .collect()
}

/// A drift entry about the control plane as a whole (kube-apiserver).
pub(crate) fn control_plane_drift(check: &str, reason: DriftReason, message: String) -> DriftEntry {
    DriftEntry {
        namespace: String::new(),
        kind: CONTROL_PLANE_KIND.to_owned(),
        name: CONTROL_PLANE_NAME.to_owned(),
        check: check.to_owned(),
        reason,
        message: truncate(message, MESSAGE_MAX),
    }
}

#[cfg(test)]
mod tests;
