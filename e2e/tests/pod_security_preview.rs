//! What enforcing a baseline's Pod Security level would reject, with the real API server as
//! the evaluator: the exact label change is sent as a dry run and PodSecurity admission's
//! warnings name the violating pods. `check --live` shows it; the controller holds a Gated
//! rollout's enforce level until no pod violates it, records what an Immediate raise
//! rejects, and previews in Audit mode. Dry runs persist nothing. (Pods are stored and
//! evaluated by admission even though no node runs them here.)
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube_baseline::api::{DriftEntry, SecurityBaselineStatus};
use kube_baseline_e2e::*;

const ENFORCE: &str = "pod-security.kubernetes.io/enforce";

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

/// Creates the pods (waiting for the namespace's default ServiceAccount, which the
/// controller manager makes).
async fn create_pods(env: &TestEnv, namespace: &str, pods: &[(&str, bool)]) {
    let api: Api<Pod> = Api::namespaced(env.admin.clone(), namespace);
    for (name, violating) in pods {
        eventually(SETTLE, "the pod stored", || async {
            api.create(&PostParams::default(), &pod(name, *violating))
                .await
                .ok()
        })
        .await;
    }
}

async fn delete_pod(env: &TestEnv, namespace: &str, name: &str) {
    Api::<Pod>::namespaced(env.admin.clone(), namespace)
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .expect("pod deleted");
}

async fn namespace_labels(env: &TestEnv, namespace: &str) -> BTreeMap<String, String> {
    Api::<Namespace>::all(env.admin.clone())
        .get(namespace)
        .await
        .expect("namespace")
        .metadata
        .labels
        .unwrap_or_default()
}

fn preview_in(status: &SecurityBaselineStatus, namespace: &str) -> Option<DriftEntry> {
    status
        .drift
        .iter()
        .find(|d| d.namespace == namespace && d.check == "pod-security.preview")
        .cloned()
}

/// The operator's requests to `namespace` (the Namespace object) in the audit log:
/// (writes, dry runs).
fn namespace_requests(user: &str, namespace: &str) -> (usize, usize) {
    let about = |e: &AuditEvent| {
        e.object_ref
            .as_ref()
            .is_some_and(|r| r.resource == "namespaces" && r.name == namespace)
    };
    (
        writes_by(user).iter().filter(|e| about(e)).count(),
        dry_runs_by(user).iter().filter(|e| about(e)).count(),
    )
}

fn spec(mode: &str, env: &TestEnv, pod_security: &str) -> String {
    format!(
        "mode: {mode}\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\npodSecurity: {pod_security}\n",
        env.id
    )
}

#[tokio::test]
async fn a_gated_rollout_holds_enforce_until_the_violating_pod_goes() {
    let env = TestEnv::new("psgate").await;
    // The operator runs first: a namespace created since it started is news (Events); the
    // namespace is selected once its pods exist.
    let operator = Operator::start(&env, &[]).await;
    let baseline = env.apply_baseline(
        "b",
        &spec("Enforce", &env, "{enforce: restricted, rollout: Gated}"),
    );
    let shop = env.create_namespace("shop", &[]).await;
    create_pods(&env, &shop, &[("host-web", true), ("compliant-web", false)]).await;
    kubectl(&["label", "namespace", &shop, "env=prod"]);

    let status = wait_baseline_status(&env.admin, &baseline, "the namespace gated", |s| {
        s.summary.namespaces_gated == 1 && preview_in(s, &shop).is_some()
    })
    .await;
    let preview = preview_in(&status, &shop).expect("preview");
    assert_eq!(format!("{:?}", preview.reason), "Violation");
    assert!(
        preview
            .message
            .starts_with("enforce stays unset until no existing pod violates")
            && preview.message.contains("host-web: ")
            && preview.message.contains("host namespaces")
            && !preview.message.contains("compliant-web"),
        "{}",
        preview.message
    );
    // `check --live` says what the controller does (shared domain code).
    let checked: Vec<DriftEntry> = drift_in_report(&check_live_report(&[]), &baseline)
        .into_iter()
        .filter(|d| d.namespace == shop && d.check.starts_with("pod-security."))
        .collect();
    let in_status: Vec<DriftEntry> = status
        .drift
        .iter()
        .filter(|d| d.namespace == shop && d.check.starts_with("pod-security."))
        .cloned()
        .collect();
    assert_eq!(checked, in_status);
    let labels = namespace_labels(&env, &shop).await;
    assert_eq!(labels.get(ENFORCE), None, "enforce held: {labels:?}");
    assert_eq!(
        (
            labels
                .get("pod-security.kubernetes.io/warn")
                .map(String::as_str),
            labels
                .get("pod-security.kubernetes.io/audit")
                .map(String::as_str)
        ),
        (Some("restricted"), Some("restricted")),
        "warn and audit at the target at once: {labels:?}"
    );
    let printed = kubectl(&["get", "sbl", &baseline]);
    let header: Vec<&str> = printed
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let row: Vec<&str> = printed
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let gated_column = header
        .iter()
        .position(|c| *c == "GATED")
        .expect("a GATED column");
    assert_eq!(row.get(gated_column), Some(&"1"), "{printed}");
    let metrics = http_get(&format!("{}/metrics", operator.http_url().await)).1;
    assert_eq!(
        metric_value(
            &metrics,
            &format!("kube_baseline_pod_security_gated_namespaces{{baseline=\"{baseline}\"}}")
        ),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "kube_baseline_pod_watches"),
        Some(1.0)
    );
    eventually(SETTLE, "a PodSecurityGated Event", || async {
        events_about(&env, &baseline)
            .await
            .into_iter()
            .find(|(reason, note)| reason == "PodSecurityGated" && note.contains("host-web"))
    })
    .await;

    // The violating pod goes: the pod watch re-previews and enforce is raised.
    let deleted = Instant::now();
    delete_pod(&env, &shop, "host-web").await;
    eventually(SETTLE, "enforce raised", || async {
        (namespace_labels(&env, &shop)
            .await
            .get(ENFORCE)
            .map(String::as_str)
            == Some("restricted"))
        .then_some(())
    })
    .await;
    let raised_after = deleted.elapsed();
    eprintln!("enforce raised {raised_after:?} after the violating pod was deleted");
    assert!(
        raised_after < Duration::from_secs(10),
        "enforce raised only {raised_after:?} after the pod went"
    );
    wait_baseline_status(&env.admin, &baseline, "the gate open", |s| {
        s.summary.namespaces_gated == 0 && preview_in(s, &shop).is_none()
    })
    .await;
    eventually(SETTLE, "a PodSecurityEnforced Event", || async {
        events_about(&env, &baseline)
            .await
            .into_iter()
            .find(|(reason, _)| reason == "PodSecurityEnforced")
    })
    .await;
    let url = operator.http_url().await;
    eventually(SETTLE, "no pod watch left", || async {
        let metrics = http_get(&format!("{url}/metrics")).1;
        (metric_value(&metrics, "kube_baseline_pod_watches") == Some(0.0)).then_some(())
    })
    .await;
    let (writes, dry_runs) = namespace_requests(&operator.user, &shop);
    eprintln!("namespace {shop}: {writes} label writes, {dry_runs} dry runs");
    assert!(writes <= 3, "{writes} label writes");
    assert!(
        dry_runs >= 2,
        "a preview before and after the pod went: {dry_runs}"
    );
    env.cleanup_with(operator).await;
}

#[tokio::test]
async fn an_immediate_rollout_enforces_at_once_and_records_what_it_rejects() {
    let env = TestEnv::new("psimm").await;
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    create_pods(&env, &shop, &[("host-web", true)]).await;
    let baseline = env.apply_baseline("b", &spec("Enforce", &env, "{enforce: restricted}"));
    let operator = Operator::start(&env, &[]).await;

    let status = wait_baseline_status(&env.admin, &baseline, "the preview recorded", |s| {
        preview_in(s, &shop).is_some()
    })
    .await;
    let preview = preview_in(&status, &shop).expect("preview");
    assert!(
        preview.message.contains("host-web: ") && preview.message.contains("host namespaces"),
        "{}",
        preview.message
    );
    assert_eq!(status.summary.namespaces_gated, 0);
    assert_eq!(
        namespace_labels(&env, &shop)
            .await
            .get(ENFORCE)
            .map(String::as_str),
        Some("restricted"),
        "Immediate enforces at once"
    );
    // The raise itself answered: no dry run before it (rechecks after it may follow).
    let first = audit_events()
        .into_iter()
        .filter(|e| e.user.username == operator.user)
        .find(|e| {
            e.object_ref
                .as_ref()
                .is_some_and(|r| r.resource == "namespaces" && r.name == shop)
                && (e.is_write() || e.is_dry_run())
        })
        .expect("the operator's label write");
    assert!(!first.is_dry_run(), "{first:?}");

    // The pod goes: rechecked (the same level under its equivalent version), the finding goes.
    delete_pod(&env, &shop, "host-web").await;
    wait_baseline_status(&env.admin, &baseline, "the preview gone", |s| {
        preview_in(s, &shop).is_none()
    })
    .await;
    let labels = namespace_labels(&env, &shop).await;
    assert_eq!(labels.get(ENFORCE).map(String::as_str), Some("restricted"));
    assert_eq!(
        labels.get("pod-security.kubernetes.io/enforce-version"),
        None,
        "the recheck was a dry run: {labels:?}"
    );
    env.cleanup_with(operator).await;
}

#[tokio::test]
async fn audit_mode_previews_with_dry_runs_only_and_a_stricter_foreign_label_is_left() {
    let env = TestEnv::new("psaud").await;
    let audited = env.create_namespace("audited", &[("env", "prod")]).await;
    let foreign = env.create_namespace("foreign", &[("env", "prod")]).await;
    create_pods(&env, &audited, &[("host-web", true)]).await;
    create_pods(&env, &foreign, &[("host-web", true)]).await;
    // Someone else made `foreign` stricter than the Gated baseline below wants.
    kubectl(&[
        "label",
        "namespace",
        &foreign,
        &format!("{ENFORCE}=restricted"),
    ]);
    let audit = env.apply_baseline("audit", &format!(
        "mode: Audit\nnamespaceSelector: {{matchLabels: {{{TEST_LABEL}: {}}}, matchExpressions: [{{key: kubernetes.io/metadata.name, operator: In, values: [{audited}]}}]}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\npodSecurity: {{enforce: restricted}}\n",
        env.id
    ));
    let gated = env.apply_baseline("gated", &format!(
        "namespaceSelector: {{matchLabels: {{{TEST_LABEL}: {}}}, matchExpressions: [{{key: kubernetes.io/metadata.name, operator: In, values: [{foreign}]}}]}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\npodSecurity: {{enforce: baseline, rollout: Gated}}\n",
        env.id
    ));
    let operator = Operator::start(&env, &[]).await;

    let status = wait_baseline_status(&env.admin, &audit, "the Audit preview", |s| {
        preview_in(s, &audited).is_some()
    })
    .await;
    assert!(
        preview_in(&status, &audited).is_some_and(|p| p.message.contains("host-web: ")),
        "{status:?}"
    );
    let status = wait_baseline_status(&env.admin, &gated, "the foreign namespace evaluated", |s| {
        s.summary.namespaces_selected == 1 && s.summary.namespaces_pending == 0
    })
    .await;
    assert_eq!(preview_in(&status, &foreign), None, "{status:?}");
    assert_eq!(status.summary.namespaces_gated, 0);
    assert_eq!(
        namespace_labels(&env, &foreign)
            .await
            .get(ENFORCE)
            .map(String::as_str),
        Some("restricted"),
        "the stricter label someone else set is left"
    );
    assert!(
        !namespace_labels(&env, &audited).await.contains_key(ENFORCE),
        "Audit changes no label"
    );
    let (writes, dry_runs) = namespace_requests(&operator.user, &audited);
    assert_eq!(writes, 0, "Audit writes nothing to the namespace");
    assert!(dry_runs >= 1, "Audit previews with a dry run");
    assert_eq!(
        namespace_requests(&operator.user, &foreign).1,
        0,
        "no preview where nothing would be raised"
    );
    env.cleanup_with(operator).await;
}

#[tokio::test]
async fn more_pods_than_the_api_server_checks_is_unknown_and_holds_enforce() {
    let env = TestEnv::new("pscap").await;
    let crowded = env.create_namespace("crowded", &[("env", "prod")]).await;
    // PodSecurity admission checks at most 3,000 existing pods; all of these pass, so the
    // only honest verdict is Unknown.
    create_pods(&env, &crowded, &[("first", false)]).await;
    let api: Api<Pod> = Api::namespaced(env.admin.clone(), &crowded);
    let created = Instant::now();
    futures::stream::iter(1..=3000)
        .for_each_concurrent(16, |i| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &pod(&format!("p-{i:04}"), false))
                    .await
                    .expect("pod created");
            }
        })
        .await;
    eprintln!("3,001 pods created in {:?}", created.elapsed());
    let baseline = env.apply_baseline(
        "b",
        &spec("Enforce", &env, "{enforce: restricted, rollout: Gated}"),
    );
    let operator = Operator::start(&env, &[]).await;
    let status = wait_baseline_status(
        &env.admin,
        &baseline,
        "the namespace gated (Unknown)",
        |s| s.summary.namespaces_gated == 1 && preview_in(s, &crowded).is_some(),
    )
    .await;
    let preview = preview_in(&status, &crowded).expect("preview");
    assert_eq!(format!("{:?}", preview.reason), "Unknown", "{preview:?}");
    assert!(
        preview.message.contains("of the 3001 existing pods"),
        "{}",
        preview.message
    );
    assert!(!namespace_labels(&env, &crowded).await.contains_key(ENFORCE));
    env.cleanup_with(operator).await;
}

#[tokio::test]
async fn a_restart_with_a_gated_namespace_previews_again_and_writes_nothing() {
    let env = TestEnv::new("psrst").await;
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    create_pods(&env, &shop, &[("host-web", true)]).await;
    let baseline = env.apply_baseline(
        "b",
        &spec("Enforce", &env, "{enforce: restricted, rollout: Gated}"),
    );
    let operator = Operator::start(&env, &[]).await;
    wait_baseline_status(&env.admin, &baseline, "the namespace gated", |s| {
        s.summary.namespaces_gated == 1
    })
    .await;
    // A restart previews the gated namespace again (a dry run) and writes nothing: the same
    // findings, the same status, no Event (a first look is not news).
    let user = operator.user.clone();
    let kubeconfig = operator.kubeconfig.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(operator.stop(Duration::from_secs(10)).success());
    let writes_before = writes_by(&user).len();
    let dry_runs_before = dry_runs_by(&user).len();
    let operator = Operator::start_with(&env, &format!("op-{}", env.id), &kubeconfig, &[]);
    let url = operator.http_url().await;
    eventually(SETTLE, "the restarted operator re-previewed", || async {
        let metrics = http_get(&format!("{url}/metrics")).1;
        let previews = metric_value(
            &metrics,
            "kube_baseline_pod_security_previews_total{outcome=\"violations\"}",
        )
        .unwrap_or_default();
        let reconciled = metric_value(
            &metrics,
            "controller_runtime_reconcile_total{controller=\"securitybaseline\",result=\"success\"}",
        )
        .unwrap_or_default();
        (previews >= 1.0 && reconciled >= 1.0).then_some(())
    })
    .await;
    // The pod watch's first list re-previews once more, a second after it opens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let new_writes: Vec<_> = writes_by(&user)[writes_before..]
        .iter()
        .map(|w| (w.verb.clone(), w.request_uri.clone()))
        .collect();
    assert!(new_writes.is_empty(), "a restart wrote: {new_writes:#?}");
    eprintln!(
        "after the restart: {} dry runs, 0 writes",
        dry_runs_by(&user).len() - dry_runs_before
    );

    let status = baseline_status(&env.admin, &baseline)
        .await
        .expect("status");
    assert_eq!(status.summary.namespaces_gated, 1);
    assert!(!namespace_labels(&env, &shop).await.contains_key(ENFORCE));
    env.cleanup_with(operator).await;
}
