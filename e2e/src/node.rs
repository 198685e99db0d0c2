//! The real node (`e2e/node up`): pods that run, and the tools to look at them.
//!
//! The node tests (e2e/tests/node_*.rs) are their own test targets, run by e2e/test-all
//! after `e2e/node up` (`cargo test -p kube-baseline-e2e --test 'node_*'`). Each starts with
//! [`test_node`], which fails with what to do when no node is up: a node test never passes
//! without a node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio::sync::OnceCell;

use crate::{cluster_dir, eventually, kubectl_result, repo_root};

/// The node `e2e/node up` started, as its state file describes it.
#[derive(Debug, Clone)]
pub struct TestNode {
    /// The Node object's name.
    pub name: String,
    /// The node's InternalIP (its bridge address; pod traffic from the host comes from here).
    pub ip: String,
    /// agnhost, imported into the node's containerd (`netexec`, `connect`, `pause`).
    pub agnhost_image: String,
    /// The state directory (kubelet config, logs).
    pub dir: PathBuf,
    /// The kubelet's `--config-dir` (/etc/kubernetes/kubelet.conf.d, where
    /// config/agent/enforce lets the agent write): drop-ins the tests add go here.
    pub config_dir: PathBuf,
}

impl TestNode {
    /// The kubelet's `--config-dir`.
    pub fn kubelet_config_dir(&self) -> PathBuf {
        self.config_dir.clone()
    }
}

/// The running test node; panics with what to run if there is none.
pub fn test_node() -> TestNode {
    let dir = cluster_dir().join("node");
    let env_file = dir.join("node.env");
    let text = std::fs::read_to_string(&env_file).unwrap_or_else(|_| {
        panic!(
            "no test node ({} missing): start one with `e2e/node up` after `e2e/cluster up` \
             (e2e/test-all does; `e2e/node preflight` says whether this machine can)",
            env_file.display()
        )
    });
    let values: BTreeMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let value = |key: &str| {
        values
            .get(key)
            .unwrap_or_else(|| panic!("{key} missing from {}", env_file.display()))
            .to_string()
    };
    TestNode {
        name: value("NODE_NAME"),
        ip: value("NODE_IP"),
        agnhost_image: value("AGNHOST_IMAGE"),
        config_dir: PathBuf::from(value("KUBELET_CONFIG_DIR")),
        dir,
    }
}

/// Runs `e2e/node ARGS` and returns its stdout; panics with its stderr if it fails.
pub fn node_script(args: &[&str]) -> String {
    let output = Command::new(repo_root().join("e2e").join("node"))
        .args(args)
        .output()
        .expect("e2e/node runs");
    assert!(
        output.status.success(),
        "e2e/node {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The release binary the operator image is made from: KUBE_BASELINE_RELEASE_BIN, else
/// `<target>/release/kube-baseline` (e2e/test-all builds it before the node tests).
pub fn release_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KUBE_BASELINE_RELEASE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let binary = target.join("release").join("kube-baseline");
    assert!(
        binary.exists(),
        "{} not found: run `cargo build --release -p kube-baseline` first (e2e/test-all does)",
        binary.display()
    );
    binary
}

static OPERATOR_IMAGE: OnceCell<String> = OnceCell::const_new();

/// The operator image made from the release binary and imported into the node's
/// containerd (once per test binary): its reference, `kube-baseline.local/kube-baseline:e2e-<hash>`.
pub async fn operator_image() -> String {
    OPERATOR_IMAGE
        .get_or_init(|| async {
            let binary = release_binary();
            node_script(&["image", &binary.to_string_lossy()])
        })
        .await
        .clone()
}

/// What a connection attempt from a pod found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Connected (TCP) or got an answer (UDP).
    Open,
    /// No answer within the timeout: the packets were dropped (a NetworkPolicy).
    Blocked,
}

/// What one agnhost `connect` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    /// Connected (TCP) or answered (UDP).
    Open,
    /// Refused: the packet arrived and nothing listens (no policy dropped it).
    Refused,
    /// No answer within a second: dropped.
    TimedOut,
}

/// Reads agnhost `connect`'s exit and stderr; anything else (DNS, no route, a failed exec)
/// is a broken setup and panics with `what`.
pub fn conn_verdict(ok: bool, stderr: &str, what: &str) -> Conn {
    if ok {
        Conn::Open
    } else if stderr.contains("TIMEOUT") {
        Conn::TimedOut
    } else if stderr.contains("REFUSED") {
        Conn::Refused
    } else {
        panic!("{what}: neither connected, refused nor timed out: {stderr}")
    }
}

/// Tries `protocol` (`tcp` or `udp`) to `ip:port` from container `main` of a pod, with
/// agnhost `connect` (1 s timeout).
pub fn connect_from_pod(namespace: &str, pod: &str, ip: &str, port: u16, protocol: &str) -> Conn {
    let target = format!("{ip}:{port}");
    let (ok, _, stderr) = kubectl_result(
        &[
            "exec",
            "-n",
            namespace,
            pod,
            "-c",
            "main",
            "--",
            "/agnhost",
            "connect",
            "--timeout=1s",
            &format!("--protocol={protocol}"),
            &target,
        ],
        None,
    );
    conn_verdict(
        ok,
        &stderr,
        &format!("{namespace}/{pod} -> {protocol} {target}"),
    )
}

/// [`connect_from_pod`] as a policy verdict. A refusal is not one: it panics, so a server
/// that is not listening can never pass for a blocked connection.
pub fn reach(namespace: &str, pod: &str, ip: &str, port: u16, protocol: &str) -> Reach {
    match connect_from_pod(namespace, pod, ip, port, protocol) {
        Conn::Open => Reach::Open,
        Conn::TimedOut => Reach::Blocked,
        Conn::Refused => panic!(
            "{protocol} {namespace}/{pod} -> {ip}:{port} was refused: nothing listens there, \
             so it says nothing about the policies"
        ),
    }
}

/// A pod answering on TCP 80, TCP 53 and UDP 53 (agnhost netexec twice), with `main` the
/// container the tests exec into. Restricted-compliant, so any Pod Security level admits it
/// (non-root binds ports below 1024: containerd sets ip_unprivileged_port_start=0 in pods).
/// The memory limit leaves room for several `agnhost connect` execs at once.
pub fn server_pod_manifest(
    namespace: &str,
    name: &str,
    labels: &[(&str, &str)],
    image: &str,
) -> String {
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("    {k}: \"{v}\"\n"))
        .collect();
    let container = |name: &str, args: &str| {
        format!(
            "  - name: {name}\n    image: {image}\n    imagePullPolicy: Never\n    args: {args}\n    \
             securityContext:\n      allowPrivilegeEscalation: false\n      runAsNonRoot: true\n      \
             runAsUser: 65532\n      capabilities: {{drop: [ALL]}}\n      \
             seccompProfile: {{type: RuntimeDefault}}\n    \
             resources: {{requests: {{cpu: 10m, memory: 16Mi}}, limits: {{cpu: 200m, memory: 256Mi}}}}\n"
        )
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n{labels}\
         spec:\n  terminationGracePeriodSeconds: 0\n  containers:\n{}{}",
        container("main", "[netexec, --http-port=80, --udp-port=53]"),
        container("tcp53", "[netexec, --http-port=53, --udp-port=8081]"),
    )
}

/// Creates a pod from a manifest and waits until it is Ready; returns its IP.
pub async fn run_pod(manifest: &str) -> String {
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "create pod: {stderr}\n{manifest}");
    let object: serde_json::Value = serde_saphyr::from_str(manifest).expect("pod manifest is YAML");
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default");
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    wait_pod_ready(namespace, name).await
}

/// Waits until `namespace/name` is Ready; returns its IP.
pub async fn wait_pod_ready(namespace: &str, name: &str) -> String {
    eventually(
        Duration::from_secs(90),
        &format!("pod {namespace}/{name} Ready"),
        || async {
            let (ok, out, _) = kubectl_result(
                &[
                    "get",
                    "pod",
                    "-n",
                    namespace,
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.podIP}",
                ],
                None,
            );
            let (ready, ip) = out.split_once(' ')?;
            (ok && ready == "True" && !ip.is_empty()).then(|| ip.to_string())
        },
    )
    .await
}

/// Writes `content` to `path` (creating parents), for kubelet drop-ins.
pub fn write_file(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create parent dir");
    }
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The label that scopes the installed operator (the Deployment from config/default) to the
/// node tests' own baselines and namespaces, so it never acts on other tests' objects.
pub const INSTALLED_SCOPE: &str = "kube-baseline.dev/e2e=node-install";

/// The installed agent's `--interval` (60 s in config/agent): short, so a change on the node
/// reaches its NodeReport within seconds and the node tests stay quick.
pub const AGENT_INTERVAL: &str = "5s";

static INSTALLED_OPERATOR: OnceCell<String> = OnceCell::const_new();

/// Installs kube-baseline as documented — `kubectl apply --server-side -k` of an overlay of
/// config/default plus the config/agent/enforce component — with the image override pointing
/// at [`operator_image`] (overriding config/default's [`crate::CANONICAL_IMAGE`], as a user's
/// overlay does), the controller scoped to [`INSTALLED_SCOPE`] and the agent's interval
/// [`AGENT_INTERVAL`]. `imagePullPolicy: IfNotPresent` is explicit: the image exists only in
/// the node's containerd, and a workload first created with the untagged `kube-baseline` of
/// config/agent (deploy.rs installs it) keeps the `Always` the API server defaulted for it.
/// Once per test binary; returns the image reference.
pub async fn install_operator() -> String {
    INSTALLED_OPERATOR
        .get_or_init(|| async {
            let image = operator_image().await;
            let (name, tag) = image.rsplit_once(':').expect("image has a tag");
            let canonical = crate::CANONICAL_IMAGE;
            let overlay = crate::scratch_dir().join("node-install");
            std::fs::create_dir_all(&overlay).expect("overlay dir");
            let config = relative_to(&repo_root().join("config"), &overlay);
            let kustomization = format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
                 resources:\n- {config}/default\n\
                 components:\n- {config}/agent/enforce\n\
                 images:\n- name: {canonical}\n  newName: {name}\n  newTag: {tag}\n\
                 patches:\n- target: {{kind: Deployment, name: kube-baseline}}\n  patch: |-\n\
                 \x20   - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: --baseline-selector={INSTALLED_SCOPE}\n\
                 \x20   - op: add\n      path: /spec/template/spec/containers/0/args/-\n      value: --namespace-selector={INSTALLED_SCOPE}\n\
                 - target: {{kind: DaemonSet, name: kube-baseline-agent}}\n  patch: |-\n\
                 \x20   - op: test\n      path: /spec/template/spec/containers/0/args/3\n      value: --interval=60s\n\
                 \x20   - op: replace\n      path: /spec/template/spec/containers/0/args/3\n      value: --interval={AGENT_INTERVAL}\n\
                 - target: {{group: apps, name: kube-baseline.*}}\n  patch: |-\n\
                 \x20   - op: add\n      path: /spec/template/spec/containers/0/imagePullPolicy\n      value: IfNotPresent\n"
            );
            write_file(&overlay.join("kustomization.yaml"), &kustomization);
            let (ok, _, stderr) = kubectl_result(
                &[
                    "apply",
                    "--server-side",
                    "--force-conflicts",
                    "-k",
                    &overlay.to_string_lossy(),
                ],
                None,
            );
            assert!(ok, "kubectl apply -k {}: {stderr}", overlay.display());
            image
        })
        .await
        .clone()
}

/// `target` relative to `base` (kustomize refuses absolute resource paths).
fn relative_to(target: &Path, base: &Path) -> String {
    let target: Vec<_> = target.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); base.len() - common];
    parts.extend(
        target[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}
