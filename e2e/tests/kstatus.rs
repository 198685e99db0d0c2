//! What GitOps tools see: SecurityBaselines read by kstatus itself
//! (sigs.k8s.io/cli-utils/pkg/kstatus/status, which Flux and kpt wait with), through the
//! probe in e2e/kstatus, at each stage of a baseline's life.
//!
//! The mapping (README, "Status"): InProgress until an operator has observed the current
//! generation and while it converges; Current once it has acted on every selected
//! namespace, drift or not (drift is Compliant=False, a finding for people, not a rollout
//! that is unfinished); Failed when it is Stalled (a missing permission a human must grant).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use kube_baseline_e2e::*;
use serde_json::{Value, json};

const PROD: &str = "namespaceSelector: {matchLabels: {env: prod}}\n";

/// The status of condition `type_` in a baseline as JSON, or "" when absent.
fn condition(object: &Value, type_: &str) -> String {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Polls the baseline (one `kubectl get` per look, so the kstatus answer and the checks see
/// the same object) until `check` holds; returns that object and what kstatus made of it.
async fn wait_for(baseline: &str, what: &str, check: impl Fn(&Value) -> bool) -> (Value, Kstatus) {
    // Status is written at most 3 times a minute (the write budget): after a burst of
    // changes the next write waits for the minute to pass.
    let timeout = Duration::from_secs(180);
    let deadline = Instant::now() + timeout;
    loop {
        let object = baseline_json(baseline);
        if check(&object) {
            let kstatus = kstatus_of(&object);
            return (object, kstatus);
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {:#}",
            object["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn observed(object: &Value) -> bool {
    object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

#[tokio::test]
async fn a_baseline_no_operator_has_seen_is_in_progress() {
    let env = TestEnv::new("ks-new").await;
    env.create_namespace("ns", &[("env", "prod")]).await;
    // No operator runs for this test's baselines (every operator is restricted to its own
    // test's label): as if it were down, not installed yet, or not matching.
    let baseline = env.apply_baseline("b", PROD);
    for _ in 0..3 {
        let object = baseline_json(&baseline);
        let kstatus = kstatus_of(&object);
        assert_eq!(
            kstatus.status, "InProgress",
            "a baseline nothing enforces must not read as ready; kstatus: {kstatus:?}, object status: {}",
            object["status"]
        );
        assert_eq!(
            kstatus.message,
            "SecurityBaseline generation is 1, but latest observed generation is 0"
        );
        assert_eq!(object["status"]["observedGeneration"], json!(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    env.cleanup().await;
}

#[tokio::test]
async fn converging_in_progress_then_current_with_drift_then_a_new_spec_in_progress() {
    let env = TestEnv::new("ks-life").await;
    for i in 0..40 {
        env.create_namespace(&format!("ns{i}"), &[("env", "prod")])
            .await;
    }
    // Slow enough (2 writes per namespace at 5 requests/s) that the converge can be seen.
    let operator = Operator::start(&env, &["--kube-api-qps", "5", "--kube-api-burst", "5"]).await;
    let baseline = env.apply_baseline("b", PROD);

    let (object, kstatus) = wait_for(&baseline, "the converge (Reconciling=True)", |o| {
        observed(o) && condition(o, "Reconciling") == "True"
    })
    .await;
    assert_eq!(
        kstatus.status, "InProgress",
        "converging: {kstatus:?}, status {:#}",
        object["status"]
    );

    let (object, kstatus) = wait_for(&baseline, "the converge to end (Ready=True)", |o| {
        observed(o) && condition(o, "Ready") == "True"
    })
    .await;
    assert_eq!(
        kstatus.status, "Current",
        "converged: {kstatus:?}, status {:#}",
        object["status"]
    );
    assert_eq!(condition(&object, "Compliant"), "True");

    // Converged with drift: Audit mode reports the missing policies and does not repair
    // them. The operator has acted on the current generation, so kstatus says Current; the
    // drift is in Compliant=False.
    let audit = env.apply_baseline("audit", &format!("mode: Audit\n{PROD}"));
    let (object, kstatus) = wait_for(&audit, "the audit baseline to settle", |o| {
        observed(o) && condition(o, "Ready") == "True"
    })
    .await;
    assert_eq!(
        condition(&object, "Compliant"),
        "False",
        "{:#}",
        object["status"]
    );
    assert!(object["status"]["driftTotal"].as_i64().unwrap_or_default() > 0);
    assert_eq!(
        kstatus.status, "Current",
        "drift is not unfinished work: {kstatus:?}"
    );

    // A changed spec the operator has not observed (it is stopped) is InProgress again.
    operator.stop(Duration::from_secs(30));
    kubectl(&[
        "patch",
        "sbl",
        &baseline,
        "--type=merge",
        "-p",
        r#"{"spec":{"networkPolicy":{"allowSameNamespace":true}}}"#,
    ]);
    let object = baseline_json(&baseline);
    assert_eq!(object["metadata"]["generation"], json!(2));
    let kstatus = kstatus_of(&object);
    assert_eq!(
        (kstatus.status.as_str(), kstatus.message.as_str()),
        (
            "InProgress",
            "SecurityBaseline generation is 2, but latest observed generation is 1"
        ),
        "{kstatus:?}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_stalled_baseline_is_failed() {
    let env = TestEnv::new("ks-stall").await;
    env.create_namespace("ns", &[("env", "prod")]).await;
    // The operator's ClusterRole without create and patch on NetworkPolicies: the writes get
    // 403, which the operator reports as Stalled (a human must grant the permission).
    let mut role: Value = serde_json::from_str(&kubectl(&[
        "get",
        "clusterrole",
        "kube-baseline-manager",
        "-o",
        "json",
    ]))
    .expect("JSON");
    for rule in role["rules"].as_array_mut().expect("rules") {
        if rule["resources"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("networkpolicies")))
        {
            rule["verbs"] = json!(["get", "list", "watch", "delete"]);
        }
    }
    let role_name = env.name("no-netpol-writes");
    let role = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": role_name, "labels": {TEST_LABEL: env.id}},
        "rules": role["rules"],
    });
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&role.to_string()));
    assert!(ok, "create ClusterRole: {stderr}");
    let sa = format!("op-{}", env.id);
    let kubeconfig = env.service_account_kubeconfig(&sa, Some(&role_name)).await;
    let _operator = Operator::start_with(&env, &sa, &kubeconfig, &[]);
    let baseline = env.apply_baseline("b", PROD);

    let (object, kstatus) = wait_for(&baseline, "Stalled=True", |o| {
        observed(o) && condition(o, "Stalled") == "True"
    })
    .await;
    let stalled_message = object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Stalled")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        (kstatus.status.as_str(), kstatus.message.as_str()),
        ("Failed", stalled_message.as_str()),
        "kstatus reads Stalled=True as Failed, with its message; status {:#}",
        object["status"]
    );
    let _ = kubectl_result(&["delete", "clusterrole", &role_name], None);
    env.cleanup().await;
}
