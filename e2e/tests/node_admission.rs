//! Admission on real pods of the test node (`e2e/node up`): a SecurityBaseline in Enforce mode
//! makes the API server reject what it forbids and admit what it allows, pods that are admitted
//! run on the node.
//!
//! - Pod Security `restricted` (the namespace labels the operator writes): a hostPID pod is
//!   rejected with the PodSecurity message, a compliant pod runs.
//! - The LimitRange: a container above `max` is rejected naming the maximum; one without
//!   requests or limits gets the `defaultRequest`/`default` values and runs.
//! - The ResourceQuota: with `pods: 3`, the fourth pod is rejected ("exceeded quota", naming the
//!   generated quota); deleting one frees the slot.
//!
//! Each test has its own operator process, namespace and baseline, so they run in parallel.
//! Every refusal is checked against a control: the same pod passes server-side admission
//! (dry run) in a namespace of the same test that the baseline does not select, so a refusal
//! here is the baseline's doing, not the cluster's or the node's.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, Pod, ResourceQuota};
use kube::Api;
use kube::api::ListParams;
use kube_baseline::api::SecurityBaseline;
use kube_baseline_e2e::node::{TestNode, run_pod, server_pod_manifest, test_node};
use kube_baseline_e2e::*;

/// Pods the generated ResourceQuota allows: small, so the quota test stays quick.
const HARD_PODS: usize = 3;

/// The suffix of each test's baseline name.
const BASELINE: &str = "b";

/// The baseline under test: Pod Security `enforce`, the quota and the LimitRange (and the
/// default-deny NetworkPolicies the CRD defaults to, which admission does not consult), so
/// each refusal below has one possible source. `max` leaves room for
/// [`server_pod_manifest`]'s limits (the compliant pod must pass it).
fn spec() -> String {
    format!(
        "mode: Enforce
namespaceSelector: {{matchLabels: {{tier: adm}}}}
podSecurity: {{enforce: restricted}}
resourceQuota:
  hard: {{pods: \"{HARD_PODS}\"}}
  limits:
    max: {{cpu: \"1\", memory: 512Mi}}
    default: {{cpu: 50m, memory: 64Mi}}
    defaultRequest: {{cpu: 10m, memory: 16Mi}}
"
    )
}

/// What the LimitRange above gives a container that sets nothing (as the API server prints
/// the quantities).
const DEFAULT_REQUESTS: [(&str, &str); 2] = [("cpu", "10m"), ("memory", "16Mi")];
const DEFAULT_LIMITS: [(&str, &str); 2] = [("cpu", "50m"), ("memory", "64Mi")];

/// The operator writes labels and objects within seconds; the quota controller (run by
/// `e2e/node`) then fills the quota's status. Generous: catches a missing object, not slowness.
const CONVERGED: Duration = Duration::from_secs(60);

/// One test's enforced namespace and everything needed to look at it.
struct Enforced {
    env: TestEnv,
    operator: Operator,
    node: TestNode,
    /// Selected by the baseline: Pod Security, quota and LimitRange apply here.
    namespace: String,
    /// Same test, not selected: the control namespace for dry runs.
    unselected: String,
    baseline: String,
    /// The name of the generated ResourceQuota.
    quota: String,
    started: Instant,
    _cleanup: CleanupOnPanic,
}

/// Runs [`TestEnv::cleanup`] when a test panics before [`Enforced::finish`]: its pods would
/// otherwise keep running on the node every node test shares.
struct CleanupOnPanic(TestEnv);

impl Drop for CleanupOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // cleanup() only runs kubectl: no runtime needed.
            futures::executor::block_on(self.0.cleanup());
            delete_role_binding(&self.0);
            // The operator dies with the test, so nothing would release the baseline's
            // finalizer: it would stay Terminating in the shared cluster.
            let _ = kubectl_result(
                &[
                    "patch",
                    "securitybaseline",
                    &self.0.name(BASELINE),
                    "--type=merge",
                    "-p",
                    r#"{"metadata":{"finalizers":null}}"#,
                ],
                None,
            );
        }
    }
}

/// The operator's RoleBinding in its namespace, which [`TestEnv::cleanup`] leaves behind.
fn delete_role_binding(env: &TestEnv) {
    let _ = kubectl_result(
        &[
            "delete",
            "rolebindings",
            "-n",
            OPERATOR_NAMESPACE,
            &format!("-l={}", env.selector()),
            "--wait=false",
        ],
        None,
    );
}

impl Enforced {
    /// Starts an operator for a fresh test, applies [`spec`] and waits until the API server
    /// enforces it: the Pod Security label, the LimitRange, and a ResourceQuota whose status
    /// the quota controller has filled (until then every pod create is refused with "status
    /// unknown for quota", which would mask what the tests look for).
    async fn start(prefix: &str) -> Self {
        // First: without a node, fail with what to run before creating anything.
        let node = test_node();
        let started = Instant::now();
        let env = TestEnv::new(prefix).await;
        let cleanup = CleanupOnPanic(env.clone());
        let operator = Operator::start(&env, &[]).await;
        let namespace = env.create_namespace("adm", &[("tier", "adm")]).await;
        let unselected = env.create_namespace("free", &[]).await;
        let baseline = env.apply_baseline(BASELINE, &spec());
        let owned = ListParams::default().labels(&format!("kube-baseline.dev/baseline={baseline}"));
        let applied = Instant::now();
        let quota = eventually(
            CONVERGED,
            &format!(
                "the Pod Security label, LimitRange and counted ResourceQuota of {baseline} in \
                 {namespace} (operator log: {})",
                operator.log.display()
            ),
            || async {
                let labels = Api::<Namespace>::all(env.admin.clone())
                    .get(&namespace)
                    .await
                    .expect("get the test namespace")
                    .metadata
                    .labels
                    .unwrap_or_default();
                let enforced = labels
                    .get("pod-security.kubernetes.io/enforce")
                    .is_some_and(|level| level == "restricted");
                let limit_ranges = Api::<LimitRange>::namespaced(env.admin.clone(), &namespace)
                    .list(&owned)
                    .await
                    .expect("list LimitRanges");
                let quotas = Api::<ResourceQuota>::namespaced(env.admin.clone(), &namespace)
                    .list(&owned)
                    .await
                    .expect("list ResourceQuotas");
                let quota = quotas.items.first()?;
                let counted = quota
                    .status
                    .as_ref()
                    .and_then(|s| s.used.as_ref())
                    .is_some_and(|used| used.contains_key("pods"));
                (enforced && !limit_ranges.items.is_empty() && counted).then(|| {
                    quota
                        .metadata
                        .name
                        .clone()
                        .expect("a stored quota has a name")
                })
            },
        )
        .await;
        eprintln!(
            "{namespace}: enforced by {baseline} {:?} after it was applied",
            applied.elapsed()
        );
        Self {
            env,
            operator,
            node,
            namespace,
            unselected,
            baseline,
            quota,
            started,
            _cleanup: cleanup,
        }
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.env.admin.clone(), &self.namespace)
    }

    /// Asserts that `manifest_in(namespace)` passes admission (server-side dry run) in the
    /// unselected namespace: the refusal seen in the enforced one comes from the baseline.
    fn assert_admitted_unselected(&self, manifest_in: impl Fn(&str) -> String) {
        let (ok, _, stderr) = kubectl_result(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&manifest_in(&self.unselected)),
        );
        assert!(
            ok,
            "control: the pod should be admitted where no baseline applies: {stderr}"
        );
    }

    /// Asserts that the pod was not stored (a refusal must not leave a pod behind).
    async fn assert_absent(&self, name: &str) {
        let pod = self.pods().get_opt(name).await.expect("get pod");
        assert!(
            pod.is_none(),
            "pod {name} exists after its refusal: {pod:#?}"
        );
    }

    /// Asserts that pod `name` was scheduled to the test node and is running there.
    async fn assert_running_on_node(&self, name: &str) -> Pod {
        let pod = self.pods().get(name).await.expect("get the admitted pod");
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        assert_eq!(
            (node_name, phase),
            (Some(self.node.name.as_str()), Some("Running")),
            "pod {name} should run on the test node"
        );
        pod
    }

    /// Deletes the baseline and namespaces, waits for the operator to release the baseline's
    /// finalizer, then stops it and deletes the rest. In this order: [`TestEnv::cleanup`]
    /// deletes the operator's ServiceAccount and bindings too, after which it cannot release
    /// anything and the baseline would stay Terminating.
    async fn finish(self) {
        eprintln!("{}: passed in {:?}", self.env.id, self.started.elapsed());
        let selector = format!("-l={}", self.env.selector());
        for kind in ["securitybaselines", "namespaces"] {
            let (ok, _, stderr) =
                kubectl_result(&["delete", kind, &selector, "--wait=false"], None);
            assert!(ok, "delete {kind}: {stderr}");
        }
        let baselines: Api<SecurityBaseline> = Api::all(self.env.admin.clone());
        let deleted = Instant::now();
        eventually(
            CONVERGED,
            &format!("the operator to release the deleted {}", self.baseline),
            || async {
                let baseline = baselines
                    .get_opt(&self.baseline)
                    .await
                    .expect("get baseline");
                baseline.is_none().then_some(())
            },
        )
        .await;
        eprintln!(
            "{}: baseline released in {:?}",
            self.env.id,
            deleted.elapsed()
        );
        let status = self.operator.stop(Duration::from_secs(10));
        assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
        self.env.cleanup().await;
        delete_role_binding(&self.env);
    }
}

/// An agnhost pod that only sleeps (`pause`), restricted-compliant: `pod_spec` is extra
/// pod-level YAML (2-space indent), `resources` the container's resources (flow YAML) or "".
fn pause_pod(namespace: &str, name: &str, image: &str, pod_spec: &str, resources: &str) -> String {
    let resources = if resources.is_empty() {
        String::new()
    } else {
        format!("    resources: {resources}\n")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         spec:\n  terminationGracePeriodSeconds: 0\n{pod_spec}  containers:\n  - name: main\n    \
         image: {image}\n    imagePullPolicy: Never\n    args: [pause]\n    securityContext:\n      \
         allowPrivilegeEscalation: false\n      runAsNonRoot: true\n      runAsUser: 65532\n      \
         capabilities: {{drop: [ALL]}}\n      seccompProfile: {{type: RuntimeDefault}}\n{resources}"
    )
}

/// Creates a pod (`kubectl create`, never apply: a refusal must be the create's); returns the
/// API server's error text if it refuses.
fn create_pod(manifest: &str) -> Result<(), String> {
    let (ok, _, stderr) = kubectl_result(&["create", "-f", "-"], Some(manifest));
    if ok { Ok(()) } else { Err(stderr) }
}

/// A container's requests or limits as plain strings.
fn quantities(
    values: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, String> {
    values
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

fn expected(values: &[(&str, &str)]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn pod_security_rejects_a_host_pid_pod_and_a_compliant_pod_runs() {
    let t = Enforced::start("node-adm-ps").await;
    let image = t.node.agnhost_image.clone();

    // hostPID, not `privileged: true`: the API server (default --allow-privileged=false)
    // refuses privileged containers by validation in every namespace, before Pod Security.
    let host_pid =
        |namespace: &str| pause_pod(namespace, "host-pid", &image, "  hostPID: true\n", "");
    let refusal = create_pod(&host_pid(&t.namespace))
        .expect_err("a hostPID pod must be refused in a namespace enforcing restricted");
    assert!(
        refusal.contains("violates PodSecurity \"restricted:latest\"")
            && refusal.contains("host namespaces (hostPID=true)"),
        "the refusal should be Pod Security's, naming hostPID: {refusal}"
    );
    t.assert_absent("host-pid").await;
    t.assert_admitted_unselected(host_pid);

    let manifest = server_pod_manifest(&t.namespace, "compliant", &[("app", "compliant")], &image);
    run_pod(&manifest).await;
    t.assert_running_on_node("compliant").await;
    t.finish().await;
}

#[tokio::test]
async fn limit_range_rejects_a_container_over_the_max_and_defaults_one_without_resources() {
    let t = Enforced::start("node-adm-lr").await;
    let image = t.node.agnhost_image.clone();

    let too_big = |namespace: &str| {
        pause_pod(
            namespace,
            "too-big",
            &image,
            "",
            "{requests: {cpu: 10m, memory: 16Mi}, limits: {cpu: 100m, memory: 1Gi}}",
        )
    };
    let refusal = create_pod(&too_big(&t.namespace))
        .expect_err("a container above the LimitRange max must be refused");
    assert!(
        refusal.contains("maximum memory usage per Container is 512Mi, but limit is 1Gi"),
        "the refusal should name the LimitRange maximum: {refusal}"
    );
    t.assert_absent("too-big").await;
    t.assert_admitted_unselected(too_big);

    run_pod(&pause_pod(&t.namespace, "bare", &image, "", "")).await;
    let pod = t.assert_running_on_node("bare").await;
    let container = &pod.spec.as_ref().expect("pod spec").containers[0];
    let resources = container
        .resources
        .as_ref()
        .expect("the LimitRange gave the container resources");
    assert_eq!(
        (
            quantities(resources.requests.as_ref()),
            quantities(resources.limits.as_ref())
        ),
        (expected(&DEFAULT_REQUESTS), expected(&DEFAULT_LIMITS)),
        "a container without resources gets the LimitRange defaults (requests, limits)"
    );
    t.finish().await;
}

#[tokio::test]
async fn quota_rejects_the_pod_after_the_hard_limit_until_one_is_deleted() {
    let t = Enforced::start("node-adm-rq").await;
    let image = t.node.agnhost_image.clone();
    let quotas: Api<ResourceQuota> = Api::namespaced(t.env.admin.clone(), &t.namespace);
    let used_pods = || async {
        let quota = quotas.get(&t.quota).await.expect("get the quota");
        let used = quota.status.and_then(|s| s.used).unwrap_or_default();
        used.get("pods")
            .map(|q| q.0.clone())
            .expect("the quota counts pods")
    };

    // Count what is already there (a fresh namespace: nothing) rather than assume it; pods in
    // a terminal phase do not use quota.
    let existing = t
        .pods()
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .count();
    assert_eq!(
        used_pods().await,
        existing.to_string(),
        "the quota counts the pods already in the namespace"
    );
    assert!(
        existing < HARD_PODS,
        "{existing} pods already fill the quota"
    );
    for i in 0..HARD_PODS - existing {
        run_pod(&pause_pod(&t.namespace, &format!("p{i}"), &image, "", "")).await;
    }
    assert_eq!(used_pods().await, HARD_PODS.to_string());

    let over = |namespace: &str| pause_pod(namespace, "over", &image, "", "");
    let refusal = create_pod(&over(&t.namespace))
        .expect_err("the pod after the quota's limit must be refused");
    let quota = &t.quota;
    assert!(
        refusal.contains(&format!("exceeded quota: {quota}"))
            && refusal.contains(&format!("limited: pods={HARD_PODS}")),
        "the refusal should be the generated quota's ({quota}), at {HARD_PODS} pods: {refusal}"
    );
    t.assert_absent("over").await;
    t.assert_admitted_unselected(over);

    // The limit counts live pods: once one is gone (and the quota controller has seen it),
    // the same pod is admitted and runs.
    let (ok, _, stderr) = kubectl_result(
        &["delete", "pod", "-n", &t.namespace, "p0", "--wait=true"],
        None,
    );
    assert!(ok, "delete pod p0: {stderr}");
    eventually(CONVERGED, "the freed quota slot to admit a pod", || async {
        match create_pod(&over(&t.namespace)) {
            Ok(()) => Some(()),
            Err(e) if e.contains("exceeded quota") => None,
            Err(e) => panic!("create after freeing a slot: {e}"),
        }
    })
    .await;
    node::wait_pod_ready(&t.namespace, "over").await;
    t.assert_running_on_node("over").await;
    t.finish().await;
}
