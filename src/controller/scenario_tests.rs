//! The namespace reconciler against a mocked API server (kube's `Client` over a tower
//! service that records every request and answers it): what it writes, and what it does
//! not, with no cluster. The end-to-end tests run the same paths against a real API server.

use std::sync::Arc;

use clap::Parser;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::watcher::Event;
use parking_lot::Mutex;

use super::RunArgs;
use super::feeds::watches::KindFeed;
use super::reconcile::baselines::publish_status;
use super::reconcile::namespaces::reconcile_namespace;
use super::state::context::Context;
use super::state::namespace_store::{CachedNamespace, NamespaceSlimmer};
use super::state::repair_budget::RepairBudget;
use super::state::results::NamespaceResult;
use crate::api::{DriftReason, SecurityBaseline};
use crate::domain::generated::{GeneratedKind, NamespacedObject};

/// One request the reconciler sent: (method, path, body).
type Request = (String, String, serde_json::Value);

/// An API server that answers every write with what it was sent (a server-side apply
/// returns the applied object; good enough for the reconcilers, which read nothing back;
/// a status apply gets the whole object back, status merged in) and records it.
fn mock_api(
    object: serde_json::Value,
    namespace_warnings: Arc<Mutex<Vec<String>>>,
    object_writes: Arc<ObjectWriteGate>,
    events_forbidden: Arc<std::sync::atomic::AtomicBool>,
) -> (Client, Arc<Mutex<Vec<Request>>>) {
    let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
    let seen = requests.clone();
    let service = tower::service_fn(move |request: http::Request<Body>| {
        let (seen, object) = (seen.clone(), object.clone());
        let namespace_warnings = namespace_warnings.clone();
        let object_writes = object_writes.clone();
        let events_forbidden = events_forbidden.clone();
        async move {
            let (parts, body) = request.into_parts();
            if parts.uri.path().starts_with("/apis/events.k8s.io/")
                && events_forbidden.load(std::sync::atomic::Ordering::SeqCst)
            {
                seen.lock().push((
                    parts.method.to_string(),
                    format!("{} (forbidden)", parts.uri.path()),
                    serde_json::Value::Null,
                ));
                let status = serde_json::json!({
                    "apiVersion": "v1", "kind": "Status", "status": "Failure",
                    "reason": "Forbidden", "code": 403,
                    "message": "events.events.k8s.io is forbidden: User \"system:serviceaccount:kube-baseline:kube-baseline\" cannot create resource \"events\""
                });
                return Ok(http::Response::builder()
                    .status(403)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&status)?))
                    .expect("response"));
            }
            let label_write = parts.method == http::Method::PATCH
                && parts.uri.path().starts_with("/api/v1/namespaces/");
            let _held = if parts.uri.path().starts_with("/apis/") || label_write {
                Some(object_writes.arrive().await)
            } else {
                None
            };
            let body = body.collect_bytes().await?;
            let sent: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let dry_run = parts
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|pair| pair == "dryRun=All"));
            let path = parts.uri.path().to_string();
            // PodSecurity admission's answer to a namespace label change.
            let warnings = if path.starts_with("/api/v1/namespaces/") && !path.ends_with("/status")
            {
                namespace_warnings.lock().clone()
            } else {
                Vec::new()
            };
            let path = if dry_run {
                format!("{path} (dry run)")
            } else {
                path
            };
            let answer = if parts.method == http::Method::DELETE {
                serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})
            } else if path.ends_with("/status") {
                let mut whole = object;
                whole["status"] = sent["status"].clone();
                whole
            } else {
                sent.clone()
            };
            seen.lock().push((parts.method.to_string(), path, sent));
            let answer = serde_json::to_vec(&answer)?;
            let mut response = http::Response::builder()
                .status(200)
                .header("content-type", "application/json");
            for warning in warnings {
                let escaped = warning.replace('\\', "\\\\").replace('"', "\\\"");
                response = response.header("warning", format!("299 - \"{escaped}\""));
            }
            Ok::<_, tower::BoxError>(response.body(Body::from(answer)).expect("response"))
        }
    });
    (Client::new(service, "default"), requests)
}

/// Counts the writes (objects and namespace labels) the mock is answering at once, and can hold
/// each until that many are in flight (or a while has passed), so that a test sees whether
/// they were sent together.
#[derive(Debug, Default)]
struct ObjectWriteGate {
    hold_until: std::sync::atomic::AtomicUsize,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
}

/// One write being answered; its drop ends it.
struct InFlight(Arc<ObjectWriteGate>);

impl ObjectWriteGate {
    async fn arrive(self: Arc<Self>) -> InFlight {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most_in_flight.fetch_max(now, SeqCst);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            while self.in_flight.load(SeqCst) < self.hold_until.load(SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await;
        InFlight(self)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    run: RunArgs,
}

struct Scenario {
    ctx: Arc<Context>,
    requests: Arc<Mutex<Vec<Request>>>,
    baselines: Writer<SecurityBaseline>,
    /// The Warning headers the mock sends with each namespace PATCH.
    namespace_warnings: Arc<Mutex<Vec<String>>>,
    object_writes: Arc<ObjectWriteGate>,
    /// Whether the mock answers 403 to Event writes (no RBAC for them).
    events_forbidden: Arc<std::sync::atomic::AtomicBool>,
}

impl Scenario {
    /// A context over the mock with every cache listed (and empty): nothing of ours, no
    /// name taken, no RBAC objects, no nodes.
    fn new() -> Self {
        let object = serde_json::to_value(
            serde_saphyr::from_str::<SecurityBaseline>(&baseline("b", ENFORCE)).expect("baseline"),
        )
        .expect("json");
        let namespace_warnings: Arc<Mutex<Vec<String>>> = Arc::default();
        let object_writes: Arc<ObjectWriteGate> = Arc::default();
        let events_forbidden: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (client, requests) = mock_api(
            object,
            namespace_warnings.clone(),
            object_writes.clone(),
            events_forbidden.clone(),
        );
        let flags = Flags::parse_from(["kube-baseline"]);
        let (baselines_store, mut baselines) = reflector::store::<SecurityBaseline>();
        let (namespaces_store, mut namespaces) = reflector::store::<CachedNamespace>();
        baselines.apply_watcher_event(&Event::InitDone);
        namespaces.apply_watcher_event(&Event::InitDone);
        let (status_trigger, _status_requests) = mpsc::unbounded();
        let ctx = Context::new(
            client,
            &flags.run,
            baselines_store,
            namespaces_store,
            status_trigger,
            Arc::new(RepairBudget::default()),
        );
        Self {
            ctx: Arc::new(ctx),
            requests,
            baselines,
            namespace_warnings,
            object_writes,
            events_forbidden,
        }
    }

    fn add_baseline(&mut self, yaml: &str) {
        let baseline: SecurityBaseline = serde_saphyr::from_str(yaml).expect("baseline");
        self.baselines.apply_watcher_event(&Event::Apply(baseline));
    }

    async fn reconcile(&self, namespace: &CachedNamespace) {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        reconcile_namespace(&name, namespace, &self.ctx)
            .await
            .expect("reconciled");
    }

    /// The baseline's result in `namespace`, if it has one.
    fn result(&self, baseline: &str, namespace: &str) -> Option<NamespaceResult> {
        self.ctx
            .results
            .read(baseline, |results, _| results.get(namespace).cloned())
    }

    /// The requests so far, and forgets them.
    fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock())
    }
}

fn baseline(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
         metadata: {{name: {name}, uid: uid-{name}, generation: 1}}\nspec:\n{spec}"
    )
}

const ENFORCE: &str =
    "  namespaceSelector: {matchLabels: {env: prod}}\n  podSecurity: {enforce: restricted}\n";

fn namespace(name: &str, labels: &[(&str, &str)]) -> CachedNamespace {
    NamespaceSlimmer::new(crate::api::FIELD_MANAGER).slim(watched_namespace(name, labels))
}

/// The namespace as its watch delivers it.
fn watched_namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    let mut meta = PartialObjectMeta::<Namespace>::default();
    meta.metadata.name = Some(name.to_owned());
    meta.metadata.resource_version = Some("1".to_owned());
    meta.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    meta
}

fn paths(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|(method, path, _)| format!("{method} {path}"))
        .collect()
}

#[tokio::test]
async fn a_new_namespace_gets_its_objects_and_labels_in_one_pass() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    let mut sent = paths(&scenario.take_requests());
    // The policies and the labels go out together, in any order.
    sent.sort();
    assert_eq!(
        sent,
        [
            "PATCH /api/v1/namespaces/shop",
            "POST /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
            "POST /apis/networking.k8s.io/v1/namespaces/shop/networkpolicies",
        ],
        "two policies created and the labels applied"
    );
    let result = scenario.result("b", "shop").expect("a result");
    assert!(result.selected && result.findings.is_empty(), "{result:?}");
}

/// An Event the API server refuses (no RBAC for `events.k8s.io`) neither fails the
/// reconcile nor goes unseen: it is counted by reason in a metric (the failure was logged
/// at debug level only before).
#[tokio::test]
async fn an_event_the_api_server_refuses_is_counted_and_the_reconcile_goes_on() {
    let mut scenario = Scenario::new();
    scenario
        .events_forbidden
        .store(true, std::sync::atomic::Ordering::SeqCst);
    scenario.add_baseline(&baseline("b", ENFORCE));
    // Created after the operator started: its first protection is news (a Repaired Event).
    let mut watched = watched_namespace("shop", &[("env", "prod")]);
    watched.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    let shop = NamespaceSlimmer::new(crate::api::FIELD_MANAGER).slim(watched);
    scenario.reconcile(&shop).await;
    let sent = paths(&scenario.take_requests());
    assert!(
        sent.iter().any(
            |path| path.starts_with("POST /apis/events.k8s.io/v1/namespaces/")
                && path.ends_with("(forbidden)")
        ),
        "a Repaired Event was tried: {sent:?}"
    );
    assert!(
        sent.iter()
            .any(|path| path == "PATCH /api/v1/namespaces/shop"),
        "the namespace was still protected: {sent:?}"
    );
    let result = scenario
        .result("b", "shop")
        .expect("a result despite the refusal");
    assert!(result.selected && result.findings.is_empty(), "{result:?}");
    let metrics = scenario.ctx.metrics.encode();
    assert!(
        metrics.contains("kube_baseline_event_failures_total{reason=\"Repaired\"} 1"),
        "{metrics}"
    );
}

/// Issue 24: the objects of a namespace were written one after another, so a new
/// namespace's protection took one round trip per object (and longer the busier the API
/// server); then the objects together and the labels after them: two round trips. None
/// reads another's answer: all go out at once.
#[tokio::test]
async fn a_namespace_s_objects_and_labels_are_written_together() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    scenario
        .object_writes
        .hold_until
        .store(3, std::sync::atomic::Ordering::SeqCst);
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    assert_eq!(
        scenario
            .object_writes
            .most_in_flight
            .load(std::sync::atomic::Ordering::SeqCst),
        3,
        "both policies and the labels in flight at once"
    );
    let sent = paths(&scenario.take_requests());
    assert_eq!(sent.len(), 3, "{sent:?}");
    let result = scenario.result("b", "shop").expect("a result");
    assert!(result.selected && result.findings.is_empty(), "{result:?}");
}

#[tokio::test]
async fn a_second_pass_before_the_watch_caught_up_writes_nothing_and_reports_nothing() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    let shop = namespace("shop", &[("env", "prod")]);
    scenario.reconcile(&shop).await;
    assert_eq!(scenario.take_requests().len(), 3);
    let repairs = || scenario.ctx.results.read("b", |_, repairs| repairs);
    assert_eq!(repairs(), 3, "two policies and the label");
    // Our writes' watch events have not arrived: the caches still show the old state.
    scenario.reconcile(&shop).await;
    assert_eq!(paths(&scenario.take_requests()), Vec::<String>::new());
    assert_eq!(repairs(), 3, "nothing repaired twice");
    let result = scenario.result("b", "shop").expect("a result");
    assert!(result.findings.is_empty(), "no drift invented: {result:?}");
}

/// Our object created, then deleted by someone, both before the namespace is reconciled
/// again: the cache shows it absent, as it was when we created it. That is not our create
/// still in flight: the deletion is repaired at once (it waited for an unrelated change of
/// the namespace before, since a skipped write asks for no requeue).
#[tokio::test]
async fn our_object_created_and_deleted_before_the_next_pass_is_recreated() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    let shop = namespace("shop", &[("env", "prod")]);
    scenario.reconcile(&shop).await;
    let policies_path = "/apis/networking.k8s.io/v1/namespaces/shop/networkpolicies";
    let (_, _, sent) = scenario
        .take_requests()
        .into_iter()
        .find(|(_, path, body)| {
            path == policies_path && body["metadata"]["name"] == "baseline-b-deny-all"
        })
        .expect("deny-all created");
    let mut created: NetworkPolicy = serde_json::from_value(sent).expect("a NetworkPolicy");
    created.metadata.resource_version = Some("7".to_string());
    let mut policies = KindFeed::new(
        &scenario.ctx,
        GeneratedKind::NetworkPolicy,
        NamespacedObject::NetworkPolicy,
    );
    policies.observe(&Event::Apply(created.clone()));
    policies.observe(&Event::Delete(created));

    scenario.reconcile(&shop).await;
    assert_eq!(
        paths(&scenario.take_requests()),
        [
            format!("POST {policies_path}"),
            "POST /apis/events.k8s.io/v1/namespaces/default/events".to_string()
        ],
        "deny-all recreated (and the repair recorded); allow-dns (its echo not here yet) and \
         the labels not written again"
    );
}

/// The plan asks whether a name is taken, and for which baseline: ours are found in the
/// generated index, others' in the name index (which no longer holds ours too).
#[tokio::test]
async fn a_name_is_found_taken_whether_the_object_is_ours_or_not() {
    use crate::api::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
    let scenario = Scenario::new();
    let policy = |name: &str, labels: &[(&str, &str)]| NetworkPolicy {
        metadata: kube::core::ObjectMeta {
            namespace: Some("shop".to_string()),
            name: Some(name.to_string()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut policies = KindFeed::new(
        &scenario.ctx,
        GeneratedKind::NetworkPolicy,
        NamespacedObject::NetworkPolicy,
    );
    let ours = [(MANAGED_BY_LABEL, MANAGED_BY_VALUE), (BASELINE_LABEL, "b")];
    policies.observe(&Event::Apply(policy("baseline-b-deny-all", &ours)));
    policies.observe(&Event::Apply(policy(
        "baseline-b-allow-dns",
        &[(BASELINE_LABEL, "x")],
    )));
    let baseline_of = |name: &str| {
        scenario
            .ctx
            .lookup_name(GeneratedKind::NetworkPolicy, "shop", name)
            .map(|meta| meta.labels.unwrap_or_default().get(BASELINE_LABEL).cloned())
    };
    assert_eq!(
        baseline_of("baseline-b-deny-all"),
        Some(Some("b".to_string()))
    );
    assert_eq!(
        baseline_of("baseline-b-allow-dns"),
        Some(Some("x".to_string()))
    );
    assert_eq!(baseline_of("baseline-b-other"), None);
}

#[tokio::test]
async fn audit_mode_writes_nothing_and_records_the_drift() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", &format!("  mode: Audit\n{ENFORCE}")));
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    assert_eq!(
        paths(&scenario.take_requests()),
        ["PATCH /api/v1/namespaces/shop (dry run)"],
        "only the preview of enforcing restricted, which persists nothing"
    );
    let result = scenario.result("b", "shop").expect("a result");
    let found: Vec<(&str, DriftReason)> = result
        .findings
        .iter()
        .map(|f| (f.check.as_str(), f.reason))
        .collect();
    assert!(
        found.contains(&("network.default-deny", DriftReason::Missing))
            && found.contains(&("pod-security.labels", DriftReason::Missing)),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_name_taken_by_someone_else_is_left_alone_and_is_a_conflict() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    // A user's policy by the generated name, as the watch feeds it.
    let theirs: NetworkPolicy = serde_saphyr::from_str(
        "metadata: {name: baseline-b-deny-all, namespace: shop}\nspec: {podSelector: {}}",
    )
    .expect("policy");
    KindFeed::new(
        &scenario.ctx,
        GeneratedKind::NetworkPolicy,
        NamespacedObject::NetworkPolicy,
    )
    .observe(&Event::Apply(theirs));
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    let sent = paths(&scenario.take_requests());
    assert!(
        sent.iter().all(|request| !request.contains("deny-all")),
        "{sent:?}"
    );
    let result = scenario.result("b", "shop").expect("a result");
    assert!(
        result
            .findings
            .iter()
            .any(|f| f.name == "baseline-b-deny-all" && f.reason == DriftReason::Conflict),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unselected_namespace_is_not_written_and_a_deleting_one_is_forgotten() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    scenario
        .reconcile(&namespace("dev", &[("env", "dev")]))
        .await;
    assert_eq!(paths(&scenario.take_requests()), Vec::<String>::new());
    assert!(scenario.result("b", "dev").is_none());

    let shop = namespace("shop", &[("env", "prod")]);
    scenario.reconcile(&shop).await;
    assert!(scenario.result("b", "shop").is_some());
    scenario.take_requests();
    let mut deleting = shop;
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    scenario.reconcile(&deleting).await;
    assert_eq!(paths(&scenario.take_requests()), Vec::<String>::new());
    assert!(
        scenario.result("b", "shop").is_none(),
        "it no longer counts for the baseline"
    );
}

#[tokio::test]
async fn a_deleted_baseline_releases_its_labels_without_touching_the_rest() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    let shop = namespace("shop", &[("env", "prod")]);
    scenario.reconcile(&shop).await;
    scenario.take_requests();
    // The baseline is being deleted; the namespace now shows our label write.
    let mut deleting: SecurityBaseline =
        serde_saphyr::from_str(&baseline("b", ENFORCE)).expect("baseline");
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    scenario
        .baselines
        .apply_watcher_event(&Event::Apply(deleting));
    let mut after = watched_namespace(
        "shop",
        &[
            ("env", "prod"),
            ("pod-security.kubernetes.io/enforce", "restricted"),
        ],
    );
    after.metadata.resource_version = Some("2".to_owned());
    after.metadata.managed_fields =
        Some(vec![serde_json::from_value(serde_json::json!({
        "manager": crate::api::FIELD_MANAGER,
        "operation": "Apply",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:metadata": {"f:labels": {"f:pod-security.kubernetes.io/enforce": {}}}},
    }))
    .expect("managed fields")]);
    let after = NamespaceSlimmer::new(crate::api::FIELD_MANAGER).slim(after);
    scenario.reconcile(&after).await;
    assert_eq!(
        paths(&scenario.take_requests()),
        ["PATCH /api/v1/namespaces/shop"],
        "only the label release (no objects of ours are cached to delete)"
    );
}

#[tokio::test]
async fn status_is_written_only_when_it_changes() {
    let mut scenario = Scenario::new();
    let yaml = baseline("b", &format!("  mode: Audit\n{ENFORCE}"));
    scenario.add_baseline(&yaml);
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    scenario.take_requests(); // the Audit preview's dry run
    let mut stored: SecurityBaseline = serde_saphyr::from_str(&yaml).expect("baseline");

    publish_status(&stored, &scenario.ctx)
        .await
        .expect("published");
    let sent = scenario.take_requests();
    assert_eq!(
        paths(&sent),
        ["PATCH /apis/kube-baseline.dev/v1alpha1/securitybaselines/b/status"]
    );
    stored.status = Some(serde_json::from_value(sent[0].2["status"].clone()).expect("status"));

    // Nothing changed: the same status is not written again.
    publish_status(&stored, &scenario.ctx)
        .await
        .expect("published");
    assert_eq!(paths(&scenario.take_requests()), Vec::<String>::new());

    // A new namespace with drift changes it: written once more.
    scenario
        .reconcile(&namespace("web", &[("env", "prod")]))
        .await;
    scenario.take_requests(); // the Audit preview's dry run
    publish_status(&stored, &scenario.ctx)
        .await
        .expect("published");
    assert_eq!(scenario.take_requests().len(), 1);
}

#[tokio::test]
async fn a_status_whose_write_budget_is_spent_waits_without_sending() {
    let mut scenario = Scenario::new();
    let yaml = baseline("b", &format!("  mode: Audit\n{ENFORCE}"));
    scenario.add_baseline(&yaml);
    let stored: SecurityBaseline = serde_saphyr::from_str(&yaml).expect("baseline");
    let status = crate::controller::state::repair_budget::WriteTarget::at_path(
        "/apis/kube-baseline.dev/v1alpha1/securitybaselines/b/status",
    );
    let now = std::time::Instant::now();
    for _ in 0..crate::controller::state::repair_budget::MAX_WRITES {
        scenario
            .ctx
            .repair_budget
            .take(status, now)
            .expect("budget left");
    }
    publish_status(&stored, &scenario.ctx)
        .await
        .expect("waits, not fails");
    assert_eq!(
        paths(&scenario.take_requests()),
        Vec::<String>::new(),
        "a status write sent past its budget (the client layer would refuse it, with a warning)"
    );
}

const GATED: &str = "  namespaceSelector: {matchLabels: {env: prod}}\n  podSecurity: {enforce: restricted, rollout: Gated}\n";

/// PodSecurity admission's warnings for a namespace with one privileged pod.
fn violation_warnings() -> Vec<String> {
    vec![
        "existing pods in namespace \"shop\" violate the new PodSecurity enforce level \"restricted:latest\"".to_owned(),
        "privileged-pod: host namespaces, privileged".to_owned(),
    ]
}

#[tokio::test]
async fn a_gated_rollout_holds_enforce_while_the_preview_names_violating_pods() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", GATED));
    *scenario.namespace_warnings.lock() = violation_warnings();
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    let sent = scenario.take_requests();
    let namespace_patches: Vec<&Request> = sent
        .iter()
        .filter(|(_, path, _)| path.starts_with("/api/v1/namespaces/shop"))
        .collect();
    assert_eq!(
        namespace_patches
            .iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect::<Vec<_>>(),
        [
            "PATCH /api/v1/namespaces/shop (dry run)",
            "PATCH /api/v1/namespaces/shop"
        ],
        "the preview, then the labels without enforce"
    );
    let labels = &namespace_patches[1].2["metadata"]["labels"];
    assert_eq!(
        labels,
        &serde_json::json!({
            "pod-security.kubernetes.io/audit": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }),
        "warn and audit at the target at once; enforce held"
    );
    assert_eq!(
        namespace_patches[0].2["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted",
        "the dry run is the change enforcing would make"
    );
    let result = scenario.result("b", "shop").expect("a result");
    assert!(result.gated, "{result:?}");
    let preview = result
        .findings
        .iter()
        .find(|f| f.check == "pod-security.preview")
        .expect("a preview finding");
    assert_eq!(preview.reason, DriftReason::Violation);
    assert!(
        preview
            .message
            .contains("privileged-pod: host namespaces, privileged")
            && preview.message.starts_with("enforce stays unset"),
        "{}",
        preview.message
    );
    assert!(
        scenario.ctx.previews.watched("shop"),
        "its pods are watched for a change"
    );

    // Nothing changed: the remembered preview holds; no second dry run, no write (the
    // label write is in flight).
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    assert_eq!(paths(&scenario.take_requests()), Vec::<String>::new());
}

#[tokio::test]
async fn a_gated_rollout_enforces_at_once_when_the_preview_is_clean() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", GATED));
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    let sent = scenario.take_requests();
    let last = sent.last().expect("requests");
    assert_eq!(last.1, "/api/v1/namespaces/shop");
    assert_eq!(
        last.2["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    let result = scenario.result("b", "shop").expect("a result");
    assert!(!result.gated && result.findings.is_empty(), "{result:?}");
    assert!(!scenario.ctx.previews.watched("shop"));
}

#[tokio::test]
async fn an_immediate_rollout_enforces_and_records_what_the_raise_answered() {
    let mut scenario = Scenario::new();
    scenario.add_baseline(&baseline("b", ENFORCE));
    *scenario.namespace_warnings.lock() = violation_warnings();
    scenario
        .reconcile(&namespace("shop", &[("env", "prod")]))
        .await;
    let sent = paths(&scenario.take_requests());
    assert!(
        !sent.iter().any(|p| p.ends_with("(dry run)")),
        "Immediate sends no dry run: {sent:?}"
    );
    let result = scenario.result("b", "shop").expect("a result");
    assert!(!result.gated);
    let preview = result
        .findings
        .iter()
        .find(|f| f.check == "pod-security.preview")
        .expect("the raise's answer recorded");
    assert!(
        preview.message.contains("privileged-pod"),
        "{}",
        preview.message
    );
}

/// Issue 24: a new namespace created while every namespace is being re-planned is served
/// before the re-plan backlog and the echoes of our own writes that were queued before it.
/// kube-runtime alone takes due triggers in hash order once every slot is busy (its
/// scheduler's `pending` set), so the new namespace landed anywhere among them.
#[tokio::test]
async fn a_new_namespace_is_reconciled_before_triggers_queued_earlier_while_every_slot_is_busy() {
    use kube::runtime::controller::Action;

    const OLD: usize = 400;
    const CONCURRENCY: u16 = 2;
    let (store, mut writer) = reflector::store::<CachedNamespace>();
    writer.apply_watcher_event(&Event::InitDone);
    let old = |i: usize| format!("old-{i:03}");
    for i in 0..OLD {
        writer.apply_watcher_event(&Event::Apply(namespace(&old(i), &[])));
    }
    let (namespace_events, namespaces) = mpsc::unbounded::<Result<CachedNamespace, _>>();
    let (change_events, changes) = mpsc::unbounded();
    let (replan_events, replans) = mpsc::unbounded::<String>();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Each reconcile records that it started, then holds its slot until let go.
    let started: Arc<Mutex<Vec<String>>> = Arc::default();
    let let_go = Arc::new(tokio::sync::Semaphore::new(0));
    let controller = tokio::spawn(super::queued_controller(
        super::NamespaceTriggers {
            namespaces,
            changes,
            replans,
            is_new: |name: &str| name.starts_with("new-"),
        },
        store,
        CONCURRENCY,
        async move {
            let _ = stopped.await;
        },
        {
            let (started, let_go) = (started.clone(), let_go.clone());
            move |namespace: Arc<CachedNamespace>, _: Arc<()>| {
                let (started, let_go) = (started.clone(), let_go.clone());
                async move {
                    started
                        .lock()
                        .push(namespace.metadata.name.clone().unwrap_or_default());
                    let _ = let_go.acquire().await.map(|permit| permit.forget());
                    Ok::<_, std::convert::Infallible>(Action::await_change())
                }
            }
        },
        |_, _, _| Action::await_change(),
        Arc::new(()),
    ));
    let wait_for_starts = |n: usize| {
        let started = started.clone();
        async move {
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                while started.lock().len() < n {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
            .expect("reconciles started");
        }
    };
    // The re-plan of half the namespaces and the echoes of writes in the other half.
    for i in 0..OLD / 2 {
        replan_events.unbounded_send(old(i)).expect("send");
    }
    for i in OLD / 2..OLD {
        change_events
            .unbounded_send(kube::runtime::reflector::ObjectRef::new(&old(i)))
            .expect("send");
    }
    // Every slot but the one kept for new namespaces is busy.
    wait_for_starts(usize::from(CONCURRENCY) - 1).await;
    // Hundreds of triggers wait: a namespace is created.
    let new = namespace("new-1", &[]);
    writer.apply_watcher_event(&Event::Apply(new.clone()));
    namespace_events.unbounded_send(Ok(new)).expect("send");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let_go.add_permits(OLD + 1);
    wait_for_starts(OLD + 1).await;
    let order = started.lock().clone();
    let position = order.iter().position(|name| name == "new-1");
    // Both busy slots free at once: the new namespace must be in that first round (kube's
    // delay queue may start the two released together in either order).
    assert!(
        position.is_some_and(|p| p < 2 * usize::from(CONCURRENCY)),
        "the new namespace started at position {position:?} of {}, after {:?}…",
        order.len(),
        &order[..order.len().min(8)]
    );
    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), controller).await;
}
