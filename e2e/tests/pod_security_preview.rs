//! `check --live` previews what enforcing a baseline's Pod Security level would reject, with
//! the real API server as the evaluator: the exact label change is sent as a dry run and
//! PodSecurity admission's warnings name the violating pods. Nothing is persisted. (Pods are
//! stored and evaluated by admission even though no node runs them here.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);

/// A pod that violates `restricted` (and `baseline`: the host's network namespace; this
/// API server refuses privileged containers outright), or one that meets `restricted`.
fn pod(name: &str, violating: bool) -> Pod {
    let security_context = if violating {
        serde_json::json!({})
    } else {
        serde_json::json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": true,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    };
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"hostNetwork": violating, "containers": [{
            "name": "c",
            "image": "registry.invalid/none:1",
            "securityContext": security_context,
        }]},
    }))
    .expect("Pod")
}

/// The pod-security.preview findings of `baseline` in `check --live`: (namespace, reason,
/// message).
fn previews(baseline: &str) -> Vec<(String, String, String)> {
    drift_in_report(&check_live_report(&[]), baseline)
        .into_iter()
        .filter(|d| d.check == "pod-security.preview")
        .map(|d| (d.namespace, format!("{:?}", d.reason), d.message))
        .collect()
}

#[tokio::test]
async fn check_live_names_the_pods_enforcing_would_reject_and_changes_nothing() {
    let env = TestEnv::new("psprev").await;
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\npodSecurity: {{enforce: restricted}}\n",
            env.id
        ),
    );
    let pods: Api<Pod> = Api::namespaced(env.admin.clone(), &shop);
    // The namespace's default ServiceAccount comes from the controller manager.
    for (name, violating) in [("host-web", true), ("compliant-web", false)] {
        eventually(SETTLE, "the pod stored", || async {
            pods.create(&PostParams::default(), &pod(name, violating))
                .await
                .ok()
        })
        .await;
    }

    let found = previews(&baseline);
    assert_eq!(found.len(), 1, "{found:?}");
    let (namespace, reason, message) = &found[0];
    assert_eq!(
        (namespace.as_str(), reason.as_str()),
        (shop.as_str(), "Violation")
    );
    assert!(
        message.contains("enforcing restricted:latest would reject pods like 1 existing ones")
            && message.contains("host-web: ")
            && message.contains("host namespaces")
            && message.contains("runAsNonRoot != true")
            && !message.contains("compliant-web"),
        "{message}"
    );
    // A dry run: the namespace is as it was.
    let labels = Api::<Namespace>::all(env.admin.clone())
        .get(&shop)
        .await
        .expect("namespace")
        .metadata
        .labels
        .unwrap_or_default();
    assert!(
        !labels.contains_key("pod-security.kubernetes.io/enforce"),
        "{labels:?}"
    );

    // Without the violating pod, enforcing rejects nothing: no preview finding (the label
    // drift itself stays).
    pods.delete("host-web", &DeleteParams::default().grace_period(0))
        .await
        .expect("deleted");
    eventually(SETTLE, "a clean preview", || async {
        previews(&baseline).is_empty().then_some(())
    })
    .await;
    let report = check_live_report(&[]);
    assert!(
        drift_in_report(&report, &baseline)
            .iter()
            .any(|d| d.namespace == shop && d.check == "pod-security.labels"),
        "the label drift is still reported"
    );
    env.cleanup().await;
}
