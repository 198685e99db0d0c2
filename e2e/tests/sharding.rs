//! Two operator instances sharding the baselines (--baseline-selector) over the same
//! namespaces, each with its own --shard: together they reach the Pod Security labels one
//! instance over all the baselines would, without a write fight.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(30);

/// Applies a baseline labelled for `shard`.
fn apply_sharded(env: &TestEnv, suffix: &str, shard: &str, spec: &str) -> String {
    let name = env.name(suffix);
    let manifest = format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {name}\n  labels:\n    {TEST_LABEL}: {}\n    shard: {shard}\nspec:\n{spec}",
        env.id
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "apply baseline {name}: {stderr}");
    name
}

async fn pod_security_labels(env: &TestEnv, namespace: &str) -> BTreeMap<String, String> {
    Api::<Namespace>::all(env.admin.clone())
        .get(namespace)
        .await
        .expect("namespace")
        .labels()
        .iter()
        .filter(|(k, _)| k.starts_with("pod-security.kubernetes.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn shard(env: &TestEnv, name: &str) -> Operator {
    let sa = format!("op-{}-{name}", env.id);
    let kubeconfig = env
        .service_account_kubeconfig(&sa, Some("kube-baseline-manager"))
        .await;
    let selector = format!("{},shard={name}", env.selector());
    Operator::start_with_baselines(env, &sa, &kubeconfig, &selector, &["--shard", name])
}

#[tokio::test]
async fn two_shards_reach_the_labels_of_one_instance_without_a_fight() {
    let env = TestEnv::new("shard").await;
    // Shard a: restricted enforcement. Shard b: a weaker enforce level and a warn level a
    // does not set. One instance over both would apply enforce=restricted (strictest) and
    // warn=restricted.
    apply_sharded(
        &env,
        "a",
        "a",
        "  namespaceSelector: {matchLabels: {env: shared}}\n  podSecurity: {enforce: restricted}\n",
    );
    apply_sharded(
        &env,
        "b",
        "b",
        "  namespaceSelector: {matchLabels: {env: shared}}\n  podSecurity: {enforce: baseline, warn: restricted}\n",
    );
    let since = k8s_openapi::jiff::Timestamp::now();
    let a = shard(&env, "a").await;
    let b = shard(&env, "b").await;
    let mut namespaces = Vec::new();
    for i in 0..5 {
        namespaces.push(
            env.create_namespace(&format!("n{i}"), &[("env", "shared")])
                .await,
        );
    }
    let want = BTreeMap::from([
        (
            "pod-security.kubernetes.io/enforce".to_string(),
            "restricted".to_string(),
        ),
        (
            "pod-security.kubernetes.io/warn".to_string(),
            "restricted".to_string(),
        ),
    ]);
    for namespace in &namespaces {
        eventually(
            SETTLE,
            &format!("the merged labels on {namespace}"),
            || async { (pod_security_labels(&env, namespace).await == want).then_some(()) },
        )
        .await;
    }
    // Stable: no instance takes the other's labels away afterwards.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for namespace in &namespaces {
        assert_eq!(
            pod_security_labels(&env, namespace).await,
            want,
            "{namespace}"
        );
    }
    // At most one label write per namespace by each instance (each writes its own part
    // once; a fight is many). An apply planned from a namespace the other shard had just
    // written is refused (409, resourceVersion precondition) and changes nothing; those
    // attempts are bounded too.
    for operator in [&a, &b] {
        let attempts: Vec<_> = writes_by(&operator.user)
            .into_iter()
            .filter(|e| {
                e.request_received_timestamp
                    .parse::<k8s_openapi::jiff::Timestamp>()
                    .is_ok_and(|t| t >= since)
            })
            .filter(|e| {
                e.object_ref
                    .as_ref()
                    .is_some_and(|o| o.resource == "namespaces")
            })
            .collect();
        let writes: Vec<_> = attempts
            .iter()
            .filter(|e| {
                e.response_status
                    .as_ref()
                    .is_some_and(|s| (200..300).contains(&s.code))
            })
            .collect();
        assert!(
            attempts.len() <= 2 * namespaces.len(),
            "{}: {} namespace write attempts for {} namespaces",
            operator.user,
            attempts.len(),
            namespaces.len()
        );
        assert!(
            writes.len() <= namespaces.len(),
            "{}: {} namespace writes for {} namespaces: {:?}",
            operator.user,
            writes.len(),
            namespaces.len(),
            writes
                .iter()
                .map(|e| e.object_ref.as_ref().map(|o| o.name.clone()))
                .collect::<Vec<_>>()
        );
    }
    drop((a, b));
    env.cleanup().await;
}
