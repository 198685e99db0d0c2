//! Test harness for the end-to-end tests: the local control plane from `e2e/cluster`, an
//! operator process per test running with its own ServiceAccount identity bound to the
//! RBAC in `config/rbac/`, throwaway names per test, and the apiserver audit log.
//!
//! Tests panic with a message on failure (this is test code); they never skip: without a
//! cluster they fail and say how to start one.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Node, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config};
use tokio::sync::OnceCell;

pub mod faults;
pub mod node;
pub mod proxy;

/// Label every test object carries, so each operator under test sees only its own.
pub const TEST_LABEL: &str = "kube-baseline.dev/e2e";
/// Where the operator runs in these tests (its ServiceAccounts live here).
pub const OPERATOR_NAMESPACE: &str = "kube-baseline-system";

/// The released image's name (no tag): what config/default's kustomize `images:` and the
/// chart's `image.repository` set, and what an overlay overrides (e2e/tests/helm_chart.rs
/// checks both).
pub const CANONICAL_IMAGE: &str = "ghcr.io/kube-baseline/kube-baseline";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ has a parent")
        .to_path_buf()
}

/// The `kube-baseline` binary under test (built by e2e/test-all before the tests run).
pub fn operator_binary() -> PathBuf {
    if let Ok(path) = std::env::var("KUBE_BASELINE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join("target"));
    let binary = target.join("debug").join("kube-baseline");
    assert!(
        binary.exists(),
        "{} not found: run `cargo build` first (e2e/test-all does)",
        binary.display()
    );
    binary
}

/// The state dir of the running local control plane.
pub fn cluster_dir() -> PathBuf {
    let dir = std::env::var("KUBE_BASELINE_CLUSTER_DIR").expect(
        "KUBE_BASELINE_CLUSTER_DIR is unset: start the control plane with `e2e/cluster up` and \
         `eval \"$(e2e/cluster env)\"`, or run e2e/test-all",
    );
    PathBuf::from(dir)
}

/// A client with the admin credential (system:masters). Only the harness uses it.
pub async fn admin_client() -> Client {
    Client::try_default()
        .await
        .expect("admin client from KUBECONFIG (see e2e/cluster env)")
}

/// Runs `kubectl` (the v1.36 one `e2e/cluster env` puts first on PATH) and returns stdout.
pub fn kubectl(args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Like [`kubectl`], but returns (success, stdout, stderr) instead of asserting.
pub fn kubectl_result(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let output = child.wait_with_output().expect("kubectl finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

static INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Installs the CRDs and the operator's RBAC (config/rbac) once per test binary.
pub async fn ensure_installed() {
    INSTALLED
        .get_or_init(|| async {
            let (ok, _, stderr) =
                kubectl_result(&["create", "namespace", OPERATOR_NAMESPACE], None);
            assert!(
                ok || stderr.contains("AlreadyExists"),
                "create namespace: {stderr}"
            );
            kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "crds/kube-baseline.yaml",
            ]);
            wait_crds_established(&["securitybaselines.kube-baseline.dev"]);
            kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-k",
                "config/rbac",
            ]);
        })
        .await;
}

/// Waits (60 s at most) until each named CRD is Established. Polled rather than `kubectl
/// wait`, which fails at once ("status.conditions accessor error") when it reads a CRD
/// created a moment before, whose status is not written yet (a CI run hit it).
pub fn wait_crds_established(names: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let (_, status, _) = kubectl_result(
                &[
                    "get",
                    "crd",
                    name,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
                ],
                None,
            );
            if status.trim() == "True" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "CRD {name} not Established within 60 s (status {status:?})"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A unique, DNS-label-safe id for one test: `<prefix>-<pid><seq>`.
pub fn unique_id(prefix: &str) -> String {
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let prefix: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(20)
        .collect();
    format!("{}-{:x}{:x}", prefix.to_lowercase(), nanos % 0xfffff, seq)
}

/// One test's world: its id, the admin client, and the names it created.
#[derive(Clone)]
pub struct TestEnv {
    pub id: String,
    pub admin: Client,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv").field("id", &self.id).finish()
    }
}

impl TestEnv {
    pub async fn new(prefix: &str) -> Self {
        ensure_installed().await;
        Self {
            id: unique_id(prefix),
            admin: admin_client().await,
        }
    }

    /// The label selector the operator under test is restricted to.
    pub fn selector(&self) -> String {
        format!("{TEST_LABEL}={}", self.id)
    }

    /// `<id>-<suffix>`: a name unique to this test.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.id)
    }

    /// `labels` plus this test's label.
    fn with_test_label(&self, labels: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut all: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        all.insert(TEST_LABEL.to_string(), self.id.clone());
        all
    }

    /// Creates a namespace carrying this test's label plus `labels`.
    pub async fn create_namespace(&self, suffix: &str, labels: &[(&str, &str)]) -> String {
        let name = self.name(suffix);
        let all = self.with_test_label(labels);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(self.admin.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
        name
    }

    /// Creates a Node carrying this test's label plus `labels` (no kubelet behind it: a
    /// plain API object). Nodes are cluster-scoped: [`TestEnv::cleanup`] does not delete
    /// them.
    pub async fn create_node(&self, suffix: &str, labels: &[(&str, &str)]) -> String {
        let name = self.name(suffix);
        let all = self.with_test_label(labels);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(all),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        Api::<Node>::all(self.admin.clone())
            .create(&PostParams::default(), &node)
            .await
            .expect("create Node");
        name
    }

    /// Applies a SecurityBaseline from YAML (name and test label are set here) as the admin.
    pub fn apply_baseline(&self, name_suffix: &str, spec_yaml: &str) -> String {
        let name = self.name(name_suffix);
        let manifest = format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {name}\n  labels:\n    {TEST_LABEL}: {}\nspec:\n{}",
            self.id,
            indent(spec_yaml, 2)
        );
        let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
        assert!(ok, "apply baseline {name}: {stderr}");
        name
    }

    /// Creates a ServiceAccount with this ClusterRole bound (the operator's identity in
    /// config/rbac) and returns a kubeconfig file authenticating as it.
    pub async fn service_account_kubeconfig(
        &self,
        sa_name: &str,
        cluster_role: Option<&str>,
    ) -> PathBuf {
        let sas: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), OPERATOR_NAMESPACE);
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(sa_name.to_string()),
                labels: Some(BTreeMap::from([(TEST_LABEL.to_string(), self.id.clone())])),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        };
        sas.create(&PostParams::default(), &sa)
            .await
            .expect("create ServiceAccount");
        if let Some(role) = cluster_role {
            let binding = ClusterRoleBinding {
                metadata: ObjectMeta {
                    name: Some(sa_name.to_string()),
                    labels: Some(BTreeMap::from([(TEST_LABEL.to_string(), self.id.clone())])),
                    ..ObjectMeta::default()
                },
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_string(),
                    kind: "ClusterRole".to_string(),
                    name: role.to_string(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".to_string(),
                    name: sa_name.to_string(),
                    namespace: Some(OPERATOR_NAMESPACE.to_string()),
                    api_group: None,
                }]),
            };
            Api::<ClusterRoleBinding>::all(self.admin.clone())
                .create(&PostParams::default(), &binding)
                .await
                .expect("create ClusterRoleBinding");
            if role == "kube-baseline-manager" {
                // The namespaced half of config/rbac: the leader Lease and the audit-policy ConfigMap.
                let role_binding = RoleBinding {
                    metadata: ObjectMeta {
                        name: Some(sa_name.to_string()),
                        namespace: Some(OPERATOR_NAMESPACE.to_string()),
                        labels: Some(BTreeMap::from([(TEST_LABEL.to_string(), self.id.clone())])),
                        ..ObjectMeta::default()
                    },
                    role_ref: RoleRef {
                        api_group: "rbac.authorization.k8s.io".to_string(),
                        kind: "Role".to_string(),
                        name: role.to_string(),
                    },
                    subjects: binding.subjects.clone(),
                };
                Api::<RoleBinding>::namespaced(self.admin.clone(), OPERATOR_NAMESPACE)
                    .create(&PostParams::default(), &role_binding)
                    .await
                    .expect("create RoleBinding");
            }
        }
        let token = sas
            .create_token_request(
                sa_name,
                &PostParams::default(),
                &TokenRequest {
                    spec: TokenRequestSpec {
                        audiences: vec![],
                        expiration_seconds: Some(4 * 3600),
                        bound_object_ref: None,
                    },
                    ..TokenRequest::default()
                },
            )
            .await
            .expect("token request")
            .status
            .expect("token status")
            .token;
        token_kubeconfig(sa_name, &token)
    }

    /// Deletes what this test created (namespaces, baselines, ServiceAccounts, bindings).
    pub async fn cleanup(&self) {
        let selector = format!("-l={}", self.selector());
        for kind in ["securitybaselines", "namespaces", "clusterrolebindings"] {
            let _ = kubectl_result(&["delete", kind, &selector, "--wait=false"], None);
        }
        for kind in ["serviceaccounts", "rolebindings"] {
            let _ = kubectl_result(
                &[
                    "delete",
                    kind,
                    "-n",
                    OPERATOR_NAMESPACE,
                    &selector,
                    "--wait=false",
                ],
                None,
            );
        }
    }

    /// Deletes this test's baselines and namespaces while `operator` still runs, waits (30 s
    /// at most) until it has released the baselines (their cleanup finalizer), then stops it
    /// and deletes the rest: stopping first would leave the baselines terminating for good.
    pub async fn cleanup_with(&self, operator: Operator) {
        let selector = format!("-l={}", self.selector());
        let _ = kubectl_result(
            &["delete", "securitybaselines", &selector, "--wait=false"],
            None,
        );
        let _ = kubectl_result(&["delete", "namespaces", &selector, "--wait=false"], None);
        let released = Instant::now() + Duration::from_secs(30);
        while Instant::now() < released {
            let (ok, out, _) =
                kubectl_result(&["get", "securitybaselines", &selector, "-o", "name"], None);
            if ok && out.trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(operator);
        self.cleanup().await;
    }
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A directory for this test run's files (kubeconfigs, operator logs).
pub fn scratch_dir() -> PathBuf {
    let dir = repo_root().join("target").join("e2e");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A kustomize overlay of config/default with one component of config/ (e.g.
/// `rbac/tls-secrets`) in a scratch directory inside the repository, removed on drop.
#[derive(Debug)]
pub struct DefaultWithComponent(PathBuf);

impl DefaultWithComponent {
    pub fn new(component: &str) -> Self {
        let dir = scratch_dir().join(format!(
            "overlay-{}-{}",
            component.replace('/', "-"),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("overlay dir");
        let to_config = relative_to_repo(&dir).join("config");
        std::fs::write(
            dir.join("kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\ncomponents:\n- {}\n",
                to_config.join("default").display(),
                to_config.join(component).display()
            ),
        )
        .expect("write overlay");
        Self(dir)
    }

    /// The directory, as `kubectl kustomize` takes it.
    pub fn dir(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for DefaultWithComponent {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `../..` from `dir` (inside the repository) back to the repository root: kustomize
/// refuses absolute paths for resources.
pub fn relative_to_repo(dir: &std::path::Path) -> PathBuf {
    let depth = dir
        .strip_prefix(repo_root())
        .expect("scratch dir is in the repository")
        .components()
        .count();
    (0..depth).map(|_| "..").collect()
}

/// The username the API server gives a ServiceAccount.
pub fn service_account_user(sa_name: &str) -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{sa_name}")
}

/// A `kube-baseline run` process under test, killed when dropped.
#[derive(Debug)]
pub struct Operator {
    child: Child,
    pub user: String,
    pub log: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Operator {
    /// Starts an operator that sees only this test's namespaces and baselines, running as a
    /// fresh ServiceAccount bound to config/rbac's ClusterRole (never the admin credential).
    pub async fn start(env: &TestEnv, extra_args: &[&str]) -> Self {
        let sa = format!("op-{}", env.id);
        let kubeconfig = env
            .service_account_kubeconfig(&sa, Some("kube-baseline-manager"))
            .await;
        Self::start_with(env, &sa, &kubeconfig, extra_args)
    }

    /// Starts an operator with its own ServiceAccount `op-<id>-<suffix>` (for tests that run
    /// several, so the audit log tells them apart).
    pub async fn start_named(env: &TestEnv, suffix: &str, extra_args: &[&str]) -> Self {
        let sa = format!("op-{}-{suffix}", env.id);
        let kubeconfig = env
            .service_account_kubeconfig(&sa, Some("kube-baseline-manager"))
            .await;
        Self::start_with(env, &sa, &kubeconfig, extra_args)
    }

    /// [`Operator::start_named`] reaching the API server only through `proxy` (a loopback
    /// proxy in front of it, e.g. [`proxy::StallingProxy`]).
    pub async fn start_named_via(
        env: &TestEnv,
        suffix: &str,
        proxy: std::net::SocketAddr,
        extra_args: &[&str],
    ) -> Self {
        let sa = format!("op-{}-{suffix}", env.id);
        let direct = env
            .service_account_kubeconfig(&sa, Some("kube-baseline-manager"))
            .await;
        Self::start_with(env, &sa, &kubeconfig_via(&direct, proxy), extra_args)
    }

    /// The base URL of its /metrics, /healthz and /readyz server (waits for it to listen).
    pub async fn http_url(&self) -> String {
        eventually(
            Duration::from_secs(30),
            "the operator's HTTP server",
            || async {
                let log = self.log_text();
                let line = log.lines().find(|l| l.contains("serving /metrics"))?;
                let address = line.split("address=").nth(1)?.split_whitespace().next()?;
                Some(format!("http://{address}"))
            },
        )
        .await
    }

    /// Starts another operator process with an existing identity.
    pub fn start_with(env: &TestEnv, sa: &str, kubeconfig: &Path, extra_args: &[&str]) -> Self {
        Self::start_with_baselines(env, sa, kubeconfig, &env.selector(), extra_args)
    }

    /// [`Operator::start_with`] reconciling only the baselines `baseline_selector` matches
    /// (a shard of this test's baselines); it still sees only this test's namespaces.
    pub fn start_with_baselines(
        env: &TestEnv,
        sa: &str,
        kubeconfig: &Path,
        baseline_selector: &str,
        extra_args: &[&str],
    ) -> Self {
        let selector = env.selector();
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let log = scratch_dir().join(format!("{}-{seq}.log", env.id));
        let log_file = std::fs::File::create(&log).expect("operator log");
        let mut args = vec![
            "run",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--baseline-selector",
            baseline_selector,
            "--namespace-selector",
            &selector,
            "--log-level",
            "info,kube_baseline=debug",
            // Parallel tests each get a free port; metrics_url() reads it from the log.
            "--metrics-address",
            "127.0.0.1:0",
        ];
        // Policy reports only where a test asks for them: the report CRDs stay installed
        // once e2e/tests/reports.rs installed them, and other tests count writes.
        if !extra_args.iter().any(|a| a.starts_with("--reports")) {
            args.extend(["--reports", "none"]);
        }
        args.extend_from_slice(extra_args);
        let child = Command::new(operator_binary())
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", format!("{}-{seq}", env.id))
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start operator");
        Self {
            child,
            user: service_account_user(sa),
            log,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (TERM, KILL, STOP, CONT) to the operator.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Stops it with SIGTERM and waits for it to exit (at most `timeout`).
    pub fn stop(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "operator did not exit within {timeout:?} of SIGTERM; log: {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }

    /// How it exited, if it has.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait")
    }

    /// The operator's log so far, without terminal colour codes.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local API server's address (from the `server` file of the cluster directory).
pub fn api_server_address() -> std::net::SocketAddr {
    let server = std::fs::read_to_string(cluster_dir().join("server")).expect("server file");
    let authority = server
        .trim()
        .trim_start_matches("https://")
        .trim_end_matches('/');
    std::net::ToSocketAddrs::to_socket_addrs(authority)
        .expect("API server address")
        .next()
        .expect("an API server address")
}

/// A copy of `kubeconfig` whose server is `address` (same scheme, CA and credentials).
pub fn kubeconfig_via(kubeconfig: &Path, address: std::net::SocketAddr) -> PathBuf {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let server = std::fs::read_to_string(cluster_dir().join("server")).expect("server file");
    let rewritten = text.replace(server.trim(), &format!("https://{address}"));
    assert_ne!(rewritten, text, "the kubeconfig names the API server");
    let path = kubeconfig.with_extension("via-proxy.kubeconfig");
    std::fs::write(&path, rewritten).expect("write kubeconfig");
    path
}

/// A kubeconfig file for the local control plane authenticating with a bearer `token`.
pub fn token_kubeconfig(name: &str, token: &str) -> PathBuf {
    let dir = cluster_dir();
    let server = std::fs::read_to_string(dir.join("server"))
        .expect("server file")
        .trim()
        .to_string();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context: {{cluster: local, user: {name}}}\ncurrent-context: {name}\n",
        dir.join("ca.crt").display()
    );
    let path = scratch_dir().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, kubeconfig).expect("write kubeconfig");
    path
}

/// Removes ANSI escape sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// GETs a URL with curl; returns (HTTP status, body).
pub fn http_get(url: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The value of one Prometheus series (exact name and labels as exposed), if present.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Polls `probe` every 100 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One line of the apiserver audit log, the fields the tests read.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub stage: String,
    pub verb: String,
    pub user: AuditUser,
    #[serde(default)]
    pub object_ref: Option<AuditObjectRef>,
    pub request_received_timestamp: String,
    /// When the response was complete (the write is visible from then on).
    #[serde(default)]
    pub stage_timestamp: String,
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    #[serde(default)]
    pub response_status: Option<AuditStatus>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AuditUser {
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct AuditStatus {
    #[serde(default)]
    pub code: i32,
}

/// Every completed request in the audit log.
pub fn audit_events() -> Vec<AuditEvent> {
    let path = std::env::var("KUBE_BASELINE_AUDIT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cluster_dir().join("audit.log"));
    // The API server rotates the log at --audit-log-maxsize into `audit-<time>.log` next to
    // it: read the rotated files first (oldest first), then the current one.
    let mut files: Vec<PathBuf> = Vec::new();
    if let (Some(dir), Some(stem)) = (path.parent(), path.file_stem().and_then(|s| s.to_str())) {
        let prefix = format!("{stem}-");
        if let Ok(entries) = std::fs::read_dir(dir) {
            files = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".log"))
                })
                .collect();
            // The names carry the rotation time, so they sort oldest first.
            files.sort();
        }
    }
    files.push(path);
    let mut events = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("audit log readable");
        events.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
                .filter(|event| event.stage == "ResponseComplete"),
        );
    }
    events
}

/// Mutating requests (create, update, patch, delete) made by `user`, in log order.
pub fn writes_by(user: &str) -> Vec<AuditEvent> {
    audit_events()
        .into_iter()
        .filter(|e| e.user.username == user)
        .filter(AuditEvent::is_write)
        .collect()
}

/// The dry runs (`dryRun=All`: the Pod Security preview) `user` made, which persist nothing.
pub fn dry_runs_by(user: &str) -> Vec<AuditEvent> {
    audit_events()
        .into_iter()
        .filter(|e| e.user.username == user)
        .filter(AuditEvent::is_dry_run)
        .collect()
}

impl AuditEvent {
    /// A mutating request that persists (a dry run is counted apart: `is_dry_run`).
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !self.is_dry_run()
    }

    /// A request made with `dryRun=All`.
    pub fn is_dry_run(&self) -> bool {
        self.request_uri
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "dryRun=All"))
    }
}

/// (reason, note) of the Events about `baseline` (cluster-scoped: they land in `default`).
pub async fn events_about(env: &TestEnv, baseline: &str) -> Vec<(String, String)> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.admin.clone(), "default")
        .list(&kube::api::ListParams::default())
        .await
        .expect("list Events")
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(baseline))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

/// The status of a SecurityBaseline, if it has one.
pub async fn baseline_status(
    client: &Client,
    baseline: &str,
) -> Option<kube_baseline::api::SecurityBaselineStatus> {
    Api::<kube_baseline::api::SecurityBaseline>::all(client.clone())
        .get(baseline)
        .await
        .ok()?
        .status
}

/// Waits (30 s at most) until the baseline's status satisfies `check`; on timeout the
/// panic shows the last status seen.
pub async fn wait_baseline_status(
    client: &Client,
    baseline: &str,
    what: &str,
    check: impl Fn(&kube_baseline::api::SecurityBaselineStatus) -> bool,
) -> kube_baseline::api::SecurityBaselineStatus {
    // Over a minute: a status that changed 3 times within the last minute waits for its
    // write budget (at most 3 requests per object per minute, status included).
    let timeout = Duration::from_secs(75);
    let deadline = Instant::now() + timeout;
    loop {
        let current = baseline_status(client, baseline).await;
        if let Some(status) = current.as_ref().filter(|s| check(s)) {
            return status.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; status: {current:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The status ("True", "False", "Unknown") of a condition, or "" when absent.
pub fn condition_status(
    status: &kube_baseline::api::SecurityBaselineStatus,
    type_: &str,
) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// Deletes a namespace and does not wait.
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// A client authenticating with a kubeconfig file.
pub async fn client_from_kubeconfig(path: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config from kubeconfig");
    Client::try_from(config).expect("client")
}

static KSTATUS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static SELECTORREF: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static GATEWAY_CRDS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static REPORT_CRDS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// What `e2e/cluster <name>` caches once and prints the path of (a Go program of e2e/, the
/// Gateway API CRDs).
fn probe_binary(name: &str, cell: &std::sync::OnceLock<PathBuf>) -> PathBuf {
    cell.get_or_init(|| {
        let output = Command::new(repo_root().join("e2e/cluster"))
            .arg(name)
            .output()
            .expect("e2e/cluster runs");
        assert!(
            output.status.success(),
            "e2e/cluster {name} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
    .clone()
}

static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
static ACTIONLINT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// helm, built from the Go module proxy once and cached by `e2e/cluster helm`.
pub fn helm_binary() -> PathBuf {
    probe_binary("helm", &HELM)
}

/// actionlint, built from the Go module proxy once and cached by `e2e/cluster actionlint`.
pub fn actionlint_binary() -> PathBuf {
    probe_binary("actionlint", &ACTIONLINT)
}

/// Runs helm (with this environment's KUBECONFIG) in the repository root: (success, stdout,
/// stderr).
pub fn helm_result(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(helm_binary())
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("helm runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Like [`helm_result`], but asserts success and returns stdout.
pub fn helm(args: &[&str]) -> String {
    let (ok, stdout, stderr) = helm_result(args);
    assert!(ok, "helm {} failed: {stderr}", args.join(" "));
    stdout
}

/// The kstatus probe (e2e/kstatus), built once and cached by `e2e/cluster kstatus`.
pub fn kstatus_binary() -> PathBuf {
    probe_binary("kstatus", &KSTATUS)
}

/// The directory of the Gateway API standard CRDs (sigs.k8s.io/gateway-api's
/// config/crd/standard), downloaded once and cached by `e2e/cluster gateway-crds`.
pub fn gateway_api_crds() -> PathBuf {
    probe_binary("gateway-crds", &GATEWAY_CRDS)
}

/// The directory of the policy report CRDs (OpenReports' and wgpolicyk8s.io's, from their
/// Go modules), downloaded once and cached by `e2e/cluster report-crds`.
pub fn report_crds() -> PathBuf {
    probe_binary("report-crds", &REPORT_CRDS)
}

/// The label selector reference (e2e/selectorref: k8s.io/apimachinery's own selector code),
/// built once and cached by `e2e/cluster selectorref`.
pub fn selectorref_binary() -> PathBuf {
    probe_binary("selectorref", &SELECTORREF)
}

/// What kstatus (sigs.k8s.io/cli-utils, as Flux and kpt use it) computes for an object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Kstatus {
    pub name: String,
    /// InProgress, Failed, Current, Terminating, NotFound or Unknown.
    pub status: String,
    pub message: String,
}

/// Runs the kstatus probe on one object (as `kubectl get -o json` prints it).
pub fn kstatus_of(object: &serde_json::Value) -> Kstatus {
    use std::io::Write;
    let mut child = Command::new(kstatus_binary())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kstatus probe runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("kstatus finishes");
    assert!(
        output.status.success(),
        "kstatus probe failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON line from the kstatus probe")
}

/// A SecurityBaseline exactly as the API server returns it (defaults applied), as JSON.
pub fn baseline_json(baseline: &str) -> serde_json::Value {
    serde_json::from_str(&kubectl(&["get", "sbl", baseline, "-o", "json"]))
        .expect("kubectl prints JSON")
}

/// Runs `kube-baseline agent --once` for `node` on this machine (host root /), with
/// `kubeconfig` and extra `args`: (whether it succeeded, its output).
pub async fn run_agent_once(kubeconfig: &Path, node: &str, args: &[&str]) -> (bool, String) {
    run_agent_once_with_env(kubeconfig, node, args, &[]).await
}

/// [`run_agent_once`] with extra environment variables (e.g. `KB_HOST_IP`, as the DaemonSet
/// sets it).
pub async fn run_agent_once_with_env(
    kubeconfig: &Path,
    node: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String) {
    let output = tokio::process::Command::new(operator_binary())
        .args([
            "agent",
            "--once",
            "--host-root",
            "/",
            "--namespace",
            OPERATOR_NAMESPACE,
            "--node-name",
            node,
        ])
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube_baseline=debug")
        .envs(env.iter().copied())
        .output()
        .await
        .expect("agent runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), log)
}

/// `kube-baseline check --live -o json <args>` with the admin kubeconfig: the JSON report
/// (panics unless it exits 0, compliant, or 1, drift).
pub fn check_live_report(args: &[&str]) -> serde_json::Value {
    let output = Command::new(operator_binary())
        .args(["check", "--live", "-o", "json"])
        .args(args)
        .output()
        .expect("check runs");
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "check --live failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("check prints JSON")
}

/// The entry of baseline `name` in a `check` JSON report (panics when absent).
pub fn baseline_in_report<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["baselines"]
        .as_array()
        .expect("baselines")
        .iter()
        .find(|b| b["name"] == name)
        .expect("the baseline in the report")
}

/// The drift entries of baseline `name` in a `check` JSON report.
pub fn drift_in_report(
    report: &serde_json::Value,
    name: &str,
) -> Vec<kube_baseline::api::DriftEntry> {
    serde_json::from_value(baseline_in_report(report, name)["drift"].clone())
        .expect("drift entries")
}

/// Waits until no namespace is terminating: earlier tests delete theirs without waiting, and
/// the namespace controller works through them in turn, so a test that waits for a
/// namespace of its own to go would otherwise wait behind them.
pub async fn wait_no_terminating_namespaces(client: &Client, timeout: Duration) {
    eventually(timeout, "no namespace terminating", || async {
        let namespaces = Api::<Namespace>::all(client.clone())
            .list_metadata(&kube::api::ListParams::default())
            .await
            .ok()?;
        let terminating = namespaces
            .items
            .iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_some())
            .count();
        (terminating == 0).then_some(())
    })
    .await;
}
