//! `kubectl wait --for=condition=Compliant` after an apply returns only once every selected
//! namespace is protected: Compliant is Unknown while namespaces are not yet evaluated at
//! the current generation (issue 21, item 2), measured on a 1,000-namespace converge.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use kube_baseline_e2e::*;

/// Namespaces selected (KUBE_BASELINE_WAIT_NAMESPACES overrides, for a quicker local run).
fn namespace_count() -> usize {
    std::env::var("KUBE_BASELINE_WAIT_NAMESPACES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000)
}

#[tokio::test]
async fn kubectl_wait_for_compliant_returns_only_after_the_last_namespace_is_protected() {
    let env = TestEnv::new("cwait").await;
    let count = namespace_count();
    let created = Instant::now();
    let names: Vec<String> = futures::stream::iter(0..count)
        .map(|i| {
            let env = env.clone();
            async move {
                env.create_namespace(&format!("n{i:04}"), &[("env", "prod")])
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    eprintln!("{count} namespaces created in {:?}", created.elapsed());
    let operator = Operator::start(&env, &[]).await;
    operator.http_url().await;

    let baseline = env.apply_baseline(
        "b",
        "namespaceSelector: {matchLabels: {env: prod}}\npodSecurity: {enforce: restricted}\n",
    );
    let applied = SystemTime::now();
    let output = tokio::task::spawn_blocking({
        let target = format!("sbl/{baseline}");
        move || {
            kubectl_result(
                &[
                    "wait",
                    "--for=condition=Compliant",
                    &target,
                    "--timeout=600s",
                ],
                None,
            )
        }
    })
    .await
    .expect("kubectl wait thread");
    let returned = SystemTime::now();
    assert!(output.0, "kubectl wait failed: {}", output.2);
    let waited = returned.duration_since(applied).unwrap_or_default();
    eprintln!("kubectl wait returned {waited:?} after the apply");

    // What exists the moment it returned: both policies and the label in every namespace.
    let policies: Api<NetworkPolicy> = Api::all(env.admin.clone());
    let mut by_namespace: BTreeMap<String, usize> = BTreeMap::new();
    for policy in policies
        .list(&ListParams::default().labels(&format!("kube-baseline.dev/baseline={baseline}")))
        .await
        .expect("list policies")
    {
        *by_namespace
            .entry(policy.namespace().unwrap_or_default())
            .or_default() += 1;
    }
    let labelled: BTreeSet<String> = Api::<Namespace>::all(env.admin.clone())
        .list(&ListParams::default().labels(&env.selector()))
        .await
        .expect("list namespaces")
        .into_iter()
        .filter(|n| {
            n.labels()
                .get("pod-security.kubernetes.io/enforce")
                .is_some_and(|v| v == "restricted")
        })
        .map(|n| n.name_any())
        .collect();
    let unprotected: Vec<&String> = names
        .iter()
        .filter(|n| by_namespace.get(*n).copied().unwrap_or_default() < 2 || !labelled.contains(*n))
        .collect();
    let status = baseline_status(&env.admin, &baseline).await;

    // When the last write that protected a namespace completed (the API server's audit log).
    let user = operator.user.clone();
    let last_write = writes_by(&user)
        .into_iter()
        .filter(|e| e.verb == "patch" || e.verb == "create")
        .filter(|e| e.response_status.as_ref().is_some_and(|s| s.code < 300))
        .filter(|e| {
            e.object_ref.as_ref().is_some_and(|o| {
                (o.resource == "networkpolicies" && names.contains(&o.namespace))
                    || (o.resource == "namespaces" && names.contains(&o.name))
            })
        })
        .filter_map(|e| e.stage_timestamp.parse::<Timestamp>().ok())
        .max();
    let returned_at = Timestamp::try_from(returned).expect("time");
    eprintln!(
        "last protecting write completed at {last_write:?}; kubectl wait returned at {returned_at} ({} of {count} namespaces unprotected then)",
        unprotected.len()
    );
    assert!(
        unprotected.is_empty(),
        "kubectl wait --for=condition=Compliant returned {waited:?} after the apply while {} of {count} namespaces were unprotected (e.g. {:?}); status then: {status:#?}",
        unprotected.len(),
        unprotected.iter().take(5).collect::<Vec<_>>()
    );
    let last_write = last_write.expect("the operator's writes are in the audit log");
    assert!(
        last_write <= returned_at,
        "kubectl wait returned at {returned_at}, before the last namespace was protected at {last_write}"
    );
    eprintln!(
        "kubectl wait returned {:.3} s after the last namespace was protected",
        returned_at.duration_since(last_write).as_secs_f64()
    );
    // Nothing is deleted: removing 1,000 namespaces (and their objects) at once keeps the
    // controller-manager's namespace controller busy for minutes (about 5 a second here),
    // and the other tests that wait for a namespace deletion would time out. The baseline
    // and namespaces carry this test's label and go with the test cluster.
    drop(operator);
}
