//! Events on the baseline: a repair is `Repaired`, drift that appears and stays is
//! `DriftDetected`, each naming the namespace and object. (A restart emits none: the restart
//! test in enforcement.rs finds no write at all, Events included.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use k8s_openapi::api::networking::v1::NetworkPolicy;
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
