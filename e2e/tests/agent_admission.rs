//! The node agent through the admission policy it ships with (config/agent/
//! admission_policy.yaml): the production ServiceAccount `kube-baseline-agent`, with a token
//! bound to a Pod on a node (the Pod exists with `nodeName` set and never runs: there is no
//! kubelet), may write only that node's NodeReport.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{NodeReport, NodeReportSpec};
use kube_baseline_e2e::*;

const AGENT_NAMESPACE: &str = "kube-baseline-agent";
const AGENT_SA: &str = "kube-baseline-agent";

/// Installs what config/agent ships for the agent's identity: namespace, ServiceAccount,
/// RBAC with its bindings, and the admission policy.
fn install_agent_identity() {
    for file in [
        "config/agent/namespace.yaml",
        "config/agent/service_account.yaml",
        "config/agent/rbac.yaml",
        "config/agent/admission_policy.yaml",
    ] {
        kubectl(&["apply", "--server-side", "--force-conflicts", "-f", file]);
    }
}

/// An agent Pod bound to `node` (it never runs here).
async fn agent_pod(env: &TestEnv, node: &str) -> Pod {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("agent-{node}")),
            namespace: Some(AGENT_NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(TEST_LABEL.to_string(), env.id.clone())])),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.to_string()),
            service_account_name: Some(AGENT_SA.to_string()),
            containers: vec![Container {
                name: "agent".to_string(),
                image: Some("kube-baseline:never-pulled".to_string()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        ..Pod::default()
    };
    Api::<Pod>::namespaced(env.admin.clone(), AGENT_NAMESPACE)
        .create(&PostParams::default(), &pod)
        .await
        .expect("create agent Pod")
}

/// A kubeconfig for the agent's ServiceAccount: its token bound to `pod`, or to nothing.
async fn agent_kubeconfig(env: &TestEnv, name: &str, pod: Option<&Pod>) -> std::path::PathBuf {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            bound_object_ref: pod.map(|pod| BoundObjectReference {
                api_version: Some("v1".to_string()),
                kind: Some("Pod".to_string()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            expiration_seconds: Some(3600),
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(env.admin.clone(), AGENT_NAMESPACE)
        .create_token_request(AGENT_SA, &PostParams::default(), &request)
        .await
        .expect("token request")
        .status
        .expect("token status")
        .token;
    token_kubeconfig(&format!("{}-{name}", env.id), &token)
}

/// Waits until the RBAC and the admission policy just applied are in force in the API
/// server (both are read from informers, so a first request can precede them): with the
/// bound token, a dry-run create of the own node's report is allowed and another node's is
/// refused by the policy.
async fn wait_until_in_force(bound: &std::path::Path, own: &str, other: &str) {
    let reports = Api::<NodeReport>::all(client_from_kubeconfig(bound).await);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let report = |node: &str| {
        NodeReport::new(
            node,
            NodeReportSpec {
                node_name: node.to_owned(),
                ..NodeReportSpec::default()
            },
        )
    };
    eventually(
        std::time::Duration::from_secs(30),
        "the agent's RBAC and admission policy in force",
        || async {
            let own_allowed = reports.create(&dry_run, &report(own)).await.is_ok();
            let other_refused = matches!(
                reports.create(&dry_run, &report(other)).await,
                Err(kube::Error::Api(status)) if status.message.contains("kube-baseline-agent-own-node-report")
            );
            (own_allowed && other_refused).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_agent_writes_only_the_report_of_the_node_its_pod_is_bound_to() {
    let env = TestEnv::new("agentvap").await;
    install_agent_identity();
    let own = env.create_node("own", &[]).await;
    let other = env.create_node("other", &[]).await;
    let pod = agent_pod(&env, &own).await;
    let bound = agent_kubeconfig(&env, "bound", Some(&pod)).await;
    let reports = Api::<NodeReport>::all(env.admin.clone());
    wait_until_in_force(&bound, &own, &other).await;

    // Its own node's report is written.
    let (ok, log) = run_agent_once(&bound, &own, &[]).await;
    assert!(ok, "own node's report refused: {log}");
    let report = reports.get(&own).await.expect("own NodeReport");
    assert_eq!(report.spec.node_name, own);

    // Another node's report is refused by the policy, in the API server.
    let (ok, log) = run_agent_once(&bound, &other, &[]).await;
    assert!(!ok, "another node's report was written: {log}");
    assert!(
        log.contains("kube-baseline-agent-own-node-report")
            && log.contains(&format!("may write only the NodeReport {own}")),
        "refused by the policy: {log}"
    );
    assert!(reports.get_opt(&other).await.expect("get").is_none());

    // A token bound to no Pod names no node: no report at all, not even the own node's.
    let unbound = agent_kubeconfig(&env, "unbound", None).await;
    let (ok, log) = run_agent_once(&unbound, &other, &[]).await;
    assert!(!ok, "a report written without a node-bound token: {log}");
    assert!(
        log.contains("bound to a node"),
        "refused by the policy: {log}"
    );
    assert!(reports.get_opt(&other).await.expect("get").is_none());

    // At once: no kubelet will confirm the Pod's end, and this control plane runs no pod
    // garbage collector, so a graceful delete would leave it (and so the agent's namespace,
    // when something deletes that) terminating for good.
    let _ = Api::<Pod>::namespaced(env.admin.clone(), AGENT_NAMESPACE)
        .delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
        .await;
    for node in [&own, &other] {
        let _ = Api::<Node>::all(env.admin.clone())
            .delete(node, &DeleteParams::default())
            .await;
        let _ = reports.delete(node, &DeleteParams::default()).await;
    }
    env.cleanup().await;
}
