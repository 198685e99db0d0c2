//! Which nodes a baseline's node checks look at, and their verdict: one rule for the
//! controller and `check`, so both report the same nodes.
//!
//! - **The nodes** are the Node objects the caller knows of (the controller: its Node
//!   cache, narrowed by `--node-selector`; `check --live`: the listed Nodes, narrowed by the
//!   same flag; `check` on manifests: the Node manifests, plus the node of `--node` files).
//!   Each is paired with its NodeReport by name. A report whose Node is not among them is a
//!   leftover (a deleted Node, or one outside `--node-selector`) and is ignored.
//! - **Manifests without any Node** (only NodeReports, as `kube-baseline agent --print`
//!   writes them) say nothing about which Nodes exist: then each report stands for its node,
//!   without labels ([`NodeInventory::ReportsOnly`]).
//! - A node is **selected** when the baseline's `kubelet.nodeSelector` selects it (its
//!   kubelet checks are `Unknown` without a report: no agent runs there), or when its report
//!   shows a kube-apiserver and the baseline has control-plane or audit checks. When no
//!   report shows a kube-apiserver (a managed control plane, or no agent yet), the
//!   control-plane checks are `Unknown` once for the cluster.

use std::collections::BTreeMap;

use crate::api::{DriftEntry, NodeReportSpec, ObservationState, SecurityBaselineSpec};
use crate::api::{DriftReason, NodeObservations};
use crate::domain::node::api_server::{
    CONTROL_PLANE_KIND, CONTROL_PLANE_NAME, control_plane_checks, evaluate_control_plane,
};
use crate::domain::node::files;
use crate::domain::node::findings::node_drift;
use crate::domain::node::kubelet::{self, kubelet_selects};

/// Labels of a namespace or node.
pub type Labels = BTreeMap<String, String>;

/// What an input says about which nodes exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NodeInventory {
    /// The Node objects are known (a cluster, or manifests with Nodes): only they are
    /// checked, and a report without its Node is a leftover.
    #[default]
    Listed,
    /// Nothing is known of Node objects (manifests with reports only): each report stands
    /// for its node, without labels.
    ReportsOnly,
}

/// One node as the node checks see it.
#[derive(Debug, Clone, Copy)]
pub struct NodeUnderCheck<'a> {
    pub name: &'a str,
    pub labels: &'a Labels,
    /// What the agent on the node observed; `None` when no agent reported.
    pub report: Option<&'a NodeReportSpec>,
}

/// The nodes to check, each with its report (see the module docs for the rule).
pub fn nodes_under_check<'a>(
    inventory: NodeInventory,
    nodes: &'a [(String, Labels)],
    reports: &'a [NodeReportSpec],
    no_labels: &'a Labels,
) -> Vec<NodeUnderCheck<'a>> {
    let report_of = |name: &str| reports.iter().find(|r| r.node_name == name);
    match inventory {
        NodeInventory::Listed => nodes
            .iter()
            .map(|(name, labels)| NodeUnderCheck {
                name,
                labels,
                report: report_of(name),
            })
            .collect(),
        NodeInventory::ReportsOnly => reports
            .iter()
            .map(|report| NodeUnderCheck {
                name: &report.node_name,
                labels: no_labels,
                report: Some(report),
            })
            .collect(),
    }
}

/// The findings of one baseline on the nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodesVerdict {
    /// Node and control-plane findings, sorted and deduplicated.
    pub findings: Vec<DriftEntry>,
    /// Nodes the node checks apply to.
    pub selected: usize,
    /// Selected nodes without findings (`Unknown` is never compliant).
    pub compliant: usize,
}

/// Whether a baseline has any node or control-plane check.
pub fn has_node_checks(spec: &SecurityBaselineSpec) -> bool {
    spec.kubelet.is_some() || !control_plane_checks(spec).is_empty()
}

/// One baseline on `nodes` (see the module docs). A baseline without node checks selects
/// no node and finds nothing.
pub fn evaluate_nodes(spec: &SecurityBaselineSpec, nodes: &[NodeUnderCheck<'_>]) -> NodesVerdict {
    let mut verdict = NodesVerdict::default();
    if !has_node_checks(spec) {
        return verdict;
    }
    let has_control_plane_checks = !control_plane_checks(spec).is_empty();
    for node in nodes {
        let kubelet_selected = spec
            .kubelet
            .as_ref()
            .is_some_and(|kubelet| kubelet_selects(kubelet, node.labels));
        let (selected, findings) = match node.report {
            Some(report) => {
                let runs_api_server = report.api_server.header.state != ObservationState::NotFound;
                (
                    kubelet_selected || (runs_api_server && has_control_plane_checks),
                    evaluate_node(report, spec, node.labels),
                )
            }
            None if kubelet_selected => (true, unknown_node(node.name, spec)),
            None => (false, Vec::new()),
        };
        if selected {
            verdict.selected += 1;
            if findings.is_empty() {
                verdict.compliant += 1;
            }
        }
        verdict.findings.extend(findings);
    }
    verdict.findings.extend(unobserved_control_plane(
        spec,
        nodes.iter().filter_map(|node| node.report),
    ));
    verdict.findings.sort();
    verdict.findings.dedup();
    verdict
}

/// Every node check of `baseline` against one node's observations.
///
/// Kubelet checks run when the baseline's `kubelet.nodeSelector` selects `node_labels`;
/// control-plane and audit checks run when this node runs a kube-apiserver (on worker nodes
/// they produce nothing: [`unobserved_control_plane`] reports a control plane no agent sees).
/// A check whose input could not be observed is `Unknown`, never passing.
pub fn evaluate_node(
    report: &NodeObservations,
    baseline: &SecurityBaselineSpec,
    node_labels: &BTreeMap<String, String>,
) -> Vec<DriftEntry> {
    let node = report.node_name.as_str();
    let mut drift = Vec::new();
    if let Some(kubelet_baseline) = &baseline.kubelet
        && kubelet::kubelet_selects(kubelet_baseline, node_labels)
    {
        drift.extend(kubelet::evaluate_kubelet(
            node,
            &report.kubelet,
            &kubelet_baseline.settings,
        ));
        if let Some(files) = &kubelet_baseline.files {
            drift.extend(files::evaluate_kubelet_files(node, report, files));
        }
    }
    drift.extend(evaluate_control_plane(node, report, baseline));
    drift.sort();
    drift
}

/// Drift for a selected node that has no NodeReport at all (no agent runs there): every
/// kubelet check the baseline asks for is Unknown, never silently passing. (Control-plane
/// checks are not node-specific: see [`unobserved_control_plane`].)
pub fn unknown_node(node_name: &str, baseline: &SecurityBaselineSpec) -> Vec<DriftEntry> {
    let Some(kubelet_baseline) = &baseline.kubelet else {
        return Vec::new();
    };
    let mut checks = kubelet::requested_checks(&kubelet_baseline.settings);
    if let Some(files) = &kubelet_baseline.files {
        checks.extend(files::requested_kubelet_checks(files));
    }
    let mut drift: Vec<DriftEntry> = checks
        .into_iter()
        .map(|check| {
            node_drift(
                node_name,
                check,
                DriftReason::Unknown,
                "no NodeReport for this node: the kube-baseline agent does not run there (managed node, or the DaemonSet does not tolerate its taints), so its kubelet cannot be checked",
            )
        })
        .collect();
    drift.sort();
    drift
}

/// Drift when no NodeReport shows a kube-apiserver (a managed control plane, or the agent
/// does not run on control-plane nodes): every control-plane and audit check the baseline
/// asks for is Unknown, once for the cluster (kind ControlPlane, name kube-apiserver).
/// Empty when any report observed (or failed to observe) a kube-apiserver.
pub fn unobserved_control_plane<'a>(
    baseline: &SecurityBaselineSpec,
    reports: impl IntoIterator<Item = &'a NodeObservations>,
) -> Vec<DriftEntry> {
    if reports
        .into_iter()
        .any(|r| r.api_server.header.state != ObservationState::NotFound)
    {
        return Vec::new();
    }
    let mut drift: Vec<DriftEntry> = control_plane_checks(baseline)
        .into_iter()
        .map(|check| DriftEntry {
            namespace: String::new(),
            kind: CONTROL_PLANE_KIND.to_owned(),
            name: CONTROL_PLANE_NAME.to_owned(),
            check: check.to_owned(),
            reason: DriftReason::Unknown,
            message: "no kube-baseline agent observed a kube-apiserver process (managed control plane, or the agent does not run on control-plane nodes), so this check cannot be evaluated".to_owned(),
        })
        .collect();
    drift.sort();
    drift
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DriftReason;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn spec(json: serde_json::Value) -> SecurityBaselineSpec {
        serde_json::from_value(json).expect("baseline spec")
    }

    /// A report whose kubelet allows anonymous requests, optionally with a kube-apiserver.
    fn report(node: &str, api_server: bool) -> NodeReportSpec {
        let mut report = NodeReportSpec {
            node_name: node.to_owned(),
            ..NodeReportSpec::default()
        };
        report.kubelet.header.state = ObservationState::Observed;
        report.kubelet.settings.anonymous_auth = Some(true);
        if api_server {
            report.api_server.header.state = ObservationState::Observed;
        }
        report
    }

    fn names(nodes: &[NodeUnderCheck<'_>]) -> Vec<(String, bool)> {
        nodes
            .iter()
            .map(|n| (n.name.to_owned(), n.report.is_some()))
            .collect()
    }

    #[test]
    fn listed_nodes_are_the_nodes_and_a_report_without_its_node_is_a_leftover() {
        let nodes = vec![
            ("a".to_owned(), labels(&[("pool", "x")])),
            ("b".to_owned(), Labels::new()),
        ];
        let reports = vec![report("a", false), report("gone", true)];
        let none = Labels::new();
        let under_check = nodes_under_check(NodeInventory::Listed, &nodes, &reports, &none);
        assert_eq!(
            names(&under_check),
            [("a".to_owned(), true), ("b".to_owned(), false)]
        );
        assert_eq!(under_check[0].labels, &nodes[0].1);
    }

    #[test]
    fn without_listed_nodes_each_report_stands_for_its_node() {
        let reports = vec![report("a", false), report("b", true)];
        let none = Labels::new();
        let under_check = nodes_under_check(NodeInventory::ReportsOnly, &[], &reports, &none);
        assert_eq!(
            names(&under_check),
            [("a".to_owned(), true), ("b".to_owned(), true)]
        );
        assert!(under_check.iter().all(|n| n.labels.is_empty()));
    }

    #[test]
    fn a_leftover_report_of_a_control_plane_node_does_not_hide_the_unobserved_control_plane() {
        let spec = spec(serde_json::json!({
            "controlPlane": {"apiServer": {"anonymousAuth": false}},
        }));
        let nodes = vec![("w1".to_owned(), Labels::new())];
        let reports = vec![report("w1", false), report("old-cp", true)];
        let none = Labels::new();
        let verdict = evaluate_nodes(
            &spec,
            &nodes_under_check(NodeInventory::Listed, &nodes, &reports, &none),
        );
        assert_eq!((verdict.selected, verdict.compliant), (0, 0));
        assert!(!verdict.findings.is_empty());
        assert!(
            verdict
                .findings
                .iter()
                .all(|f| f.kind == "ControlPlane" && f.reason == DriftReason::Unknown),
            "{verdict:?}"
        );
    }

    #[test]
    fn kubelet_checks_follow_the_node_selector_and_unknown_is_never_compliant() {
        let spec = spec(serde_json::json!({
            "kubelet": {"nodeSelector": {"pool": "x"}, "settings": {"anonymousAuth": false}},
        }));
        let nodes = vec![
            ("a".to_owned(), labels(&[("pool", "x")])),
            ("b".to_owned(), labels(&[("pool", "x")])),
            ("c".to_owned(), labels(&[("pool", "y")])),
        ];
        let reports = vec![report("a", false), report("c", false)];
        let none = Labels::new();
        let verdict = evaluate_nodes(
            &spec,
            &nodes_under_check(NodeInventory::Listed, &nodes, &reports, &none),
        );
        assert_eq!((verdict.selected, verdict.compliant), (2, 0));
        let found: Vec<(&str, DriftReason)> = verdict
            .findings
            .iter()
            .map(|f| (f.name.as_str(), f.reason))
            .collect();
        assert_eq!(
            found,
            [("a", DriftReason::Violation), ("b", DriftReason::Unknown)]
        );
    }
}
