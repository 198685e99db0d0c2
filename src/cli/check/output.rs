//! What `check` prints: a table per baseline, or one stable JSON/YAML document.

use clap::ValueEnum;
use serde::Serialize;

use crate::api::{DriftEntry, EnforcementMode, WaivedEntry, Waiver, WaiverStatus};
use crate::domain::snapshot::BaselineVerdict;

/// Output formats.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// A table per baseline and a summary line.
    #[default]
    Table,
    /// One JSON document: {compliant, baselines: [{name, compliant, summary, drift}]}.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// The document `-o json` and `-o yaml` print. Field names are part of the CLI contract.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// True when no baseline has drift.
    pub compliant: bool,
    pub baselines: Vec<BaselineReport>,
}

/// One baseline's result.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BaselineReport {
    pub name: String,
    /// Where the baseline was read: "FILE: document N", the embedded default or the cluster.
    pub source: String,
    pub mode: EnforcementMode,
    pub compliant: bool,
    pub summary: Summary,
    /// Every finding (not bounded like status), sorted by namespace, kind, name, check.
    pub drift: Vec<DriftEntry>,
    /// Findings a waiver accepts (not drift: they do not make the exit code 1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waived: Vec<WaivedReport>,
    /// Each waiver: its state and how many findings it matched (as in status.waivers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waivers: Vec<WaiverStatus>,
}

/// A waived finding, with its waiver's reason and owner.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WaivedReport {
    #[serde(flatten)]
    pub entry: WaivedEntry,
    /// spec.waivers[].reason.
    pub waiver_reason: String,
    /// spec.waivers[].owner.
    pub owner: String,
    /// spec.waivers[].expires.
    pub expires: String,
}

/// Counts, named like the SecurityBaseline status summary.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub drift_total: usize,
    /// Namespaces with at least one finding, selected or not.
    pub namespaces_with_drift: usize,
    pub namespaces_selected: usize,
    pub namespaces_compliant: usize,
    pub namespaces_drifted: usize,
    /// False when the input had no node information and node checks were not evaluated.
    pub nodes_checked: bool,
    pub nodes_selected: usize,
    pub nodes_compliant: usize,
    /// The kubernetesVersion checks; absent when the baseline sets none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubernetes_version: Option<VersionSummary>,
    /// Findings a waiver accepts (not counted in driftTotal).
    #[serde(skip_serializing_if = "is_zero")]
    pub waived: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// What the kubernetesVersion checks were judged with.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VersionSummary {
    /// False when the input said nothing about versions (no Node, no --kubernetes-version).
    pub checked: bool,
    /// The date of the embedded release table.
    pub release_table: &'static str,
    /// The judged control plane minor's last supported day, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<String>,
}

impl BaselineReport {
    /// `asks_versions`: whether the baseline sets kubernetesVersion.
    pub fn new(
        name: &str,
        source: &str,
        mode: EnforcementMode,
        asks_versions: bool,
        waivers: &[Waiver],
        verdict: BaselineVerdict,
    ) -> Self {
        let waived: Vec<WaivedReport> = verdict
            .waived
            .iter()
            .map(|entry| {
                let waiver = waivers.iter().find(|w| w.name == entry.waiver);
                WaivedReport {
                    entry: entry.clone(),
                    waiver_reason: waiver.map(|w| w.reason.clone()).unwrap_or_default(),
                    owner: waiver.map(|w| w.owner.clone()).unwrap_or_default(),
                    expires: waiver.map(|w| w.expires.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let kubernetes_version = asks_versions.then(|| VersionSummary {
            checked: verdict.versions_checked,
            release_table: crate::domain::versions::releases::TABLE_DATE,
            end_of_life: verdict
                .end_of_life
                .as_ref()
                .map(|eol| eol.last_day.to_string()),
        });
        Self {
            name: name.to_owned(),
            source: source.to_owned(),
            mode,
            compliant: verdict.compliant(),
            summary: Summary {
                drift_total: verdict.findings.len(),
                namespaces_with_drift: verdict.namespaces_with_findings(),
                namespaces_selected: verdict.namespaces_selected,
                namespaces_compliant: verdict.namespace_counts().compliant(),
                namespaces_drifted: verdict.namespaces_drifted,
                nodes_checked: verdict.nodes_checked,
                nodes_selected: verdict.nodes_selected,
                nodes_compliant: verdict.nodes_compliant,
                kubernetes_version,
                waived: waived.len(),
            },
            drift: verdict.findings,
            waived,
            waivers: verdict.waivers,
        }
    }
}

/// The report could not be serialized.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot render JSON: {0}")]
    Json(#[source] serde_json::Error),
    #[error("cannot render YAML: {0}")]
    Yaml(#[source] serde_saphyr::SerializeError),
}

/// Renders the report in `format`.
pub fn render(report: &Report, format: Format) -> Result<String, RenderError> {
    match format {
        Format::Table => Ok(table(report)),
        Format::Json => serde_json::to_string_pretty(report)
            .map(|s| s + "\n")
            .map_err(RenderError::Json),
        Format::Yaml => serde_saphyr::to_string(report).map_err(RenderError::Yaml),
    }
}

/// The one-line summary of a baseline.
pub fn summary_line(summary: &Summary) -> String {
    let nodes = if summary.nodes_checked {
        format!(
            "nodes: {}/{} compliant",
            summary.nodes_compliant, summary.nodes_selected
        )
    } else {
        "nodes: not checked, no Node, NodeReport or --node given".to_owned()
    };
    let versions = match &summary.kubernetes_version {
        None => String::new(),
        Some(versions) if !versions.checked => {
            ", versions: not checked, no Node, NodeReport showing a kube-apiserver or \
             --kubernetes-version given"
                .to_owned()
        }
        Some(versions) => format!(", versions: release table of {}", versions.release_table),
    };
    let waived = if summary.waived > 0 {
        format!(", {} waived", summary.waived)
    } else {
        String::new()
    };
    format!(
        "{} drift findings in {} namespaces ({} namespaces selected, {nodes}{versions}){waived}",
        summary.drift_total, summary.namespaces_with_drift, summary.namespaces_selected
    )
}

fn table(report: &Report) -> String {
    let mut out = String::new();
    for (i, baseline) in report.baselines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!(
            "SecurityBaseline {} ({} mode, from {}): {}\n",
            baseline.name,
            match baseline.mode {
                EnforcementMode::Enforce => "Enforce",
                EnforcementMode::Audit => "Audit",
            },
            baseline.source,
            if baseline.compliant {
                "compliant"
            } else {
                "drift found"
            }
        ));
        if !baseline.drift.is_empty() {
            let header = ["NAMESPACE", "KIND", "NAME", "CHECK", "REASON", "MESSAGE"];
            let rows: Vec<[&str; 6]> = baseline
                .drift
                .iter()
                .map(|d| {
                    [
                        dash(&d.namespace),
                        d.kind.as_str(),
                        d.name.as_str(),
                        d.check.as_str(),
                        d.reason.as_str(),
                        d.message.as_str(),
                    ]
                })
                .collect();
            push_table(&mut out, header, &rows);
        }
        if !baseline.waived.is_empty() {
            out.push_str("Waived (not drift):\n");
            let header = [
                "NAMESPACE",
                "KIND",
                "NAME",
                "CHECK",
                "REASON",
                "WAIVER",
                "WHY",
            ];
            let rows: Vec<[&str; 7]> = baseline
                .waived
                .iter()
                .map(|w| {
                    [
                        dash(&w.entry.namespace),
                        w.entry.kind.as_str(),
                        w.entry.name.as_str(),
                        w.entry.check.as_str(),
                        w.entry.reason.as_str(),
                        w.entry.waiver.as_str(),
                        w.waiver_reason.as_str(),
                    ]
                })
                .collect();
            push_table(&mut out, header, &rows);
        }
        for waiver in &baseline.waivers {
            if !waiver.message.is_empty() {
                out.push_str(&format!(
                    "waiver {} ({}): {}\n",
                    waiver.name,
                    waiver.state.as_str(),
                    waiver.message
                ));
            }
        }
        out.push_str(&summary_line(&baseline.summary));
        out.push('\n');
    }
    out
}

fn dash(namespace: &str) -> &str {
    if namespace.is_empty() { "-" } else { namespace }
}

/// Appends aligned rows under `header` (the last column is not padded).
fn push_table<const N: usize>(out: &mut String, header: [&str; N], rows: &[[&str; N]]) {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if column + 1 < row.len() {
                let pad = widths[column] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DriftReason;

    fn report() -> Report {
        let verdict = BaselineVerdict {
            findings: vec![DriftEntry {
                namespace: "shop".into(),
                kind: "NetworkPolicy".into(),
                name: "baseline-restricted-deny-all".into(),
                check: "network.default-deny".into(),
                reason: DriftReason::Missing,
                message: "does not exist".into(),
            }],
            namespaces_selected: 2,
            namespaces_drifted: 1,
            ..BaselineVerdict::default()
        };
        Report {
            compliant: false,
            baselines: vec![BaselineReport::new(
                "restricted",
                "b.yaml: document 1",
                EnforcementMode::Audit,
                false,
                &[],
                verdict,
            )],
        }
    }

    #[test]
    fn the_table_has_aligned_columns_and_a_summary() {
        let text = render(&report(), Format::Table).expect("renders");
        assert_eq!(
            text,
            "SecurityBaseline restricted (Audit mode, from b.yaml: document 1): drift found\n\
             NAMESPACE  KIND           NAME                          CHECK                 REASON   MESSAGE\n\
             shop       NetworkPolicy  baseline-restricted-deny-all  network.default-deny  Missing  does not exist\n\
             1 drift findings in 1 namespaces (2 namespaces selected, nodes: not checked, no Node, NodeReport or --node given)\n"
        );
    }

    #[test]
    fn json_and_yaml_are_the_same_document() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&report(), Format::Json).expect("json")).expect("parses");
        let yaml: serde_json::Value =
            serde_saphyr::from_str(&render(&report(), Format::Yaml).expect("yaml"))
                .expect("parses");
        assert_eq!(json, yaml);
        assert_eq!(json["baselines"][0]["summary"]["namespacesCompliant"], 1);
        assert_eq!(json["baselines"][0]["drift"][0]["reason"], "Missing");
    }
}
