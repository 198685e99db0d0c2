//! Events on the baseline: a repair is `Repaired`, drift that appears and stays is
//! `DriftDetected`, each naming the namespace and object. (A restart emits none: the restart
//! test in enforcement.rs finds no write at all, Events included.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use kube::Api;
use kube::api::DeleteParams;
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_repair_and_new_drift_are_events_naming_what_happened() {
    let env = TestEnv::new("evt").await;
    let enforcing = env.apply_baseline("enf", "namespaceSelector: {matchLabels: {evt: enf}}\n");
    let auditing = env.apply_baseline(
        "aud",
        "mode: Audit\nnamespaceSelector: {matchLabels: {evt: aud}}\n",
    );
    let _operator = Operator::start(&env, &[]).await;
    let repaired_ns = env.create_namespace("r", &[("evt", "enf")]).await;
    let policy = format!("baseline-{enforcing}-deny-all");
    let policies = Api::<NetworkPolicy>::namespaced(env.admin.clone(), &repaired_ns);
    eventually(SETTLE, "the generated policy", || async {
        policies.get_opt(&policy).await.expect("get")
    })
    .await;
    policies
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("delete the generated policy");
    let repaired = eventually(SETTLE, "a Repaired Event", || async {
        events_about(&env, &enforcing)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "Repaired")
    })
    .await;
    assert!(
        repaired.1.contains(&repaired_ns) && repaired.1.contains(&policy),
        "the Event names the namespace and the object: {repaired:?}"
    );
    let drifted_ns = env.create_namespace("a", &[("evt", "aud")]).await;
    let detected = eventually(SETTLE, "a DriftDetected Event", || async {
        events_about(&env, &auditing)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "DriftDetected")
    })
    .await;
    assert!(
        detected.1.contains(&drifted_ns) && detected.1.contains("Missing"),
        "the Event names the namespace and the reason: {detected:?}"
    );
    assert!(
        events_about(&env, &auditing)
            .await
            .iter()
            .all(|(reason, _)| reason != "Repaired"),
        "Audit mode repairs nothing"
    );
    env.cleanup().await;
}

/// A spec change is carried out, not repaired: the Role it adds to every namespace is no
/// `Repaired` Event and no repair in status (at 10,000 namespaces that was 10,000 Events,
/// as many writes as the re-plan itself). Deleting that Role afterwards is a repair.
#[tokio::test]
async fn a_spec_change_is_no_repair_but_drift_after_it_is() {
    let env = TestEnv::new("evr").await;
    let selector = "namespaceSelector: {matchLabels: {evr: enf}}\n";
    let baseline = env.apply_baseline("enf", selector);
    let _operator = Operator::start(&env, &[]).await;
    let namespace = env.create_namespace("r", &[("evr", "enf")]).await;
    let policies = Api::<NetworkPolicy>::namespaced(env.admin.clone(), &namespace);
    let policy = format!("baseline-{baseline}-deny-all");
    eventually(SETTLE, "the generated policy", || async {
        policies.get_opt(&policy).await.expect("get")
    })
    .await;
    // The first converge counts its writes as repairs; count from there.
    let before = wait_baseline_status(&env.admin, &baseline, "the namespace compliant", |s| {
        s.summary.namespaces_compliant == 1
    })
    .await
    .summary
    .repairs;
    env.apply_baseline(
        "enf",
        &format!(
            "{selector}rbac:\n  roles:\n  - name: reader\n    rules:\n    - {{apiGroups: [\"\"], resources: [pods], verbs: [get, list]}}\n"
        ),
    );
    let roles = Api::<Role>::namespaced(env.admin.clone(), &namespace);
    let role = format!("baseline-{baseline}-reader");
    eventually(SETTLE, "the Role the spec change adds", || async {
        roles.get_opt(&role).await.expect("get")
    })
    .await;
    // Time for an Event to be written, had there been one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = events_about(&env, &baseline).await;
    // (The new namespace's first objects, written before the change, are a Repaired Event.)
    assert!(
        events
            .iter()
            .all(|(reason, note)| reason != "Repaired" || !note.contains(&role)),
        "a spec change is no repair: {events:?}"
    );
    // The test can see a repair: delete the Role.
    roles
        .delete(&role, &DeleteParams::default())
        .await
        .expect("delete the Role");
    let repaired = eventually(SETTLE, "a Repaired Event for the Role", || async {
        events_about(&env, &baseline)
            .await
            .into_iter()
            .find(|(reason, note)| reason == "Repaired" && note.contains(&role))
    })
    .await;
    assert!(repaired.1.contains(&namespace), "{repaired:?}");
    let status = wait_baseline_status(&env.admin, &baseline, "the repair counted", |s| {
        s.summary.repairs > before
    })
    .await;
    assert_eq!(
        status.summary.repairs,
        before + 1,
        "one repair: the Role deleted, not the Role the spec change added"
    );
    env.cleanup().await;
}
