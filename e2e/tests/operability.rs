//! Operability end to end: metrics follow drift and repairs; with leader election only the
//! leader writes and a successor takes over after SIGKILL and SIGTERM.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(30);

fn scrape(url: &str) -> String {
    let (code, body) = http_get(&format!("{url}/metrics"));
    assert_eq!(code, 200, "/metrics answers");
    body
}

#[tokio::test]
async fn metrics_follow_drift_and_repairs() {
    let env = TestEnv::new("met").await;
    let ns = env.create_namespace("ns", &[]).await;
    let baseline_name = env.name("b");
    let squatter_name = format!("baseline-{baseline_name}-allow-dns");
    let squatter: NetworkPolicy = serde_saphyr::from_str(&format!(
        "metadata: {{name: {squatter_name}, namespace: {ns}}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}"
    ))
    .expect("policy");
    let policies: Api<NetworkPolicy> = Api::namespaced(env.admin.clone(), &ns);
    policies
        .create(&PostParams::default(), &squatter)
        .await
        .expect("squatter");
    env.apply_baseline("b", "namespaceSelector: {}\n");
    let operator = Operator::start(&env, &[]).await;
    let url = operator.http_url().await;
    assert_eq!(http_get(&format!("{url}/healthz")).0, 200);

    // The Conflict shows as a drift series.
    let drift_series =
        format!(r#"kube_baseline_drift{{baseline="{baseline_name}",check="network.allow-dns"}}"#);
    eventually(SETTLE, "the conflict in /metrics", || async {
        (metric_value(&scrape(&url), &drift_series) == Some(1.0)).then_some(())
    })
    .await;
    let text = scrape(&url);
    assert_eq!(
        http_get(&format!("{url}/readyz")).0,
        200,
        "ready once caches are synced"
    );
    assert!(
        text.contains(
            r#"controller_runtime_reconcile_total{controller="namespace",result="success"}"#
        ),
        "{text}"
    );
    let drifted =
        format!(r#"kube_baseline_namespaces{{baseline="{baseline_name}",state="drifted"}}"#);
    assert_eq!(metric_value(&text, &drifted), Some(1.0), "{text}");
    let repairs = format!(r#"kube_baseline_repairs_total{{baseline="{baseline_name}"}}"#);
    let repairs_before = metric_value(&text, &repairs).unwrap_or(0.0);

    // The squatter goes: the operator creates its own policy; the drift series disappears
    // and the repair is counted.
    policies
        .delete(&squatter_name, &DeleteParams::default())
        .await
        .expect("delete squatter");
    eventually(
        SETTLE,
        "the drift series to go and the repair to be counted",
        || async {
            let text = scrape(&url);
            (metric_value(&text, &drift_series).is_none()
                && metric_value(&text, &repairs).unwrap_or(0.0) > repairs_before)
                .then_some(())
        },
    )
    .await;
    let compliant =
        format!(r#"kube_baseline_namespaces{{baseline="{baseline_name}",state="compliant"}}"#);
    eventually(SETTLE, "the namespace to count as compliant", || async {
        (metric_value(&scrape(&url), &compliant) == Some(1.0)).then_some(())
    })
    .await;
    env.cleanup().await;
}

/// Waits until the operator's log says it holds the lease.
async fn wait_leading(operator: &Operator, within: Duration) -> Duration {
    let started = Instant::now();
    eventually(within, "the operator to acquire the lease", || async {
        operator
            .log_text()
            .contains("acquired the leader lease")
            .then_some(())
    })
    .await;
    started.elapsed()
}

fn non_lease_writes(user: &str) -> usize {
    writes_by(user)
        .iter()
        .filter(|w| w.object_ref.as_ref().is_none_or(|o| o.resource != "leases"))
        .count()
}

#[tokio::test]
async fn only_the_leader_writes_and_a_successor_takes_over() {
    let env = TestEnv::new("lead").await;
    env.apply_baseline("b", "namespaceSelector: {}\n");
    let elect = ["--leader-elect", "--lease-duration-seconds", "10"];
    let mut first = Operator::start_named(&env, "a", &elect).await;
    // A lease left by an earlier run expires within its duration.
    wait_leading(&first, SETTLE).await;
    let second = Operator::start_named(&env, "b", &elect).await;
    let second_url = second.http_url().await;
    eventually(SETTLE, "the standby to report ready", || async {
        (http_get(&format!("{second_url}/readyz")) == (200, "standby".to_string())).then_some(())
    })
    .await;

    let ns = env.create_namespace("ns", &[]).await;
    let policies: Api<NetworkPolicy> = Api::namespaced(env.admin.clone(), &ns);
    eventually(SETTLE, "the leader to protect the namespace", || async {
        (!policies
            .list(&Default::default())
            .await
            .expect("list")
            .items
            .is_empty())
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(non_lease_writes(&first.user) > 0, "the leader writes");
    assert_eq!(
        writes_by(&second.user).len(),
        0,
        "the standby writes nothing, not even the lease"
    );

    // SIGKILL: the standby takes over once the lease expires.
    first.signal("KILL");
    let killed = Instant::now();
    wait_leading(&second, Duration::from_secs(20)).await;
    let takeover = killed.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(20),
        "takeover took {takeover:?}"
    );
    assert!(!first.is_running());

    // SIGTERM: the leader releases the lease and the next standby starts at once.
    let third = Operator::start_named(&env, "c", &elect).await;
    third.http_url().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ns2 = env.create_namespace("ns2", &[]).await;
    let policies2: Api<NetworkPolicy> = Api::namespaced(env.admin.clone(), &ns2);
    eventually(
        SETTLE,
        "the new leader to protect a new namespace",
        || async {
            (!policies2
                .list(&Default::default())
                .await
                .expect("list")
                .items
                .is_empty())
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        writes_by(&third.user).len(),
        0,
        "the new standby writes nothing"
    );
    let terminated = Instant::now();
    let status = second.stop(Duration::from_secs(30));
    assert!(status.success(), "graceful exit: {status:?}");
    wait_leading(&third, Duration::from_secs(5)).await;
    let handover = terminated.elapsed();
    eprintln!("handover after SIGTERM: {handover:?}");
    assert!(
        handover <= Duration::from_secs(5),
        "handover took {handover:?}"
    );
    drop(third);
    env.cleanup().await;
}

#[tokio::test]
async fn a_deleted_audit_baseline_leaves_no_metric_series() {
    // Audit mode takes no finalizer, so nothing runs at its deletion: its series must still go
    // (an alert on a baseline that no longer exists would fire forever).
    let env = TestEnv::new("metgone").await;
    env.create_namespace("ns", &[]).await;
    let baseline_name = env.apply_baseline("b", "mode: Audit\nnamespaceSelector: {}\n");
    let operator = Operator::start(&env, &[]).await;
    let url = operator.http_url().await;
    let drifted =
        format!(r#"kube_baseline_namespaces{{baseline="{baseline_name}",state="drifted"}}"#);
    eventually(SETTLE, "the audit baseline's drift in /metrics", || async {
        (metric_value(&scrape(&url), &drifted) == Some(1.0)).then_some(())
    })
    .await;
    let (ok, _, stderr) = kubectl_result(&["delete", "securitybaseline", &baseline_name], None);
    assert!(ok, "delete baseline: {stderr}");
    eventually(
        SETTLE,
        "every series of the deleted baseline to go",
        || async {
            let text = scrape(&url);
            (!text.contains(&format!(r#"baseline="{baseline_name}""#))).then_some(())
        },
    )
    .await;
    env.cleanup().await;
}
