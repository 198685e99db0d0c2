//! Nodes and control plane end to end (docs/architecture.md §6): the agent runs on this machine,
//! finds the real kube-apiserver of e2e/cluster in /proc (there is no kubelet: kubelet
//! files are given by path) and publishes a NodeReport as its own ServiceAccount, bound to
//! config/agent's RBAC; the operator, as its own ServiceAccount bound to config/rbac, turns
//! the reports into baseline status and publishes the rendered audit policy.
//!
//! Nodes and NodeReports are cluster-scoped and shared with every other test: each test's
//! Nodes carry its id in their name and its test label, and its operator runs with
//! `--node-selector` set to that label, so it ignores every other test's nodes and reports.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{
    AuditPolicySettings, AuditProfile, DriftReason, EnforcementState, EnforcementTarget,
    NodeReport, ObservationState, SecurityBaseline, SecurityBaselineStatus,
};
use kube_baseline::domain::node::audit_policy::{AUDIT_POLICY_CONFIG_MAP, config_map_data};
use kube_baseline::domain::node::kubelet::DROP_IN_NAME;
use kube_baseline_e2e::*;
use tokio::sync::OnceCell;

const SETTLE: Duration = Duration::from_secs(30);
/// Files "read by the kube-apiserver at start": older than any process on this machine.
const BEFORE_START: Duration = Duration::from_secs(1_577_836_800); // 2020-01-01

fn fixture(path: &str) -> String {
    repo_root()
        .join("tests/fixtures/nodes")
        .join(path)
        .display()
        .to_string()
}

// --- Nodes, identities, the agent ------------------------------------------------------------

/// A RoleBinding in the operator namespace from `role` to the ServiceAccount `sa` there.
async fn bind_role(env: &TestEnv, sa: &str, role: &str) {
    let binding = RoleBinding {
        metadata: ObjectMeta {
            name: Some(sa.to_string()),
            namespace: Some(OPERATOR_NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(TEST_LABEL.to_string(), env.id.clone())])),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_string(),
            kind: "Role".to_string(),
            name: role.to_string(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_string(),
            name: sa.to_string(),
            namespace: Some(OPERATOR_NAMESPACE.to_string()),
            api_group: None,
        }]),
    };
    Api::<RoleBinding>::namespaced(env.admin.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
}

static AGENT_RBAC: OnceCell<()> = OnceCell::const_new();

/// Installs the agent's ClusterRole and Role from config/agent/rbac.yaml (not its bindings:
/// those name the DaemonSet's ServiceAccount; each test binds its own).
async fn install_agent_rbac() {
    AGENT_RBAC
        .get_or_init(|| async {
            let text = std::fs::read_to_string(repo_root().join("config/agent/rbac.yaml"))
                .expect("config/agent/rbac.yaml");
            let roles: Vec<&str> = text
                .split("\n---\n")
                .filter(|doc| {
                    doc.lines()
                        .any(|l| l == "kind: ClusterRole" || l == "kind: Role")
                })
                .collect();
            assert_eq!(roles.len(), 2, "a ClusterRole and a Role in config/agent");
            let (ok, _, stderr) = kubectl_result(
                &["apply", "--server-side", "--force-conflicts", "-f", "-"],
                Some(&roles.join("\n---\n")),
            );
            assert!(ok, "apply the agent's RBAC: {stderr}");
        })
        .await;
}

/// A kubeconfig of a fresh ServiceAccount with the agent's permissions (config/agent).
async fn agent_kubeconfig(env: &TestEnv) -> PathBuf {
    install_agent_rbac().await;
    let sa = format!("agent-{}", env.id);
    bind_role(env, &sa, "kube-baseline-agent").await;
    env.service_account_kubeconfig(&sa, Some("kube-baseline-agent"))
        .await
}

/// Starts the operator for this test, seeing only this test's Nodes. (The harness binds
/// its ServiceAccount to both halves of config/rbac: the ClusterRole and the namespaced
/// Role that lets it publish the audit policy ConfigMap.)
async fn start_operator(env: &TestEnv) -> Operator {
    let selector = env.selector();
    Operator::start(env, &["--node-selector", &selector]).await
}

/// Runs `kube-baseline agent --once` for `node` on this machine (host root /) and returns
/// its log; panics when it fails.
async fn run_agent(kubeconfig: &Path, node: &str, args: &[&str]) -> String {
    let (ok, log) = run_agent_once(kubeconfig, node, args).await;
    assert!(ok, "agent failed: {log}");
    log
}

async fn report(env: &TestEnv, node: &str) -> NodeReport {
    Api::<NodeReport>::all(env.admin.clone())
        .get(node)
        .await
        .expect("NodeReport")
}

/// Deletes what [`TestEnv::cleanup`] does not: Nodes (their reports go with them, by
/// ownerReference) and RoleBindings.
async fn cleanup(env: &TestEnv, nodes: &[&str]) {
    for node in nodes {
        let _ = Api::<Node>::all(env.admin.clone())
            .delete(node, &DeleteParams::default())
            .await;
        let _ = Api::<NodeReport>::all(env.admin.clone())
            .delete(node, &DeleteParams::default())
            .await;
    }
    let selector = format!("-l={}", env.selector());
    let _ = kubectl_result(
        &[
            "delete",
            "rolebindings",
            "-n",
            OPERATOR_NAMESPACE,
            &selector,
            "--wait=false",
        ],
        None,
    );
    env.cleanup().await;
}

// --- Status ----------------------------------------------------------------------------------

/// (kind, name, check, reason) of every drift entry.
fn drift(status: &SecurityBaselineStatus) -> BTreeSet<(String, String, String, DriftReason)> {
    status
        .drift
        .iter()
        .map(|d| (d.kind.clone(), d.name.clone(), d.check.clone(), d.reason))
        .collect()
}

fn entries(
    kind: &str,
    name: &str,
    checks: &[&str],
    reason: DriftReason,
) -> BTreeSet<(String, String, String, DriftReason)> {
    checks
        .iter()
        .map(|c| (kind.to_string(), name.to_string(), c.to_string(), reason))
        .collect()
}

/// Waits until the drift is exactly `want`, then returns the status.
async fn wait_drift(
    env: &TestEnv,
    baseline: &str,
    want: &BTreeSet<(String, String, String, DriftReason)>,
) -> SecurityBaselineStatus {
    wait_baseline_status(
        &env.admin,
        baseline,
        &format!("drift of {baseline} = {want:?}"),
        |s| drift(s) == *want && s.drift_total == want.len() as i64,
    )
    .await
}

fn message<'a>(status: &'a SecurityBaselineStatus, check: &str) -> &'a str {
    status
        .drift
        .iter()
        .find(|d| d.check == check)
        .map(|d| d.message.as_str())
        .unwrap_or_default()
}

// --- Tests -----------------------------------------------------------------------------------

const CONTROL_PLANE_OK: &str = "mode: Audit
controlPlane:
  apiServer:
    anonymousAuth: false
    requireAuthorizationModes: [Node, RBAC]
    requireAdmissionPlugins: [NodeRestriction]
    encryptionAtRest: true
  etcd:
    clientTLS: true
";

const CONTROL_PLANE_STRICT: &str = "mode: Audit
controlPlane:
  apiServer:
    requireAdmissionPlugins: [NodeRestriction, AlwaysPullImages]
auditPolicy:
  profile: Baseline
  log: {maxAge: 365, maxBackup: 10, maxSize: 100}
";

#[tokio::test]
async fn the_real_kube_apiserver_is_observed_and_checked() {
    let env = TestEnv::new("cp").await;
    let node = env.create_node("cp", &[]).await;
    let ok = env.apply_baseline("ok", CONTROL_PLANE_OK);
    let strict = env.apply_baseline("strict", CONTROL_PLANE_STRICT);
    let agent = agent_kubeconfig(&env).await;
    let _operator = start_operator(&env).await;

    // No report shows a kube-apiserver yet (a managed control plane looks like this): the
    // checks are Unknown, once for the cluster, never passing.
    let unknown = entries(
        "ControlPlane",
        "kube-apiserver",
        &[
            "apiserver.admission-plugins",
            "apiserver.anonymous-auth",
            "apiserver.authorization-mode",
            "apiserver.encryption-at-rest",
            "etcd.client-tls",
        ],
        DriftReason::Unknown,
    );
    let status = wait_drift(&env, &ok, &unknown).await;
    assert_eq!(status.summary.nodes_selected, 0);
    assert_eq!(condition_status(&status, "Compliant"), "False");

    // The agent finds the kube-apiserver that e2e/cluster started on this machine.
    run_agent(&agent, &node, &[]).await;
    let published = report(&env, &node).await;
    let api = &published.spec.api_server;
    assert_eq!(api.header.state, ObservationState::Observed, "{api:#?}");
    for (flag, value) in [
        ("anonymous-auth", "false"),
        ("authorization-mode", "Node,RBAC"),
        ("enable-admission-plugins", "NodeRestriction"),
        ("audit-log-maxage", "30"),
        ("audit-log-maxbackup", "10"),
        ("audit-log-maxsize", "100"),
    ] {
        assert_eq!(api.flag(flag), Some(value), "--{flag}");
    }
    for flag in ["etcd-cafile", "etcd-certfile", "etcd-keyfile"] {
        assert!(
            api.flag(flag)
                .is_some_and(|v| v.ends_with(".crt") || v.ends_with(".key")),
            "--{flag}"
        );
    }
    assert_eq!(api.audit_policy.header.state, ObservationState::Observed);
    assert!(!api.audit_policy.managed, "the harness wrote that policy");
    assert_eq!(api.audit_policy.rules.len(), 1, "Metadata for everything");
    assert_eq!(api.encryption.secrets_providers, ["aescbc", "identity"]);
    assert_eq!(
        published.spec.kubelet.header.state,
        ObservationState::NotFound,
        "no kubelet on this machine"
    );
    let node_uid = Api::<Node>::all(env.admin.clone())
        .get(&node)
        .await
        .expect("node")
        .uid();
    assert_eq!(
        published
            .owner_references()
            .iter()
            .map(|o| (o.kind.as_str(), Some(o.uid.clone())))
            .collect::<Vec<_>>(),
        [("Node", node_uid)],
        "the report is owned by its Node"
    );

    // The harness's apiserver meets every control-plane setting of `ok`.
    let status = wait_drift(&env, &ok, &BTreeSet::new()).await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (1, 1)
    );
    assert_eq!(condition_status(&status, "Compliant"), "True");

    // `strict` asks for more: one missing admission plugin, a year of audit logs, and the
    // rendered Baseline policy (the harness logs everything at Metadata). Audit log path,
    // policy file, CIS 3.2.2 coverage, maxbackup and maxsize pass.
    let mut want = entries(
        "Node",
        &node,
        &[
            "apiserver.admission-plugins",
            "audit.log-maxage",
            "audit.policy-matches",
        ],
        DriftReason::Violation,
    );
    let status = wait_drift(&env, &strict, &want).await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (1, 0)
    );
    assert_eq!(condition_status(&status, "Compliant"), "False");
    assert!(
        message(&status, "apiserver.admission-plugins").contains("AlwaysPullImages"),
        "{status:#?}"
    );
    assert!(message(&status, "audit.log-maxage").contains("365"));
    assert!(
        message(&status, "audit.policy-matches").contains("not written by kube-baseline"),
        "{status:#?}"
    );

    // Without a report the control plane is unobserved again.
    Api::<NodeReport>::all(env.admin.clone())
        .delete(&node, &DeleteParams::default())
        .await
        .expect("delete report");
    let status = wait_drift(&env, &ok, &unknown).await;
    assert_eq!(status.summary.nodes_selected, 0);
    want = entries(
        "ControlPlane",
        "kube-apiserver",
        &[
            "apiserver.admission-plugins",
            "apiserver.authorization-mode",
            "audit.log-maxage",
            "audit.log-maxbackup",
            "audit.log-maxsize",
            "audit.log-path",
            "audit.policy-coverage",
            "audit.policy-file",
            "audit.policy-matches",
        ],
        DriftReason::Unknown,
    );
    wait_drift(&env, &strict, &want).await;
    cleanup(&env, &[&node]).await;
}

const KUBELET_CHECKS: &[&str] = &[
    "kubelet.anonymous-auth",
    "kubelet.authorization-mode",
    "kubelet.protect-kernel-defaults",
    "kubelet.read-only-port",
    "kubelet.rotate-certificates",
    "kubelet.seccomp-default",
    "kubelet.webhook-authentication",
];

#[tokio::test]
async fn kubelet_files_given_by_path_are_checked_and_nodes_without_agent_are_unknown() {
    let env = TestEnv::new("kubelet").await;
    let worker = env.create_node("w1", &[("role", "worker")]).await;
    let no_agent = env.create_node("w2", &[("role", "worker")]).await;
    let kubelet = env.apply_baseline(
        "kubelet",
        &format!(
            "mode: Audit
kubelet:
  nodeSelector: {{{TEST_LABEL}: {id}, role: worker}}
  settings:
    anonymousAuth: false
    webhookAuthentication: true
    authorizationMode: Webhook
    readOnlyPort: 0
    protectKernelDefaults: true
    rotateCertificates: true
    seccompDefault: true
",
            id = env.id
        ),
    );
    // No node settings at all: nodes are none of its business.
    let plain = env.apply_baseline("plain", "mode: Audit\n");
    let agent = agent_kubeconfig(&env).await;
    let _operator = start_operator(&env).await;

    // kubeadm's config file plus drop-ins: 20-debug.conf reopens anonymous access and the
    // read-only port, nested/30-late.conf unsets seccompDefault (default false). The agent
    // also sees the kube-apiserver here, but this baseline has no control-plane checks.
    run_agent(
        &agent,
        &worker,
        &[
            "--kubelet-config",
            &fixture("kubelet/kubeadm-config.yaml"),
            "--kubelet-config-dir",
            &fixture("kubelet/kubelet.conf.d"),
        ],
    )
    .await;
    let published = report(&env, &worker).await;
    assert_eq!(
        published.spec.kubelet.header.state,
        ObservationState::Observed
    );
    assert_eq!(
        published.spec.kubelet.drop_ins,
        ["10-hardening.conf", "20-debug.conf", "nested/30-late.conf"]
    );

    let mut want = entries(
        "Node",
        &worker,
        &[
            "kubelet.anonymous-auth",
            "kubelet.read-only-port",
            "kubelet.seccomp-default",
        ],
        DriftReason::Violation,
    );
    want.extend(entries(
        "Node",
        &no_agent,
        KUBELET_CHECKS,
        DriftReason::Unknown,
    ));
    let status = wait_drift(&env, &kubelet, &want).await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (2, 0)
    );
    let anonymous = status
        .drift
        .iter()
        .find(|d| d.name == worker && d.check == "kubelet.anonymous-auth")
        .expect("anonymous-auth drift");
    assert!(
        anonymous.message.contains("20-debug.conf"),
        "names the file to fix: {}",
        anonymous.message
    );

    // Relabelling a node takes it out of the selector.
    Api::<Node>::all(env.admin.clone())
        .patch(
            &no_agent,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"role": "infra"}}})),
        )
        .await
        .expect("relabel");
    want.retain(|(_, name, _, _)| *name == worker);
    let status = wait_drift(&env, &kubelet, &want).await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (1, 0)
    );

    // A baseline without kubelet, auditPolicy or controlPlane settings selects no node.
    let status = wait_baseline_status(&env.admin, &plain, "plain to be Ready", |s| {
        condition_status(s, "Ready") == "True"
    })
    .await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant,
            status.drift_total
        ),
        (0, 0, 0)
    );
    assert_eq!(condition_status(&status, "Compliant"), "True");
    cleanup(&env, &[&worker, &no_agent]).await;
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .expect("set mtime");
}

async fn config_map(env: &TestEnv) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(env.admin.clone(), OPERATOR_NAMESPACE)
        .get_opt(AUDIT_POLICY_CONFIG_MAP)
        .await
        .expect("get ConfigMap")
}

/// The only test that uses the shared ConfigMap kube-baseline-audit-policy (no other
/// test has an Enforce baseline with auditPolicy).
#[tokio::test]
async fn enforce_publishes_the_policy_and_the_agent_writes_it_once() {
    let env = TestEnv::new("enforce").await;
    let node = env.create_node("cp", &[]).await;
    let dir = scratch_dir().join(&env.id);
    let drop_ins = dir.join("kubelet.conf.d");
    std::fs::create_dir_all(&drop_ins).expect("temp dir");
    // A policy someone else wrote (the harness's), as the kube-apiserver read it at start.
    let policy = dir.join("audit-policy.yaml");
    let foreign = std::fs::read_to_string(cluster_dir().join("audit-policy.yaml")).expect("policy");
    std::fs::write(&policy, &foreign).expect("write policy");
    set_mtime(&policy, SystemTime::UNIX_EPOCH + BEFORE_START);
    let policy_arg = policy.display().to_string();
    let drop_ins_arg = drop_ins.display().to_string();
    let kubeadm = fixture("kubelet/kubeadm-config.yaml");
    let agent_args = [
        "--audit-policy-file",
        &policy_arg,
        "--kubelet-config",
        &kubeadm,
        "--kubelet-config-dir",
        &drop_ins_arg,
    ];

    let baseline = env.apply_baseline(
        "enf",
        &format!(
            "mode: Enforce
auditPolicy:
  profile: Baseline
kubelet:
  nodeSelector: {{{TEST_LABEL}: {id}}}
  settings:
    anonymousAuth: false
    readOnlyPort: 0
    protectKernelDefaults: true
    seccompDefault: true
",
            id = env.id
        ),
    );
    let agent = agent_kubeconfig(&env).await;
    let operator = start_operator(&env).await;

    // The controller publishes the rendered policy, as itself, by server-side apply.
    let rendered = config_map_data(&AuditPolicySettings {
        profile: AuditProfile::Baseline,
        ..AuditPolicySettings::default()
    })
    .expect("render");
    let published = eventually(SETTLE, "the audit policy ConfigMap", || async {
        config_map(&env)
            .await
            .filter(|cm| cm.data.as_ref() == Some(&rendered))
    })
    .await;
    let labels = published.labels();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("kube-baseline")
    );
    assert_eq!(labels.get("kube-baseline.dev/baseline"), Some(&baseline));
    assert!(
        published
            .managed_fields()
            .iter()
            .any(|f| f.manager.as_deref() == Some("kube-baseline")
                && f.operation.as_deref() == Some("Apply")),
        "field manager kube-baseline"
    );
    assert!(
        writes_by(&operator.user).iter().any(|e| e
            .object_ref
            .as_ref()
            .is_some_and(|o| o.resource == "configmaps" && o.name == AUDIT_POLICY_CONFIG_MAP)),
        "the operator's ServiceAccount wrote the ConfigMap"
    );

    // Without --enforce the agent reports, and replaces nothing.
    run_agent(&agent, &node, &agent_args).await;
    let spec = report(&env, &node).await.spec;
    let enforcement: BTreeMap<_, _> = spec
        .enforcement
        .iter()
        .map(|e| (format!("{:?}", e.target), (e.state, e.message.clone())))
        .collect();
    let (state, why) = &enforcement[&format!("{:?}", EnforcementTarget::AuditPolicy)];
    assert_eq!(*state, EnforcementState::Drifted);
    assert!(why.contains("not written by kube-baseline"), "{why}");
    let (state, why) = &enforcement[&format!("{:?}", EnforcementTarget::KubeletDropIn)];
    assert_eq!(*state, EnforcementState::Drifted, "{why}");
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), foreign);
    assert!(!drop_ins.join(DROP_IN_NAME).exists());
    let status = wait_drift(
        &env,
        &baseline,
        &entries(
            "Node",
            &node,
            &[
                "audit.policy-matches",
                "kubelet.protect-kernel-defaults",
                "kubelet.seccomp-default",
            ],
            DriftReason::Violation,
        ),
    )
    .await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (1, 0)
    );

    // With --enforce it writes the policy from the ConfigMap and the kubelet drop-in. The
    // kubelet settings are in effect for the checks at once (no kubelet process to restart
    // here); the kube-apiserver must restart to read its policy: PendingRestart, Unknown.
    run_agent(&agent, &node, &[&agent_args[..], &["--enforce"]].concat()).await;
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        rendered["audit-policy.yaml"]
    );
    let drop_in = drop_ins.join(DROP_IN_NAME);
    let drop_in_text = std::fs::read_to_string(&drop_in).expect("drop-in written");
    assert!(
        drop_in_text.contains("seccompDefault: true"),
        "{drop_in_text}"
    );
    let first = report(&env, &node).await;
    assert!(first.spec.enforce);
    assert!(
        first
            .spec
            .enforcement
            .iter()
            .all(|e| e.state == EnforcementState::InSync),
        "{:?}",
        first.spec.enforcement
    );
    assert!(first.spec.api_server.audit_policy.pending_restart);
    wait_drift(
        &env,
        &baseline,
        &entries(
            "Node",
            &node,
            &["audit.policy-coverage", "audit.policy-matches"],
            DriftReason::Unknown,
        ),
    )
    .await;

    // A second pass writes nothing and does not rewrite the report.
    let before = (mtime(&policy), mtime(&drop_in));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let log = run_agent(&agent, &node, &[&agent_args[..], &["--enforce"]].concat()).await;
    assert_eq!((mtime(&policy), mtime(&drop_in)), before, "{log}");
    assert_eq!(
        std::fs::read_to_string(&policy).unwrap(),
        rendered["audit-policy.yaml"]
    );
    assert_eq!(std::fs::read_to_string(&drop_in).unwrap(), drop_in_text);
    assert!(!log.contains("wrote the rendered file"), "{log}");
    assert_eq!(
        report(&env, &node).await.resource_version(),
        first.resource_version(),
        "unchanged observations are not republished"
    );

    // Once the kube-apiserver has read the policy (here: the file predates it), the node is
    // compliant.
    set_mtime(&policy, SystemTime::UNIX_EPOCH + BEFORE_START);
    run_agent(&agent, &node, &[&agent_args[..], &["--enforce"]].concat()).await;
    let status = wait_drift(&env, &baseline, &BTreeSet::new()).await;
    assert_eq!(
        (
            status.summary.nodes_selected,
            status.summary.nodes_compliant
        ),
        (1, 1)
    );
    assert_eq!(condition_status(&status, "Compliant"), "True");

    // An edit of the published ConfigMap is repaired.
    Api::<ConfigMap>::namespaced(env.admin.clone(), OPERATOR_NAMESPACE)
        .patch(
            AUDIT_POLICY_CONFIG_MAP,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"data": {"audit-policy.yaml": "tampered"}})),
        )
        .await
        .expect("tamper");
    eventually(SETTLE, "the ConfigMap to be repaired", || async {
        config_map(&env)
            .await
            .filter(|cm| cm.data.as_ref() == Some(&rendered))
    })
    .await;

    // Audit mode never writes: the ConfigMap keeps the last Enforce rendering, and the
    // node's policy now differs from what the baseline renders.
    let kept = config_map(&env)
        .await
        .expect("ConfigMap")
        .resource_version();
    Api::<SecurityBaseline>::all(env.admin.clone())
        .patch(
            &baseline,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"mode": "Audit", "auditPolicy": {"profile": "Strict"}}})),
        )
        .await
        .expect("switch to Audit");
    let status = wait_drift(
        &env,
        &baseline,
        &entries(
            "Node",
            &node,
            &["audit.policy-matches"],
            DriftReason::Violation,
        ),
    )
    .await;
    assert!(message(&status, "audit.policy-matches").contains("Strict"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        config_map(&env)
            .await
            .expect("ConfigMap")
            .resource_version(),
        kept,
        "nothing is published for an Audit baseline"
    );

    // Release the finalizer while the operator runs, then clean up.
    Api::<SecurityBaseline>::all(env.admin.clone())
        .delete(&baseline, &DeleteParams::default())
        .await
        .expect("delete baseline");
    eventually(SETTLE, "the baseline to be gone", || async {
        let gone = Api::<SecurityBaseline>::all(env.admin.clone())
            .get_opt(&baseline)
            .await
            .expect("get baseline")
            .is_none();
        gone.then_some(())
    })
    .await;
    let _ = Api::<ConfigMap>::namespaced(env.admin.clone(), OPERATOR_NAMESPACE)
        .delete(AUDIT_POLICY_CONFIG_MAP, &DeleteParams::default())
        .await;
    let _ = std::fs::remove_dir_all(&dir);
    cleanup(&env, &[&node]).await;
}

// --- The kube-apiserver's own version (version.apiserver-skew) ------------------------------

/// Writes `status.nodeInfo.kubeletVersion` of `node`, as its kubelet would.
async fn set_kubelet_version(env: &TestEnv, node: &str, version: &str) {
    Api::<Node>::all(env.admin.clone())
        .patch_status(
            node,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "status": {"nodeInfo": {"kubeletVersion": version}}
            })),
        )
        .await
        .expect("patch Node status");
}

/// A kube-apiserver flags file (as --apiserver-flags-file reads it) in the scratch dir.
fn flags_file(name: &str, flags: &[String]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, format!("kube-apiserver\n{}\n", flags.join("\n"))).expect("write");
    path
}

/// A decoy HTTPS server on 127.0.0.1 (`openssl s_server`) whose certificate the cluster CA
/// issued for 127.0.0.1, like the real kube-apiserver's: any client trusting the CA would
/// talk to it. Killed when dropped.
struct Decoy {
    child: std::process::Child,
    port: u16,
}

impl Decoy {
    fn start(name: &str) -> Self {
        let dir = scratch_dir();
        let pki = cluster_dir().join("pki");
        let (key, csr, ext, cert) = (
            dir.join(format!("{name}.key")),
            dir.join(format!("{name}.csr")),
            dir.join(format!("{name}.ext")),
            dir.join(format!("{name}.crt")),
        );
        let openssl = |command: &mut std::process::Command| {
            let output = command.output().expect("openssl runs");
            assert!(
                output.status.success(),
                "{command:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        openssl(
            std::process::Command::new("openssl")
                .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
                .args([
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-subj",
                    "/CN=kube-apiserver",
                ])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        );
        std::fs::write(
            &ext,
            "subjectAltName=DNS:kubernetes,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        openssl(
            std::process::Command::new("openssl")
                .args(["x509", "-req", "-set_serial", "4242", "-days", "1", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(pki.join("ca.crt"))
                .arg("-CAkey")
                .arg(pki.join("ca.key"))
                .arg("-extfile")
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the decoy did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for Decoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `check --live` (admin) on this test's Nodes: the version findings of `baseline`.
fn check_live_versions(
    env: &TestEnv,
    baseline: &str,
) -> BTreeSet<(String, String, String, DriftReason)> {
    let selector = env.selector();
    let drift = drift_in_report(
        &check_live_report(&["--node-selector", &selector]),
        baseline,
    );
    drift
        .iter()
        .filter(|d| d.check.starts_with("version."))
        .map(|d| (d.kind.clone(), d.name.clone(), d.check.clone(), d.reason))
        .collect()
}

#[tokio::test]
async fn the_agent_reports_its_own_kube_apiservers_version_and_the_skew_is_checked() {
    let env = TestEnv::new("apiver").await;
    let cp = env.create_node("cp", &[]).await;
    let peer = env.create_node("cp2", &[]).await;
    let agent = agent_kubeconfig(&env).await;
    let version: serde_json::Value =
        serde_json::from_str(&kubectl(&["version", "-o", "json"])).expect("kubectl version");
    let served = version["serverVersion"]["gitVersion"]
        .as_str()
        .expect("serverVersion.gitVersion")
        .to_owned();
    let port = api_server_address().port();

    // The agent asks the kube-apiserver it found in /proc (e2e/cluster: --bind-address
    // 127.0.0.1) at its --secure-port, as its own ServiceAccount, trusting only its
    // --tls-cert-file.
    run_agent(&agent, &cp, &[]).await;
    let published = report(&env, &cp).await;
    let api = &published.spec.api_server;
    assert_eq!(api.header.state, ObservationState::Observed, "{api:#?}");
    assert_eq!(
        (api.version.as_str(), api.version_message.as_str()),
        (served.as_str(), ""),
        "{api:#?}"
    );
    assert_eq!(api.flag("bind-address"), Some("127.0.0.1"));
    assert_eq!(api.flag("secure-port"), Some(port.to_string().as_str()));
    // A version does not change between passes: the report is not rewritten.
    run_agent(&agent, &cp, &[]).await;
    assert_eq!(
        report(&env, &cp).await.metadata.resource_version,
        published.metadata.resource_version,
        "an unchanged observation is not rewritten"
    );

    // Listening on every address: asked at the node's IP (KB_HOST_IP, from the DaemonSet's
    // downward API), not at 127.0.0.1. The flags come from a file here, and the "node IP"
    // is a loopback address the kube-apiserver does not listen on, so the answer shows
    // where it was asked.
    let cert = cluster_dir()
        .join("pki/apiserver.crt")
        .display()
        .to_string();
    let every_address = flags_file(
        &format!("{}-every-address.flags", env.id),
        &[
            format!("--tls-cert-file={cert}"),
            "--bind-address=0.0.0.0".to_owned(),
            format!("--secure-port={port}"),
        ],
    );
    let (ok, log) = run_agent_once_with_env(
        &agent,
        &cp,
        &[
            "--apiserver-flags-file",
            &every_address.display().to_string(),
        ],
        &[("KB_HOST_IP", "127.0.0.2")],
    )
    .await;
    assert!(
        ok,
        "a version that cannot be read does not fail the agent: {log}"
    );
    let api = report(&env, &cp).await.spec.api_server;
    assert_eq!(api.version, "", "{api:#?}");
    assert!(
        api.version_message
            .starts_with(&format!("GET https://127.0.0.2:{port}/version failed: ")),
        "{api:#?}"
    );

    // Something else on the address, even with a certificate of the cluster's CA, is not
    // asked: the version stays empty and the message says why.
    let decoy = Decoy::start(&format!("{}-decoy", env.id));
    let to_decoy = flags_file(
        &format!("{}-decoy.flags", env.id),
        &[
            format!("--tls-cert-file={cert}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={}", decoy.port),
        ],
    );
    run_agent(
        &agent,
        &cp,
        &["--apiserver-flags-file", &to_decoy.display().to_string()],
    )
    .await;
    let api = report(&env, &cp).await.spec.api_server;
    assert_eq!(api.version, "", "{api:#?}");
    assert_eq!(
        api.version_message,
        format!(
            "https://127.0.0.1:{} answered with another certificate than the kube-apiserver's \
             own {cert}: not asked",
            decoy.port
        )
    );
    drop(decoy);

    // The controller: the real version through the Service, cp's own and an HA peer's (its
    // agent's report, written here as that agent would) two minors older: a Violation.
    run_agent(&agent, &cp, &[]).await;
    for node in [&cp, &peer] {
        set_kubelet_version(&env, node, "v1.34.1").await;
    }
    let baseline = env.apply_baseline(
        "b",
        "mode: Audit\nnamespaceSelector: {matchLabels: {none: none}}\nkubernetesVersion: {supportWindow: false}\n",
    );
    let _operator = start_operator(&env).await;
    // Compliant once /version is read (before, the skew is Unknown) and cp's report counted.
    wait_baseline_status(&env.admin, &baseline, "compliant, no drift", |s| {
        s.drift.is_empty() && condition_status(s, "Compliant") == "True"
    })
    .await;
    let peer_report: NodeReport = serde_json::from_value(serde_json::json!({
        "apiVersion": "kube-baseline.dev/v1alpha1",
        "kind": "NodeReport",
        "metadata": {"name": peer},
        "spec": {
            "nodeName": peer,
            "agentVersion": "0.1.0",
            "kubelet": {"state": "NotFound"},
            "apiServer": {"state": "Observed", "version": "v1.34.1"},
        },
    }))
    .expect("report");
    Api::<NodeReport>::all(env.admin.clone())
        .create(&PostParams::default(), &peer_report)
        .await
        .expect("create the peer's report");
    let skew = entries(
        "ControlPlane",
        "kube-apiserver",
        &["version.apiserver-skew"],
        DriftReason::Violation,
    );
    let status = wait_drift(&env, &baseline, &skew).await;
    assert_eq!(
        message(&status, "version.apiserver-skew"),
        format!(
            "kube-apiservers more than one minor apart (v1.34.1 at {peer}, {served} at /version, \
             {served} at {cp}); the newest and oldest must be within one minor"
        )
    );
    assert_eq!(
        check_live_versions(&env, &baseline),
        skew,
        "check --live and the controller disagree"
    );
    cleanup(&env, &[&cp, &peer]).await;
}
