//! RBAC least-privilege audit end to end: findings appear and clear with the right check
//! IDs, nothing of the user's is changed, and generated Roles grant exactly what is declared.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{DriftEntry, SecurityBaseline};
use kube_baseline_e2e::*;

const PROMPTLY: Duration = Duration::from_secs(2);
/// Status is written at most 3 times a minute (the write budget): a finding that clears
/// after a burst of changes may wait for the minute to pass.
const SETTLE: Duration = Duration::from_secs(75);

async fn drift(env: &TestEnv, baseline: &str) -> Vec<DriftEntry> {
    Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .ok()
        .and_then(|b| b.status)
        .map(|s| s.drift)
        .unwrap_or_default()
}

async fn wait_finding(
    env: &TestEnv,
    baseline: &str,
    namespace: &str,
    kind: &str,
    name: &str,
    check: &str,
    within: Duration,
) -> DriftEntry {
    eventually(
        within,
        &format!("finding {check} on {kind} {namespace}/{name}"),
        || async {
            drift(env, baseline).await.into_iter().find(|d| {
                d.namespace == namespace && d.kind == kind && d.name == name && d.check == check
            })
        },
    )
    .await
}

async fn wait_no_finding(env: &TestEnv, baseline: &str, name: &str, check: &str) {
    eventually(
        SETTLE,
        &format!("finding {check} on {name} to clear"),
        || async {
            (!drift(env, baseline)
                .await
                .iter()
                .any(|d| d.name == name && d.check == check))
            .then_some(())
        },
    )
    .await;
}

fn apply(manifest: &str) {
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "apply failed: {stderr}\n{manifest}");
}

async fn ready(env: &TestEnv, baseline: &str) {
    eventually(SETTLE, "the baseline to be Ready", || async {
        Api::<SecurityBaseline>::all(env.admin.clone())
            .get(baseline)
            .await
            .ok()?
            .status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_offending_role_is_reported_promptly_cleared_when_fixed_and_never_changed() {
    let env = TestEnv::new("rbr").await;
    let baseline = env.apply_baseline("b", "namespaceSelector: {}\n");
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[]).await;
    ready(&env, &baseline).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: too-much, namespace: {ns}}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: ['*']}}\n- {{apiGroups: [''], resources: [configmaps], verbs: [get]}}\n"
    ));
    let finding = wait_finding(
        &env,
        &baseline,
        &ns,
        "Role",
        "too-much",
        "rbac.wildcard",
        PROMPTLY,
    )
    .await;
    assert_eq!(finding.reason, kube_baseline::api::DriftReason::Violation);
    let roles: Api<Role> = Api::namespaced(env.admin.clone(), &ns);
    let version = roles
        .get("too-much")
        .await
        .expect("role")
        .resource_version();

    // A near miss stays quiet: get on configmaps and list on pods are fine.
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: too-much, namespace: {ns}}}\nrules:\n- {{apiGroups: [''], resources: [pods], verbs: [list]}}\n- {{apiGroups: [''], resources: [configmaps], verbs: [get]}}\n"
    ));
    let fixed_version = roles
        .get("too-much")
        .await
        .expect("role")
        .resource_version();
    assert_ne!(fixed_version, version);
    wait_no_finding(&env, &baseline, "too-much", "rbac.wildcard").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        drift(&env, &baseline)
            .await
            .iter()
            .all(|d| d.name != "too-much"),
        "no finding for a least-privilege role"
    );
    assert_eq!(
        roles
            .get("too-much")
            .await
            .expect("role")
            .resource_version(),
        fixed_version,
        "the user's Role is never changed"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn aggregated_cluster_roles_and_bindings_are_resolved() {
    let env = TestEnv::new("rba").await;
    let baseline = env.apply_baseline("b", "namespaceSelector: {}\n");
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[]).await;
    ready(&env, &baseline).await;
    let aggregate = env.name("aggregate");
    let part = env.name("part");
    let label = format!("e2e.kube-baseline.dev/aggregate-to-{}", env.id);
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {aggregate}, labels: {{{TEST_LABEL}: {id}}}}}\naggregationRule:\n  clusterRoleSelectors:\n  - matchLabels: {{{label}: 'true'}}\nrules: []\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {part}, labels: {{{label}: 'true', {TEST_LABEL}: {id}}}}}\nrules:\n- {{apiGroups: [rbac.authorization.k8s.io], resources: [roles], verbs: [escalate]}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: ci-aggregate, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {aggregate}}}\nsubjects: [{{kind: ServiceAccount, name: ci, namespace: {ns}}}]\n",
        id = env.id
    ));
    wait_finding(
        &env,
        &baseline,
        &ns,
        "RoleBinding",
        "ci-aggregate",
        "rbac.escalation-verbs",
        PROMPTLY * 5,
    )
    .await;

    // cluster-admin bound to a person in the namespace, and a ClusterRoleBinding whose
    // ServiceAccount lives there.
    let crb = env.name("reader");
    apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: alice-admin, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\nsubjects: [{{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {crb}, labels: {{{TEST_LABEL}: {id}}}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {part}}}\nsubjects: [{{kind: ServiceAccount, name: deployer, namespace: {ns}}}]\n",
        id = env.id
    ));
    // The status has been written several times this minute (Ready, the first finding):
    // when the two bindings' events are reconciled apart, the second finding waits for the
    // write budget (3 status writes a minute), as CI at 581011c once saw.
    wait_finding(
        &env,
        &baseline,
        &ns,
        "RoleBinding",
        "alice-admin",
        "rbac.admin-binding",
        SETTLE,
    )
    .await;
    wait_finding(
        &env,
        &baseline,
        &ns,
        "ClusterRoleBinding",
        &crb,
        "rbac.escalation-verbs",
        SETTLE,
    )
    .await;

    // Removing the aggregation label from the component clears the aggregate's finding.
    let cluster_roles: Api<ClusterRole> = Api::all(env.admin.clone());
    let unlabel = serde_json::json!({"metadata": {"labels": {label.clone(): null}}});
    cluster_roles
        .patch(&part, &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .expect("unlabel");
    wait_no_finding(&env, &baseline, "ci-aggregate", "rbac.escalation-verbs").await;
    let bindings: Api<RoleBinding> = Api::namespaced(env.admin.clone(), &ns);
    assert!(
        bindings
            .get_opt("alice-admin")
            .await
            .expect("get")
            .is_some(),
        "report only: bindings are never deleted"
    );
    // The aggregate is rewritten by kube-controller-manager's aggregation controller, never by us.
    let writes = writes_by(&service_account_user(&format!("op-{}", env.id)));
    assert!(
        writes
            .iter()
            .all(|w| w.object_ref.as_ref().is_none_or(|o| !matches!(
                o.resource.as_str(),
                "clusterroles" | "rolebindings" | "clusterrolebindings"
            ))),
        "the operator never writes RBAC it does not generate"
    );
    for name in [&aggregate, &part] {
        let _ = kubectl_result(&["delete", "clusterrole", name, "--wait=false"], None);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn a_generated_role_grants_exactly_what_the_baseline_declares() {
    let env = TestEnv::new("rbg").await;
    let baseline = env.apply_baseline(
        "b",
        "namespaceSelector: {matchLabels: {env: prod}}\nrbac:\n  roles:\n  - name: reader\n    rules:\n    - {apiGroups: [''], resources: [pods, configmaps], verbs: [get, list]}\n    - {apiGroups: [apps], resources: [deployments], verbs: [get]}\n",
    );
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    let other = env.create_namespace("other", &[]).await;
    let role = format!("baseline-{baseline}-reader");
    eventually(SETTLE, "the generated Role", || async {
        Api::<Role>::namespaced(env.admin.clone(), &ns)
            .get_opt(&role)
            .await
            .expect("get")
    })
    .await;
    apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: app, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: app-reader, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {role}}}\nsubjects: [{{kind: ServiceAccount, name: app, namespace: {ns}}}]\n"
    ));
    let subject = format!("system:serviceaccount:{ns}:app");
    let can = |verb: &str, resource: &str, namespace: &str| {
        let (_, stdout, _) = kubectl_result(
            &[
                "auth",
                "can-i",
                verb,
                resource,
                "-n",
                namespace,
                &format!("--as={subject}"),
            ],
            None,
        );
        stdout.trim() == "yes"
    };
    eventually(SETTLE, "the RoleBinding to take effect", || async {
        can("get", "pods", &ns).then_some(())
    })
    .await;
    for (verb, resource) in [
        ("get", "pods"),
        ("list", "pods"),
        ("get", "configmaps"),
        ("list", "configmaps"),
        ("get", "deployments.apps"),
    ] {
        assert!(can(verb, resource, &ns), "declared: {verb} {resource}");
    }
    for (verb, resource) in [
        ("watch", "pods"),
        ("delete", "pods"),
        ("create", "pods"),
        ("get", "secrets"),
        ("list", "deployments.apps"),
        ("get", "services"),
    ] {
        assert!(
            !can(verb, resource, &ns),
            "not declared, must be denied: {verb} {resource}"
        );
    }
    // Subresources are separate grants: kubectl reads "pods/exec" as a name, so ask with --subresource.
    for subresource in ["exec", "attach", "portforward", "log"] {
        let (_, stdout, _) = kubectl_result(
            &[
                "auth",
                "can-i",
                "create",
                "pods",
                "--subresource",
                subresource,
                "-n",
                &ns,
                &format!("--as={subject}"),
            ],
            None,
        );
        assert_eq!(stdout.trim(), "no", "pods/{subresource} is not declared");
    }
    assert!(
        !can("get", "pods", &other),
        "the Role grants nothing outside its namespace"
    );
    env.cleanup().await;
}
