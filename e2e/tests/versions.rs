//! The kubernetesVersion checks against the real API server: its own /version (the support
//! window, and its end-of-life metric), Nodes whose kubelet versions are inside and outside
//! the skew policy, an end-of-life override, and `check --live` agreeing with the
//! controller. No kubelet runs behind these Nodes: the test writes `status.nodeInfo` through
//! the status subresource, as a kubelet would.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_baseline::api::{DriftEntry, DriftReason, KubernetesVersionStatus, SecurityBaseline};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);
/// How long a baseline whose status write budget is spent waits to write again.
const STATUS_BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// (kind, name, check, reason) of a finding.
type Key = (String, String, String, DriftReason);

fn key(d: &DriftEntry) -> Key {
    (d.kind.clone(), d.name.clone(), d.check.clone(), d.reason)
}

/// The version findings of a baseline's status once it has observed its generation.
async fn version_findings(env: &TestEnv, baseline: &str) -> Option<BTreeSet<Key>> {
    let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .ok()?;
    let status = baseline.status?;
    (status.observed_generation == baseline.metadata.generation).then(|| {
        status
            .drift
            .iter()
            .filter(|d| d.check.starts_with("version."))
            .map(key)
            .collect()
    })
}

/// The baseline's `status.kubernetesVersion`.
async fn version_status(env: &TestEnv, baseline: &str) -> KubernetesVersionStatus {
    Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .expect("get baseline")
        .status
        .and_then(|status| status.kubernetes_version)
        .expect("status.kubernetesVersion")
}

/// `check --live` with `args`: the version findings of `baseline`.
fn check_live(args: &[&str], baseline: &str) -> BTreeSet<Key> {
    let report = check_live_report(args);
    let ours = baseline_in_report(&report, baseline);
    assert_eq!(
        ours["summary"]["kubernetesVersion"]["checked"], true,
        "{ours}"
    );
    drift_in_report(&report, baseline)
        .iter()
        .filter(|d| d.check.starts_with("version."))
        .map(key)
        .collect()
}

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

/// The API server's own minor, from /version (as kubectl sees it).
async fn api_server_minor(env: &TestEnv) -> (u32, u32) {
    let info = env.admin.apiserver_version().await.expect("/version");
    let version = info.git_version.trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next().and_then(|p| p.parse().ok()).expect("major");
    let minor = parts.next().and_then(|p| p.parse().ok()).expect("minor");
    (major, minor)
}

fn node_key(node: &str, reason: DriftReason) -> Key {
    (
        "Node".to_owned(),
        node.to_owned(),
        "version.kubelet-skew".to_owned(),
        reason,
    )
}

#[tokio::test]
async fn version_checks_read_the_real_api_server_and_node_kubelets() {
    let env = TestEnv::new("ver").await;
    let (major, minor) = api_server_minor(&env).await;
    // Inside the policy: the API server's own minor and three older. Outside: one newer,
    // four older. Unreadable: garbage.
    let same = env.create_node("same", &[]).await;
    let oldest_allowed = env.create_node("three-older", &[]).await;
    let too_old = env.create_node("four-older", &[]).await;
    let newer = env.create_node("newer", &[]).await;
    let garbage = env.create_node("garbage", &[]).await;
    for (node, version) in [
        (&same, format!("v{major}.{minor}.1")),
        (&oldest_allowed, format!("v{major}.{}.0-eks-1", minor - 3)),
        (&too_old, format!("v{major}.{}.9", minor - 4)),
        (&newer, format!("v{major}.{}.0", minor + 1)),
        (&garbage, "not-a-version".to_owned()),
    ] {
        set_kubelet_version(&env, node, &version).await;
    }
    let baseline = env.apply_baseline(
        "b",
        "mode: Audit\nnamespaceSelector: {matchLabels: {none: none}}\nkubernetesVersion: {}\n",
    );
    let node_selector = format!("{TEST_LABEL}={}", env.id);
    let operator = Operator::start(
        &env,
        &[
            "--node-selector",
            &node_selector,
            "--version-interval-seconds",
            "1",
        ],
    )
    .await;

    // The real /version's minor in the end-of-life metric; the finding follows the date.
    let url = operator.http_url().await;
    let series_prefix = format!(
        "kube_baseline_kubernetes_end_of_life_timestamp_seconds{{baseline=\"{baseline}\",minor=\"{major}.{minor}\",source=\"upstream"
    );
    let end_of_life = eventually(SETTLE, "the end-of-life metric", || async {
        let (_, text) = http_get(&format!("{url}/metrics"));
        text.lines()
            .find(|line| line.starts_with(&series_prefix))
            .and_then(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
    })
    .await;
    let past_end_of_life = Timestamp::now().as_second() >= end_of_life;

    let mut expected = BTreeSet::from([
        node_key(&too_old, DriftReason::Violation),
        node_key(&newer, DriftReason::Violation),
        node_key(&garbage, DriftReason::Unknown),
    ]);
    if past_end_of_life {
        expected.insert((
            "ControlPlane".to_owned(),
            "kube-apiserver".to_owned(),
            "version.control-plane-eol".to_owned(),
            DriftReason::Violation,
        ));
    }
    let status = eventually(SETTLE, "the version findings in status", || async {
        version_findings(&env, &baseline)
            .await
            .filter(|found| *found == expected)
    })
    .await;
    assert_eq!(
        check_live(&["--node-selector", &node_selector], &baseline),
        status,
        "check --live and the controller disagree"
    );
    // The status names what it judged with: the real /version, the end of life (the
    // metric's instant is the day after it), the table's date.
    let judged = version_status(&env, &baseline).await;
    let real = env.admin.apiserver_version().await.expect("/version");
    let day_after = Timestamp::from_second(end_of_life)
        .expect("instant")
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .date();
    assert_eq!(judged.api_server, real.git_version);
    assert_eq!(
        judged
            .end_of_life
            .parse::<k8s_openapi::jiff::civil::Date>()
            .ok(),
        day_after.yesterday().ok(),
        "{judged:?}"
    );
    assert!(
        judged.end_of_life_source.starts_with("upstream ("),
        "{judged:?}"
    );
    assert_eq!(
        judged.release_table,
        kube_baseline::domain::versions::TABLE_DATE
    );

    // A vendor window that ended in 2020: the support window is violated, the metric says so.
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{none: none}}}}\nkubernetesVersion:\n  endOfLifeOverrides:\n  - {{minor: \"{major}.{minor}\", endOfLife: \"2020-01-01\", reason: vendor window}}\n"
        ),
    );
    expected.insert((
        "ControlPlane".to_owned(),
        "kube-apiserver".to_owned(),
        "version.control-plane-eol".to_owned(),
        DriftReason::Violation,
    ));
    let status = eventually(SETTLE, "the override's finding in status", || async {
        version_findings(&env, &baseline)
            .await
            .filter(|found| *found == expected)
    })
    .await;
    let override_series = format!(
        "kube_baseline_kubernetes_end_of_life_timestamp_seconds{{baseline=\"{baseline}\",minor=\"{major}.{minor}\",source=\"override\"}}"
    );
    eventually(SETTLE, "the override in the metric", || async {
        let (_, text) = http_get(&format!("{url}/metrics"));
        // 2020-01-02T00:00:00Z: the first day past the override's last one.
        (metric_value(&text, &override_series) == Some(1_577_923_200.0)).then_some(())
    })
    .await;
    let (_, text) = http_get(&format!("{url}/metrics"));
    assert!(
        !text.contains(&series_prefix),
        "the upstream series is replaced by the override's: {text}"
    );
    assert_eq!(
        check_live(&["--node-selector", &node_selector], &baseline),
        status
    );
    let judged = version_status(&env, &baseline).await;
    assert_eq!(
        (
            judged.end_of_life.as_str(),
            judged.end_of_life_source.as_str()
        ),
        ("2020-01-01", "override: vendor window")
    );
    drop(operator);
    env.cleanup().await;
    for node in [&same, &oldest_allowed, &too_old, &newer, &garbage] {
        let _ = kubectl_result(&["delete", "node", node, "--wait=false"], None);
    }
}

/// `deprecatedAPIs`: Unknown (naming the opt-in permission) while the operator may not read
/// /metrics; once bound to config/rbac/apiserver-metrics, a real request of a deprecated
/// version (the test cluster serves networking.k8s.io/v1beta1, removed in 1.37) is a
/// Violation.
#[tokio::test]
async fn deprecated_api_requests_are_read_from_the_api_server_metrics() {
    let env = TestEnv::new("dep").await;
    let baseline = env.apply_baseline(
        "b",
        "mode: Audit\nnamespaceSelector: {matchLabels: {none: none}}\nkubernetesVersion: {supportWindow: false, skew: false, deprecatedAPIs: true}\n",
    );
    let operator = Operator::start(&env, &["--version-interval-seconds", "1"]).await;
    let control_plane = |reason| {
        (
            "ControlPlane".to_owned(),
            "kube-apiserver".to_owned(),
            "version.deprecated-api".to_owned(),
            reason,
        )
    };
    let status = eventually(SETTLE, "Unknown without the permission", || async {
        let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
            .get(&baseline)
            .await
            .ok()?;
        let drift = baseline.status?.drift;
        drift
            .into_iter()
            .find(|d| key(d) == control_plane(DriftReason::Unknown))
    })
    .await;
    assert!(
        status.message.contains("config/rbac/apiserver-metrics"),
        "names the opt-in: {}",
        status.message
    );

    // A real request of the deprecated version, as any client might make.
    let (ok, _, stderr) = kubectl_result(
        &[
            "get",
            "--raw",
            "/apis/networking.k8s.io/v1beta1/servicecidrs",
        ],
        None,
    );
    assert!(
        ok,
        "the test cluster serves networking.k8s.io/v1beta1 (e2e/cluster's --runtime-config): {stderr}"
    );
    // The overlay as users apply it: the ClusterRole and its binding to the controller's
    // ServiceAccount. The test binds the same ClusterRole to this test's ServiceAccount.
    let overlay = kubectl(&["kustomize", "config/rbac/apiserver-metrics"]);
    for wanted in [
        "kind: ClusterRole\n",
        "kind: ClusterRoleBinding\n",
        "name: kube-baseline\n  namespace: kube-baseline-system",
        "- /metrics",
    ] {
        assert!(overlay.contains(wanted), "{wanted:?} in {overlay}");
    }
    kubectl(&[
        "apply",
        "-f",
        "config/rbac/apiserver-metrics/cluster_role.yaml",
    ]);
    let sa = operator
        .user
        .rsplit(':')
        .next()
        .expect("a ServiceAccount user")
        .to_owned();
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {sa}-metrics, labels: {{{TEST_LABEL}: {}}}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-baseline-apiserver-metrics}}\nsubjects: [{{kind: ServiceAccount, name: {sa}, namespace: {OPERATOR_NAMESPACE}}}]\n",
        env.id
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&binding));
    assert!(ok, "{stderr}");
    let expected = (
        "DeprecatedAPI".to_owned(),
        "servicecidrs.v1beta1.networking.k8s.io".to_owned(),
        "version.deprecated-api".to_owned(),
        DriftReason::Violation,
    );
    // The baseline's first status writes (its first reconcile, the start-up pass ending,
    // the forbidden /metrics) can spend its status write budget (3 a minute) within a
    // second, so the finding may wait for that minute to pass before it is written.
    let found = eventually(
        SETTLE + STATUS_BUDGET_WINDOW,
        "the deprecated request in status",
        || async {
            version_findings(&env, &baseline)
                .await
                .filter(|found| found.contains(&expected))
        },
    )
    .await;
    assert!(
        !found.contains(&control_plane(DriftReason::Unknown)),
        "readable now: {found:?}"
    );
    drop(operator);
    env.cleanup().await;
}

/// A baseline that asks for the deprecated-API metrics after the operator started is served
/// at once, not at the next poll (`--version-interval-seconds`, 300 by default): within
/// seconds its finding says the real answer (this test's operator is forbidden /metrics),
/// not "not read yet" for minutes.
#[tokio::test]
async fn a_new_baseline_asking_for_metrics_is_served_before_the_next_poll() {
    let env = TestEnv::new("depw").await;
    let operator = Operator::start(&env, &[]).await;
    // The operator's caches have synced (ready) before the baseline exists, so its first
    // poll did not ask for /metrics.
    let url = operator.http_url().await;
    eventually(Duration::from_secs(30), "the operator ready", || async {
        (http_get(&format!("{url}/readyz")).0 == 200).then_some(())
    })
    .await;
    let baseline = env.apply_baseline(
        "b",
        "mode: Audit\nnamespaceSelector: {matchLabels: {none: none}}\nkubernetesVersion: {supportWindow: false, skew: false, deprecatedAPIs: true}\n",
    );
    let finding =
        eventually(
            Duration::from_secs(30),
            "the /metrics answer in status",
            || async {
                let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
                    .get(&baseline)
                    .await
                    .ok()?;
                baseline.status?.drift.into_iter().find(|d| {
                    d.check == "version.deprecated-api" && d.message.contains("is forbidden")
                })
            },
        )
        .await;
    assert_eq!(finding.reason, DriftReason::Unknown);
    drop(operator);
    env.cleanup().await;
}
