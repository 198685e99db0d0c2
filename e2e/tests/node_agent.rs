//! The node agent as it is installed — the DaemonSet of config/agent with the
//! config/agent/enforce component, from the locally built image — on the real node of
//! `e2e/node`. The node is this machine, so the agent pod sees the real kubelet and the real
//! kube-apiserver of `e2e/cluster` the way it sees them in a cluster: through hostPID
//! (/proc) and the host's / mounted at /host. What it proves:
//!
//! - The NodeReport holds the kubelet's effective configuration as the kubelet itself
//!   reports it (/configz, through the API server: the independent reference), the
//!   kube-apiserver's flags as its /proc/<pid>/cmdline has them, and its audit policy and
//!   encryption providers as their files say; nothing is pending restart. The controller
//!   turns it into exactly the findings this CIS-configured control plane and kubelet
//!   deserve.
//! - A drop-in the test adds to the kubelet's --config-dir is, once the kubelet restarts,
//!   the effective value in the report as in /configz, and not "pending restart".
//! - With --enforce, a baseline's kubelet settings are written as the drop-in
//!   90-kube-baseline.conf; the finding is Unknown ("has not restarted") until the test
//!   restarts the kubelet, then compliant; deleting the baseline removes the drop-in.
//! - A drop-in removed, or moved into place with an older mtime, while the kubelet keeps
//!   running is "pending restart" too: a baseline checking the setting is Unknown, never
//!   compliant with a value the running kubelet does not have.
//!
//! The tests share one kubelet: they run one at a time ([`NODE`]) and leave the node as
//! they found it (its NodeReport equal to the one before), also when they fail.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;
use kube_baseline::api::{
    AuditStage, DriftReason, EnforcementState, EnforcementTarget, KubeletAuthorizationMode,
    KubeletSettings, NodeReport, NodeReportSpec, ObservationState, SecurityBaselineStatus,
};
use kube_baseline::domain::node::kubelet::{DROP_IN_HEADER, DROP_IN_NAME};
use kube_baseline_e2e::node::{INSTALLED_SCOPE, TestNode, install_operator, test_node};
use kube_baseline_e2e::*;
use serde_json::Value;
use tokio::sync::{Mutex, OnceCell};

const AGENT_NAMESPACE: &str = "kube-baseline-agent";
const AGENT_DAEMONSET: &str = "kube-baseline-agent";
/// The DaemonSet's pods run as this ServiceAccount (config/agent/service_account.yaml).
const AGENT_USER: &str = "system:serviceaccount:kube-baseline-agent:kube-baseline-agent";
/// The agent observes every --interval (AGENT_INTERVAL in the test install), after waiting
/// up to 30 s for its watches when it starts: a change on the node is in the report within
/// this.
const PASS: Duration = Duration::from_secs(150);
/// A baseline's status follows a report within seconds, unless it changed three times in
/// the last minute (the controller's write budget): then it waits for the next minute.
const STATUS: Duration = Duration::from_secs(150);
/// The drop-in the test writes itself; sorts before the agent's 90-kube-baseline.conf.
const TEST_DROP_IN: &str = "50-e2e-node-agent.conf";
/// What a kubelet finding says while the kubelet runs with older files than are on disk
/// (domain::node::kubelet::evaluate_kubelet).
const NOT_RESTARTED: &str = "the kubelet has not restarted since its configuration changed";
/// The kube-apiserver flags a NodeReport carries (docs/checks-nodes.md, "What the agent
/// reads and writes"): written down here, not taken from the crate, so that a flag the agent
/// stops reporting fails the test.
const REPORTED_API_SERVER_FLAGS: &[&str] = &[
    "anonymous-auth",
    "audit-log-maxage",
    "audit-log-maxbackup",
    "audit-log-maxsize",
    "audit-log-path",
    "audit-policy-file",
    "authentication-config",
    "authorization-config",
    "authorization-mode",
    // Where the agent asks its node's kube-apiserver for its version.
    "bind-address",
    "disable-admission-plugins",
    "enable-admission-plugins",
    "encryption-provider-config",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "etcd-servers",
    "secure-port",
    // The flag-only CIS 1.2 checks.
    "client-ca-file",
    "kubelet-certificate-authority",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "profiling",
    "service-account-extend-token-expiration",
    "service-account-key-file",
    "service-account-lookup",
    "tls-cert-file",
    "tls-cipher-suites",
    "tls-private-key-file",
    "token-auth-file",
];

/// One kubelet for every test here: the ones that restart it or change its files must not
/// overlap, nor may a test that compares the report with /configz run during a restart.
static NODE: Mutex<()> = Mutex::const_new(());

// --- Waiting ---------------------------------------------------------------------------------

static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Prints a step with the time since the first step of this test binary (the timings of a
/// run, with --nocapture).
fn step(what: &str) {
    let since = STARTED.get_or_init(Instant::now).elapsed();
    eprintln!("[{:>6.1}s] {what}", since.as_secs_f64());
}

/// Polls `probe` every 250 ms until `done` holds for what it returns; panics after `timeout`
/// with `what` and the last value seen ([`eventually`] does not show it, and a report that
/// stays wrong is the whole story of a failure here).
async fn wait_until<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut probe: F,
    done: impl Fn(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        let value = probe().await;
        if done(&value) {
            step(&format!("{what} ({:.1}s)", started.elapsed().as_secs_f64()));
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {value:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// --- The agent as installed ------------------------------------------------------------------

static AGENT: OnceCell<String> = OnceCell::const_new();

/// Installs kube-baseline with the agent (install_operator: config/default plus
/// config/agent/enforce, which mounts /etc/kubernetes/kubelet.conf.d read-write, the test
/// node's --config-dir as on kubeadm nodes); returns the name of the agent pod on `node`
/// once it runs.
async fn agent_pod(env: &TestEnv, node: &TestNode) -> String {
    AGENT
        .get_or_init(|| async {
            install_operator().await;
            wait_for_agent_pod(env, node).await
        })
        .await
        .clone()
}

/// The Ready agent pod on `node`, once the DaemonSet has rolled out (an older pod gone).
async fn wait_for_agent_pod(env: &TestEnv, node: &TestNode) -> String {
    let daemonsets = Api::<DaemonSet>::namespaced(env.admin.clone(), AGENT_NAMESPACE);
    let pods = Api::<Pod>::namespaced(env.admin.clone(), AGENT_NAMESPACE);
    let on_node = ListParams::default()
        .labels("app.kubernetes.io/name=kube-baseline,app.kubernetes.io/component=agent")
        .fields(&format!("spec.nodeName={}", node.name));
    let (_, pods_on_node) = wait_until(
        Duration::from_secs(180),
        &format!(
            "the agent DaemonSet rolled out, its pod on {} Ready (kubectl describe pod -n \
             {AGENT_NAMESPACE})",
            node.name
        ),
        || async {
            let status = daemonsets
                .get(AGENT_DAEMONSET)
                .await
                .ok()
                .and_then(|ds| Some((ds.metadata.generation, ds.status?)));
            let rolled_out = status.is_some_and(|(generation, s)| {
                s.observed_generation == generation
                    && s.desired_number_scheduled >= 1
                    && s.updated_number_scheduled == Some(s.desired_number_scheduled)
                    && s.number_available == Some(s.desired_number_scheduled)
            });
            let pods_on_node: Vec<(String, bool)> = pods
                .list(&on_node)
                .await
                .map(|list| list.items)
                .unwrap_or_default()
                .into_iter()
                .map(|pod| {
                    let ready = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        });
                    (pod.metadata.name.unwrap_or_default(), ready)
                })
                .collect();
            (rolled_out, pods_on_node)
        },
        |(rolled_out, pods)| *rolled_out && pods.len() == 1 && pods.iter().all(|(_, ready)| *ready),
    )
    .await;
    pods_on_node[0].0.clone()
}

// --- Observing the node ----------------------------------------------------------------------

async fn node_report(env: &TestEnv, node: &TestNode) -> Option<NodeReport> {
    Api::<NodeReport>::all(env.admin.clone())
        .get_opt(&node.name)
        .await
        .expect("get NodeReport")
}

/// Waits until the node's report satisfies `check`.
async fn wait_report(
    env: &TestEnv,
    node: &TestNode,
    what: &str,
    check: impl Fn(&NodeReportSpec) -> bool,
) -> NodeReport {
    wait_until(
        PASS,
        &format!("NodeReport {}: {what}", node.name),
        || node_report(env, node),
        |report| report.as_ref().is_some_and(|r| check(&r.spec)),
    )
    .await
    .expect("checked above")
}

/// A report of a kubelet that runs with what is on disk: both components observed, nothing
/// pending restart.
fn settled(spec: &NodeReportSpec) -> bool {
    spec.kubelet.header.state == ObservationState::Observed
        && spec.api_server.header.state == ObservationState::Observed
        && !spec.kubelet.pending_restart
        && !spec.api_server.pending_restart
}

/// The kubelet's own view of its configuration: /configz through the API server's node
/// proxy (`kubeletconfig`), or None while the kubelet does not answer (restarting).
fn configz(node: &TestNode) -> Option<Value> {
    let (ok, out, _) = kubectl_result(
        &[
            "get",
            "--raw",
            &format!("/api/v1/nodes/{}/proxy/configz", node.name),
        ],
        None,
    );
    let mut value: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    Some(value["kubeletconfig"].take())
}

/// Waits until the kubelet answers /configz and its configuration satisfies `check`.
async fn wait_configz(node: &TestNode, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    wait_until(
        Duration::from_secs(60),
        &format!("the kubelet's /configz: {what}"),
        || async { configz(node) },
        |value| value.as_ref().is_some_and(&check),
    )
    .await
    .expect("checked above")
}

/// The checked settings as /configz shows them. It marshals the v1beta1
/// KubeletConfiguration, whose plain (non-pointer) fields are `omitempty`: an absent
/// readOnlyPort, protectKernelDefaults or rotateCertificates is the zero value.
fn configz_settings(config: &Value) -> KubeletSettings {
    let flag = |pointer: &str| Some(config.pointer(pointer).and_then(Value::as_bool) == Some(true));
    KubeletSettings {
        anonymous_auth: flag("/authentication/anonymous/enabled"),
        webhook_authentication: flag("/authentication/webhook/enabled"),
        authorization_mode: Some(
            serde_json::from_value::<KubeletAuthorizationMode>(
                config["authorization"]["mode"].clone(),
            )
            .expect("/configz has authorization.mode Webhook or AlwaysAllow"),
        ),
        read_only_port: Some(
            config
                .get("readOnlyPort")
                .and_then(Value::as_i64)
                .map_or(0, |port| i32::try_from(port).expect("a port")),
        ),
        protect_kernel_defaults: flag("/protectKernelDefaults"),
        rotate_certificates: flag("/rotateCertificates"),
        seccomp_default: flag("/seccompDefault"),
        make_iptables_util_chains: flag("/makeIPTablesUtilChains"),
        ..KubeletSettings::default()
    }
}

fn seccomp_default(config: &Value) -> bool {
    config["seccompDefault"] == Value::Bool(true)
}

/// `--name=value` arguments of a running process, by name (`--name` alone is "true"), read
/// from /proc/<pid>/cmdline; the pid comes from `pid_file`.
fn process_flags(pid_file: &Path) -> BTreeMap<String, String> {
    let pid = std::fs::read_to_string(pid_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", pid_file.display()));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
        .unwrap_or_else(|e| panic!("the process of {} runs: {e}", pid_file.display()));
    cmdline
        .split(|b| *b == 0)
        .filter_map(|arg| {
            String::from_utf8_lossy(arg)
                .strip_prefix("--")
                .map(str::to_owned)
        })
        .map(|flag| match flag.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (flag, "true".to_owned()),
        })
        .collect()
}

/// The origin the report gives for one setting.
fn origin<'a>(spec: &'a NodeReportSpec, setting: &str) -> &'a str {
    spec.kubelet
        .origins
        .iter()
        .find(|o| o.setting == setting)
        .map(|o| o.origin.as_str())
        .unwrap_or_default()
}

/// Names of the `*.conf` files in the kubelet's --config-dir (no subdirectories here).
fn drop_ins_on_disk(node: &TestNode) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(node.kubelet_config_dir())
        .expect("the kubelet's --config-dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".conf"))
        .collect();
    names.sort();
    names
}

// --- Changing the node, and putting it back ---------------------------------------------------

/// Restarts the kubelet (same flags; it reads its config and drop-ins again) and waits until
/// it answers through the API server again.
async fn restart_kubelet(node: &TestNode) {
    step("restarting the kubelet");
    let output = tokio::process::Command::new(repo_root().join("e2e/node"))
        .arg("restart-kubelet")
        .output()
        .await
        .expect("e2e/node runs");
    assert!(
        output.status.success(),
        "e2e/node restart-kubelet failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_configz(node, "answering after the restart", |_| true).await;
}

/// What a test changed on the node; put back when the test fails half-way.
#[derive(Debug, Default)]
struct Changes {
    /// A baseline (with kubelet settings) the agent may be writing a drop-in for.
    baseline: Option<String>,
    /// Files written into the kubelet's --config-dir.
    drop_ins: Vec<PathBuf>,
    /// The kubelet may run with (or have on disk) something the test caused: restart it.
    kubelet: bool,
}

impl Changes {
    /// Best effort, never panicking (the test's own panic is the one to see): delete the
    /// baseline and give the agent a pass to remove its drop-in (removing it first would
    /// race an agent that has not seen the deletion yet), remove the files, and restart the
    /// kubelet so that it runs without them.
    async fn undo(self, node: &TestNode) {
        eprintln!("putting the node back: {self:?}");
        if let Some(baseline) = &self.baseline {
            let _ = kubectl_result(&["delete", "sbl", baseline, "--ignore-not-found"], None);
            let agent_drop_in = node.kubelet_config_dir().join(DROP_IN_NAME);
            let deadline = Instant::now() + PASS;
            while agent_drop_in.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        // The agent's drop-in only when this test's baseline asked for it.
        let agent_drop_in = self
            .baseline
            .as_ref()
            .map(|_| node.kubelet_config_dir().join(DROP_IN_NAME));
        for file in self.drop_ins.iter().chain(agent_drop_in.as_ref()) {
            if file.exists()
                && let Err(err) = std::fs::remove_file(file)
            {
                eprintln!("cannot remove {}: {err}", file.display());
            }
        }
        if !self.kubelet {
            return;
        }
        match tokio::process::Command::new(repo_root().join("e2e/node"))
            .arg("restart-kubelet")
            .output()
            .await
        {
            Ok(output) if output.status.success() => {}
            other => eprintln!("e2e/node restart-kubelet failed: {other:?}"),
        }
    }
}

/// Runs `body`; when it panics, undoes the `changes` it recorded, then panics on.
async fn restoring(node: &TestNode, body: impl AsyncFnOnce(&std::sync::Mutex<Changes>)) {
    let changes = std::sync::Mutex::new(Changes::default());
    let result = AssertUnwindSafe(body(&changes)).catch_unwind().await;
    if let Err(panic) = result {
        let changes = std::mem::take(&mut *changes.lock().unwrap_or_else(|e| e.into_inner()));
        changes.undo(node).await;
        std::panic::resume_unwind(panic);
    }
}

// --- Baselines -------------------------------------------------------------------------------

/// Applies a SecurityBaseline the installed controller reconciles: it is scoped to
/// [`INSTALLED_SCOPE`], so the baseline carries that label. Its namespaceSelector asks for
/// this test's id under the same label key, which no namespace the controller sees (they
/// carry `node-install` there) can have: it selects no namespace, only nodes.
fn apply_installed_baseline(env: &TestEnv, suffix: &str, mut spec: Value) -> String {
    let name = env.name(suffix);
    let (key, value) = INSTALLED_SCOPE.split_once('=').expect("key=value");
    spec["namespaceSelector"] = serde_json::json!({"matchLabels": {key: env.id}});
    let manifest = serde_json::json!({
        "apiVersion": "kube-baseline.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": name, "labels": {key: value}},
        "spec": spec,
    })
    .to_string();
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "apply baseline {name}: {stderr}\n{manifest}");
    name
}

/// (check, reason) of the baseline's findings on `node`, and whether they are all its
/// findings (none elsewhere, none beyond the listed 50).
fn node_findings(
    status: &SecurityBaselineStatus,
    node: &str,
) -> (BTreeSet<(String, DriftReason)>, bool) {
    let on_node: BTreeSet<(String, DriftReason)> = status
        .drift
        .iter()
        .filter(|d| d.kind == "Node" && d.name == node)
        .map(|d| (d.check.clone(), d.reason))
        .collect();
    let only = status.drift_total == on_node.len() as i64 && status.drift.len() == on_node.len();
    (on_node, only)
}

fn findings(pairs: &[(&str, DriftReason)]) -> BTreeSet<(String, DriftReason)> {
    pairs
        .iter()
        .map(|(check, reason)| (check.to_string(), *reason))
        .collect()
}

/// Waits until the baseline's status, at its current generation, satisfies `check`.
async fn wait_status(
    env: &TestEnv,
    baseline: &str,
    what: &str,
    check: impl Fn(&SecurityBaselineStatus) -> bool,
) -> SecurityBaselineStatus {
    let generation = baseline_json(baseline)["metadata"]["generation"].as_i64();
    wait_until(
        STATUS,
        &format!("status of {baseline}: {what}"),
        || baseline_status(&env.admin, baseline),
        |status| {
            status
                .as_ref()
                .is_some_and(|s| s.observed_generation == generation && check(s))
        },
    )
    .await
    .expect("checked above")
}

fn delete_baseline(name: &str) {
    kubectl(&["delete", "sbl", name, "--ignore-not-found"]);
}

// --- Tests -----------------------------------------------------------------------------------

#[tokio::test]
async fn the_agent_pod_reports_the_real_kubelet_and_apiserver() {
    let _one_at_a_time = NODE.lock().await;
    let node = test_node();
    let env = TestEnv::new("nodeagent").await;
    let pod = agent_pod(&env, &node).await;
    step(&format!("agent pod {pod} runs on {}", node.name));
    // The kubelet and kube-apiserver observed, as e2e/node and e2e/cluster started them.
    let report = report_as_found(&env, &node).await;
    let spec = &report.spec;
    eprintln!("{}", serde_saphyr::to_string(spec).unwrap_or_default());

    // Named after the node, owned by its Node (garbage-collected with it), written by the
    // DaemonSet's ServiceAccount (the admission policy lets only the pod on this node do
    // that), with --enforce (config/agent/enforce).
    let node_object = Api::<Node>::all(env.admin.clone())
        .get(&node.name)
        .await
        .expect("the Node");
    assert_eq!(spec.node_name, node.name);
    let owners = report.metadata.owner_references.clone().unwrap_or_default();
    assert!(
        owners.len() == 1
            && owners[0].kind == "Node"
            && owners[0].uid == node_object.metadata.uid.clone().unwrap_or_default(),
        "the report is owned by Node {}: {owners:?}",
        node.name
    );
    assert!(
        writes_by(AGENT_USER).iter().any(|e| e
            .object_ref
            .as_ref()
            .is_some_and(|o| o.resource == "nodereports" && o.name == node.name)),
        "the audit log shows the agent's ServiceAccount writing NodeReport {}",
        node.name
    );
    assert!(spec.enforce, "the installed agent runs with --enforce");

    // Nothing pending restart (report_as_found waits for that, and fails with the report
    // when the agent keeps saying so): e2e/cluster and e2e/node wrote every file the
    // kube-apiserver and kubelet read before starting them, seconds before.
    assert!(
        !spec.api_server.audit_policy.pending_restart
            && !spec.api_server.encryption.pending_restart,
        "false pending restart of the kube-apiserver's files"
    );

    // The kubelet: the files its command line names, and their merged values as the
    // kubelet itself has them.
    let kubelet_flags = process_flags(&node.dir.join("kubelet.pid"));
    assert_eq!(
        spec.kubelet.config_file, kubelet_flags["config"],
        "--config"
    );
    assert_eq!(
        spec.kubelet.config_dir, kubelet_flags["config-dir"],
        "--config-dir"
    );
    assert_eq!(
        Path::new(&spec.kubelet.config_dir),
        node.kubelet_config_dir(),
        "--config-dir"
    );
    assert_eq!(spec.kubelet.drop_ins, drop_ins_on_disk(&node), "drop-ins");
    let config = wait_configz(&node, "answering", |_| true).await;
    assert_eq!(
        spec.kubelet.settings,
        configz_settings(&config),
        "the reported effective kubelet settings are the kubelet's own (/configz)"
    );
    assert_eq!(origin(spec, "readOnlyPort"), "config file");
    assert_eq!(origin(spec, "seccompDefault"), "default");

    // The kube-apiserver: the flags the report carries are exactly those its command line
    // has, with their values.
    let api_flags = process_flags(&cluster_dir().join("kube-apiserver.pid"));
    // The report lists its flags by name.
    let mut want: Vec<(String, String)> = REPORTED_API_SERVER_FLAGS
        .iter()
        .filter_map(|name| Some((name.to_string(), api_flags.get(*name)?.clone())))
        .collect();
    want.sort();
    let reported: Vec<(String, String)> = spec
        .api_server
        .flags
        .iter()
        .map(|f| (f.name.clone(), f.value.clone()))
        .collect();
    assert_eq!(
        reported, want,
        "the kube-apiserver's flags from /proc/<pid>/cmdline"
    );
    assert!(
        want.len() >= 12,
        "the test control plane sets the audit, authorization, admission, encryption and etcd \
         flags: {want:?}"
    );

    // Its audit policy, as the file says.
    let policy_path = &api_flags["audit-policy-file"];
    let policy_text = std::fs::read_to_string(policy_path).expect("the audit policy file");
    let policy: Value = serde_saphyr::from_str(&policy_text).expect("the policy is YAML");
    let observed = &spec.api_server.audit_policy;
    assert_eq!(
        observed.header.state,
        ObservationState::Observed,
        "{}",
        observed.header.message
    );
    assert_eq!(&observed.path, policy_path);
    assert!(
        !observed.managed,
        "the test cluster's policy is not kube-baseline's"
    );
    assert_eq!(
        serde_json::to_value(&observed.omit_stages).expect("JSON"),
        policy["omitStages"],
        "omitStages"
    );
    assert_eq!(
        serde_json::to_value(&observed.rules).expect("JSON"),
        policy["rules"],
        "the policy's rules"
    );
    assert!(observed.omit_stages.contains(&AuditStage::RequestReceived));

    // Its encryption providers for secrets, as the file says (names only).
    let encryption_path = &api_flags["encryption-provider-config"];
    let encryption: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(encryption_path).expect("the encryption config"),
    )
    .expect("the encryption config is YAML");
    let for_secrets: Vec<String> = encryption["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|l| l.contains(&Value::from("secrets")))
        })
        .and_then(|r| r["providers"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_object()?.keys().next().cloned())
        .collect();
    assert_eq!(spec.api_server.encryption.secrets_providers, for_secrets);
    assert_eq!(for_secrets.first().map(String::as_str), Some("aescbc"));

    // The controller's verdict from this report, in Audit mode (nothing written): the test
    // control plane is configured to pass the CIS checks, the kubelet passes what
    // kubelet.yaml sets. The two findings are real: the kubelet has seccompDefault off, and
    // the live policy (everything at Metadata) is not the Baseline profile's rendering.
    restoring(&node, async |changes| {
        let baseline = apply_installed_baseline(
            &env,
            "audit",
            serde_json::json!({
                "mode": "Audit",
                "kubelet": {
                    "nodeSelector": {"kubernetes.io/hostname": node.name},
                    "settings": {
                        "anonymousAuth": false,
                        "webhookAuthentication": true,
                        "authorizationMode": "Webhook",
                        "readOnlyPort": 0,
                        "makeIPTablesUtilChains": true,
                        "seccompDefault": true,
                    },
                },
                "controlPlane": {
                    "apiServer": {
                        "anonymousAuth": false,
                        "requireAuthorizationModes": ["Node", "RBAC"],
                        "requireAdmissionPlugins": ["NodeRestriction"],
                        "encryptionAtRest": true,
                    },
                    "etcd": {"clientTLS": true},
                },
                "auditPolicy": {"profile": "Baseline"},
            }),
        );
        changes.lock().unwrap().baseline = Some(baseline.clone());
        let want = findings(&[
            ("audit.policy-matches", DriftReason::Violation),
            ("kubelet.seccomp-default", DriftReason::Violation),
        ]);
        let status = wait_status(&env, &baseline, &format!("findings {want:?} only"), |s| {
            node_findings(s, &node.name) == (want.clone(), true)
        })
        .await;
        let seccomp = status
            .drift
            .iter()
            .find(|d| d.check == "kubelet.seccomp-default")
            .expect("listed");
        assert!(
            seccomp.message.contains("is false (from default)"),
            "the finding names where the value comes from: {}",
            seccomp.message
        );
        assert_eq!(
            (
                status.summary.nodes_selected,
                status.summary.nodes_compliant
            ),
            (1, 0)
        );
        delete_baseline(&baseline);
    })
    .await;
    env.cleanup().await;
}

/// The test's drop-in: seccompDefault (CIS 4.2.14) on, unlike kubelet.yaml (which leaves it
/// at its default, off). Harmless here: only pods created later get RuntimeDefault, and every
/// test pod asks for it anyway.
const TEST_DROP_IN_TEXT: &str =
    "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nseccompDefault: true\n";

/// The settled report of a node without drop-ins and with seccompDefault off: the state
/// every test starts from and leaves the node in. Waited for, not just read: the report
/// follows the node only at the agent's next pass (after a failed test has put the node
/// back, say). Times out when the node was left changed, or when a baseline with kubelet
/// settings in Enforce mode selects it (the agent writes them).
async fn report_as_found(env: &TestEnv, node: &TestNode) -> NodeReport {
    wait_report(
        env,
        node,
        "as e2e/node starts the kubelet: no drop-ins, seccompDefault off, nothing pending",
        |s| {
            settled(s)
                && s.kubelet.drop_ins.is_empty()
                && s.kubelet.settings.seccomp_default == Some(false)
        },
    )
    .await
}

/// Writes the test's drop-in and restarts the kubelet right after (the kubelet starts within
/// a second of the file's change, which must not count as a change after its start); waits
/// until the kubelet and then the report have it, and returns both.
async fn with_test_drop_in(env: &TestEnv, node: &TestNode, drop_in: &Path) -> (Value, NodeReport) {
    kube_baseline_e2e::node::write_file(drop_in, TEST_DROP_IN_TEXT);
    restart_kubelet(node).await;
    let config = wait_configz(
        node,
        "seccompDefault true from the drop-in",
        seccomp_default,
    )
    .await;
    let report = wait_report(
        env,
        node,
        "the drop-in merged, seccompDefault true, not pending restart",
        |s| {
            s.kubelet.drop_ins == [TEST_DROP_IN]
                && s.kubelet.settings.seccomp_default == Some(true)
                && settled(s)
        },
    )
    .await;
    (config, report)
}

/// Records a test drop-in as a change to undo.
fn record_drop_in(changes: &std::sync::Mutex<Changes>, drop_in: &Path) {
    let mut changes = changes.lock().unwrap();
    changes.drop_ins.push(drop_in.to_path_buf());
    changes.kubelet = true;
}

#[tokio::test]
async fn a_config_dir_drop_in_is_the_effective_kubelet_configuration_after_a_restart() {
    let _one_at_a_time = NODE.lock().await;
    let node = test_node();
    let env = TestEnv::new("nodeagent").await;
    agent_pod(&env, &node).await;
    let before = report_as_found(&env, &node).await;
    let drop_in = node.kubelet_config_dir().join(TEST_DROP_IN);

    restoring(&node, async |changes| {
        record_drop_in(changes, &drop_in);
        let (config, report) = with_test_drop_in(&env, &node, &drop_in).await;
        let spec = &report.spec;
        assert_eq!(
            spec.kubelet.settings,
            configz_settings(&config),
            "the reported effective settings are the kubelet's own (/configz)"
        );
        assert_eq!(
            origin(spec, "seccompDefault"),
            format!("drop-in {TEST_DROP_IN}")
        );
        assert_eq!(origin(spec, "readOnlyPort"), "config file");

        // Back as it was: the drop-in gone, the kubelet restarted, the report as before.
        std::fs::remove_file(&drop_in).expect("remove the test's drop-in");
        restart_kubelet(&node).await;
        wait_configz(&node, "seccompDefault false again", |c| !seccomp_default(c)).await;
        wait_report(&env, &node, "as before the drop-in", |s| *s == before.spec).await;
    })
    .await;
    env.cleanup().await;
}

/// An Audit-mode baseline checking seccompDefault on the node (Audit: the agent writes
/// nothing for it), recorded as a change to undo.
fn seccomp_baseline(
    env: &TestEnv,
    node: &TestNode,
    changes: &std::sync::Mutex<Changes>,
    want: bool,
) -> String {
    let baseline = apply_installed_baseline(
        env,
        "seccomp",
        serde_json::json!({
            "mode": "Audit",
            "kubelet": {
                "nodeSelector": {"kubernetes.io/hostname": node.name},
                "settings": {"seccompDefault": want},
            },
        }),
    );
    changes.lock().unwrap().baseline = Some(baseline.clone());
    baseline
}

/// The finding of a baseline checking seccompDefault when the files on disk and the running
/// kubelet disagree: Unknown ("has not restarted"), as in the Enforce test; never compliant,
/// which would claim the running kubelet has the value.
fn assert_pending_restart_finding(
    status: &SecurityBaselineStatus,
    node: &TestNode,
    report: &NodeReport,
    config: &Value,
    situation: &str,
) {
    let pending = findings(&[("kubelet.seccomp-default", DriftReason::Unknown)]);
    assert_eq!(
        node_findings(status, &node.name),
        (pending, true),
        "{situation}: the running kubelet has seccompDefault {} (/configz), its files say \
         otherwise, so the finding must be Unknown until it restarts; the agent reports \
         seccompDefault {:?} ({}) with pendingRestart {}, and the baseline's findings are \
         {:#?}",
        seccomp_default(config),
        report.spec.kubelet.settings.seccomp_default,
        origin(&report.spec, "seccompDefault"),
        report.spec.kubelet.pending_restart,
        status.drift,
    );
}

/// "Not pending restart" is a claim about the running kubelet: that it runs with what the
/// report says. This test and the next change the --config-dir without changing the mtime
/// of any file still in it; a baseline checking the setting must not become compliant.
#[tokio::test]
async fn a_removed_drop_in_is_pending_restart_while_the_kubelet_still_uses_it() {
    let _one_at_a_time = NODE.lock().await;
    let node = test_node();
    let env = TestEnv::new("nodeagent").await;
    agent_pod(&env, &node).await;
    let before = report_as_found(&env, &node).await;
    let drop_in = node.kubelet_config_dir().join(TEST_DROP_IN);

    restoring(&node, async |changes| {
        record_drop_in(changes, &drop_in);
        with_test_drop_in(&env, &node, &drop_in).await;
        // The kubelet runs with seccompDefault on; the baseline wants it off.
        let baseline = seccomp_baseline(&env, &node, changes, false);
        let violation = findings(&[("kubelet.seccomp-default", DriftReason::Violation)]);
        wait_status(&env, &baseline, "Violation from the drop-in", |s| {
            node_findings(s, &node.name) == (violation.clone(), true)
        })
        .await;

        std::fs::remove_file(&drop_in).expect("remove the test's drop-in");
        step("removed the drop-in; the kubelet keeps running");
        let report = wait_report(&env, &node, "the removal seen", |s| {
            s.kubelet.drop_ins.is_empty()
        })
        .await;
        let config = configz(&node).expect("the kubelet answers /configz");
        assert!(
            seccomp_default(&config),
            "precondition: the running kubelet still has the removed drop-in's seccompDefault"
        );
        let status = wait_status(&env, &baseline, "the removal evaluated", |s| {
            node_findings(s, &node.name).0 != violation
        })
        .await;
        assert_pending_restart_finding(
            &status,
            &node,
            &report,
            &config,
            &format!("{TEST_DROP_IN} removed, the kubelet not restarted"),
        );

        delete_baseline(&baseline);
        restart_kubelet(&node).await;
        wait_report(&env, &node, "as before the drop-in", |s| *s == before.spec).await;
    })
    .await;
    env.cleanup().await;
}

#[tokio::test]
async fn a_drop_in_moved_into_place_is_pending_restart_until_the_kubelet_reads_it() {
    let _one_at_a_time = NODE.lock().await;
    let node = test_node();
    let env = TestEnv::new("nodeagent").await;
    agent_pod(&env, &node).await;
    let before = report_as_found(&env, &node).await;
    let drop_in = node.kubelet_config_dir().join(TEST_DROP_IN);
    // Not `*.conf`: the kubelet and the agent skip it until it is renamed.
    let staged = node
        .kubelet_config_dir()
        .join(format!(".{TEST_DROP_IN}.staged"));

    restoring(&node, async |changes| {
        record_drop_in(changes, &drop_in);
        record_drop_in(changes, &staged);
        // The kubelet runs with seccompDefault off; the baseline wants it on.
        let baseline = seccomp_baseline(&env, &node, changes, true);
        let violation = findings(&[("kubelet.seccomp-default", DriftReason::Violation)]);
        wait_status(&env, &baseline, "Violation from the default", |s| {
            node_findings(s, &node.name) == (violation.clone(), true)
        })
        .await;

        // A file prepared earlier and moved into place (mv keeps the mtime, and so do
        // rsync -t, tar and cp -p): older than the running kubelet, which never read it.
        kube_baseline_e2e::node::write_file(&staged, TEST_DROP_IN_TEXT);
        let long_ago = std::time::UNIX_EPOCH + Duration::from_secs(1_577_836_800); // 2020-01-01
        std::fs::File::options()
            .write(true)
            .open(&staged)
            .and_then(|f| f.set_modified(long_ago))
            .expect("date the staged drop-in back");
        std::fs::rename(&staged, &drop_in).expect("move the drop-in into place");
        step("moved an older drop-in into place; the kubelet keeps running");
        let report = wait_report(&env, &node, "the new drop-in seen", |s| {
            s.kubelet.drop_ins == [TEST_DROP_IN]
        })
        .await;
        let config = configz(&node).expect("the kubelet answers /configz");
        assert!(
            !seccomp_default(&config),
            "precondition: the running kubelet has not read the new drop-in"
        );
        let status = wait_status(&env, &baseline, "the new drop-in evaluated", |s| {
            node_findings(s, &node.name).0 != violation
        })
        .await;
        assert_pending_restart_finding(
            &status,
            &node,
            &report,
            &config,
            &format!("{TEST_DROP_IN} (older than the kubelet) moved in, the kubelet not restarted"),
        );

        delete_baseline(&baseline);
        std::fs::remove_file(&drop_in).expect("remove the test's drop-in");
        // The kubelet never read it, but a directory changed since its start may (rightly)
        // count as pending restart: restart so the report is as before either way.
        restart_kubelet(&node).await;
        wait_report(&env, &node, "as before the drop-in", |s| *s == before.spec).await;
    })
    .await;
    env.cleanup().await;
}

#[tokio::test]
async fn with_enforce_the_agent_writes_the_drop_in_and_the_finding_waits_for_the_restart() {
    let _one_at_a_time = NODE.lock().await;
    let node = test_node();
    let env = TestEnv::new("nodeagent").await;
    agent_pod(&env, &node).await;
    let before = report_as_found(&env, &node).await;
    let drop_in = node.kubelet_config_dir().join(DROP_IN_NAME);
    let drop_in_path = drop_in.display().to_string();

    restoring(&node, async |changes| {
        // seccompDefault is what the node lacks; anonymousAuth and readOnlyPort it already
        // has from kubelet.yaml (written into the drop-in all the same).
        let baseline = apply_installed_baseline(
            &env,
            "enforce",
            serde_json::json!({
                "mode": "Enforce",
                "kubelet": {
                    "nodeSelector": {"kubernetes.io/hostname": node.name},
                    "settings": {"seccompDefault": true, "anonymousAuth": false, "readOnlyPort": 0},
                },
            }),
        );
        {
            let mut changes = changes.lock().unwrap();
            changes.baseline = Some(baseline.clone());
            changes.kubelet = true;
        }

        // The agent writes the drop-in: only the baseline's fields, under kube-baseline's
        // header. The running kubelet does not have them yet.
        let text = wait_until(
            PASS,
            &format!("the agent writing {drop_in_path}"),
            || async { std::fs::read_to_string(&drop_in).ok() },
            Option::is_some,
        )
        .await
        .expect("checked above");
        assert!(
            text.starts_with(DROP_IN_HEADER),
            "kube-baseline's header:\n{text}"
        );
        let written: Value = serde_saphyr::from_str(&text).expect("the drop-in is YAML");
        assert_eq!(
            written,
            serde_json::json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "authentication": {"anonymous": {"enabled": false}},
                "readOnlyPort": 0,
                "seccompDefault": true,
            }),
            "the drop-in the agent wrote:\n{text}"
        );

        // Reported pending restart — and it is: /configz still has seccompDefault off.
        let report = wait_report(&env, &node, "the agent's drop-in, pending restart", |s| {
            s.kubelet.pending_restart && s.kubelet.drop_ins == [DROP_IN_NAME]
        })
        .await;
        let spec = &report.spec;
        assert_eq!(spec.kubelet.settings.seccomp_default, Some(true), "on disk");
        assert_eq!(
            origin(spec, "seccompDefault"),
            format!("drop-in {DROP_IN_NAME}")
        );
        let enforced: Vec<_> = spec
            .enforcement
            .iter()
            .filter(|e| e.target == EnforcementTarget::KubeletDropIn)
            .map(|e| (e.path.as_str(), e.state))
            .collect();
        assert_eq!(
            enforced,
            [(drop_in_path.as_str(), EnforcementState::InSync)]
        );
        assert!(
            !seccomp_default(&configz(&node).expect("the kubelet answers")),
            "the running kubelet does not use the drop-in before it restarts"
        );

        // The finding: neither a Violation (on disk it is right) nor compliant (the running
        // kubelet does not have it): Unknown, saying why, for each setting the files decide.
        let pending = findings(&[
            ("kubelet.anonymous-auth", DriftReason::Unknown),
            ("kubelet.read-only-port", DriftReason::Unknown),
            ("kubelet.seccomp-default", DriftReason::Unknown),
        ]);
        let status = wait_status(&env, &baseline, "pending restart", |s| {
            node_findings(s, &node.name) == (pending.clone(), true)
        })
        .await;
        assert!(
            status
                .drift
                .iter()
                .all(|d| d.message.contains(NOT_RESTARTED)),
            "the findings say the kubelet has not restarted: {:#?}",
            status.drift
        );
        assert_eq!(status.summary.nodes_compliant, 0);

        // The admin's part: restart the kubelet. Then it runs with the drop-in, nothing is
        // pending, and the baseline is compliant on the node.
        restart_kubelet(&node).await;
        let config = wait_configz(
            &node,
            "seccompDefault true from the agent's drop-in",
            seccomp_default,
        )
        .await;
        let report = wait_report(&env, &node, "the agent's drop-in in force", |s| {
            s.kubelet.drop_ins == [DROP_IN_NAME] && settled(s)
        })
        .await;
        assert_eq!(report.spec.kubelet.settings, configz_settings(&config));
        let status = wait_status(&env, &baseline, "compliant", |s| {
            s.drift_total == 0 && condition_status(s, "Compliant") == "True"
        })
        .await;
        assert_eq!(
            (
                status.summary.nodes_selected,
                status.summary.nodes_compliant
            ),
            (1, 1)
        );

        // No baseline wants kubelet settings any more: the agent removes its drop-in (it
        // carries kube-baseline's header); after a restart the node is as it was.
        delete_baseline(&baseline);
        wait_until(
            PASS,
            &format!("the agent removing {drop_in_path}"),
            || async { drop_in.exists() },
            |exists| !exists,
        )
        .await;
        restart_kubelet(&node).await;
        wait_configz(&node, "seccompDefault false again", |c| !seccomp_default(c)).await;
        wait_report(&env, &node, "as before the baseline", |s| *s == before.spec).await;
    })
    .await;
    env.cleanup().await;
}
