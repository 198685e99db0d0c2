//! One reconcile per Namespace: plan every baseline against it (pure), apply only the
//! differences, record the drift that remains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action as RequeueAction;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info_span, warn};

use crate::api::{DriftEntry, DriftReason, EnforcementMode, SecurityBaseline};
use crate::controller::reconcile::apply::{self, WriteError};
use crate::controller::state::context::Context;
use crate::controller::state::repair_budget::{self, WriteTarget};
use crate::controller::state::results::NamespaceResult;
use crate::domain::generated::{BaselineRef, GeneratedKind, wanted_pod_security};
use crate::domain::plan::{Change, NamespacePlan, NamespaceState, plan_release};
use crate::domain::pod_security::{
    WantedPodSecurity, held_pod_security, hold_owned_labels, labels_owned_by_us, labels_we_apply,
    merged_labels, namespace_labels_to_apply, pod_security_drift,
};
use crate::domain::selection::{NamespaceFacts, selects};
use crate::domain::snapshot::plan_with_audit;

/// Why a namespace reconcile must be retried.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("{count} writes failed in namespace {namespace}; first: {first}")]
    Writes {
        namespace: String,
        count: usize,
        first: WriteError,
    },
}

/// Retries failed writes with a short delay; status already shows the failure.
pub fn error_policy(
    _: Arc<PartialObjectMeta<Namespace>>,
    error: &ReconcileError,
    _: Arc<Context>,
) -> RequeueAction {
    warn!(%error, "namespace reconcile failed; retrying");
    RequeueAction::requeue(Duration::from_secs(5))
}

/// One baseline's plan for the namespace.
struct Planned {
    baseline: Arc<SecurityBaseline>,
    name: String,
    selected: bool,
    deleting: bool,
    plan: NamespacePlan,
    /// The resourceVersion of each of our objects (kind, name) the plan was made from.
    seen: BTreeMap<(GeneratedKind, String), Option<String>>,
}

impl Planned {
    fn enforcing(&self) -> bool {
        self.baseline.spec.mode == EnforcementMode::Enforce
    }
}

pub async fn reconcile(
    namespace: Arc<PartialObjectMeta<Namespace>>,
    ctx: Arc<Context>,
) -> Result<RequeueAction, ReconcileError> {
    let name = namespace.name_any();
    tracing::trace!(namespace = %name, "namespace reconcile queued");
    ctx.wait_ready().await;
    // Before the baselines are read: a spec change seen later re-plans this namespace.
    ctx.reconcile_clock.starting(&name);
    let span = info_span!("reconcile_namespace", namespace = %name);
    let started = std::time::Instant::now();
    let result = reconcile_namespace(&name, &namespace, &ctx)
        .instrument(span)
        .await;
    ctx.reconciled(&name);
    ctx.metrics
        .record_reconcile("namespace", result.is_ok(), started.elapsed());
    result
}

pub(in crate::controller) async fn reconcile_namespace(
    name: &str,
    namespace: &PartialObjectMeta<Namespace>,
    ctx: &Context,
) -> Result<RequeueAction, ReconcileError> {
    if namespace.metadata.deletion_timestamp.is_some() {
        // Its objects go with it; it no longer counts for any baseline.
        ctx.forget_namespace(name);
        for baseline in ctx.results.forget_namespace(name) {
            ctx.refresh_status(&baseline);
        }
        return Ok(RequeueAction::await_change());
    }
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    let facts = NamespaceFacts {
        name,
        labels: &labels,
    };

    // A baseline that cannot be read is not planned: nothing it owns is written.
    let mut baselines = ctx.readable_baselines();
    baselines.sort_by_key(|b| b.name_any());
    let mut planned: Vec<Planned> = baselines
        .into_iter()
        .filter_map(|baseline| {
            let uid = baseline.uid()?;
            let baseline_name = baseline.name_any();
            let reference = BaselineRef {
                name: &baseline_name,
                uid: &uid,
            };
            let generated = ctx.generated_in(name, &baseline_name);
            let seen = generated
                .iter()
                .map(|o| {
                    let version = o.metadata().resource_version.clone();
                    ((o.kind(), o.name().to_string()), version)
                })
                .collect();
            let ours: Vec<_> = generated.iter().map(Arc::as_ref).collect();
            let deleting = baseline.metadata.deletion_timestamp.is_some();
            let (selected, plan) = if deleting {
                (false, plan_release(&baseline.spec, reference, &ours))
            } else {
                let selected = selects(&baseline.spec, facts, &ctx.operator_namespace);
                let state = NamespaceState {
                    name,
                    labels: &labels,
                    selected,
                    ours: &ours,
                };
                let lookup = |kind, object_name: &str| ctx.lookup_name(kind, name, object_name);
                let plan = ctx.rbac.read(|index| {
                    plan_with_audit(&baseline.spec, reference, &state, &lookup, index)
                });
                (selected, plan)
            };
            Some(Planned {
                name: baseline_name,
                baseline,
                selected,
                deleting,
                plan,
                seen,
            })
        })
        .collect();

    // Objects first, then the namespace's labels.
    let mut failures: Vec<(String, WriteError)> = Vec::new();
    let mut done: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    // Applies already made whose watch events the cache has not seen yet (a reconcile
    // triggered by our own earlier write): neither written again nor drift.
    let mut in_flight: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    // Objects whose write budget is spent (another writer keeps changing them): not
    // written now, reported as Conflict, retried when the budget allows.
    let mut paused: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    // Creates the API server refused because an object that is not ours took the name.
    let mut refused: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    let mut retry_after: Option<Duration> = None;
    ctx.settle_writes(name, namespace.metadata.resource_version.as_deref());
    for planned in &planned {
        for change in &planned.plan.changes {
            let mut written_over = None;
            if let Change::Apply(object) = change {
                let body = object.to_json();
                let key = (object.kind(), object.name().to_string());
                let planned_over = planned.seen.get(&key).cloned().flatten();
                // The object changed in the cache since the plan was made (typically: the
                // watch event of our own earlier write arrived meanwhile). The plan is stale
                // for it, and that event has queued this namespace again: the next
                // reconcile decides, not this one (writing now was a duplicate write and a
                // Repaired event for drift that never was).
                let cache_moved = ctx.version_before_apply(object) != planned_over;
                if cache_moved || ctx.apply_in_flight(object, &body) {
                    in_flight.entry(planned.name.clone()).or_default().insert((
                        object.kind().as_str().to_string(),
                        object.name().to_string(),
                    ));
                    continue;
                }
                let target = WriteTarget::object(
                    &apply::api_resource(object.kind()),
                    Some(object.namespace()),
                    object.name(),
                );
                if let Err(wait) = ctx.repair_budget.check(target, Instant::now()) {
                    debug!(
                        kind = object.kind().as_str(),
                        object = object.name(),
                        ?wait,
                        "write budget spent: another writer keeps changing this object"
                    );
                    paused.entry(planned.name.clone()).or_default().insert((
                        object.kind().as_str().to_string(),
                        object.name().to_string(),
                    ));
                    retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                    continue;
                }
                // The version the plan was made from is the one the cache still shows.
                written_over = Some((planned_over, body));
            }
            match apply::execute(&ctx.client, change).await {
                Ok(()) => {
                    if let (Change::Apply(object), Some((version, body))) = (change, written_over) {
                        ctx.applied(object, version, &body);
                    }
                    let target = match change {
                        Change::Apply(object) => (
                            object.kind().as_str().to_string(),
                            object.name().to_string(),
                        ),
                        Change::Delete { kind, name, .. } => {
                            (kind.as_str().to_string(), name.clone())
                        }
                    };
                    done.entry(planned.name.clone()).or_default().insert(target);
                }
                Err(error) if error.refused_by_write_guard() => {
                    // Someone created an object by this name after our cache was read; the
                    // API server refused to let us take it over. Its watch event re-plans.
                    debug!(%error, "not ours: refused by the write guard");
                    if let Change::Apply(object) = change {
                        refused.entry(planned.name.clone()).or_default().insert((
                            object.kind().as_str().to_string(),
                            object.name().to_string(),
                        ));
                    }
                }
                // The client's budget (it counts failed attempts and retries too, which
                // the check above does not see coming) refused it: paused, not failed.
                Err(error) if error.budget_wait().is_some() => {
                    let wait = error.budget_wait().unwrap_or(repair_budget::WINDOW);
                    let (kind, object) = match change {
                        Change::Apply(object) => (object.kind(), object.name().to_string()),
                        Change::Delete { kind, name, .. } => (*kind, name.clone()),
                    };
                    paused
                        .entry(planned.name.clone())
                        .or_default()
                        .insert((kind.as_str().to_string(), object));
                    retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                }
                Err(error) => failures.push((planned.name.clone(), error)),
            }
        }
    }

    for planned in &mut planned {
        if let Some(objects) = paused.get(&planned.name) {
            mark_conflicts(&mut planned.plan.findings, objects, &budget_spent_message());
        }
        if let Some(objects) = refused.get(&planned.name) {
            mark_conflicts(&mut planned.plan.findings, objects, TAKEN_MESSAGE);
        }
    }

    let wants: Vec<(String, WantedPodSecurity<'_>)> = planned
        .iter()
        .filter(|p| p.selected && p.enforcing())
        .map(|p| (p.name.clone(), wanted_pod_security(&p.baseline.spec)))
        .filter(|(_, want)| !want.is_empty())
        .collect();
    let owned = labels_owned_by_us(
        namespace
            .metadata
            .managed_fields
            .as_deref()
            .unwrap_or_default(),
        &ctx.label_manager,
    );
    let held: Vec<WantedPodSecurity<'_>> = planned
        .iter()
        .filter(|p| p.selected && !p.enforcing())
        .map(|p| held_pod_security(&wanted_pod_security(&p.baseline.spec), &labels, &owned))
        .collect();
    let mut desired_labels = merged_labels(wants.iter().map(|(_, want)| want).chain(&held));
    if ctx.unreadable_baselines.any() {
        // An unreadable baseline may select any namespace and want any of our labels
        // (its selector and wants cannot be read): release and loosen nothing.
        let held = hold_owned_labels(&desired_labels, &labels, &owned);
        if held != desired_labels {
            debug!(
                unreadable = ?ctx.unreadable_baselines.names(),
                "Pod Security labels held for baselines this version cannot read"
            );
        }
        desired_labels = held;
    }
    let mut labels_after = labels.clone();
    let resource_version = namespace.metadata.resource_version.as_deref();
    // Label writes are writes to the namespace object.
    let labels_target = WriteTarget::object(
        &kube::core::ApiResource::erase::<Namespace>(&()),
        None,
        name,
    );
    // Label writes by a predecessor (a failover, a restart) within the minute count.
    if let Some(at) = repair_budget::last_written_by_us(
        namespace.metadata.managed_fields.as_deref(),
        &ctx.label_manager,
        None,
        Instant::now(),
    ) {
        ctx.repair_budget.seed(labels_target, at);
    }
    let mut labels_budget = ctx.repair_budget.check(labels_target, Instant::now());
    if let Err(wait) = labels_budget {
        retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
    }
    // Stricter labels someone else set (an admin, another shard) are neither taken nor
    // lowered.
    let desired_labels = labels_we_apply(&desired_labels, &labels, &owned);
    if let Some(to_apply) = namespace_labels_to_apply(&desired_labels, &labels, &owned)
        .filter(|_| labels_budget.is_ok())
    {
        // A reconcile triggered by our own writes can run before the namespace cache has
        // our label write: applying the same labels again would be a duplicate write.
        debug!(labels = ?to_apply, owned = ?owned, observed = ?labels, "applying Pod Security labels");
        let written = if ctx.labels_in_flight(name, resource_version, &to_apply) {
            Ok(())
        } else {
            apply::apply_namespace_labels(
                &ctx.client,
                &ctx.label_manager,
                name,
                resource_version,
                &to_apply,
            )
            .await
            .inspect(|()| ctx.labels_written(name, resource_version, to_apply.clone()))
        };
        match written {
            Ok(()) => {
                for released in owned.iter().filter(|k| !to_apply.contains_key(*k)) {
                    labels_after.remove(released);
                }
                labels_after.extend(to_apply);
            }
            // Planned from a version the namespace has left: its event re-plans it.
            Err(error) if error.is_stale() => {
                debug!(%error, "labels planned from a stale namespace")
            }
            Err(error) => match error.budget_wait() {
                Some(wait) => {
                    retry_after = Some(retry_after.map_or(wait, |r| r.min(wait)));
                    labels_budget = Err(wait);
                }
                None => {
                    let blamed = wants.first().map(|(b, _)| b.clone()).unwrap_or_default();
                    failures.push((blamed, error));
                }
            },
        }
    }
    let sharing: BTreeSet<&str> = wants.iter().map(|(b, _)| b.as_str()).collect();

    for planned in &planned {
        record(
            ctx,
            name,
            namespace,
            planned,
            done.get(&planned.name),
            in_flight.get(&planned.name),
            &labels_after,
            &sharing,
            labels_budget.is_err(),
            &failures,
        )
        .await;
    }

    let failure_count = failures.len();
    match failures.into_iter().next() {
        // One more repair once the budget allows (plus a little, so the check passes).
        None => Ok(
            retry_after.map_or_else(RequeueAction::await_change, |wait| {
                RequeueAction::requeue(wait + Duration::from_millis(100))
            }),
        ),
        Some((_, first)) => Err(ReconcileError::Writes {
            namespace: name.to_string(),
            count: failure_count,
            first,
        }),
    }
}

/// Records what is left of one baseline's drift here, counts repairs, emits Events.
#[allow(clippy::too_many_arguments)]
async fn record(
    ctx: &Context,
    name: &str,
    namespace: &PartialObjectMeta<Namespace>,
    planned: &Planned,
    done: Option<&BTreeSet<(String, String)>>,
    in_flight: Option<&BTreeSet<(String, String)>>,
    labels_after: &BTreeMap<String, String>,
    sharing: &BTreeSet<&str>,
    labels_paused: bool,
    failures: &[(String, WriteError)],
) {
    // An audit Violation is never repaired by a write of ours, even on an object we wrote.
    let repaired_here = |finding: &DriftEntry| {
        finding.reason != DriftReason::Violation
            && done.is_some_and(|d| d.contains(&(finding.kind.clone(), finding.name.clone())))
    };
    let mut remaining: Vec<DriftEntry> = planned
        .plan
        .findings
        .iter()
        .filter(|f| f.kind != "Namespace" && !repaired_here(f))
        .filter(|f| {
            f.reason == DriftReason::Violation
                || !in_flight.is_some_and(|w| w.contains(&(f.kind.clone(), f.name.clone())))
        })
        .cloned()
        .collect();
    let repaired: Vec<&DriftEntry> = planned
        .plan
        .findings
        .iter()
        .filter(|f| f.kind != "Namespace" && repaired_here(f))
        .collect();
    let mut repairs = repaired.len();
    if planned.selected {
        let before = planned
            .plan
            .findings
            .iter()
            .filter(|f| f.kind == "Namespace")
            .count();
        let after = pod_security_drift(
            name,
            &wanted_pod_security(&planned.baseline.spec),
            labels_after,
        );
        let mut after = after;
        if planned.enforcing() {
            repairs += before.saturating_sub(after.len());
            if labels_paused {
                let namespace_key = after
                    .iter()
                    .map(|f| (f.kind.clone(), f.name.clone()))
                    .collect();
                mark_conflicts(&mut after, &namespace_key, &budget_spent_message());
            }
        }
        remaining.extend(after);
    }
    remaining.sort();
    let failure = failures
        .iter()
        .find(|(baseline, _)| baseline == &planned.name)
        .map(|(_, error)| error.to_failure());

    let result =
        (planned.selected || !remaining.is_empty() || failure.is_some()).then(|| NamespaceResult {
            generation: planned.baseline.metadata.generation.unwrap_or_default(),
            selected: planned.selected,
            findings: remaining.clone(),
            failure,
            shared_pod_security_with: if planned.selected
                && planned.enforcing()
                && sharing.contains(planned.name.as_str())
            {
                sharing
                    .iter()
                    .filter(|b| **b != planned.name)
                    .map(|b| b.to_string())
                    .collect()
            } else {
                BTreeSet::new()
            },
        });
    let previous = ctx.results.record(&planned.name, name, result.clone());
    if planned.enforcing() && !planned.deleting && repairs > 0 {
        ctx.results
            .add_repairs(&planned.name, i64::try_from(repairs).unwrap_or(i64::MAX));
        ctx.metrics
            .add_repairs(&planned.name, u64::try_from(repairs).unwrap_or_default());
    }
    if previous != result {
        ctx.refresh_status(&planned.name);
    }

    // Events are news: drift that appears while we run. A first look at a namespace after
    // start-up (its state predates us) is not news, so a restart writes no Events.
    let is_news = previous.is_some()
        || namespace
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|created| created_since(created.0, ctx.started));
    if !is_news || planned.deleting {
        return;
    }
    let previous_findings = previous.map(|p| p.findings).unwrap_or_default();
    let new_drift: Vec<&DriftEntry> = remaining
        .iter()
        .filter(|f| !previous_findings.contains(f))
        .collect();
    let reference = planned.baseline.object_ref(&());
    if !repaired.is_empty() && planned.enforcing() {
        publish(
            ctx,
            &reference,
            EventType::Normal,
            "Repaired",
            describe(name, &repaired),
        )
        .await;
    }
    if !new_drift.is_empty() {
        publish(
            ctx,
            &reference,
            EventType::Warning,
            "DriftDetected",
            describe(name, &new_drift),
        )
        .await;
    }
}

/// Whether an object created at `created` (a creationTimestamp: whole seconds, truncated)
/// was created after the controller started at `started` (sub-second). An object created in
/// the second the controller started counts as new: its truncated timestamp would otherwise
/// read as older than the start, and its drift would never be news.
fn created_since(
    created: k8s_openapi::jiff::Timestamp,
    started: k8s_openapi::jiff::Timestamp,
) -> bool {
    created.as_second() >= started.as_second()
}

/// Drift on objects whose write budget is spent is a fight with another writer, not
/// something the next write would fix; an object the write guard kept us from creating is
/// someone else's: say so.
fn mark_conflicts(
    findings: &mut [DriftEntry],
    objects: &BTreeSet<(String, String)>,
    message: &str,
) {
    for finding in findings.iter_mut() {
        let key = (finding.kind.clone(), finding.name.clone());
        if finding.reason != DriftReason::Violation && objects.contains(&key) {
            finding.reason = DriftReason::Conflict;
            // Stable text: status is written only when it changes.
            finding.message = message.to_string();
        }
    }
}

fn budget_spent_message() -> String {
    format!(
        "another writer keeps changing this object: it was written {} times within {} s \
         and changed again each time, so repairs pause until a minute has passed \
         (its managedFields name the other field manager)",
        repair_budget::MAX_WRITES,
        repair_budget::WINDOW.as_secs()
    )
}

const TAKEN_MESSAGE: &str = "an object that is not ours was created with this name while we were creating \
     ours; left untouched (the API server's kube-baseline-write-guard refused the write)";

fn describe(namespace: &str, findings: &[&DriftEntry]) -> String {
    let items: Vec<String> = findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} ({})",
                reason_word(f.reason),
                f.kind,
                f.name,
                f.check
            )
        })
        .collect();
    let mut note = format!("namespace {namespace}: {}", items.join("; "));
    note.truncate(1000);
    note
}

fn reason_word(reason: DriftReason) -> &'static str {
    reason.as_str()
}

async fn publish(
    ctx: &Context,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        debug!(%error, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn an_object_created_in_the_second_the_controller_started_is_new() {
        let started: Timestamp = "2026-12-01T06:52:16.03Z".parse().unwrap();
        let same_second: Timestamp = "2026-12-01T06:52:16Z".parse().unwrap();
        let before: Timestamp = "2026-12-01T06:52:15Z".parse().unwrap();
        let after: Timestamp = "2026-12-01T06:52:17Z".parse().unwrap();
        assert!(created_since(same_second, started));
        assert!(created_since(after, started));
        assert!(
            !created_since(before, started),
            "older: a restart's first look, not news"
        );
    }
}
