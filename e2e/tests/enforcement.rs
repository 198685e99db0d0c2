//! Namespace enforcement end to end: the operator binary, out of cluster, with its own
//! ServiceAccount identity bound to config/rbac, against the local control plane.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{DriftReason, FIELD_MANAGER, SecurityBaseline, SecurityBaselineStatus};
use kube_baseline_e2e::*;

/// Generous bound for "within a second" behaviour: catches hangs, not slowness.
const PROMPTLY: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(30);

const PROD: &str = "namespaceSelector: {matchLabels: {env: prod}}\n";

async fn wait_ready(env: &TestEnv, baseline: &str) -> SecurityBaselineStatus {
    wait_baseline_status(&env.admin, baseline, "the baseline to be Ready", |s| {
        condition_status(s, "Ready") == "True"
    })
    .await
}

fn policies(env: &TestEnv, namespace: &str) -> Api<NetworkPolicy> {
    Api::namespaced(env.admin.clone(), namespace)
}

async fn policy_names(env: &TestEnv, namespace: &str) -> Vec<String> {
    let mut names: Vec<_> = policies(env, namespace)
        .list(&Default::default())
        .await
        .expect("list policies")
        .into_iter()
        .map(|p| p.name_any())
        .collect();
    names.sort();
    names
}

async fn live_namespace(env: &TestEnv, namespace: &str) -> Namespace {
    Api::<Namespace>::all(env.admin.clone())
        .get(namespace)
        .await
        .expect("namespace")
}

async fn namespace_labels(env: &TestEnv, namespace: &str) -> BTreeMap<String, String> {
    live_namespace(env, namespace).await.labels().clone()
}

/// Whether our field manager owns a Pod Security label of the namespace.
async fn pod_security_labels_of_ours(env: &TestEnv, namespace: &str) -> bool {
    live_namespace(env, namespace)
        .await
        .managed_fields()
        .iter()
        .filter(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|entry| {
            entry
                .fields_v1
                .as_ref()?
                .0
                .get("f:metadata")?
                .get("f:labels")
        })
        .filter_map(serde_json::Value::as_object)
        .any(|labels| {
            labels
                .keys()
                .any(|k| k.starts_with("f:pod-security.kubernetes.io/"))
        })
}

async fn wait_policies(env: &TestEnv, namespace: &str, expected: &[String], within: Duration) {
    let mut expected = expected.to_vec();
    expected.sort();
    eventually(
        within,
        &format!("policies {expected:?} in {namespace}"),
        || async {
            let names = policy_names(env, namespace).await;
            expected.iter().all(|e| names.contains(e)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_new_selected_namespace_is_protected_promptly_and_others_get_nothing() {
    let env = TestEnv::new("sel").await;
    let baseline = env.apply_baseline("b", &format!("{PROD}podSecurity: {{enforce: restricted}}\nrbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [\"\"], resources: [pods], verbs: [get, list]}}\n"));
    let _operator = Operator::start(&env, &[]).await;
    wait_ready(&env, &baseline).await;

    let started = Instant::now();
    let prod = env.create_namespace("prod", &[("env", "prod")]).await;
    let other = env.create_namespace("dev", &[("env", "dev")]).await;
    let deny = format!("baseline-{baseline}-deny-all");
    let dns = format!("baseline-{baseline}-allow-dns");
    wait_policies(&env, &prod, &[deny.clone(), dns.clone()], PROMPTLY).await;
    let role = format!("baseline-{baseline}-reader");
    eventually(PROMPTLY, "the Role and the Pod Security label", || async {
        let role_exists = Api::<Role>::namespaced(env.admin.clone(), &prod)
            .get_opt(&role)
            .await
            .expect("get")
            .is_some();
        let labelled = namespace_labels(&env, &prod)
            .await
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str)
            == Some("restricted");
        (role_exists && labelled).then_some(())
    })
    .await;
    eprintln!("new namespace protected in {:?}", started.elapsed());

    let generated = policies(&env, &prod).get(&deny).await.expect("deny-all");
    assert_eq!(
        generated
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("kube-baseline")
    );
    assert_eq!(
        generated.labels().get("kube-baseline.dev/baseline"),
        Some(&baseline)
    );
    let owner = &generated.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SecurityBaseline", baseline.as_str())
    );
    let spec = generated.spec.expect("spec");
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".to_string(), "Egress".to_string()])
    );
    assert!(
        spec.ingress.is_none() && spec.egress.is_none(),
        "deny-all allows nothing"
    );

    // The unselected namespace got nothing, and nothing is about to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(policy_names(&env, &other).await.is_empty());
    assert!(
        !namespace_labels(&env, &other)
            .await
            .contains_key("pod-security.kubernetes.io/enforce")
    );
    let status = wait_baseline_status(&env.admin, &baseline, "1 namespace selected", |s| {
        s.summary.namespaces_selected == 1 && condition_status(s, "Ready") == "True"
    })
    .await;
    assert_eq!(condition_status(&status, "Compliant"), "True");
    env.cleanup().await;
}

#[tokio::test]
async fn a_spec_change_re_plans_every_selected_namespace() {
    let env = TestEnv::new("replan").await;
    let role = |name: &str| {
        format!(
            "  - name: {name}\n    rules:\n    - {{apiGroups: [\"\"], resources: [pods], verbs: [get]}}\n"
        )
    };
    let spec = |roles: &[&str]| {
        let roles: String = roles.iter().map(|r| role(r)).collect();
        format!("{PROD}rbac:\n  roles:\n{roles}")
    };
    let baseline = env.apply_baseline("b", &spec(&["first"]));
    let mut namespaces = Vec::new();
    for i in 0..30 {
        namespaces.push(
            env.create_namespace(&format!("p{i}"), &[("env", "prod")])
                .await,
        );
    }
    // Two at a time: the re-plan is released from its backlog two by two (see
    // controller/reconcile/replan.rs), so all 30 go through it.
    let _operator = Operator::start(&env, &["--concurrency", "2"]).await;
    wait_baseline_status(&env.admin, &baseline, "30 namespaces reconciled", |s| {
        s.summary.namespaces_selected == 30 && condition_status(s, "Ready") == "True"
    })
    .await;

    env.apply_baseline("b", &spec(&["first", "second"]));
    let second = format!("baseline-{baseline}-second");
    eventually(
        SETTLE,
        "the new Role in every selected namespace",
        || async {
            for namespace in &namespaces {
                Api::<Role>::namespaced(env.admin.clone(), namespace)
                    .get_opt(&second)
                    .await
                    .expect("get")?;
            }
            Some(())
        },
    )
    .await;
    let status = wait_baseline_status(&env.admin, &baseline, "the new generation observed", |s| {
        s.observed_generation == Some(2) && condition_status(s, "Ready") == "True"
    })
    .await;
    assert_eq!(status.summary.namespaces_selected, 30);
    assert_eq!(condition_status(&status, "Compliant"), "True");
    env.cleanup().await;
}

/// We create a generated object with a plain create (its fields under an `Update` entry of
/// our field manager) and change it later by server-side apply: a field the baseline no
/// longer sets must go, which an apply does only for fields its own entry owns. The
/// operator moves the create's fields to its apply entry before the first apply.
#[tokio::test]
async fn a_field_dropped_from_the_baseline_is_removed_from_an_object_we_created() {
    let env = TestEnv::new("drop").await;
    let spec = |hard: &str| format!("{PROD}resourceQuota:\n  hard: {{{hard}}}\n");
    let baseline = env.apply_baseline("b", &spec("pods: \"10\", services: \"5\""));
    let namespace = env.create_namespace("q", &[("env", "prod")]).await;
    let _operator = Operator::start(&env, &[]).await;
    let quotas = Api::<ResourceQuota>::namespaced(env.admin.clone(), &namespace);
    let name = format!("baseline-{baseline}-quota");
    let hard_keys = |quota: &ResourceQuota| -> Vec<String> {
        quota
            .spec
            .as_ref()
            .and_then(|s| s.hard.as_ref())
            .map(|hard| hard.keys().cloned().collect())
            .unwrap_or_default()
    };
    let created = eventually(SETTLE, "the quota created", || async {
        quotas.get_opt(&name).await.expect("get quota")
    })
    .await;
    assert_eq!(hard_keys(&created), ["pods", "services"]);
    let ours: Vec<_> = created
        .managed_fields()
        .iter()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|e| e.operation.clone())
        .collect();
    assert_eq!(ours, ["Update"], "created by a plain create");

    env.apply_baseline("b", &spec("pods: \"10\""));
    let after = eventually(SETTLE, "services dropped from the quota", || async {
        let quota = quotas.get(&name).await.expect("get quota");
        (hard_keys(&quota) == ["pods"]).then_some(quota)
    })
    .await;
    let ours: Vec<_> = after
        .managed_fields()
        .iter()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|e| e.operation.clone())
        .collect();
    assert_eq!(
        ours,
        ["Apply"],
        "the create's fields taken over by the apply entry"
    );
    let status = wait_baseline_status(&env.admin, &baseline, "the new generation compliant", |s| {
        s.observed_generation == Some(2) && condition_status(s, "Compliant") == "True"
    })
    .await;
    assert!(status.drift.is_empty(), "no drift left: {:?}", status.drift);
    env.cleanup().await;
}

#[tokio::test]
async fn system_namespaces_are_never_selected() {
    let env = TestEnv::new("sys").await;
    // Let this test's operator see kube-system and its own namespace; the baseline selects all.
    for system in ["kube-system", OPERATOR_NAMESPACE] {
        kubectl(&[
            "label",
            "namespace",
            system,
            &format!("{TEST_LABEL}={}", env.id),
            "--overwrite",
        ]);
    }
    let baseline = env.apply_baseline(
        "all",
        "namespaceSelector: {}\npodSecurity: {enforce: restricted}\n",
    );
    let _operator = Operator::start(&env, &[]).await;
    let app = env.create_namespace("app", &[]).await;
    wait_policies(
        &env,
        &app,
        &[format!("baseline-{baseline}-deny-all")],
        SETTLE,
    )
    .await;
    let status = wait_ready(&env, &baseline).await;
    assert_eq!(
        status.summary.namespaces_selected, 1,
        "only the app namespace is selected"
    );
    for system in ["kube-system", OPERATOR_NAMESPACE] {
        let names = policy_names(&env, system).await;
        assert!(
            names
                .iter()
                .all(|n| !n.starts_with(&format!("baseline-{baseline}"))),
            "{system} got {names:?}"
        );
        // By us: an install of the operator (the Helm chart's namespace) sets restricted
        // Pod Security labels on its own namespace, under another field manager.
        assert!(
            !pod_security_labels_of_ours(&env, system).await,
            "{system} got a Pod Security label from the operator"
        );
        kubectl(&["label", "namespace", system, &format!("{TEST_LABEL}-")]);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn deleted_or_edited_objects_are_restored_in_enforce_mode() {
    let env = TestEnv::new("fix").await;
    let baseline = env.apply_baseline("b", PROD);
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    let deny = format!("baseline-{baseline}-deny-all");
    let dns = format!("baseline-{baseline}-allow-dns");
    wait_policies(&env, &ns, &[deny.clone(), dns.clone()], SETTLE).await;
    wait_ready(&env, &baseline).await;

    let api = policies(&env, &ns);
    let old_uid = api.get(&deny).await.expect("deny").uid();
    api.delete(&deny, &DeleteParams::default())
        .await
        .expect("delete deny-all");
    let started = Instant::now();
    eventually(PROMPTLY, "deny-all to be recreated", || async {
        api.get_opt(&deny)
            .await
            .expect("get")
            .filter(|p| p.uid() != old_uid)
            .map(|_| ())
    })
    .await;
    eprintln!("deleted policy restored in {:?}", started.elapsed());

    let edit = serde_json::json!({"spec": {"ingress": [{}]}});
    api.patch(&dns, &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("edit allow-dns");
    eventually(PROMPTLY, "allow-dns to be reverted", || async {
        let policy = api.get(&dns).await.expect("get");
        policy
            .spec
            .and_then(|s| s.ingress)
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;
    let status = wait_baseline_status(&env.admin, &baseline, "repairs to be counted", |s| {
        s.summary.repairs >= 2
    })
    .await;
    assert_eq!(
        condition_status(&status, "Compliant"),
        "True",
        "repaired drift is not outstanding"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn audit_mode_writes_nothing_and_reports_drift() {
    let env = TestEnv::new("aud").await;
    let baseline = env.apply_baseline(
        "b",
        &format!("mode: Audit\n{PROD}podSecurity: {{enforce: baseline}}\n"),
    );
    let operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    let status = wait_baseline_status(
        &env.admin,
        &baseline,
        "drift for the audited namespace",
        |s| s.drift_total >= 3 && condition_status(s, "Ready") == "True",
    )
    .await;
    assert_eq!(condition_status(&status, "Compliant"), "False");
    let reasons: Vec<_> = status
        .drift
        .iter()
        .map(|d| {
            (
                d.namespace.as_str(),
                d.kind.as_str(),
                d.check.as_str(),
                d.reason,
            )
        })
        .collect();
    assert!(
        reasons.contains(&(
            ns.as_str(),
            "NetworkPolicy",
            "network.default-deny",
            DriftReason::Missing
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            ns.as_str(),
            "NetworkPolicy",
            "network.allow-dns",
            DriftReason::Missing
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            ns.as_str(),
            "Namespace",
            "pod-security.labels",
            DriftReason::Missing
        )),
        "{reasons:?}"
    );
    assert!(
        policy_names(&env, &ns).await.is_empty(),
        "Audit mode created nothing"
    );
    assert!(
        !namespace_labels(&env, &ns)
            .await
            .contains_key("pod-security.kubernetes.io/enforce")
    );
    let baseline_object = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(&baseline)
        .await
        .expect("baseline");
    assert!(
        baseline_object.finalizers().is_empty(),
        "Audit mode takes no finalizer"
    );
    // Every write the operator made is to the baseline's status or an Event.
    let writes = writes_by(&operator.user);
    assert!(!writes.is_empty(), "the status was written");
    for write in &writes {
        let object = write.object_ref.as_ref().expect("object ref");
        let allowed = (object.resource == "securitybaselines" && object.subresource == "status")
            || object.resource == "events";
        assert!(allowed, "Audit mode wrote {} {:?}", write.verb, object);
    }
    env.cleanup().await;
}

#[tokio::test]
async fn unselecting_deletes_or_retains_and_shared_labels_stay() {
    let env = TestEnv::new("uns").await;
    let deleting = env.apply_baseline("del", "namespaceSelector: {matchLabels: {tier: a}}\npodSecurity: {enforce: restricted, warn: restricted}\n");
    let retaining = env.apply_baseline(
        "ret",
        "namespaceSelector: {matchLabels: {tier: b}}\nonUnselect: Retain\n",
    );
    let _operator = Operator::start(&env, &[]).await;
    let a = env.create_namespace("a", &[("tier", "a")]).await;
    let b = env.create_namespace("b", &[("tier", "b")]).await;
    wait_policies(&env, &a, &[format!("baseline-{deleting}-deny-all")], SETTLE).await;
    wait_policies(
        &env,
        &b,
        &[format!("baseline-{retaining}-deny-all")],
        SETTLE,
    )
    .await;
    eventually(SETTLE, "Pod Security labels on a", || async {
        (namespace_labels(&env, &a)
            .await
            .get("pod-security.kubernetes.io/warn")
            .map(String::as_str)
            == Some("restricted"))
        .then_some(())
    })
    .await;
    // Another team also sets the warn label (same value) with server-side apply: they co-own it.
    let theirs = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {a}\n  labels:\n    pod-security.kubernetes.io/warn: restricted\n"
    );
    let (ok, _, stderr) = kubectl_result(
        &[
            "apply",
            "--server-side",
            "--field-manager=platform-team",
            "-f",
            "-",
        ],
        Some(&theirs),
    );
    assert!(ok, "{stderr}");

    kubectl(&["label", "namespace", &a, "tier-"]);
    kubectl(&["label", "namespace", &b, "tier-"]);
    eventually(SETTLE, "a's generated objects to be deleted", || async {
        policy_names(&env, &a).await.is_empty().then_some(())
    })
    .await;
    eventually(SETTLE, "our enforce label released from a", || async {
        let labels = namespace_labels(&env, &a).await;
        (!labels.contains_key("pod-security.kubernetes.io/enforce")).then_some(labels)
    })
    .await;
    let labels = namespace_labels(&env, &a).await;
    assert_eq!(
        labels
            .get("pod-security.kubernetes.io/warn")
            .map(String::as_str),
        Some("restricted"),
        "a label someone else also set stays"
    );
    // Retain: b keeps its objects.
    wait_baseline_status(&env.admin, &retaining, "b no longer selected", |s| {
        s.summary.namespaces_selected == 0
    })
    .await;
    assert_eq!(
        policy_names(&env, &b).await.len(),
        2,
        "Retain keeps the generated objects"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn objects_that_are_not_ours_are_never_touched() {
    let env = TestEnv::new("own").await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    let baseline_name = env.name("b");
    let api = policies(&env, &ns);
    let user_policy: NetworkPolicy = serde_saphyr::from_str(&format!(
        "metadata: {{name: my-policy, namespace: {ns}}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress], ingress: [{{}}]}}"
    ))
    .expect("policy");
    let squatter: NetworkPolicy = serde_saphyr::from_str(&format!(
        "metadata: {{name: baseline-{baseline_name}-allow-dns, namespace: {ns}, labels: {{team: shop}}}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}"
    ))
    .expect("policy");
    let user_rv = api
        .create(&PostParams::default(), &user_policy)
        .await
        .expect("user policy")
        .resource_version();
    let squatter_rv = api
        .create(&PostParams::default(), &squatter)
        .await
        .expect("squatter")
        .resource_version();

    let baseline = env.apply_baseline("b", PROD);
    assert_eq!(baseline, baseline_name);
    let _operator = Operator::start(&env, &[]).await;
    wait_policies(
        &env,
        &ns,
        &[format!("baseline-{baseline}-deny-all")],
        SETTLE,
    )
    .await;
    let status = wait_baseline_status(&env.admin, &baseline, "the Conflict in status", |s| {
        s.drift.iter().any(|d| d.reason == DriftReason::Conflict)
    })
    .await;
    let conflict = status
        .drift
        .iter()
        .find(|d| d.reason == DriftReason::Conflict)
        .expect("conflict");
    assert_eq!(conflict.name, format!("baseline-{baseline}-allow-dns"));
    assert_eq!(condition_status(&status, "Compliant"), "False");

    // Deleting the baseline removes its own objects only.
    Api::<SecurityBaseline>::all(env.admin.clone())
        .delete(&baseline, &DeleteParams::default())
        .await
        .expect("delete baseline");
    eventually(SETTLE, "the baseline to be gone", || async {
        Api::<SecurityBaseline>::all(env.admin.clone())
            .get_opt(&baseline)
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(
        api.get("my-policy")
            .await
            .expect("user policy kept")
            .resource_version(),
        user_rv,
        "user policy untouched"
    );
    assert_eq!(
        api.get(&format!("baseline-{baseline}-allow-dns"))
            .await
            .expect("squatter kept")
            .resource_version(),
        squatter_rv,
        "unlabelled object with a generated name untouched"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn two_baselines_share_a_namespace_with_the_strictest_level() {
    let env = TestEnv::new("two").await;
    let loose = env.apply_baseline(
        "loose",
        &format!("{PROD}podSecurity: {{enforce: baseline}}\n"),
    );
    let strict = env.apply_baseline("strict", &format!("{PROD}podSecurity: {{enforce: restricted}}\nnetworkPolicy: {{defaultDeny: {{ingress: true, egress: false}}}}\n"));
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    wait_policies(
        &env,
        &ns,
        &[
            format!("baseline-{loose}-deny-all"),
            format!("baseline-{loose}-allow-dns"),
            format!("baseline-{strict}-deny-all"),
        ],
        SETTLE,
    )
    .await;
    eventually(SETTLE, "the strictest level", || async {
        (namespace_labels(&env, &ns)
            .await
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str)
            == Some("restricted"))
        .then_some(())
    })
    .await;
    for (me, other) in [(&loose, &strict), (&strict, &loose)] {
        let status =
            wait_baseline_status(&env.admin, me, "both baselines to report sharing", |s| {
                condition_status(s, "Ready") == "True"
                    && s.conditions
                        .iter()
                        .any(|c| c.type_ == "Compliant" && c.message.contains(other.as_str()))
            })
            .await;
        assert_eq!(
            condition_status(&status, "Compliant"),
            "True",
            "a stricter level is not drift for {me}"
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn deleting_a_baseline_removes_its_objects_and_labels_and_releases_the_finalizer() {
    let env = TestEnv::new("del").await;
    let baseline = env.apply_baseline(
        "b",
        &format!("{PROD}podSecurity: {{enforce: restricted}}\n"),
    );
    let _operator = Operator::start(&env, &[]).await;
    let ns = env.create_namespace("ns", &[("env", "prod")]).await;
    wait_policies(
        &env,
        &ns,
        &[format!("baseline-{baseline}-deny-all")],
        SETTLE,
    )
    .await;
    let baselines: Api<SecurityBaseline> = Api::all(env.admin.clone());
    eventually(SETTLE, "the finalizer", || async {
        baselines
            .get(&baseline)
            .await
            .expect("get")
            .finalizers()
            .iter()
            .any(|f| f == "kube-baseline.dev/cleanup")
            .then_some(())
    })
    .await;
    eventually(SETTLE, "the label", || async {
        namespace_labels(&env, &ns)
            .await
            .contains_key("pod-security.kubernetes.io/enforce")
            .then_some(())
    })
    .await;
    baselines
        .delete(&baseline, &DeleteParams::default())
        .await
        .expect("delete");
    eventually(
        SETTLE,
        "the baseline to be gone (finalizer released)",
        || async {
            baselines
                .get_opt(&baseline)
                .await
                .expect("get")
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        policy_names(&env, &ns).await.is_empty(),
        "objects removed before the finalizer was released"
    );
    assert!(
        !namespace_labels(&env, &ns)
            .await
            .contains_key("pod-security.kubernetes.io/enforce"),
        "label removed"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_restarted_operator_on_a_converged_cluster_writes_nothing() {
    let env = TestEnv::new("rst").await;
    let baseline = env.apply_baseline("b", &format!("{PROD}podSecurity: {{enforce: restricted}}\nrbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [\"\"], resources: [pods], verbs: [get]}}\nresourceQuota:\n  hard: {{pods: 10, requests.cpu: '0.5'}}\n  limits: {{default: {{cpu: 500m}}}}\n"));
    let operator = Operator::start(&env, &[]).await;
    for i in 0..3 {
        env.create_namespace(&format!("ns{i}"), &[("env", "prod")])
            .await;
    }
    wait_baseline_status(&env.admin, &baseline, "3 namespaces converged", |s| {
        s.summary.namespaces_selected == 3
            && condition_status(s, "Ready") == "True"
            && condition_status(s, "Compliant") == "True"
    })
    .await;
    let user = operator.user.clone();
    let kubeconfig = operator.kubeconfig.clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = operator.stop(Duration::from_secs(10));
    assert!(status.success(), "graceful exit on SIGTERM: {status:?}");
    let before = writes_by(&user).len();

    let restarted = Operator::start_with(&env, &format!("op-{}", env.id), &kubeconfig, &[]);
    // Until its own metrics say it has reconciled every namespace and the baseline (so the
    // count below covers a whole pass, not an operator still starting).
    let metrics = format!("{}/metrics", restarted.http_url().await);
    eventually(SETTLE, "the restarted operator to reconcile everything", || async {
        let (_, exposition) = http_get(&metrics);
        let reconciled = |controller: &str| {
            metric_value(
                &exposition,
                &format!(
                    "controller_runtime_reconcile_total{{controller=\"{controller}\",result=\"success\"}}"
                ),
            )
            .unwrap_or_default()
        };
        (reconciled("namespace") >= 3.0 && reconciled("securitybaseline") >= 1.0).then_some(())
    })
    .await;
    // A write made by those reconciles reaches the audit log within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = writes_by(&user);
    let new_writes: Vec<_> = after[before..]
        .iter()
        .map(|w| (w.verb.clone(), w.request_uri.clone()))
        .collect();
    assert!(
        new_writes.is_empty(),
        "a restart on a converged cluster must not write: {new_writes:#?}"
    );
    drop(restarted);
    env.cleanup().await;
}

#[tokio::test]
async fn invalid_baselines_are_rejected_and_kubectl_wait_works() {
    let env = TestEnv::new("adm").await;
    for (spec, message) in [
        (
            "rbac:\n  roles:\n  - name: r\n    rules:\n    - {apiGroups: [''], resources: [pods], verbs: [escalate]}\n",
            "escalate, bind and impersonate",
        ),
        ("podSecurity: {enforce: strict}\n", "podSecurity"),
        (
            "rbac:\n  roles:\n  - name: r\n    rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n  - name: r\n    rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n",
            "role names must be unique",
        ),
    ] {
        let manifest = format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata: {{name: {}}}\nspec:\n{}",
            env.name("bad"),
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
        assert!(
            !ok && stderr.contains(message),
            "expected rejection with {message:?}, got ok={ok} {stderr}"
        );
    }
    let baseline = env.apply_baseline("ok", PROD);
    let _operator = Operator::start(&env, &[]).await;
    env.create_namespace("ns", &[("env", "prod")]).await;
    let output = kubectl(&[
        "wait",
        "--for=condition=Ready",
        &format!("sbl/{baseline}"),
        "--timeout=60s",
    ]);
    assert!(output.contains("condition met"), "{output}");
    let printed = kubectl(&["get", "sbl", &baseline]);
    assert!(
        printed.contains("READY") && printed.contains("COMPLIANT") && printed.contains("DRIFT"),
        "{printed}"
    );
    env.cleanup().await;
}
