//! What a baseline leaves behind: mode switches, unselected namespaces and deletion, in
//! both modes and for both onUnselect values. The rule under test (README, "Modes and
//! leaving"): the mode says what happens in the namespaces a baseline selects (Enforce
//! creates and repairs; Audit leaves everything as it is); onUnselect alone says what happens
//! when a namespace stops being selected or the baseline is deleted, in either mode (Delete
//! removes our objects and releases our labels; Retain keeps the objects, without our
//! ownerReference once the baseline is gone).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use kube_baseline::api::{FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecurityBaseline};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(30);
const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

/// A baseline selecting namespaces labelled `case: <case>`, with a Role, the default
/// NetworkPolicies and Pod Security labels.
fn spec(case: &str, mode: &str, on_unselect: &str) -> String {
    format!(
        "mode: {mode}\nonUnselect: {on_unselect}\nnamespaceSelector: {{matchLabels: {{case: {case}}}}}\n\
         podSecurity: {{enforce: restricted, warn: restricted}}\n\
         rbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [\"\"], resources: [pods], verbs: [get]}}\n"
    )
}

/// Our generated objects in a namespace: (kind, name) -> owner uids.
async fn ours(env: &TestEnv, namespace: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let params = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let owners = |refs: &[OwnerReference]| refs.iter().map(|r| r.uid.clone()).collect();
    let mut found = BTreeMap::new();
    for policy in Api::<NetworkPolicy>::namespaced(env.admin.clone(), namespace)
        .list(&params)
        .await
        .expect("list policies")
    {
        found.insert(
            ("NetworkPolicy".to_string(), policy.name_any()),
            owners(policy.owner_references()),
        );
    }
    for role in Api::<Role>::namespaced(env.admin.clone(), namespace)
        .list(&params)
        .await
        .expect("list roles")
    {
        found.insert(
            ("Role".to_string(), role.name_any()),
            owners(role.owner_references()),
        );
    }
    found
}

/// The namespace's labels, and the label keys our field manager owns on it.
async fn labels_and_ours(
    env: &TestEnv,
    namespace: &str,
) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let object = Api::<Namespace>::all(env.admin.clone())
        .get(namespace)
        .await
        .expect("namespace");
    let owned = object
        .managed_fields()
        .iter()
        .filter(|entry| entry.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(|entry| entry.fields_v1.as_ref())
        .filter_map(|fields| {
            fields
                .0
                .get("f:metadata")?
                .get("f:labels")?
                .as_object()
                .cloned()
        })
        .flat_map(|labels| {
            labels
                .keys()
                .map(|k| k.trim_start_matches("f:").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    (object.labels().clone(), owned)
}

async fn uid(env: &TestEnv, baseline: &str) -> String {
    Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .expect("baseline")
        .uid()
        .expect("uid")
}

/// Waits until the baseline is protecting `namespace`: 3 objects of ours and the label.
async fn wait_protected(env: &TestEnv, namespace: &str) {
    eventually(SETTLE, &format!("{namespace} protected"), || async {
        let objects = ours(env, namespace).await.len();
        let (labels, _) = labels_and_ours(env, namespace).await;
        (objects == 3 && labels.get(ENFORCE_LABEL).map(String::as_str) == Some("restricted"))
            .then_some(())
    })
    .await;
}

/// Waits until nothing of ours is left in `namespace`: no object, no Pod Security label,
/// no label owned by our field manager.
async fn wait_nothing_of_ours(env: &TestEnv, namespace: &str) {
    eventually(
        SETTLE,
        &format!("nothing of ours left in {namespace}"),
        || async {
            let objects = ours(env, namespace).await;
            let (labels, owned) = labels_and_ours(env, namespace).await;
            let pod_security: Vec<_> = labels
                .keys()
                .filter(|k| k.starts_with("pod-security."))
                .collect();
            (objects.is_empty() && pod_security.is_empty() && owned.is_empty()).then_some(())
        },
    )
    .await;
}

/// Switches a baseline's mode and waits until the operator has seen the new generation.
async fn switch(env: &TestEnv, case: &str, mode: &str, on_unselect: &str) {
    let name = env.apply_baseline(case, &spec(case, mode, on_unselect));
    let generation = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(&name)
        .await
        .expect("baseline")
        .metadata
        .generation;
    wait_baseline_status(&env.admin, &name, "the new generation observed", |s| {
        s.observed_generation == generation
    })
    .await;
}

/// A ConfigMap owned by the baseline: the garbage collector deletes it once the baseline is
/// gone, so its disappearance shows that the collector has acted on the deletion.
async fn gc_canary(env: &TestEnv, namespace: &str, baseline: &str) -> Api<ConfigMap> {
    let api = Api::<ConfigMap>::namespaced(env.admin.clone(), namespace);
    let canary = ConfigMap {
        metadata: ObjectMeta {
            name: Some("gc-canary".to_string()),
            owner_references: Some(vec![OwnerReference {
                api_version: "kube-baseline.dev/v1alpha1".to_string(),
                kind: "SecurityBaseline".to_string(),
                name: baseline.to_string(),
                uid: uid(env, baseline).await,
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    api.create(&PostParams::default(), &canary)
        .await
        .expect("canary");
    api
}

#[tokio::test]
async fn deleting_a_baseline_in_either_mode_deletes_or_retains_as_on_unselect_says() {
    let env = TestEnv::new("life").await;
    let cases = [
        ("enf-del", "Enforce", "Delete"),
        ("enf-ret", "Enforce", "Retain"),
        ("aud-del", "Audit", "Delete"),
        ("aud-ret", "Audit", "Retain"),
    ];
    let _operator = Operator::start(&env, &[]).await;
    let mut namespaces = BTreeMap::new();
    for (case, _, on_unselect) in cases {
        env.apply_baseline(case, &spec(case, "Enforce", on_unselect));
        namespaces.insert(case, env.create_namespace(case, &[("case", case)]).await);
    }
    for namespace in namespaces.values() {
        wait_protected(&env, namespace).await;
    }
    // Enforce -> Audit leaves everything of ours as it is.
    let mut before = BTreeMap::new();
    for (case, mode, on_unselect) in cases {
        if mode == "Audit" {
            switch(&env, case, mode, on_unselect).await;
        }
        before.insert(case, ours(&env, &namespaces[case]).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (case, mode, _) in cases {
        let namespace = &namespaces[case];
        assert_eq!(
            ours(&env, namespace).await,
            before[case],
            "{case}: objects kept as they were"
        );
        let (labels, owned) = labels_and_ours(&env, namespace).await;
        assert_eq!(
            labels.get(ENFORCE_LABEL).map(String::as_str),
            Some("restricted"),
            "{case} ({mode}): the label stays"
        );
        assert!(
            owned.contains(ENFORCE_LABEL),
            "{case}: still ours: {owned:?}"
        );
    }

    let baselines = Api::<SecurityBaseline>::all(env.admin.clone());
    let mut canaries = Vec::new();
    for (case, _, _) in cases {
        let name = env.name(case);
        canaries.push(gc_canary(&env, &namespaces[case], &name).await);
        baselines
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete");
    }
    for (case, _, _) in cases {
        let name = env.name(case);
        eventually(SETTLE, &format!("{name} gone"), || async {
            baselines
                .get_opt(&name)
                .await
                .expect("get")
                .is_none()
                .then_some(())
        })
        .await;
    }
    for canary in &canaries {
        eventually(SETTLE, "the garbage collector to act", || async {
            canary
                .get_opt("gc-canary")
                .await
                .expect("get")
                .is_none()
                .then_some(())
        })
        .await;
    }
    for (case, mode, on_unselect) in cases {
        let namespace = &namespaces[case];
        if on_unselect == "Delete" {
            wait_nothing_of_ours(&env, namespace).await;
            continue;
        }
        let kept = ours(&env, namespace).await;
        assert_eq!(
            kept.keys().collect::<Vec<_>>(),
            before[case].keys().collect::<Vec<_>>(),
            "{case} ({mode}, Retain): every generated object kept"
        );
        assert!(
            kept.values().all(BTreeSet::is_empty),
            "{case}: our ownerReference dropped: {kept:?}"
        );
        let (labels, owned) = labels_and_ours(&env, namespace).await;
        assert!(
            !labels.contains_key(ENFORCE_LABEL) && owned.is_empty(),
            "{case}: Pod Security labels released on leaving, Retain or not: {labels:?} {owned:?}"
        );
    }
    env.cleanup().await;
}

#[tokio::test]
async fn mode_cycles_then_unselect_or_delete_leave_nothing_of_ours() {
    let env = TestEnv::new("cycle").await;
    let case = "cyc";
    let name = env.apply_baseline(case, &spec(case, "Enforce", "Delete"));
    let _operator = Operator::start(&env, &[]).await;
    let first = env.create_namespace("n1", &[("case", case)]).await;
    let second = env.create_namespace("n2", &[("case", case)]).await;
    let third = env.create_namespace("n3", &[("case", case)]).await;
    for namespace in [&first, &second, &third] {
        wait_protected(&env, namespace).await;
    }

    // Enforce -> Audit; a namespace unselected while in Audit is left clean (onUnselect).
    switch(&env, case, "Audit", "Delete").await;
    kubectl(&["label", "namespace", &third, "case-"]);
    wait_nothing_of_ours(&env, &third).await;
    for namespace in [&first, &second] {
        let (labels, _) = labels_and_ours(&env, namespace).await;
        assert_eq!(
            labels.get(ENFORCE_LABEL).map(String::as_str),
            Some("restricted")
        );
        assert_eq!(ours(&env, namespace).await.len(), 3);
    }

    // Audit -> Enforce, then unselect and delete: nothing of ours stays.
    switch(&env, case, "Enforce", "Delete").await;
    wait_protected(&env, &first).await;
    kubectl(&["label", "namespace", &first, "case-"]);
    wait_nothing_of_ours(&env, &first).await;
    // Still nothing a moment later (no late re-apply).
    tokio::time::sleep(Duration::from_secs(2)).await;
    wait_nothing_of_ours(&env, &first).await;

    Api::<SecurityBaseline>::all(env.admin.clone())
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete");
    wait_nothing_of_ours(&env, &second).await;
    env.cleanup().await;
}

/// A selector Kubernetes rejects (a malformed label key: the CRD admits it) selects nothing
/// in our code; acting on that would release every namespace. The baseline is held like one
/// this version cannot read: everything of ours stays until the selector is fixed.
#[tokio::test]
async fn a_baseline_whose_selector_kubernetes_rejects_releases_nothing() {
    let env = TestEnv::new("lifesel").await;
    let case = env.name("sel");
    let namespace = env.create_namespace("sel", &[("case", &case)]).await;
    let name = env.apply_baseline("sel", &spec(&case, "Enforce", "Delete"));
    let operator = Operator::start(&env, &[]).await;
    wait_protected(&env, &namespace).await;
    let before = (
        ours(&env, &namespace).await,
        labels_and_ours(&env, &namespace).await,
    );

    let malformed = spec(&case, "Enforce", "Delete").replace(
        &format!("matchLabels: {{case: {case}}}"),
        &format!("matchLabels: {{case: {case}, 'bad key': x}}"),
    );
    env.apply_baseline("sel", &malformed);
    let refused = || {
        operator
            .log_text()
            .contains("spec.namespaceSelector is invalid")
    };
    let seen = std::time::Instant::now();
    while !refused() && seen.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a (wrong) release to happen, had it been planned.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = (
        ours(&env, &namespace).await,
        labels_and_ours(&env, &namespace).await,
    );
    assert_eq!(held, before, "nothing of ours released or changed");
    assert!(refused(), "the operator's log names the invalid selector");
    // check --live does not evaluate it either (it would report the objects the controller
    // holds as unwanted), and says so.
    let check = std::process::Command::new(operator_binary())
        .args(["check", "--live", "-o", "json"])
        .output()
        .expect("check runs");
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        matches!(check.status.code(), Some(0 | 1))
            && stderr.contains(&format!("SecurityBaseline {name} is not evaluated")),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).expect("json");
    assert!(
        report["baselines"]
            .as_array()
            .expect("baselines")
            .iter()
            .all(|b| b["name"] != name.as_str()),
        "{report}"
    );

    // Fixed, to a valid selector that no longer selects the namespace: released as usual.
    env.apply_baseline(
        "sel",
        &spec(&case, "Enforce", "Delete").replace(&format!("case: {case}"), "case: nowhere"),
    );
    wait_nothing_of_ours(&env, &namespace).await;
    assert!(
        uid(&env, &name).await.len() > 1,
        "the baseline itself is still there"
    );
    drop(operator);
    env.cleanup().await;
}
