//! `check --live` and the controller report the same drift for the same cluster state: both
//! call the same pure evaluation.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use kube::Api;
use kube_baseline::api::{DriftEntry, SecurityBaseline};
use kube_baseline_e2e::*;

fn apply(manifest: &str) {
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "{stderr}");
}

#[tokio::test]
async fn check_live_agrees_with_the_controller() {
    let env = TestEnv::new("chk").await;
    let prod = env.create_namespace("prod", &[("env", "prod")]).await;
    let weak = env
        .create_namespace(
            "weak",
            &[
                ("env", "prod"),
                ("pod-security.kubernetes.io/enforce", "privileged"),
            ],
        )
        .await;
    // Audit mode, so the controller repairs nothing and both see the same state.
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\npodSecurity: {{enforce: restricted}}\nrbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [''], resources: [pods], verbs: [get]}}\n",
            env.id
        ),
    );
    apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: baseline-{baseline}-deny-all, namespace: {prod}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: wide, namespace: {weak}}}\nrules: [{{apiGroups: [''], resources: [secrets], verbs: [list]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: wide, namespace: {weak}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: wide}}\nsubjects: [{{kind: ServiceAccount, name: default, namespace: {weak}}}]\n"
    ));
    let _operator = Operator::start(&env, &[]).await;
    eventually(
        Duration::from_secs(30),
        "the controller's status",
        || async {
            let status = Api::<SecurityBaseline>::all(env.admin.clone())
                .get(&baseline)
                .await
                .ok()?
                .status?;
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && status.drift_total > 0).then_some(())
        },
    )
    .await;
    // Let any event in flight land before comparing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(&baseline)
        .await
        .expect("baseline")
        .status
        .expect("status");
    assert!(status.drift_total < 50, "the whole drift list is in status");

    let output = Command::new(operator_binary())
        .args(["check", "--live", "-o", "json"])
        .output()
        .expect("check runs");
    assert_eq!(
        output.status.code(),
        Some(1),
        "drift found: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let ours = report["baselines"]
        .as_array()
        .expect("baselines")
        .iter()
        .find(|b| b["name"] == baseline.as_str())
        .expect("our baseline in the report");
    let from_check: Vec<DriftEntry> =
        serde_json::from_value(ours["drift"].clone()).expect("drift entries");
    let key = |d: &DriftEntry| {
        (
            d.namespace.clone(),
            d.kind.clone(),
            d.name.clone(),
            d.check.clone(),
            d.reason,
        )
    };
    let mut check_keys: Vec<_> = from_check.iter().map(key).collect();
    let mut status_keys: Vec<_> = status.drift.iter().map(key).collect();
    check_keys.sort();
    status_keys.sort();
    assert_eq!(
        check_keys, status_keys,
        "check --live and the controller disagree"
    );
    // And the state really has each kind of drift.
    let checks: Vec<&str> = status.drift.iter().map(|d| d.check.as_str()).collect();
    for expected in [
        "network.default-deny",
        "pod-security.labels",
        "role.provisioned",
        "rbac.secrets-read",
        "rbac.default-service-account",
    ] {
        assert!(checks.contains(&expected), "{expected} in {checks:?}");
    }
    env.cleanup().await;
}
