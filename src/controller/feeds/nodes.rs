//! Nodes and control plane (docs/architecture.md §6), controller side: NodeReports (what the node
//! agents observed) and Node labels are watched into caches, evaluated against every
//! baseline with the pure functions of `domain::node`, and fed into the baseline
//! status; the rendered audit policy is published for the agents.
//!
//! - Caches: every NodeReport (cluster-scoped, one per node) and the labels of every Node
//!   matching `--node-selector` (metadata-only watch). A report counts only while its Node is
//!   in the cache: a report left behind by a deleted Node, or of a Node outside the
//!   selector, is ignored.
//! - Evaluation ([`node_status`]), per baseline: the cached Nodes with their reports,
//!   through `domain::node::evaluate::evaluate_nodes` (which nodes are selected, what is `Unknown`,
//!   what `nodesSelected`/`nodesCompliant` count: the rule `check` follows too).
//! - Triggers: a Node whose labels change, a Node appearing or going away, or a report whose
//!   observations change refreshes the status of every baseline with node checks (the
//!   baseline controller debounces and deduplicates).
//! - Audit policy ([`publish_loop`]): the `audit.k8s.io/v1` Policy rendered from
//!   `spec.auditPolicy` is kept in the ConfigMap `kube-baseline-audit-policy` of the
//!   operator's namespace (server-side apply, field manager `kube-baseline`, our labels), where
//!   the agents read it. A node has one policy file, so one baseline supplies it: the
//!   alphabetically first baseline in Enforce mode (not being deleted) that sets
//!   `auditPolicy`. Other baselines' policies are still checked against the nodes, so a
//!   baseline that renders a different policy shows `audit.policy-matches` drift. Audit-mode
//!   baselines never cause a write. When no Enforce baseline sets `auditPolicy` any more, the
//!   last published ConfigMap is left as it is (the agents keep the policy file they wrote;
//!   the kube-apiserver cannot run without one). The ConfigMap is watched by name (field
//!   selector), so it is compared without GETs, written only when its content differs, and
//!   an edit by someone else is repaired. That watch starts only once an Enforce baseline
//!   sets `auditPolicy`, so an installation that never publishes a policy needs no
//!   ConfigMap permissions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::Patch;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::api::{
    BASELINE_LABEL, DriftEntry, EnforcementMode, MANAGED_BY_LABEL, MANAGED_BY_VALUE, NodeReport,
    NodeReportSpec, Observation, SecurityBaseline, SecurityBaselineSpec,
};
use crate::controller::feeds::lenient::Unreadable;
use crate::controller::reconcile::apply::{WriteError, apply_params};
use crate::controller::state::cache::NamespacedIndex;
use crate::controller::state::context::Context;
use crate::domain::node::audit_policy::{AUDIT_POLICY_CONFIG_MAP, config_map_data};
use crate::domain::node::evaluate::{NodeUnderCheck, evaluate_nodes, has_node_checks};
use crate::domain::status::Failure;

/// Cluster-scoped objects are kept in a [`NamespacedIndex`] under this namespace.
const CLUSTER: &str = "";
/// How long the publisher waits for the ConfigMap watch to list before reporting it.
const CONFIG_MAP_LIST_WAIT: Duration = Duration::from_secs(10);
/// Pause before retrying a failed publish.
const PUBLISH_RETRY: Duration = Duration::from_secs(5);

/// A Node, as far as the checks need it.
#[derive(Debug, Clone, PartialEq)]
struct NodeFacts {
    name: String,
    labels: BTreeMap<String, String>,
    /// `status.nodeInfo.kubeletVersion` (empty when absent), for the version skew check.
    kubelet_version: String,
}

/// The published audit policy ConfigMap, as far as the publisher compares it.
#[derive(Debug, Clone, PartialEq)]
struct PublishedPolicy {
    labels: BTreeMap<String, String>,
    data: BTreeMap<String, String>,
}

/// The caches and state of the node side (a field of [`Context`]).
#[derive(Debug)]
pub struct NodeCaches {
    /// NodeReports that exist but this version cannot read (a newer agent).
    unreadable_reports: Arc<Unreadable>,
    /// Node labels by name.
    nodes: NamespacedIndex<NodeFacts>,
    /// NodeReport observations by report name (= node name).
    reports: NamespacedIndex<NodeReportSpec>,
    /// The ConfigMap kube-baseline-audit-policy, once its watch runs.
    audit_config_map: Arc<NamespacedIndex<PublishedPolicy>>,
    /// Wakes the audit policy publisher (a baseline or the ConfigMap changed).
    publish: tokio::sync::Notify,
    /// The last error of the ConfigMap watch (shown when it cannot list).
    config_map_watch_error: Arc<Mutex<Option<(String, bool)>>>,
    /// A failed publish: (the baseline supplying the policy, why).
    publish_failure: Mutex<Option<(String, Failure)>>,
}

impl NodeCaches {
    pub fn new(metrics: Arc<crate::controller::runtime::metrics::Metrics>) -> Self {
        Self {
            unreadable_reports: Arc::new(Unreadable::new("NodeReport", metrics)),
            nodes: NamespacedIndex::default(),
            reports: NamespacedIndex::default(),
            audit_config_map: Arc::default(),
            publish: tokio::sync::Notify::default(),
            config_map_watch_error: Arc::default(),
            publish_failure: Mutex::default(),
        }
    }

    /// The report of `node` as the checks read it: an unreadable one as a report that
    /// observed nothing (every check Unknown), never as no report.
    fn report_of(&self, node: &str) -> Option<Arc<NodeReportSpec>> {
        if self.unreadable_reports.is_unreadable(node) {
            return Some(Arc::new(unreadable_report(node)));
        }
        if self.unreadable_reports.hides(node) {
            return None;
        }
        self.reports.get(CLUSTER, node)
    }

    /// Waits until the Node and NodeReport caches have their first full list. (The
    /// ConfigMap cache is the publisher's own business and never blocks reconciles.)
    pub async fn wait_ready(&self) {
        self.nodes.wait_ready().await;
        self.reports.wait_ready().await;
    }
}

/// What the checks see of a node whose NodeReport this version cannot read (a newer
/// agent): the agent runs there, but nothing it observed can be read, so every check of
/// the node — kubelet, and control plane, as it may run a kube-apiserver — is Unknown.
fn unreadable_report(node: &str) -> NodeReportSpec {
    let message = format!(
        "the NodeReport of node {node} cannot be read by this version of kube-baseline (written by a newer agent?)"
    );
    let mut report = NodeReportSpec {
        node_name: node.to_owned(),
        ..NodeReportSpec::default()
    };
    report.kubelet.header = Observation::error(message.clone());
    report.api_server.header = Observation::error(message);
    report
}

/// The node part of a baseline's status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStatus {
    /// Nodes with at least one check of the baseline.
    pub selected: usize,
    /// Selected nodes without findings.
    pub compliant: usize,
    /// Findings on nodes, and control-plane checks no agent could observe.
    pub drift: Vec<DriftEntry>,
    /// Publishing the audit policy this baseline supplies failed.
    pub failures: Vec<Failure>,
}

/// Evaluates every cached node against `baseline` (pure functions over the caches).
pub fn node_status(ctx: &Context, baseline: &SecurityBaseline) -> NodeStatus {
    let caches = &ctx.node_caches;
    let name = baseline.name_any();
    let mut status = cached_nodes_status(
        &baseline.spec,
        &caches.nodes.in_namespace(CLUSTER, |_| true),
        |node| caches.report_of(node),
    );
    status.failures = caches
        .publish_failure
        .lock()
        .iter()
        .filter(|(source, _)| *source == name)
        .map(|(_, failure)| failure.clone())
        .collect();
    status
}

/// The node checks of `spec` over the cached `nodes` and their reports: a report counts
/// only while its Node is cached (the rule of `domain::node::evaluate`).
fn cached_nodes_status(
    spec: &SecurityBaselineSpec,
    nodes: &[Arc<NodeFacts>],
    report_of: impl Fn(&str) -> Option<Arc<NodeReportSpec>>,
) -> NodeStatus {
    if !has_node_checks(spec) {
        return NodeStatus::default();
    }
    let reports: Vec<Option<Arc<NodeReportSpec>>> =
        nodes.iter().map(|node| report_of(&node.name)).collect();
    let under_check: Vec<NodeUnderCheck<'_>> = nodes
        .iter()
        .zip(&reports)
        .map(|(node, report)| NodeUnderCheck {
            name: &node.name,
            labels: &node.labels,
            report: report.as_deref(),
        })
        .collect();
    let verdict = evaluate_nodes(spec, &under_check);
    NodeStatus {
        selected: verdict.selected,
        compliant: verdict.compliant,
        drift: verdict.findings,
        failures: Vec::new(),
    }
}

/// Wakes the audit policy publisher: a baseline was reconciled (its spec, mode or deletion
/// may have changed which policy is published).
pub fn baseline_changed(ctx: &Context) {
    ctx.node_caches.publish.notify_one();
}

/// Asks for a status refresh of every baseline with node checks (version skew included).
fn refresh_node_baselines(ctx: &Context) {
    for baseline in ctx.readable_baselines() {
        if has_node_checks(&baseline.spec) || baseline.spec.kubernetes_version.is_some() {
            ctx.refresh_status(&baseline.name_any());
        }
    }
}

/// Every cached Node's kubelet version, for the version checks.
pub fn kubelet_versions(ctx: &Context) -> Vec<(String, String)> {
    ctx.node_caches
        .nodes
        .in_namespace(CLUSTER, |_| true)
        .iter()
        .map(|node| (node.name.clone(), node.kubelet_version.clone()))
        .collect()
}

/// The kube-apiserver versions the agents reported, for the version checks: the reports of
/// the cached Nodes only (the node checks' rule: a leftover report, or one of a Node outside
/// `--node-selector`, does not count), through `domain::versions::reported_api_servers`.
pub fn api_server_versions(ctx: &Context) -> Vec<(String, Result<String, String>)> {
    ctx.node_caches.api_server_versions()
}

impl NodeCaches {
    /// See [`api_server_versions`].
    fn api_server_versions(&self) -> Vec<(String, Result<String, String>)> {
        let reports: Vec<(String, Arc<NodeReportSpec>)> = self
            .nodes
            .in_namespace(CLUSTER, |_| true)
            .iter()
            .filter_map(|node| Some((node.name.clone(), self.report_of(&node.name)?)))
            .collect();
        crate::domain::versions::reported_api_servers(
            reports
                .iter()
                .map(|(node, report)| (node.as_str(), report.as_ref())),
        )
    }
}

/// Whether applying `event` changes what `index` holds (so evaluations may change).
fn changes<K, V: PartialEq>(
    index: &NamespacedIndex<V>,
    event: &watcher::Event<K>,
    convert: impl Fn(&K) -> Option<(String, String, V)>,
) -> bool {
    match event {
        watcher::Event::Apply(object) => convert(object).is_some_and(|(namespace, name, value)| {
            index.get(&namespace, &name).as_deref() != Some(&value)
        }),
        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
        watcher::Event::Init | watcher::Event::InitApply(_) => false,
    }
}

fn node_facts(node: &Node) -> Option<(String, String, NodeFacts)> {
    let name = node.metadata.name.clone()?;
    let kubelet_version = node
        .status
        .as_ref()
        .and_then(|status| status.node_info.as_ref())
        .map(|info| info.kubelet_version.clone())
        .unwrap_or_default();
    Some((
        CLUSTER.to_owned(),
        name.clone(),
        NodeFacts {
            name,
            labels: node.metadata.labels.clone().unwrap_or_default(),
            kubelet_version,
        },
    ))
}

fn report_spec(report: &NodeReport) -> Option<(String, String, NodeReportSpec)> {
    Some((
        CLUSTER.to_owned(),
        report.metadata.name.clone()?,
        report.spec.clone(),
    ))
}

fn published_policy(config_map: &ConfigMap) -> Option<(String, String, PublishedPolicy)> {
    Some((
        CLUSTER.to_owned(),
        config_map.metadata.name.clone()?,
        PublishedPolicy {
            labels: config_map.metadata.labels.clone().unwrap_or_default(),
            data: config_map.data.clone().unwrap_or_default(),
        },
    ))
}

fn log_error<T>(result: Result<T, watcher::Error>, what: &'static str) -> future::Ready<()> {
    if let Err(error) = result {
        warn!(%error, watch = what, "watch failed; retrying with backoff");
    }
    future::ready(())
}

/// Runs the Node and NodeReport watches and the audit policy publisher; never returns.
pub async fn run(client: Client, ctx: Arc<Context>, node_selector: Option<String>) {
    let mut node_config = watcher::Config::default();
    if let Some(selector) = &node_selector {
        node_config = node_config.labels(selector);
    }
    let nodes = {
        let ctx = ctx.clone();
        // Whole Nodes (the kubelet version is in status), reduced at once to NodeFacts: a
        // status update that changes neither labels nor version triggers nothing.
        watcher(Api::<Node>::all(client.clone()), node_config)
            .default_backoff()
            .map_ok(move |event| {
                let index = &ctx.node_caches.nodes;
                let changed = changes(index, &event, node_facts);
                index.apply(&event, node_facts);
                if changed {
                    refresh_node_baselines(&ctx);
                }
            })
            .for_each(|result| log_error(result, "Node"))
    };
    let reports = {
        let ctx = ctx.clone();
        // Lenient: a report from a newer agent that this version cannot read is left out of
        // the index and registered as unreadable (its node is Unknown, see `report_of`).
        crate::controller::feeds::lenient::watch_all::<NodeReport>(
            client.clone(),
            watcher::Config::default(),
            ctx.node_caches.unreadable_reports.clone(),
        )
        .default_backoff()
        .map_ok(move |event| {
            let index = &ctx.node_caches.reports;
            let changed = changes(index, &event, report_spec);
            index.apply(&event, report_spec);
            if changed {
                refresh_node_baselines(&ctx);
            }
        })
        .for_each(|result| log_error(result, "NodeReport"))
    };
    // A report becoming unreadable (or readable again) changes node checks too.
    let unreadable_reports = {
        let ctx = ctx.clone();
        let mut changes = ctx.node_caches.unreadable_reports.subscribe();
        async move {
            while changes.changed().await.is_ok() {
                refresh_node_baselines(&ctx);
            }
        }
    };
    future::join4(
        nodes,
        reports,
        unreadable_reports,
        publish_loop(client, ctx),
    )
    .await;
}

/// The baseline that supplies the published audit policy: the alphabetically first one in
/// Enforce mode, not being deleted, that sets `auditPolicy`.
fn policy_source(ctx: &Context) -> Option<Arc<SecurityBaseline>> {
    ctx.readable_baselines()
        .into_iter()
        .filter(|b| {
            b.spec.mode == EnforcementMode::Enforce
                && b.spec.audit_policy.is_some()
                && b.metadata.deletion_timestamp.is_none()
        })
        .min_by_key(|b| b.name_any())
}

/// Keeps the audit policy ConfigMap equal to what the policy source renders. Woken by
/// baseline reconciles and ConfigMap changes; retries failures with a pause.
async fn publish_loop(client: Client, ctx: Arc<Context>) {
    ctx.wait_ready().await;
    let mut watching = false;
    loop {
        ctx.node_caches.publish.notified().await;
        let Some(source) = policy_source(&ctx) else {
            set_failure(&ctx, None);
            continue;
        };
        if !watching {
            watching = true;
            tokio::spawn(watch_config_map(client.clone(), ctx.clone()));
        }
        let result = publish(&client, &ctx, &source).await;
        let failed = result.is_err();
        set_failure(&ctx, result.err().map(|f| (source.name_any(), f)));
        if failed {
            tokio::time::sleep(PUBLISH_RETRY).await;
            ctx.node_caches.publish.notify_one();
        }
    }
}

/// Records (or clears) the publish failure, refreshing the status of the baselines it
/// concerns when it changes.
fn set_failure(ctx: &Context, failure: Option<(String, Failure)>) {
    let previous = {
        let mut current = ctx.node_caches.publish_failure.lock();
        if *current == failure {
            return;
        }
        std::mem::replace(&mut *current, failure.clone())
    };
    for (baseline, _) in previous.iter().chain(failure.iter()) {
        ctx.refresh_status(baseline);
    }
}

/// Watches the one ConfigMap by name and wakes the publisher when it changes.
async fn watch_config_map(client: Client, ctx: Arc<Context>) {
    let config =
        watcher::Config::default().fields(&format!("metadata.name={AUDIT_POLICY_CONFIG_MAP}"));
    let index = ctx.node_caches.audit_config_map.clone();
    let last_error = ctx.node_caches.config_map_watch_error.clone();
    watcher(
        Api::<ConfigMap>::namespaced(client, &ctx.operator_namespace),
        config,
    )
    .default_backoff()
    .for_each(|result| {
        match result {
            Ok(event) => {
                let changed = changes(&index, &event, published_policy);
                index.apply(&event, published_policy);
                if changed {
                    ctx.node_caches.publish.notify_one();
                }
            }
            Err(error) => {
                let forbidden = matches!(
                    &error,
                    watcher::Error::InitialListFailed(kube::Error::Api(status))
                        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
                        if status.code == 403
                );
                warn!(%error, watch = "ConfigMap", "watch failed; retrying with backoff");
                *last_error.lock() = Some((error.to_string(), forbidden));
            }
        }
        future::ready(())
    })
    .await;
}

/// Applies the ConfigMap when the cached one differs from what `source` renders.
async fn publish(client: &Client, ctx: &Context, source: &SecurityBaseline) -> Result<(), Failure> {
    let caches = &ctx.node_caches;
    let namespace = &ctx.operator_namespace;
    let source_name = source.name_any();
    let Some(settings) = &source.spec.audit_policy else {
        return Ok(());
    };
    let data = config_map_data(settings).map_err(|error| {
        Failure::Error(format!(
            "cannot render the audit policy of SecurityBaseline {source_name}: {error}"
        ))
    })?;
    if tokio::time::timeout(CONFIG_MAP_LIST_WAIT, caches.audit_config_map.wait_ready())
        .await
        .is_err()
    {
        let (error, forbidden) = caches
            .config_map_watch_error
            .lock()
            .clone()
            .unwrap_or_else(|| ("the watch has not listed yet".to_owned(), false));
        let message = format!(
            "cannot watch ConfigMap {namespace}/{AUDIT_POLICY_CONFIG_MAP} (the published audit policy): {error}"
        );
        return Err(if forbidden {
            Failure::Forbidden(message)
        } else {
            Failure::Error(message)
        });
    }
    let labels = BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
        (BASELINE_LABEL.to_owned(), source_name.clone()),
    ]);
    let current = caches
        .audit_config_map
        .get(CLUSTER, AUDIT_POLICY_CONFIG_MAP);
    // Published for a baseline we cannot read: its object, left exactly as it is.
    if let Some(owner) = current
        .as_ref()
        .and_then(|c| c.labels.get(BASELINE_LABEL))
        .filter(|owner| ctx.unreadable_baselines.is_unreadable(owner))
    {
        debug!(owner = %owner, "audit policy ConfigMap belongs to an unreadable baseline; left as it is");
        return Ok(());
    }
    let up_to_date = current.is_some_and(|current| {
        labels.iter().all(|(k, v)| current.labels.get(k) == Some(v))
            && data.iter().all(|(k, v)| current.data.get(k) == Some(v))
    });
    if up_to_date {
        debug!(source = %source_name, "audit policy ConfigMap up to date");
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": AUDIT_POLICY_CONFIG_MAP,
            "namespace": namespace,
            "labels": labels,
        },
        "data": data,
    });
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(
            AUDIT_POLICY_CONFIG_MAP,
            &apply_params(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| {
            WriteError {
                what: format!("apply ConfigMap {namespace}/{AUDIT_POLICY_CONFIG_MAP}"),
                source,
            }
            .to_failure()
        })?;
    info!(source = %source_name, "published the rendered audit policy");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ObservationState;

    fn node(name: &str, labels: &[(&str, &str)]) -> Node {
        let mut node = Node::default();
        node.metadata.name = Some(name.to_owned());
        node.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        node
    }

    fn with_kubelet(mut node: Node, version: &str) -> Node {
        let status = node.status.get_or_insert_default();
        status.node_info.get_or_insert_default().kubelet_version = version.to_owned();
        node
    }

    #[test]
    fn only_label_and_kubelet_version_changes_of_nodes_count_as_changes() {
        let index = NamespacedIndex::default();
        let a = node("a", &[("role", "worker")]);
        assert!(!changes(
            &index,
            &watcher::Event::InitApply(a.clone()),
            node_facts
        ));
        assert!(changes(
            &index,
            &watcher::Event::<Node>::InitDone,
            node_facts
        ));
        index.apply(&watcher::Event::Apply(a.clone()), node_facts);
        let mut same_labels = a.clone();
        same_labels.metadata.resource_version = Some("2".to_owned());
        assert!(!changes(
            &index,
            &watcher::Event::Apply(same_labels),
            node_facts
        ));
        let relabelled = node("a", &[("role", "infra")]);
        assert!(changes(
            &index,
            &watcher::Event::Apply(relabelled),
            node_facts
        ));
        let upgraded = with_kubelet(a.clone(), "v1.36.3");
        assert!(changes(
            &index,
            &watcher::Event::Apply(upgraded.clone()),
            node_facts
        ));
        index.apply(&watcher::Event::Apply(upgraded.clone()), node_facts);
        let mut heartbeat = upgraded;
        heartbeat
            .status
            .get_or_insert_default()
            .conditions
            .get_or_insert_default()
            .push(Default::default());
        assert!(!changes(
            &index,
            &watcher::Event::Apply(heartbeat),
            node_facts
        ));
        assert!(changes(&index, &watcher::Event::Delete(a), node_facts));
    }

    fn spec(json: serde_json::Value) -> SecurityBaselineSpec {
        serde_json::from_value(json).expect("baseline spec")
    }

    fn facts(name: &str, labels: &[(&str, &str)]) -> Arc<NodeFacts> {
        Arc::new(NodeFacts {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            kubelet_version: String::new(),
        })
    }

    /// A report: a kubelet with anonymous auth as given, and optionally a kube-apiserver
    /// started with --anonymous-auth=false and
    /// --authorization-mode=Node,RBAC.
    fn report(node: &str, kubelet_anonymous: Option<bool>, api_server: bool) -> NodeReportSpec {
        let mut report = NodeReportSpec {
            node_name: node.to_owned(),
            ..NodeReportSpec::default()
        };
        if let Some(anonymous) = kubelet_anonymous {
            report.kubelet.header.state = ObservationState::Observed;
            report.kubelet.settings.anonymous_auth = Some(anonymous);
        }
        if api_server {
            report.api_server.header.state = ObservationState::Observed;
            report.api_server.flags = [
                ("anonymous-auth", "false"),
                ("authorization-mode", "Node,RBAC"),
            ]
            .into_iter()
            .map(|(name, value)| crate::api::ObservedFlag {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect();
        }
        report
    }

    fn reports(list: Vec<NodeReportSpec>) -> impl Fn(&str) -> Option<Arc<NodeReportSpec>> {
        let by_name: BTreeMap<String, Arc<NodeReportSpec>> = list
            .into_iter()
            .map(|r| (r.node_name.clone(), Arc::new(r)))
            .collect();
        move |name| by_name.get(name).cloned()
    }

    fn checks(status: &NodeStatus) -> Vec<(String, String, String, crate::api::DriftReason)> {
        status
            .drift
            .iter()
            .map(|d| (d.kind.clone(), d.name.clone(), d.check.clone(), d.reason))
            .collect()
    }

    #[test]
    fn a_baseline_without_node_settings_has_no_node_checks() {
        let nodes = [facts("cp", &[]), facts("w1", &[])];
        let status = cached_nodes_status(
            &spec(serde_json::json!({"mode": "Audit"})),
            &nodes,
            reports(vec![report("cp", None, true)]),
        );
        assert_eq!(status, NodeStatus::default());
        // No node and no report at all: still nothing (no Unknown control plane).
        let status = cached_nodes_status(
            &spec(serde_json::json!({"podSecurity": {"enforce": "restricted"}})),
            &[],
            reports(vec![]),
        );
        assert_eq!(status, NodeStatus::default());
    }

    #[test]
    fn kubelet_checks_cover_selected_nodes_and_unknown_is_never_compliant() {
        let spec = spec(serde_json::json!({
            "kubelet": {"nodeSelector": {"role": "worker"}, "settings": {"anonymousAuth": false}},
        }));
        let nodes = [
            facts("w1", &[("role", "worker")]),
            facts("w2", &[("role", "worker")]),
            facts("w3", &[("role", "worker")]),
            facts("cp", &[]),
        ];
        let status = cached_nodes_status(
            &spec,
            &nodes,
            reports(vec![
                report("w1", Some(false), false),
                report("w3", Some(true), false),
                report("cp", Some(true), true),
            ]),
        );
        assert_eq!((status.selected, status.compliant), (3, 1));
        let reason = crate::api::DriftReason::Unknown;
        let violation = crate::api::DriftReason::Violation;
        let check = "kubelet.anonymous-auth".to_owned();
        assert_eq!(
            checks(&status),
            [
                ("Node".to_owned(), "w2".to_owned(), check.clone(), reason),
                ("Node".to_owned(), "w3".to_owned(), check, violation),
            ],
            "cp is not selected; no control-plane checks asked for"
        );
    }

    #[test]
    fn control_plane_checks_run_where_an_api_server_is_seen_else_once_unknown() {
        let spec = spec(serde_json::json!({
            "controlPlane": {"apiServer": {"anonymousAuth": false}},
        }));
        let nodes = [facts("cp", &[]), facts("w1", &[])];
        let with_api_server = cached_nodes_status(
            &spec,
            &nodes,
            reports(vec![
                report("cp", None, true),
                report("w1", Some(true), false),
            ]),
        );
        assert_eq!(
            (
                with_api_server.selected,
                with_api_server.compliant,
                with_api_server.drift.len()
            ),
            (1, 1, 0),
            "{with_api_server:?}"
        );

        // Managed control plane: no report shows a kube-apiserver. A report of a node that
        // is not (or no longer) in the Node cache does not count either.
        for nodes in [&nodes[1..], &[][..]] {
            let status = cached_nodes_status(
                &spec,
                nodes,
                reports(vec![
                    report("cp", None, true),
                    report("w1", Some(true), false),
                ]),
            );
            assert_eq!((status.selected, status.compliant), (0, 0));
            let kinds: Vec<_> = checks(&status)
                .into_iter()
                .map(|(kind, name, _, reason)| (kind, name, reason))
                .collect();
            assert!(!kinds.is_empty());
            assert!(kinds.iter().all(|k| *k
                == (
                    "ControlPlane".to_owned(),
                    "kube-apiserver".to_owned(),
                    crate::api::DriftReason::Unknown
                )));
        }
    }

    #[test]
    fn a_node_whose_report_cannot_be_read_is_unknown_not_unreported() {
        let spec = spec(serde_json::json!({
            "kubelet": {"nodeSelector": {}, "settings": {"anonymousAuth": false}},
            "controlPlane": {"apiServer": {"anonymousAuth": false}},
        }));
        let nodes = [facts("w1", &[])];
        let unreadable = cached_nodes_status(&spec, &nodes, |node| {
            Some(Arc::new(unreadable_report(node)))
        });
        let absent = cached_nodes_status(&spec, &nodes, |_| None);
        assert_ne!(unreadable, absent);
        assert_eq!((unreadable.selected, unreadable.compliant), (1, 0));
        assert!(!unreadable.drift.is_empty());
        assert!(
            unreadable.drift.iter().all(|d| d.kind == "Node"
                && d.name == "w1"
                && d.reason == crate::api::DriftReason::Unknown
                && d.message.contains("cannot be read")),
            "{unreadable:?}"
        );
        // Its kube-apiserver may run there: no "no agent observed one" for the cluster.
        let control_plane = crate::domain::node::api_server::control_plane_checks(&spec);
        assert!(
            unreadable
                .drift
                .iter()
                .any(|d| control_plane.contains(&d.check.as_str())),
            "{unreadable:?}"
        );
    }

    #[test]
    fn reported_apiserver_versions_count_while_their_node_is_cached() {
        let metrics = Arc::new(crate::controller::runtime::metrics::Metrics::default());
        let caches = NodeCaches::new(metrics);
        let report = |name: &str, version: &str| -> NodeReport {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "kube-baseline.dev/v1alpha1",
                "kind": "NodeReport",
                "metadata": {"name": name},
                "spec": {"nodeName": name, "apiServer": {"state": "Observed", "version": version}},
            }))
            .expect("report")
        };
        for name in ["cp-1", "cp-2", "w-1"] {
            caches
                .nodes
                .apply(&watcher::Event::Apply(node(name, &[])), node_facts);
        }
        for (name, version) in [
            ("cp-1", "v1.36.3"),
            ("cp-2", "v1.34.1"),
            ("gone", "v1.20.0"),
        ] {
            caches
                .reports
                .apply(&watcher::Event::Apply(report(name, version)), report_spec);
        }
        let mut worker = report("w-1", "");
        worker.spec.api_server = Default::default();
        caches
            .reports
            .apply(&watcher::Event::Apply(worker), report_spec);
        let mut versions = caches.api_server_versions();
        versions.sort();
        assert_eq!(
            versions,
            [
                ("cp-1".to_owned(), Ok("v1.36.3".to_owned())),
                ("cp-2".to_owned(), Ok("v1.34.1".to_owned())),
            ],
            "not the report of a Node that is gone, nor a worker's"
        );
    }

    #[test]
    fn the_register_turns_an_unreadable_report_into_an_unknown_one() {
        let metrics = Arc::new(crate::controller::runtime::metrics::Metrics::default());
        let caches = NodeCaches::new(metrics);
        assert!(caches.report_of("w1").is_none(), "no report at all");
        let event = |mode: &str| -> watcher::Event<kube::api::DynamicObject> {
            watcher::Event::Apply(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "kube-baseline.dev/v1alpha1",
                    "kind": "NodeReport",
                    "metadata": {"name": "w1"},
                    "spec": {"nodeName": "w1", "kubelet": {"state": mode}},
                }))
                .expect("object"),
            )
        };
        // A newer agent's state this version does not know.
        let dropped = crate::controller::feeds::lenient::decode_event::<NodeReport>(
            Ok(event("Sampled")),
            &caches.unreadable_reports,
        );
        assert!(dropped.is_none());
        let report = caches
            .report_of("w1")
            .expect("an unreadable report is a report");
        assert_eq!(report.kubelet.header.state, ObservationState::Error);
    }
}
