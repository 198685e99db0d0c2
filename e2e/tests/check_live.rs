//! `check --live` and the controller report the same drift for the same cluster state: both
//! call the same pure evaluation (Audit mode; Enforce mode once converged, with two baselines
//! sharing namespaces and Pod Security labels, and nodes with and without reports).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_baseline::api::{
    DriftEntry, DriftReason, NodeReport, NodeReportSpec, ObservationState, SecurityBaseline,
};
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

/// (namespace, kind, name, check, reason): what both must agree on.
type Key = (String, String, String, String, DriftReason);

fn key(d: &DriftEntry) -> Key {
    (
        d.namespace.clone(),
        d.kind.clone(),
        d.name.clone(),
        d.check.clone(),
        d.reason,
    )
}

/// `check --live` with `args`: the drift keys of each of `baselines`.
fn check_live(args: &[&str], baselines: &[&str]) -> Vec<BTreeSet<Key>> {
    let report = check_live_report(args);
    baselines
        .iter()
        .map(|name| drift_in_report(&report, name).iter().map(key).collect())
        .collect()
}

/// The drift keys of each baseline's status, once it has observed its generation.
async fn status_keys(env: &TestEnv, baselines: &[&str]) -> Option<Vec<BTreeSet<Key>>> {
    let mut all = Vec::new();
    for name in baselines {
        let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
            .get(name)
            .await
            .ok()?;
        let status = baseline.status?;
        if status.observed_generation != baseline.metadata.generation {
            return None;
        }
        all.push(status.drift.iter().map(key).collect());
    }
    Some(all)
}

/// A report of `node` whose kubelet allows anonymous requests.
fn anonymous_kubelet(node: &str) -> NodeReport {
    let mut spec = NodeReportSpec {
        node_name: node.to_owned(),
        ..NodeReportSpec::default()
    };
    spec.kubelet.header.state = ObservationState::Observed;
    spec.kubelet.settings.anonymous_auth = Some(true);
    NodeReport::new(node, spec)
}

/// Enforce mode, two baselines sharing namespaces and the Pod Security enforce label, nodes
/// with and without reports, a leftover report of a Node that is gone, a Node outside the
/// operator's `--node-selector`: before the operator runs, `check --live` shows everything
/// it will repair plus what it cannot; once it has converged, both show the same drift.
#[tokio::test]
async fn check_live_agrees_with_an_enforcing_controller_on_shared_namespaces_and_nodes() {
    let env = TestEnv::new("chke").await;
    let pool = format!("pool-{}", env.id);
    let shared = [("chk", "shared")];
    let ns1 = env.create_namespace("one", &shared).await;
    let ns2 = env.create_namespace("two", &shared).await;
    let ns3 = env
        .create_namespace(
            "three",
            &[
                ("chk", "shared"),
                ("pod-security.kubernetes.io/enforce", "privileged"),
            ],
        )
        .await;
    let selector = format!(
        "namespaceSelector: {{matchLabels: {{chk: shared, {TEST_LABEL}: {}}}}}\n",
        env.id
    );
    let a = env.apply_baseline(
        "a",
        &format!(
            "{selector}podSecurity: {{enforce: baseline}}\nrbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [''], resources: [pods], verbs: [get]}}\nkubelet:\n  nodeSelector: {{{pool}: x}}\n  settings: {{anonymousAuth: false}}\n"
        ),
    );
    let b = env.apply_baseline(
        "b",
        &format!("{selector}podSecurity: {{enforce: restricted}}\n"),
    );
    // Drift no write of ours repairs: a user's policy holding a generated name, a Role
    // binding the default ServiceAccount to Secrets.
    apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: baseline-{a}-deny-all, namespace: {ns2}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: wide, namespace: {ns1}}}\nrules: [{{apiGroups: [''], resources: [secrets], verbs: [list]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: wide, namespace: {ns1}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: wide}}\nsubjects: [{{kind: ServiceAccount, name: default, namespace: {ns1}}}]\n"
    ));

    // Nodes: n1 reports a violation, n2 has no agent; "outside" is not selected by the
    // operator's --node-selector; "gone" has a report but no Node.
    let n1 = env.create_node("n1", &[(&pool, "x")]).await;
    let n2 = env.create_node("n2", &[(&pool, "x")]).await;
    let outside = env.name("outside");
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": outside, "labels": {pool.as_str(): "x"}}
    }))
    .expect("node");
    let nodes = Api::<Node>::all(env.admin.clone());
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create Node");
    let gone = env.name("gone");
    let reports = Api::<NodeReport>::all(env.admin.clone());
    for name in [&n1, &outside, &gone] {
        reports
            .create(&PostParams::default(), &anonymous_kubelet(name))
            .await
            .expect("create NodeReport");
    }
    let node_selector = format!("{TEST_LABEL}={}", env.id);
    let with_selector = ["--node-selector", node_selector.as_str()];
    let names = [a.as_str(), b.as_str()];

    let before = check_live(&with_selector, &names);
    let node_entries = |keys: &BTreeSet<Key>| -> BTreeSet<(String, DriftReason)> {
        keys.iter()
            .filter(|k| k.1 == "Node")
            .map(|k| (k.2.clone(), k.4))
            .collect()
    };
    assert_eq!(
        node_entries(&before[0]),
        BTreeSet::from([
            (n1.clone(), DriftReason::Violation),
            (n2.clone(), DriftReason::Unknown),
        ]),
        "the selected Nodes, and neither the leftover report nor the Node outside the selector"
    );
    let unselected = check_live(&[], &names);
    assert!(
        node_entries(&unselected[0]).contains(&(outside.clone(), DriftReason::Violation)),
        "without --node-selector the other Node counts: {:?}",
        unselected[0]
    );

    let _operator = Operator::start(&env, &with_selector).await;
    let mut last = (Vec::new(), Vec::new());
    let converged = tokio::time::timeout(Duration::from_secs(150), async {
        loop {
            if let Some(status) = status_keys(&env, &names).await {
                let check = check_live(&with_selector, &names);
                if check == status {
                    return status;
                }
                last = (check, status);
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    })
    .await;
    let after = converged.unwrap_or_else(|_| {
        panic!(
            "check --live and the controller never agreed; last check: {:#?}\nlast status: {:#?}",
            last.0, last.1
        )
    });

    for (i, name) in names.iter().enumerate() {
        assert!(
            after[i].is_subset(&before[i]),
            "{name}: drift the controller reports that check did not see before: {:?}",
            after[i].difference(&before[i]).collect::<Vec<_>>()
        );
        let repaired: Vec<&Key> = before[i].difference(&after[i]).collect();
        assert!(!repaired.is_empty(), "{name}: nothing was repaired");
        assert!(
            repaired.iter().all(|k| matches!(
                k.4,
                DriftReason::Missing | DriftReason::Modified | DriftReason::Unexpected
            ) && [
                "NetworkPolicy",
                "Role",
                "Namespace",
                "ResourceQuota",
                "LimitRange"
            ]
            .contains(&k.1.as_str())),
            "{name}: only what our writes repair is gone: {repaired:?}"
        );
    }
    // Both baselines want the enforce label: the stricter is set, and neither sees drift.
    for keys in &after {
        assert!(
            keys.iter().all(|k| k.3 != "pod-security.labels"),
            "{keys:?}"
        );
    }
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(env.admin.clone());
    for ns in [&ns1, &ns2, &ns3] {
        let labels = namespaces.get(ns).await.expect("namespace").metadata.labels;
        assert_eq!(
            labels
                .unwrap_or_default()
                .get("pod-security.kubernetes.io/enforce")
                .map(String::as_str),
            Some("restricted"),
            "{ns}"
        );
    }
    // What is left is what no write of ours fixes.
    let checks: BTreeSet<(&str, DriftReason)> =
        after[0].iter().map(|k| (k.3.as_str(), k.4)).collect();
    for expected in [
        ("network.default-deny", DriftReason::Conflict),
        ("rbac.secrets-read", DriftReason::Violation),
        ("kubelet.anonymous-auth", DriftReason::Violation),
        ("kubelet.anonymous-auth", DriftReason::Unknown),
    ] {
        assert!(checks.contains(&expected), "{expected:?} in {checks:?}");
    }

    for node in [&n1, &n2, &outside] {
        let _ = nodes.delete(node, &DeleteParams::default()).await;
    }
    for report in [&n1, &outside, &gone] {
        let _ = reports.delete(report, &DeleteParams::default()).await;
    }
    env.cleanup().await;
}
