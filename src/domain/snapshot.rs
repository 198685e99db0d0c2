//! One baseline evaluated against a whole cluster at once, read-only: what
//! `kube-baseline check` prints. Pure, and built from the same pieces the controller calls
//! per namespace and per node ([`selects`], [`plan_namespace`], [`audit_namespace`],
//! [`evaluate_nodes`]), so both always agree.
//!
//! Nothing is repaired here, so drift is what the plan found: in Audit mode exactly what the
//! controller records in status; in Enforce mode what the controller would repair (and
//! report as repaired) on its next pass.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::api::{
    BASELINE_LABEL, DriftEntry, KubernetesVersionSettings, NodeReportSpec, SecurityBaseline,
    SecurityBaselineSpec, WaivedEntry, WaiverStatus,
};
use crate::domain::generated::{BaselineRef, GeneratedKind, NamespacedObject};
use crate::domain::node::evaluate::{NodeInventory, evaluate_nodes, nodes_under_check};
use crate::domain::plan::{NamespacePlan, NamespaceState, plan_namespace};
use crate::domain::rbac_audit::{RbacIndex, audit_namespace};
use crate::domain::selection::{NamespaceFacts, selects};
use crate::domain::tls::{GatewayFacts, IngressFacts, NamespaceTls, SecretFacts, SecretsView};
use crate::domain::versions::{EndOfLife, VersionInputs, VersionVerdict};
use crate::domain::waivers::Waivers;

pub use crate::domain::node::evaluate::Labels;

/// The uid of a baseline that never was in a cluster (read from a file): ownerReferences
/// are then compared by the baseline's name (see `plan`).
pub const UNKNOWN_UID: &str = "";

/// Everything the evaluation reads, as observed at one moment.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    /// Every namespace, with its labels.
    pub namespaces: Vec<(String, Labels)>,
    /// Every object of the generated kinds (NetworkPolicy, Role, ResourceQuota, LimitRange)
    /// in any namespace, ours or not: ours are recognised by their labels, the others can
    /// block a generated name (Conflict).
    pub objects: Vec<NamespacedObject>,
    /// Every Role, ClusterRole, RoleBinding and ClusterRoleBinding.
    pub rbac: RbacIndex,
    /// Every Ingress, by namespace (the TLS checks).
    pub ingresses: Vec<(String, IngressFacts)>,
    /// The Secrets the certificate checks read, if any.
    pub secrets: SecretInventory,
    /// The instant of the observation (certificates expire).
    pub observed_at: k8s_openapi::jiff::Timestamp,
    /// Every Gateway, by namespace (the TLS checks; empty without the Gateway API CRDs).
    pub gateways: Vec<(String, GatewayFacts)>,
    /// Every node, with its labels.
    pub nodes: Vec<(String, Labels)>,
    /// Every NodeReport's observations (one per node that runs the agent).
    pub node_reports: Vec<NodeReportSpec>,
    /// Whether `nodes` lists the cluster's Nodes (see [`NodeInventory`]).
    pub node_inventory: NodeInventory,
    /// Whether node and control-plane checks are evaluated. A live cluster always has nodes
    /// (true); a set of manifests without any Node, NodeReport or node file says nothing
    /// about nodes (false), and the verdict says they were not checked rather than
    /// reporting every node check as Unknown.
    pub check_nodes: bool,
    /// What the version checks read (`spec.kubernetesVersion`); `None` when nothing about
    /// versions is known (manifests without Nodes and without a given API server version):
    /// the verdict then says they were not checked.
    pub versions: Option<VersionFacts>,
}

/// The Secrets known to the certificate checks.
#[derive(Debug, Clone)]
pub enum SecretInventory {
    /// None was read; why (named in each certificate finding, which is then Unknown).
    NotRead(String),
    /// (namespace, name, facts) of the Secrets read; `only_tls_type`: only
    /// `kubernetes.io/tls` Secrets were read (see [`SecretsView::Read`]).
    Read {
        secrets: Vec<(String, String, SecretFacts)>,
        only_tls_type: bool,
    },
}

impl Default for SecretInventory {
    fn default() -> Self {
        Self::NotRead(
            "no Secret was given: add the Secrets the Ingresses name (kubectl get secret -o yaml) to check their certificates".to_owned(),
        )
    }
}

impl SecretInventory {
    /// Each namespace's view.
    fn by_namespace(&self) -> BTreeMap<&str, SecretsView<'_>> {
        let mut views: BTreeMap<&str, SecretsView<'_>> = BTreeMap::new();
        if let Self::Read {
            secrets,
            only_tls_type,
        } = self
        {
            for (namespace, name, facts) in secrets {
                let view = views
                    .entry(namespace.as_str())
                    .or_insert_with(|| SecretsView::Read {
                        secrets: BTreeMap::new(),
                        only_tls_type: *only_tls_type,
                    });
                if let SecretsView::Read { secrets, .. } = view {
                    secrets.insert(name.as_str(), facts);
                }
            }
        }
        views
    }

    /// The view of a namespace not in [`Self::by_namespace`]: no Secret, or none read.
    fn empty_view(&self) -> SecretsView<'_> {
        match self {
            Self::NotRead(why) => SecretsView::NotRead(why),
            Self::Read { only_tls_type, .. } => SecretsView::Read {
                secrets: BTreeMap::new(),
                only_tls_type: *only_tls_type,
            },
        }
    }
}

/// The versions observed, and when: the support window is judged at `now`.
#[derive(Debug, Clone, Default)]
pub struct VersionFacts {
    /// kube-apiserver versions: (where observed, gitVersion or why it could not be read).
    pub api_servers: Vec<(String, Result<String, String>)>,
    /// Every Node's `status.nodeInfo.kubeletVersion` (may be empty).
    pub kubelets: Vec<(String, String)>,
    /// The API server's /metrics text (only its deprecated-API family is read), or why it
    /// could not be read; `None` when not asked.
    pub deprecated_metrics: Option<Result<String, String>>,
    /// The instant of the observation.
    pub now: k8s_openapi::jiff::Timestamp,
}

impl VersionFacts {
    /// The version checks of `settings` over these facts (the controller calls this too).
    pub fn evaluate(&self, settings: &KubernetesVersionSettings) -> VersionVerdict {
        let inputs = VersionInputs {
            api_servers: &self.api_servers,
            kubelets: &self.kubelets,
            deprecated_metrics: self
                .deprecated_metrics
                .as_ref()
                .map(|text| text.as_deref().map_err(Clone::clone)),
        };
        crate::domain::versions::evaluate(settings, &inputs, self.now)
    }
}

/// The outcome of one baseline against a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaselineVerdict {
    /// Every drift finding, sorted by (namespace, kind, name, check) and deduplicated.
    pub findings: Vec<DriftEntry>,
    /// Namespaces the baseline selects.
    pub namespaces_selected: usize,
    /// Selected namespaces with at least one finding.
    pub namespaces_drifted: usize,
    /// Whether node checks were evaluated (see [`ClusterSnapshot::check_nodes`]).
    pub nodes_checked: bool,
    /// Nodes the node checks apply to.
    pub nodes_selected: usize,
    /// Selected nodes without findings.
    pub nodes_compliant: usize,
    /// Whether the version checks were evaluated (see [`ClusterSnapshot::versions`]); false
    /// also when the baseline sets none.
    pub versions_checked: bool,
    /// The judged control plane's end of life, when the support window was checked.
    pub end_of_life: Option<EndOfLife>,
    /// Findings an active waiver accepts (not drift), sorted.
    pub waived: Vec<WaivedEntry>,
    /// Each waiver's state and how many findings it matched, in spec order.
    pub waivers: Vec<WaiverStatus>,
}

impl BaselineVerdict {
    /// The Compliant condition's rule. `check` evaluates every namespace of its snapshot at
    /// once, so none is pending: compliant means no drift at all.
    pub fn compliance(&self) -> crate::domain::status::Compliance {
        crate::domain::status::Compliance::of(self.findings.len(), 0)
    }

    /// The namespace counts, as status reports them (nothing is pending here).
    pub fn namespace_counts(&self) -> crate::domain::status::NamespaceCounts {
        crate::domain::status::NamespaceCounts {
            selected: self.namespaces_selected,
            drifted: self.namespaces_drifted,
            pending: 0,
        }
    }

    /// Whether [`Self::compliance`] is Compliant.
    pub fn compliant(&self) -> bool {
        self.compliance() == crate::domain::status::Compliance::Compliant
    }

    /// Adds a finding made after [`evaluate_baseline`] (`check --live`'s Pod Security
    /// preview), through the baseline's waivers like every other.
    pub fn add_finding(
        &mut self,
        spec: &SecurityBaselineSpec,
        snapshot: &ClusterSnapshot,
        finding: DriftEntry,
    ) {
        let waivers = Waivers::new(&spec.waivers, snapshot.observed_at);
        let labels = snapshot
            .namespaces
            .iter()
            .find(|(name, _)| *name == finding.namespace)
            .map(|(name, labels)| {
                (
                    name.as_str(),
                    labels as &dyn crate::domain::selection::LabelLookup,
                )
            });
        let split = waivers.split(vec![finding], labels);
        self.findings.extend(split.drift);
        self.waived.extend(split.waived);
        self.findings.sort();
        self.findings.dedup();
        self.waived.sort();
        self.waived.dedup();
        self.waivers = waivers.report(&self.waived);
    }

    /// Distinct namespaces with findings, selected or not (an unselected namespace may still
    /// hold objects the baseline wants removed).
    pub fn namespaces_with_findings(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.namespace.is_empty())
            .map(|f| f.namespace.as_str())
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// The findings of one baseline in one namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceVerdict {
    /// Whether the baseline selects the namespace.
    pub selected: bool,
    /// Plan findings (generated objects, Pod Security labels) and, when selected, RBAC audit
    /// findings, less the waived; sorted.
    pub findings: Vec<DriftEntry>,
    /// Findings an active waiver accepts.
    pub waived: Vec<WaivedEntry>,
}

/// The baseline as its generated objects refer to it; the uid is [`UNKNOWN_UID`] when the
/// baseline has none (read from a file).
pub fn baseline_ref(baseline: &SecurityBaseline) -> BaselineRef<'_> {
    BaselineRef {
        name: baseline.metadata.name.as_deref().unwrap_or_default(),
        uid: baseline.metadata.uid.as_deref().unwrap_or(UNKNOWN_UID),
    }
}

/// Evaluates one baseline against the whole snapshot. `operator_namespace` is excluded from
/// selection like the system namespaces (see `selection::selects`).
pub fn evaluate_baseline(
    baseline: &SecurityBaseline,
    snapshot: &ClusterSnapshot,
    operator_namespace: &str,
) -> BaselineVerdict {
    let reference = baseline_ref(baseline);
    let spec = &baseline.spec;
    let by_namespace = objects_by_namespace(&snapshot.objects);
    let ingresses_by_namespace = by_namespace_of(&snapshot.ingresses);
    let secrets_by_namespace = snapshot.secrets.by_namespace();
    let gateways_by_namespace = by_namespace_of(&snapshot.gateways);
    let waivers = Waivers::new(&spec.waivers, snapshot.observed_at);
    let mut verdict = BaselineVerdict::default();
    for (name, labels) in &snapshot.namespaces {
        let objects = by_namespace
            .get(name.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let tls = NamespaceTls {
            ingresses: ingresses_by_namespace
                .get(name.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default(),
            gateways: gateways_by_namespace
                .get(name.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default(),
            secrets: secrets_by_namespace
                .get(name.as_str())
                .cloned()
                .unwrap_or_else(|| snapshot.secrets.empty_view()),
            now: snapshot.observed_at,
        };
        let namespace = evaluate_namespace(
            spec,
            reference,
            NamespaceFacts { name, labels },
            operator_namespace,
            objects,
            &snapshot.rbac,
            &tls,
            &waivers,
        );
        if namespace.selected {
            verdict.namespaces_selected += 1;
            if !namespace.findings.is_empty() {
                verdict.namespaces_drifted += 1;
            }
        }
        verdict.findings.extend(namespace.findings);
        verdict.waived.extend(namespace.waived);
    }
    // Node, control-plane and version findings are in no namespace.
    let mut elsewhere = Vec::new();
    if snapshot.check_nodes {
        let no_labels = Labels::new();
        let nodes = evaluate_nodes(
            spec,
            &nodes_under_check(
                snapshot.node_inventory,
                &snapshot.nodes,
                &snapshot.node_reports,
                &no_labels,
            ),
        );
        verdict.nodes_checked = true;
        verdict.nodes_selected = nodes.selected;
        verdict.nodes_compliant = nodes.compliant;
        elsewhere.extend(nodes.findings);
    }
    if let (Some(settings), Some(facts)) = (&spec.kubernetes_version, &snapshot.versions) {
        let versions = facts.evaluate(settings);
        verdict.versions_checked = true;
        verdict.end_of_life = versions.end_of_life;
        elsewhere.extend(versions.findings);
    }
    let split = waivers.split(elsewhere, None);
    verdict.findings.extend(split.drift);
    verdict.waived.extend(split.waived);
    verdict.findings.sort();
    verdict.findings.dedup();
    verdict.waived.sort();
    verdict.waived.dedup();
    verdict.waivers = waivers.report(&verdict.waived);
    verdict
}

/// The namespaces where `verdict` found Pod Security label drift and enforcing the
/// baseline's level would make the API server evaluate the existing pods, each with the
/// enforce labels to preview (`check --live` makes that change as a dry run).
pub fn preview_targets(
    spec: &SecurityBaselineSpec,
    snapshot: &ClusterSnapshot,
    verdict: &BaselineVerdict,
) -> Vec<(String, BTreeMap<String, String>)> {
    let wanted = crate::domain::generated::wanted_pod_security(spec);
    let drifted: BTreeSet<&str> = verdict
        .findings
        .iter()
        .filter(|f| f.check == crate::domain::generated::check_ids::POD_SECURITY)
        .map(|f| f.namespace.as_str())
        .collect();
    snapshot
        .namespaces
        .iter()
        .filter(|(name, _)| drifted.contains(name.as_str()))
        .filter_map(|(name, labels)| {
            crate::domain::pod_security::preview::target_labels(&wanted, labels)
                .map(|target| (name.clone(), target))
        })
        .collect()
}

/// Groups (namespace, value) pairs by namespace (each group in input order).
fn by_namespace_of<T>(pairs: &[(String, T)]) -> BTreeMap<&str, Vec<&T>> {
    let mut grouped: BTreeMap<&str, Vec<&T>> = BTreeMap::new();
    for (namespace, value) in pairs {
        grouped.entry(namespace.as_str()).or_default().push(value);
    }
    grouped
}

/// Groups objects by namespace (each group in input order).
pub fn objects_by_namespace(
    objects: &[NamespacedObject],
) -> BTreeMap<&str, Vec<&NamespacedObject>> {
    let mut grouped: BTreeMap<&str, Vec<&NamespacedObject>> = BTreeMap::new();
    for object in objects {
        grouped.entry(object.namespace()).or_default().push(object);
    }
    grouped
}

/// The objects of `objects` that belong to the baseline: our managed-by label and its
/// baseline label.
pub fn ours<'a>(objects: &[&'a NamespacedObject], baseline: &str) -> Vec<&'a NamespacedObject> {
    objects
        .iter()
        .copied()
        .filter(|o| o.is_managed_by_us() && o.label(BASELINE_LABEL) == Some(baseline))
        .collect()
}

/// One baseline in one namespace: selection, the plan's findings (nothing is repaired) and,
/// when selected, the RBAC audit. `objects` are every object of the generated kinds in the
/// namespace, ours or not.
#[allow(
    clippy::too_many_arguments,
    reason = "plan_with_audit's inputs plus the namespace's selection facts, passed straight through"
)]
pub fn evaluate_namespace(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    namespace: NamespaceFacts<'_>,
    operator_namespace: &str,
    objects: &[&NamespacedObject],
    rbac: &RbacIndex,
    tls: &NamespaceTls<'_>,
    waivers: &Waivers<'_>,
) -> NamespaceVerdict {
    let selected = selects(spec, namespace, operator_namespace);
    let ours = ours(objects, baseline.name);
    let state = NamespaceState {
        name: namespace.name,
        labels: namespace.labels,
        selected,
        ours: &ours,
    };
    let lookup_any = |kind: GeneratedKind, name: &str| -> Option<ObjectMeta> {
        objects
            .iter()
            .find(|o| o.kind() == kind && o.name() == name)
            .map(|o| o.metadata().clone())
    };
    let plan = plan_with_audit(spec, baseline, &state, &lookup_any, rbac, tls, waivers);
    NamespaceVerdict {
        selected,
        findings: plan.findings,
        waived: plan.waived,
    }
}

/// What the controller and `check` both do for one (baseline, namespace): the plan and,
/// when the namespace is selected, the RBAC audit's and the TLS checks' findings added to it
/// (report only: they never produce changes). One composition, so both always agree.
pub fn plan_with_audit(
    spec: &SecurityBaselineSpec,
    baseline: BaselineRef<'_>,
    state: &NamespaceState<'_>,
    lookup_any: &dyn Fn(GeneratedKind, &str) -> Option<ObjectMeta>,
    rbac: &RbacIndex,
    tls: &NamespaceTls<'_>,
    waivers: &Waivers<'_>,
) -> NamespacePlan {
    let mut plan = plan_namespace(spec, baseline, state, lookup_any);
    if state.selected {
        plan.findings
            .extend(audit_namespace(rbac, state.name, &spec.rbac.audit));
        if let Some(tls_settings) = &spec.tls {
            let verdict = crate::domain::tls::evaluate_namespace(tls_settings, state.name, tls);
            plan.findings.extend(verdict.entries);
            plan.next_change = verdict.next_change;
            plan.findings.extend(crate::domain::tls::evaluate_gateways(
                tls_settings,
                state.name,
                tls.gateways.iter().copied(),
            ));
        }
    }
    plan.findings.sort();
    plan.findings.dedup();
    plan.waive(waivers, state.name, state.labels);
    plan
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::api::{DriftReason, KubeletObservation, KubeletSettings, Observation};
    use crate::domain::generated::desired_objects;
    use crate::domain::rbac_audit::RbacObject;

    fn yaml<T: DeserializeOwned>(text: &str) -> T {
        serde_saphyr::from_str(text).expect("fixture parses")
    }

    fn baseline(text: &str) -> SecurityBaseline {
        yaml(text)
    }

    const AUDIT: &str = r#"
apiVersion: kube-baseline.dev/v1alpha1
kind: SecurityBaseline
metadata: {name: restricted}
spec:
  mode: Audit
  namespaceSelector: {matchLabels: {env: prod}}
  networkPolicy: {defaultDeny: {ingress: true, egress: true}, allowDNS: true}
  podSecurity: {enforce: restricted}
  rbac:
    audit: {enabled: true}
  kubelet:
    settings: {anonymousAuth: false, readOnlyPort: 0}
"#;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn prod() -> Labels {
        labels(&[
            ("env", "prod"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
        ])
    }

    /// Every object the baseline wants in `namespace`, as the controller stored them for the
    /// cluster's baseline (with a uid the file baseline does not know).
    fn stored(baseline: &SecurityBaseline, namespace: &str) -> Vec<NamespacedObject> {
        let cluster = BaselineRef {
            name: "restricted",
            uid: "0f6c1c1e-cluster-uid",
        };
        desired_objects(&baseline.spec, cluster, namespace)
            .into_iter()
            .map(|d| d.object)
            .collect()
    }

    fn keys(verdict: &BaselineVerdict) -> Vec<(String, String, String, String, DriftReason)> {
        verdict
            .findings
            .iter()
            .map(|f| {
                (
                    f.namespace.clone(),
                    f.kind.clone(),
                    f.name.clone(),
                    f.check.clone(),
                    f.reason,
                )
            })
            .collect()
    }

    fn key(
        namespace: &str,
        kind: &str,
        name: &str,
        check: &str,
        reason: DriftReason,
    ) -> (String, String, String, String, DriftReason) {
        (
            namespace.to_owned(),
            kind.to_owned(),
            name.to_owned(),
            check.to_owned(),
            reason,
        )
    }

    fn report(node: &str, anonymous: bool) -> NodeReportSpec {
        NodeReportSpec {
            node_name: node.to_owned(),
            kubelet: KubeletObservation {
                header: Observation::observed(String::new()),
                settings: KubeletSettings {
                    anonymous_auth: Some(anonymous),
                    read_only_port: Some(0),
                    ..KubeletSettings::default()
                },
                ..KubeletObservation::default()
            },
            ..NodeReportSpec::default()
        }
    }

    #[test]
    fn a_compliant_cluster_has_no_findings() {
        let b = baseline(AUDIT);
        let snapshot = ClusterSnapshot {
            namespaces: vec![
                ("shop".to_owned(), prod()),
                ("dev".to_owned(), labels(&[("env", "dev")])),
                ("kube-system".to_owned(), Labels::new()),
            ],
            objects: stored(&b, "shop"),
            nodes: vec![("node-1".to_owned(), Labels::new())],
            node_reports: vec![report("node-1", false)],
            check_nodes: true,
            ..ClusterSnapshot::default()
        };
        let verdict = evaluate_baseline(&b, &snapshot, "kube-baseline-system");
        assert_eq!(
            verdict,
            BaselineVerdict {
                findings: Vec::new(),
                namespaces_selected: 1,
                namespaces_drifted: 0,
                nodes_checked: true,
                nodes_selected: 1,
                nodes_compliant: 1,
                ..BaselineVerdict::default()
            }
        );
        assert!(verdict.compliant());
    }

    #[test]
    fn waived_findings_are_not_drift_and_each_waiver_is_reported() {
        let mut b = baseline(AUDIT);
        b.spec.waivers = yaml(
            r#"
- name: shop-network
  checks: ["network.*"]
  namespaces: [shop]
  reason: shop runs its own network policies, reviewed in SEC-7
  owner: team-shop
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-31T00:00:00Z"
- name: node-1-anonymous
  checks: [kubelet.anonymous-auth]
  objects: [{kind: Node, name: node-1}]
  reason: node-1 serves an unauthenticated health probe until the upgrade
  owner: sre
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-31T00:00:00Z"
- name: stale
  checks: [rbac.wildcard]
  reason: nothing of this is flagged any more
  owner: sre
  granted: "2026-12-01T00:00:00Z"
  expires: "2026-12-31T00:00:00Z"
"#,
        );
        let mut snapshot = ClusterSnapshot {
            namespaces: vec![("shop".to_owned(), prod())],
            nodes: vec![("node-1".to_owned(), Labels::new())],
            node_reports: vec![report("node-1", true)],
            check_nodes: true,
            observed_at: "2026-12-02T00:00:00Z".parse().expect("time"),
            ..ClusterSnapshot::default()
        };
        let verdict = evaluate_baseline(&b, &snapshot, "kube-baseline-system");
        assert_eq!(verdict.findings, Vec::new());
        assert!(verdict.compliant(), "waived findings are not drift");
        assert_eq!(verdict.namespaces_drifted, 0);
        let waived: Vec<(&str, &str, &str)> = verdict
            .waived
            .iter()
            .map(|w| (w.name.as_str(), w.check.as_str(), w.waiver.as_str()))
            .collect();
        assert_eq!(
            waived,
            [
                ("node-1", "kubelet.anonymous-auth", "node-1-anonymous"),
                (
                    "baseline-restricted-allow-dns",
                    "network.allow-dns",
                    "shop-network"
                ),
                (
                    "baseline-restricted-deny-all",
                    "network.default-deny",
                    "shop-network"
                ),
            ]
        );
        let states: Vec<(&str, crate::api::WaiverState, i64)> = verdict
            .waivers
            .iter()
            .map(|w| (w.name.as_str(), w.state, w.matched))
            .collect();
        assert_eq!(
            states,
            [
                ("shop-network", crate::api::WaiverState::Active, 2),
                ("node-1-anonymous", crate::api::WaiverState::Active, 1),
                ("stale", crate::api::WaiverState::Active, 0),
            ]
        );

        // At expiry the same cluster has drift again: nothing else changed.
        snapshot.observed_at = "2026-12-31T00:00:00Z".parse().expect("time");
        let expired = evaluate_baseline(&b, &snapshot, "kube-baseline-system");
        assert_eq!(expired.findings.len(), 3);
        assert!(expired.waived.is_empty());
        assert!(!expired.compliant());
        assert!(
            expired
                .waivers
                .iter()
                .all(|w| w.state == crate::api::WaiverState::Expired)
        );
    }

    #[test]
    fn version_checks_run_only_when_asked_and_when_versions_are_known() {
        let asks = baseline(
            "metadata: {name: v}\nspec:\n  namespaceSelector: {}\n  kubernetesVersion: {}\n",
        );
        let facts = VersionFacts {
            api_servers: vec![("/version".to_owned(), Ok("v1.36.3".to_owned()))],
            kubelets: vec![("old".to_owned(), "v1.32.0".to_owned())],
            deprecated_metrics: None,
            now: "2026-12-01T00:00:00Z".parse().expect("time"),
        };
        let known = ClusterSnapshot {
            versions: Some(facts),
            ..ClusterSnapshot::default()
        };
        let verdict = evaluate_baseline(&asks, &known, "kube-baseline-system");
        assert!(verdict.versions_checked);
        assert_eq!(
            verdict.end_of_life.map(|eol| eol.last_day.to_string()),
            Some("2027-06-28".to_owned())
        );
        let checks: Vec<_> = verdict
            .findings
            .iter()
            .map(|f| (f.name.as_str(), f.check.as_str()))
            .collect();
        assert_eq!(checks, vec![("old", "version.kubelet-skew")]);

        let unknown = evaluate_baseline(&asks, &ClusterSnapshot::default(), "kube-baseline-system");
        assert!(!unknown.versions_checked && unknown.findings.is_empty());
        let silent = baseline("metadata: {name: s}\nspec: {namespaceSelector: {}}\n");
        let verdict = evaluate_baseline(&silent, &known, "kube-baseline-system");
        assert!(!verdict.versions_checked && verdict.findings.is_empty());
    }

    #[test]
    fn drift_conflicts_rbac_and_nodes_are_found_by_the_shared_checks() {
        let b = baseline(AUDIT);
        // shop: deny-all deleted, allow-dns kept.
        let mut objects: Vec<NamespacedObject> = stored(&b, "shop")
            .into_iter()
            .filter(|o| o.name() != "baseline-restricted-deny-all")
            .collect();
        // web: a user's NetworkPolicy holds the generated deny-all name.
        let foreign: k8s_openapi::api::networking::v1::NetworkPolicy = yaml(
            "metadata: {name: baseline-restricted-deny-all, namespace: web}\nspec: {podSelector: {}}",
        );
        objects.push(NamespacedObject::NetworkPolicy(foreign));
        objects.extend(
            stored(&b, "web")
                .into_iter()
                .filter(|o| o.name() != "baseline-restricted-deny-all"),
        );
        // old: no longer selected, still holds our objects (onUnselect: Delete).
        objects.extend(stored(&b, "old"));
        let role: Role = yaml(
            "metadata: {name: everything, namespace: shop}\nrules: [{apiGroups: [''], resources: [configmaps], verbs: ['*']}]",
        );
        let binding: RoleBinding = yaml(
            "metadata: {name: alice-everything, namespace: shop}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: everything}\nsubjects: [{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}]",
        );
        let admin: ClusterRoleBinding = yaml(
            "metadata: {name: ci-admin}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects: [{kind: ServiceAccount, name: ci, namespace: web}]",
        );
        let rbac = RbacIndex::from_objects([
            RbacObject::from(&role),
            RbacObject::from(&binding),
            RbacObject::from(&admin),
        ]);
        let snapshot = ClusterSnapshot {
            namespaces: vec![
                (
                    "shop".to_owned(),
                    labels(&[
                        ("env", "prod"),
                        ("pod-security.kubernetes.io/enforce", "baseline"),
                    ]),
                ),
                ("web".to_owned(), prod()),
                ("old".to_owned(), labels(&[("env", "staging")])),
            ],
            objects,
            rbac,
            nodes: vec![
                ("node-1".to_owned(), Labels::new()),
                ("node-2".to_owned(), Labels::new()),
            ],
            // "gone": a leftover report of a deleted Node, ignored like the controller does.
            node_reports: vec![report("node-1", true), report("gone", true)],
            node_inventory: NodeInventory::Listed,
            check_nodes: true,
            versions: None,
            ..ClusterSnapshot::default()
        };
        let verdict = evaluate_baseline(&b, &snapshot, "kube-baseline-system");
        use DriftReason::*;
        assert_eq!(
            keys(&verdict),
            vec![
                key("", "Node", "node-1", "kubelet.anonymous-auth", Violation),
                key("", "Node", "node-2", "kubelet.anonymous-auth", Unknown),
                key("", "Node", "node-2", "kubelet.read-only-port", Unknown),
                key(
                    "old",
                    "NetworkPolicy",
                    "baseline-restricted-allow-dns",
                    "network.allow-dns",
                    Unexpected
                ),
                key(
                    "old",
                    "NetworkPolicy",
                    "baseline-restricted-deny-all",
                    "network.default-deny",
                    Unexpected
                ),
                key("shop", "Namespace", "shop", "pod-security.labels", Modified),
                key(
                    "shop",
                    "NetworkPolicy",
                    "baseline-restricted-deny-all",
                    "network.default-deny",
                    Missing
                ),
                key("shop", "Role", "everything", "rbac.wildcard", Violation),
                key(
                    "web",
                    "ClusterRoleBinding",
                    "ci-admin",
                    "rbac.admin-binding",
                    Violation
                ),
                key(
                    "web",
                    "NetworkPolicy",
                    "baseline-restricted-deny-all",
                    "network.default-deny",
                    Conflict
                ),
            ]
        );
        assert_eq!(verdict.namespaces_selected, 2);
        assert_eq!(verdict.namespaces_drifted, 2);
        assert_eq!(verdict.namespaces_with_findings(), 3);
        assert_eq!((verdict.nodes_selected, verdict.nodes_compliant), (2, 0));
    }

    #[test]
    fn unknown_uid_matches_owner_references_by_name_and_a_cluster_uid_by_uid() {
        let b = baseline(AUDIT);
        let snapshot = ClusterSnapshot {
            namespaces: vec![("shop".to_owned(), prod())],
            objects: stored(&b, "shop"),
            ..ClusterSnapshot::default()
        };
        assert_eq!(b.metadata.uid, None);
        assert!(evaluate_baseline(&b, &snapshot, "x").compliant());
        let mut live = b.clone();
        live.metadata.uid = Some("another-uid".to_owned());
        let verdict = evaluate_baseline(&live, &snapshot, "x");
        assert_eq!(verdict.findings.len(), 2, "{verdict:?}");
        assert!(
            verdict
                .findings
                .iter()
                .all(|f| f.reason == DriftReason::Modified && f.message.contains("ownerReference"))
        );
    }

    #[test]
    fn objects_of_another_baseline_are_not_ours() {
        let b = baseline(AUDIT);
        let other = baseline(&AUDIT.replace("name: restricted", "name: other"));
        let mut objects = stored(&b, "shop");
        objects.extend(
            desired_objects(&other.spec, baseline_ref(&other), "shop")
                .into_iter()
                .map(|d| d.object),
        );
        let snapshot = ClusterSnapshot {
            namespaces: vec![("shop".to_owned(), prod())],
            objects,
            ..ClusterSnapshot::default()
        };
        assert!(evaluate_baseline(&b, &snapshot, "x").compliant());
        assert!(evaluate_baseline(&other, &snapshot, "x").compliant());
    }

    #[test]
    fn nodes_are_not_checked_unless_asked_and_control_plane_is_unknown_without_reports() {
        let b = baseline(&format!(
            "{AUDIT}  controlPlane:\n    apiServer: {{anonymousAuth: false}}\n"
        ));
        let snapshot = ClusterSnapshot::default();
        let verdict = evaluate_baseline(&b, &snapshot, "x");
        assert!(verdict.compliant() && !verdict.nodes_checked);

        let checked = ClusterSnapshot {
            check_nodes: true,
            ..ClusterSnapshot::default()
        };
        let verdict = evaluate_baseline(&b, &checked, "x");
        assert!(verdict.nodes_checked);
        assert!(!verdict.findings.is_empty());
        assert!(verdict.findings.iter().all(|f| f.kind == "ControlPlane"
            && f.name == "kube-apiserver"
            && f.reason == DriftReason::Unknown));
    }

    #[test]
    fn a_kubelet_node_selector_limits_the_nodes() {
        let b = baseline(&AUDIT.replace(
            "  kubelet:\n",
            "  kubelet:\n    nodeSelector: {pool: secure}\n",
        ));
        let nodes = vec![
            ("a".to_owned(), labels(&[("pool", "secure")])),
            ("b".to_owned(), labels(&[("pool", "batch")])),
        ];
        let no_labels = Labels::new();
        let verdict = evaluate_nodes(
            &b.spec,
            &nodes_under_check(NodeInventory::Listed, &nodes, &[], &no_labels),
        );
        assert_eq!((verdict.selected, verdict.compliant), (1, 0));
        assert!(verdict.findings.iter().all(|f| f.name == "a"));
    }
}
