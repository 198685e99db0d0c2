//! The install manifests in `config/` against the real control plane: config/default is
//! accepted by the API server (server-side dry run), the controller's pod is admitted under
//! the `restricted` Pod Security Standard and the agent's only under `privileged`, the RBAC
//! grants what the controller and agent need and no more, the admission policy confines
//! each agent to its own node's NodeReport, and the other kustomizations render.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube_baseline_e2e::*;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

const AGENT_NAMESPACE: &str = "kube-baseline-agent";
const AGENT_USER: &str = "system:serviceaccount:kube-baseline-agent:kube-baseline-agent";
const CONTROLLER_USER: &str = "system:serviceaccount:kube-baseline-system:kube-baseline";
const AUDIT_POLICY_CONFIG_MAP: &str = "kube-baseline-audit-policy";

/// `kubectl kustomize <dir>` as a list of objects.
fn render(dir: &str) -> Vec<Value> {
    let yaml = kubectl(&["kustomize", dir]);
    serde_saphyr::from_multiple::<Value>(&yaml)
        .unwrap_or_else(|err| panic!("kubectl kustomize {dir} is not YAML: {err}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name} not rendered"))
}

fn kinds(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A Pod from a workload's pod template, as the workload controller would create it.
fn pod_from_template(workload: &Value, name: &str, namespace: &str) -> Value {
    let template = &workload["spec"]["template"];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    })
}

/// `kubectl create --dry-run=server` of one object: (admitted, stderr).
fn dry_run_create(object: &Value) -> (bool, String) {
    let (ok, _, stderr) = kubectl_result(
        &["create", "--dry-run=server", "-o", "name", "-f", "-"],
        Some(&object.to_string()),
    );
    (ok, stderr)
}

/// Creates a namespace labelled for Pod Security `level` (enforce and warn), plus the
/// ServiceAccount `sa` the pods under test name (the ServiceAccount admission plugin
/// rejects pods whose ServiceAccount does not exist, even in a dry run).
async fn pod_security_namespace(env: &TestEnv, suffix: &str, level: &str, sa: &str) -> String {
    let namespace = env
        .create_namespace(
            suffix,
            &[
                ("pod-security.kubernetes.io/enforce", level),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
                ("pod-security.kubernetes.io/warn", level),
                ("pod-security.kubernetes.io/warn-version", "latest"),
            ],
        )
        .await;
    let service_account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(sa.to_string()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    Api::<ServiceAccount>::namespaced(env.admin.clone(), &namespace)
        .create(&PostParams::default(), &service_account)
        .await
        .expect("create ServiceAccount");
    namespace
}

static AGENT_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// Installs config/agent for real (its namespace, RBAC, admission policy; the DaemonSet
/// makes no pods here: no DaemonSet controller and no nodes run), once per test binary.
async fn ensure_agent_installed() {
    ensure_installed().await;
    AGENT_INSTALLED
        .get_or_init(|| async {
            kubectl(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-k",
                "config/agent",
            ]);
        })
        .await;
}

/// `kubectl auth can-i` as `user`.
fn can_i(user: &str, args: &[&str]) -> bool {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let as_user = format!("--as={user}");
    all.push(&as_user);
    let (_, stdout, _) = kubectl_result(&all, None);
    stdout.trim() == "yes"
}

/// `kubectl get configmaps -n kube-baseline-system` as `user`, with an optional name
/// field selector: whether the list was allowed.
fn can_list_config_maps(user: &str, field_selector: Option<&str>) -> (bool, String) {
    let as_user = format!("--as={user}");
    let mut args = vec!["get", "configmaps", "-n", OPERATOR_NAMESPACE, &as_user];
    let selector;
    if let Some(name) = field_selector {
        selector = format!("--field-selector=metadata.name={name}");
        args.push(&selector);
    }
    let (ok, _, stderr) = kubectl_result(&args, None);
    (ok, stderr)
}

#[tokio::test]
async fn default_install_passes_a_server_side_dry_run() {
    // Namespaced objects cannot be dry-run into a namespace that does not exist yet (the
    // namespace is only dry-run created as well): install config/agent for real first
    // (kube-baseline-system exists already, ensure_installed). Not only its namespace: the
    // other tests here install config/agent for real too, and one doing so while the
    // client-side apply below runs made its create of the agent's default-deny
    // NetworkPolicy (it had read it as missing) fail with AlreadyExists.
    ensure_agent_installed().await;

    let rendered = render("config/default");
    let names = kinds(&rendered);
    for expected in [
        "Namespace/kube-baseline-system",
        "Namespace/kube-baseline-agent",
        "CustomResourceDefinition/securitybaselines.kube-baseline.dev",
        "CustomResourceDefinition/nodereports.kube-baseline.dev",
        "ClusterRole/kube-baseline-manager",
        "Role/kube-baseline-manager",
        "Deployment/kube-baseline",
        "Service/kube-baseline-metrics",
        "NetworkPolicy/default-deny",
        "DaemonSet/kube-baseline-agent",
        "ValidatingAdmissionPolicy/kube-baseline-agent-own-node-report",
        "ValidatingAdmissionPolicyBinding/kube-baseline-agent-own-node-report",
        "ValidatingAdmissionPolicy/kube-baseline-write-guard",
        "ValidatingAdmissionPolicyBinding/kube-baseline-write-guard",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "config/default lacks {expected}: {names:?}"
        );
    }

    let modes: [&[&str]; 2] = [
        &["apply", "-k", "config/default", "--dry-run=server"],
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            "config/default",
            "--dry-run=server",
        ],
    ];
    for mode in modes {
        let (ok, stdout, stderr) = kubectl_result(mode, None);
        assert!(ok, "kubectl {} failed:\n{stdout}\n{stderr}", mode.join(" "));
        assert!(
            stdout.contains("deployment.apps/kube-baseline")
                && stdout.contains("daemonset.apps/kube-baseline-agent"),
            "kubectl {}: {stdout}",
            mode.join(" ")
        );
        assert!(
            !stderr.contains("would violate PodSecurity"),
            "Pod Security warnings: {stderr}"
        );
    }

    // The samples are valid SecurityBaselines (schema, defaults and CEL rules of the CRD).
    let (ok, stdout, stderr) =
        kubectl_result(&["apply", "-k", "config/samples", "--dry-run=server"], None);
    assert!(ok, "config/samples: {stdout}{stderr}");
}

#[tokio::test]
async fn manager_pod_is_admitted_under_restricted_pod_security() {
    let env = TestEnv::new("psa-manager").await;
    let rendered = render("config/default");

    // The real namespace enforces restricted.
    let own = find(&rendered, "Namespace", OPERATOR_NAMESPACE);
    assert_eq!(
        own["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    // PSA checks Pods at admission, not Deployments: dry-run the Deployment's pod.
    let deployment = find(&rendered, "Deployment", "kube-baseline");
    let namespace = pod_security_namespace(&env, "restricted", "restricted", "kube-baseline").await;
    let pod = pod_from_template(deployment, &env.name("manager"), &namespace);
    let (ok, stderr) = dry_run_create(&pod);
    assert!(
        ok,
        "the manager pod must be admitted under restricted: {stderr}"
    );
    assert!(
        !stderr.contains("Warning"),
        "no Pod Security warnings expected: {stderr}"
    );

    // Controls: the same pod with one restricted requirement broken is rejected there,
    // by Pod Security (so the check can fail). (`privileged: true` itself is refused by
    // validation before Pod Security sees it: this apiserver runs without
    // --allow-privileged, and privileged contradicts allowPrivilegeEscalation: false.)
    let controls: [(&str, &str, Value, &str); 3] = [
        (
            "escalation",
            "allowPrivilegeEscalation",
            json!(true),
            "allowPrivilegeEscalation != false",
        ),
        (
            "capabilities",
            "capabilities",
            json!({"add": ["SYS_ADMIN"], "drop": ["ALL"]}),
            "unrestricted capabilities",
        ),
        ("root", "runAsNonRoot", json!(false), "runAsNonRoot != true"),
    ];
    for (suffix, field, value, reason) in controls {
        let mut broken = pod.clone();
        broken["metadata"]["name"] = json!(env.name(suffix));
        broken["spec"]["containers"][0]["securityContext"][field] = value;
        let (ok, stderr) = dry_run_create(&broken);
        assert!(
            !ok,
            "a pod with {field} broken must be rejected under restricted"
        );
        assert!(
            stderr.contains("violates PodSecurity \"restricted:latest\"")
                && stderr.contains(reason),
            "{field}: rejected for the wrong reason: {stderr}"
        );
    }

    env.cleanup().await;
}

#[tokio::test]
async fn agent_pod_needs_privileged_pod_security() {
    let env = TestEnv::new("psa-agent").await;
    let rendered = render("config/default");
    let daemon_set = find(&rendered, "DaemonSet", "kube-baseline-agent");
    assert_eq!(daemon_set["metadata"]["namespace"], AGENT_NAMESPACE);
    let agent_namespace = find(&rendered, "Namespace", AGENT_NAMESPACE);
    assert_eq!(
        agent_namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    // Why the agent has its own namespace: hostPID and the hostPath mount are rejected
    // under restricted (and baseline), so it could not run in kube-baseline-system.
    let restricted =
        pod_security_namespace(&env, "restricted", "restricted", "kube-baseline-agent").await;
    let (ok, stderr) = dry_run_create(&pod_from_template(
        daemon_set,
        &env.name("agent"),
        &restricted,
    ));
    assert!(!ok, "the agent pod must be rejected under restricted");
    assert!(
        stderr.contains("hostPID") && stderr.contains("hostPath"),
        "rejected for the wrong reason: {stderr}"
    );

    let baseline =
        pod_security_namespace(&env, "baseline", "baseline", "kube-baseline-agent").await;
    let (ok, stderr) = dry_run_create(&pod_from_template(
        daemon_set,
        &env.name("agent"),
        &baseline,
    ));
    assert!(
        !ok,
        "the agent pod must be rejected under baseline: {stderr}"
    );

    let privileged =
        pod_security_namespace(&env, "privileged", "privileged", "kube-baseline-agent").await;
    let (ok, stderr) = dry_run_create(&pod_from_template(
        daemon_set,
        &env.name("agent"),
        &privileged,
    ));
    assert!(
        ok,
        "the agent pod must be admitted under privileged: {stderr}"
    );

    // Even so, the container itself is locked down.
    let container = &daemon_set["spec"]["template"]["spec"]["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert!(security["capabilities"].get("add").is_none());
    assert_ne!(security["privileged"], true);
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    assert!(
        mounts.iter().all(|m| m["readOnly"] == true),
        "without the enforce component every mount is read-only: {mounts:?}"
    );

    env.cleanup().await;
}

/// The container args of a workload: its first element is the subcommand, every other
/// `--flag[=value]` must be a flag `kube-baseline <subcommand> --help` lists.
fn assert_args_are_flags(workload: &Value, subcommand: &str) {
    let args: Vec<String> = workload["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect();
    assert_eq!(args[0], subcommand, "{args:?}");
    let help = std::process::Command::new(operator_binary())
        .args([subcommand, "--help"])
        .output()
        .expect("kube-baseline --help");
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in &args[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(flag.starts_with("--"), "{arg}: not a flag");
        // Whole flag names only (--namespace is not --namespace-selector).
        let listed = help.match_indices(flag).any(|(at, _)| {
            help[at + flag.len()..]
                .chars()
                .next()
                .is_none_or(|c| c == ' ' || c == '\n' || c == ',' || c == '=')
        });
        assert!(
            listed,
            "`kube-baseline {subcommand}` has no flag {flag} (args {args:?})"
        );
    }
}

#[tokio::test]
async fn workload_args_are_flags_of_the_binary() {
    let rendered = render("config/default");
    assert_args_are_flags(find(&rendered, "Deployment", "kube-baseline"), "run");
    let daemon_set = find(&rendered, "DaemonSet", "kube-baseline-agent");
    assert_args_are_flags(daemon_set, "agent");
    let env_names: Vec<&str> = daemon_set["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env_names.contains(&"NODE_NAME"), "{env_names:?}");
    // POD_NAMESPACE would point the agent at its own namespace for the ConfigMap.
    assert!(!env_names.contains(&"POD_NAMESPACE"), "{env_names:?}");
}

#[tokio::test]
async fn controller_rbac_covers_nodes_leases_and_only_its_config_map() {
    ensure_installed().await;
    let user = CONTROLLER_USER;
    for resource in ["nodereports.kube-baseline.dev", "nodes"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                can_i(user, &[verb, resource]),
                "controller cannot {verb} {resource}"
            );
        }
    }
    assert!(
        !can_i(user, &["create", "nodereports.kube-baseline.dev"]),
        "only agents write NodeReports"
    );
    assert!(!can_i(user, &["patch", "nodes"]));

    let ns = ["-n", OPERATOR_NAMESPACE];
    // The elector renews with update (compare-and-swap on the resourceVersion), never patch.
    assert!(!can_i(
        user,
        &[
            "patch",
            "leases.coordination.k8s.io/kube-baseline",
            ns[0],
            ns[1]
        ]
    ));
    for verb in ["get", "update"] {
        assert!(
            can_i(
                user,
                &[
                    verb,
                    "leases.coordination.k8s.io/kube-baseline",
                    ns[0],
                    ns[1]
                ]
            ),
            "lease {verb}"
        );
        assert!(
            !can_i(
                user,
                &[
                    verb,
                    "leases.coordination.k8s.io/someone-else",
                    ns[0],
                    ns[1]
                ]
            ),
            "other lease {verb}"
        );
    }
    assert!(can_i(
        user,
        &["create", "leases.coordination.k8s.io", ns[0], ns[1]]
    ));
    assert!(!can_i(
        user,
        &[
            "get",
            "leases.coordination.k8s.io/kube-baseline",
            "-n",
            "default"
        ]
    ));

    assert!(can_i(
        user,
        &[
            "patch",
            &format!("configmaps/{AUDIT_POLICY_CONFIG_MAP}"),
            ns[0],
            ns[1]
        ]
    ));
    assert!(can_i(user, &["create", "configmaps", ns[0], ns[1]]));
    assert!(!can_i(
        user,
        &["patch", "configmaps/kube-root-ca.crt", ns[0], ns[1]]
    ));
    assert!(!can_i(
        user,
        &["get", "configmaps/kube-root-ca.crt", ns[0], ns[1]]
    ));
    assert!(!can_i(user, &["create", "configmaps", "-n", "default"]));
    assert!(!can_i(user, &["get", "secrets", ns[0], ns[1]]));
    // Pod metadata for the Pod Security preview: list and watch only, nothing else.
    assert!(can_i(user, &["watch", "pods", "-A"]));
    assert!(!can_i(user, &["get", "pods", "-A"]));
    assert!(!can_i(user, &["delete", "pods", "-A"]));
    // list/watch narrowed by resourceNames: allowed with the name field selector only.
    let (ok, stderr) = can_list_config_maps(user, Some(AUDIT_POLICY_CONFIG_MAP));
    assert!(ok, "list by name must be allowed: {stderr}");
    let (ok, _) = can_list_config_maps(user, None);
    assert!(
        !ok,
        "listing every ConfigMap of the namespace must be forbidden"
    );
    let (ok, _) = can_list_config_maps(user, Some("kube-root-ca.crt"));
    assert!(!ok, "listing another ConfigMap by name must be forbidden");
}

#[tokio::test]
async fn agent_rbac_is_read_mostly() {
    ensure_agent_installed().await;
    let user = AGENT_USER;
    for verb in ["get", "list", "watch", "create", "patch"] {
        assert!(
            can_i(user, &[verb, "nodereports.kube-baseline.dev"]),
            "agent cannot {verb} nodereports"
        );
    }
    for verb in ["delete", "update"] {
        assert!(
            !can_i(user, &[verb, "nodereports.kube-baseline.dev"]),
            "agent may {verb} nodereports"
        );
    }
    for verb in ["get", "list", "watch"] {
        assert!(can_i(user, &[verb, "nodes"]));
        assert!(can_i(user, &[verb, "securitybaselines.kube-baseline.dev"]));
    }
    assert!(!can_i(user, &["patch", "nodes"]));
    assert!(!can_i(
        user,
        &["patch", "securitybaselines.kube-baseline.dev"]
    ));
    assert!(!can_i(user, &["get", "secrets", "-A"]));
    assert!(!can_i(user, &["get", "pods", "-A"]));
    assert!(can_i(
        user,
        &[
            "get",
            &format!("configmaps/{AUDIT_POLICY_CONFIG_MAP}"),
            "-n",
            OPERATOR_NAMESPACE
        ]
    ));
    assert!(!can_i(
        user,
        &[
            "patch",
            &format!("configmaps/{AUDIT_POLICY_CONFIG_MAP}"),
            "-n",
            OPERATOR_NAMESPACE
        ]
    ));
    let (ok, stderr) = can_list_config_maps(user, Some(AUDIT_POLICY_CONFIG_MAP));
    assert!(ok, "the agent's watch by name must be allowed: {stderr}");
    let (ok, _) = can_list_config_maps(user, None);
    assert!(!ok, "the agent must not list every ConfigMap");
}

/// Server-side applies a NodeReport `name` with spec.nodeName `node_name` as the agent.
fn apply_report(kubeconfig: &Path, name: &str, node_name: &str, dry_run: bool) -> (bool, String) {
    let manifest = format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: NodeReport\nmetadata:\n  name: {name}\nspec:\n  nodeName: {node_name}\n"
    );
    let kubeconfig = kubeconfig.display().to_string();
    let mut args = vec![
        "--kubeconfig",
        &kubeconfig,
        "apply",
        "--server-side",
        "--field-manager=kube-baseline-agent",
        "-f",
        "-",
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    let (ok, stdout, stderr) = kubectl_result(&args, Some(&manifest));
    (ok, format!("{stdout}{stderr}"))
}

async fn agent_token(env: &TestEnv, pod: Option<&Pod>) -> String {
    let bound = pod.map(|pod| BoundObjectReference {
        kind: Some("Pod".to_string()),
        api_version: Some("v1".to_string()),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
    });
    Api::<ServiceAccount>::namespaced(env.admin.clone(), AGENT_NAMESPACE)
        .create_token_request(
            "kube-baseline-agent",
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    bound_object_ref: bound,
                },
                ..TokenRequest::default()
            },
        )
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token
}

#[tokio::test]
async fn agent_may_write_only_its_own_nodes_report() {
    ensure_agent_installed().await;
    let env = TestEnv::new("vap").await;
    let labels = BTreeMap::from([(TEST_LABEL.to_string(), env.id.clone())]);
    let node_a = env.name("node-a");
    let node_b = env.name("node-b");

    // A Node and an agent pod bound to it (no kubelet runs here: the pod is only an
    // object, which is all a pod-bound token needs).
    let nodes: Api<Node> = Api::all(env.admin.clone());
    for name in [&node_a, &node_b] {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create Node");
    }
    let pods: Api<Pod> = Api::namespaced(env.admin.clone(), AGENT_NAMESPACE);
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": env.name("agent"), "labels": labels},
        "spec": {
            "nodeName": node_a,
            "serviceAccountName": "kube-baseline-agent",
            "containers": [{"name": "agent", "image": "kube-baseline:latest"}],
        },
    }))
    .unwrap();
    let pod = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create agent pod");

    let token = agent_token(&env, Some(&pod)).await;
    let agent = token_kubeconfig(&env.name("agent"), &token);
    let (ok, whoami, _) = kubectl_result(
        &[
            "--kubeconfig",
            &agent.display().to_string(),
            "auth",
            "whoami",
            "-o",
            "json",
        ],
        None,
    );
    assert!(ok, "whoami: {whoami}");
    let whoami: Value = serde_json::from_str(&whoami).expect("whoami json");
    assert_eq!(whoami["status"]["userInfo"]["username"], AGENT_USER);
    assert_eq!(
        whoami["status"]["userInfo"]["extra"]["authentication.kubernetes.io/node-name"],
        json!([node_a.clone()])
    );

    // The policy takes a moment to load after it is created: wait until it denies.
    let denial = eventually(
        Duration::from_secs(30),
        "the admission policy to deny node B's report",
        || {
            let agent = agent.clone();
            let node_b = node_b.clone();
            async move {
                let (ok, out) = apply_report(&agent, &node_b, &node_b, true);
                (!ok).then_some(out)
            }
        },
    )
    .await;
    assert!(
        denial.contains("kube-baseline-agent-own-node-report")
            && denial.contains(&format!("may write only the NodeReport {node_a}")),
        "denied for the wrong reason: {denial}"
    );

    let (ok, out) = apply_report(&agent, &node_a, &node_a, false);
    assert!(ok, "the agent must write its own node's report: {out}");
    let (ok, out) = apply_report(&agent, &node_a, &node_a, false);
    assert!(ok, "and update it: {out}");
    let (ok, out) = apply_report(&agent, &node_b, &node_b, false);
    assert!(!ok, "the agent must not write another node's report: {out}");
    let (ok, out) = apply_report(&agent, &node_a, &node_b, false);
    assert!(
        !ok && out.contains("spec.nodeName"),
        "spec.nodeName must equal the name: {out}"
    );

    // A token of the agent's ServiceAccount that is not bound to a pod names no node.
    let unbound = token_kubeconfig(&env.name("unbound"), &agent_token(&env, None).await);
    let (ok, out) = apply_report(&unbound, &node_a, &node_a, false);
    assert!(
        !ok && out.contains("node-name"),
        "an unbound token must not write reports: {out}"
    );

    // Only the agent is constrained: the admin writes node B's report.
    let (ok, _, stderr) = kubectl_result(
        &["apply", "--server-side", "--field-manager=e2e", "-f", "-"],
        Some(&format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: NodeReport\nmetadata:\n  name: {node_b}\nspec:\n  nodeName: {node_b}\n"
        )),
    );
    assert!(ok, "the policy must not constrain other users: {stderr}");

    for name in [&node_a, &node_b] {
        let _ = kubectl_result(
            &[
                "delete",
                "nodereports.kube-baseline.dev",
                name,
                "--wait=false",
            ],
            None,
        );
    }
    // No kubelet confirms the pod's termination: delete it at once.
    let _ = pods
        .delete(
            &env.name("agent"),
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await;
    for name in [&node_a, &node_b] {
        let _ = nodes.delete(name, &DeleteParams::default()).await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn other_kustomizations_render() {
    // Argo CD: the health check key, and the copy in examples/ matches the render.
    let argocd = kubectl(&["kustomize", "config/argocd"]);
    let health =
        std::fs::read_to_string(repo_root().join("config/argocd/health.lua")).expect("health.lua");
    let rendered = render("config/argocd");
    let cm = find(&rendered, "ConfigMap", "argocd-cm");
    assert_eq!(cm["metadata"]["namespace"], "argocd");
    assert_eq!(
        cm["data"]["resource.customizations.health.kube-baseline.dev_SecurityBaseline"],
        json!(health)
    );
    let example =
        std::fs::read_to_string(repo_root().join("config/argocd/examples/argocd-cm.yaml"))
            .expect("example");
    let example: String = example
        .lines()
        .skip_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        example, argocd,
        "config/argocd/examples/argocd-cm.yaml is stale: regenerate it with kubectl kustomize config/argocd"
    );

    // Prometheus: the alerts, and the ServiceMonitor finds the Service of config/default.
    let prometheus = render("config/prometheus");
    let rule = find(&prometheus, "PrometheusRule", "kube-baseline");
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for alert in [
        "SecurityBaselineNotCompliant",
        "KubeBaselineOperatorAbsent",
        "KubeBaselineReconcileErrors",
    ] {
        assert!(alerts.contains(&alert), "{alert} missing: {alerts:?}");
    }
    let monitor = find(&prometheus, "ServiceMonitor", "kube-baseline");
    let default = render("config/default");
    let service = find(&default, "Service", "kube-baseline-metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "ServiceMonitor selector {key}"
        );
    }
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port),
        "Service has no port {port}"
    );
    assert!(prometheus.iter().any(|o| {
        o["kind"] == "ConfigMap"
            && o["data"]["config.yaml"]
                .as_str()
                .is_some_and(|c| c.contains("kind: CustomResourceStateMetrics"))
    }));

    // The Deployment's pods are what the Service and NetworkPolicy select, on the port the
    // probes use.
    let deployment = find(&default, "Deployment", "kube-baseline");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (key, value) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod_labels[key], value, "Service selector {key}");
    }
    let policy = find(&default, "NetworkPolicy", "kube-baseline-controller");
    for (key, value) in policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[key], value, "NetworkPolicy podSelector {key}");
    }
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 8080);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );

    // Samples render.
    assert!(!render("config/samples").is_empty());

    // The enforce component: --enforce and exactly two read-write mounts under /host.
    let overlay = DefaultWithComponent::new("agent/enforce");
    let enforced = render(&overlay.dir());
    let daemon_set = find(&enforced, "DaemonSet", "kube-baseline-agent");
    let container = &daemon_set["spec"]["template"]["spec"]["containers"][0];
    assert!(
        container["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--enforce"))
    );
    let writable: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["readOnly"] != true)
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(writable.len(), 2, "{writable:?}");
    assert!(
        writable.iter().all(|p| p.starts_with("/host/")),
        "{writable:?}"
    );
    let base = find(&default, "DaemonSet", "kube-baseline-agent");
    assert!(
        !base["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--enforce"))
    );

    // The tls-secrets component: --tls-secrets on the operator and read-only access to
    // Secrets, nothing else; the base has neither.
    let overlay = DefaultWithComponent::new("rbac/tls-secrets");
    let with_secrets = render(&overlay.dir());
    let operator_args = |objects: &[Value]| {
        find(objects, "Deployment", "kube-baseline")["spec"]["template"]["spec"]["containers"][0]
            ["args"]
            .clone()
    };
    assert!(
        operator_args(&with_secrets)
            .as_array()
            .unwrap()
            .contains(&json!("--tls-secrets"))
    );
    assert!(
        !operator_args(&default)
            .as_array()
            .unwrap()
            .contains(&json!("--tls-secrets"))
    );
    let role = find(&with_secrets, "ClusterRole", "kube-baseline-tls-secrets");
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}])
    );
    let binding = find(
        &with_secrets,
        "ClusterRoleBinding",
        "kube-baseline-tls-secrets",
    );
    assert_eq!(binding["subjects"][0]["name"], "kube-baseline");
    assert_eq!(binding["subjects"][0]["namespace"], "kube-baseline-system");
    let default_rules = serde_json::to_string(&default).expect("json");
    assert!(
        !default_rules.contains("\"secrets\""),
        "config/default grants nothing on Secrets"
    );
}
