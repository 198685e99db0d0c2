//! One reconcile per SecurityBaseline: the finalizer, and the status aggregated from the
//! namespace results, written only when it changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action as RequeueAction;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::{Api, ResourceExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{EnforcementMode, FINALIZER, SecurityBaseline};
use crate::controller::reconcile::apply::apply_params;
use crate::controller::state::context::Context;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::reports::{
    ClusterScope, build as build_report, cluster_checks, has_cluster_checks,
};
use crate::domain::selection::selects_labelled;
use crate::domain::status::{Compliance, StatusInputs, build_status};
use crate::domain::waivers::{Waivers, is_stale};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot write the status of SecurityBaseline {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "SecurityBaseline {name} still has generated objects or results; waiting for namespaces to release them"
    )]
    CleanupPending { name: String },
    #[error("finalizer of SecurityBaseline {name}: {message}")]
    Finalizer { name: String, message: String },
}

pub fn error_policy(
    _: Arc<SecurityBaseline>,
    error: &ReconcileError,
    _: Arc<Context>,
) -> RequeueAction {
    match error {
        ReconcileError::CleanupPending { .. } => {
            debug!(%error, "cleanup in progress");
            RequeueAction::requeue(Duration::from_millis(500))
        }
        _ => {
            warn!(%error, "baseline reconcile failed; retrying");
            RequeueAction::requeue(Duration::from_secs(5))
        }
    }
}

pub async fn reconcile(
    baseline: Arc<SecurityBaseline>,
    ctx: Arc<Context>,
) -> Result<RequeueAction, ReconcileError> {
    ctx.wait_ready().await;
    // Which baseline supplies the published audit policy may have changed.
    crate::controller::feeds::nodes::baseline_changed(&ctx);
    let name = baseline.name_any();
    if ctx.unreadable_baselines.hides(&name) {
        // Cached from before it became unreadable: its finalizer and status are left as
        // they are until this version can read it again.
        debug!(baseline = %name, "cannot be read now; not reconciled");
        return Ok(RequeueAction::await_change());
    }
    let span = info_span!("reconcile_baseline", baseline = %name, generation = baseline.metadata.generation);
    let started = std::time::Instant::now();
    let metrics = ctx.metrics.clone();
    let result = async move {
        let api: Api<SecurityBaseline> = Api::all(ctx.client.clone());
        // Audit mode writes nothing but status and Events, so it takes no finalizer; one left
        // from an earlier Enforce generation is still honoured.
        let needs_finalizer = baseline.spec.mode == EnforcementMode::Enforce
            || baseline.finalizers().iter().any(|f| f == FINALIZER);
        if !needs_finalizer {
            if baseline.metadata.deletion_timestamp.is_some() {
                ctx.results.forget(&name);
                return Ok(RequeueAction::await_change());
            }
            return publish_status(&baseline, &ctx).await;
        }
        finalizer(&api, FINALIZER, baseline, |event| async {
            match event {
                Finalizer::Apply(baseline) => publish_status(&baseline, &ctx).await,
                Finalizer::Cleanup(baseline) => cleanup(&baseline, &ctx),
            }
        })
        .await
        .map_err(|error| match error {
            kube::runtime::finalizer::Error::ApplyFailed(inner)
            | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
            other => ReconcileError::Finalizer {
                name: name.clone(),
                message: other.to_string(),
            },
        })
    }
    .instrument(span)
    .await;
    // A pending cleanup is waiting, not failing.
    let failed =
        matches!(&result, Err(error) if !matches!(error, ReconcileError::CleanupPending { .. }));
    metrics.record_reconcile("securitybaseline", !failed, started.elapsed());
    result
}

/// The finalizer is released once every namespace has let go of the baseline: its objects
/// deleted (Delete) or orphaned (Retain), its labels released.
fn cleanup(baseline: &SecurityBaseline, ctx: &Context) -> Result<RequeueAction, ReconcileError> {
    let name = baseline.name_any();
    let uid = baseline.uid().unwrap_or_default();
    let objects_left = ctx.generated.values().any(|index| {
        index.any(|cached| {
            let o = cached.shared();
            o.label(crate::api::BASELINE_LABEL) == Some(name.as_str())
                && (baseline.spec.on_unselect == crate::api::OnUnselect::Delete
                    || o.metadata()
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|r| r.uid == uid))
        })
    });
    // In either mode: an Audit baseline still releases what an earlier Enforce made.
    if objects_left || ctx.results.has_namespaces(&name) {
        return Err(ReconcileError::CleanupPending { name });
    }
    ctx.results.forget(&name);
    ctx.metrics.forget_baseline(&name);
    ctx.reports.forget_baseline(&name);
    info!(baseline = %name, "released; removing finalizer");
    Ok(RequeueAction::await_change())
}

/// How often results and metrics of baselines that are gone are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Drops the results and metric series of baselines that no longer exist. A baseline with
/// our finalizer is forgotten by its cleanup; one without (Audit mode) just disappears, and
/// its `kube_baseline_*` series would otherwise stay — an alert on a baseline that is gone.
/// Comparing with the store (rather than acting on delete events) also covers a deletion
/// that happened while a watch was disconnected. Never returns.
pub async fn prune_deleted(ctx: Arc<Context>) {
    ctx.wait_ready().await;
    loop {
        tokio::time::sleep(PRUNE_EVERY).await;
        let existing: BTreeSet<String> = ctx
            .readable_baselines()
            .iter()
            .map(|b| b.name_any())
            .collect();
        for gone in ctx
            .results
            .baselines()
            .into_iter()
            .filter(|name| !existing.contains(name))
        {
            info!(baseline = %gone, "baseline is gone; dropping its results and metrics");
            ctx.results.forget(&gone);
            ctx.metrics.forget_baseline(&gone);
            ctx.reports.forget_baseline(&gone);
        }
    }
}

/// Computes the status from the namespace results and writes it if it changed.
pub(in crate::controller) async fn publish_status(
    baseline: &SecurityBaseline,
    ctx: &Context,
) -> Result<RequeueAction, ReconcileError> {
    let name = baseline.name_any();
    let generation = baseline.metadata.generation.unwrap_or_default();
    let observed = baseline.status.as_ref().and_then(|s| s.observed_generation);
    if observed == Some(generation) && ctx.in_startup_pass() {
        // Namespaces this process has not reconciled yet would show as pending and be
        // written back a moment later: wait for the start-up pass (it asks again at its end).
        debug!(baseline = %name, "start-up pass in progress; status unchanged until it ends");
        return Ok(RequeueAction::await_change());
    }
    if let Some(status) = &baseline.status {
        ctx.results.seed_repairs(&name, status.summary.repairs);
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let waivers = Waivers::new(&baseline.spec.waivers, now);
    let namespaces = ctx.namespaces.state();
    let mut inputs = ctx.results.read(&name, |results, repairs| {
        let mut inputs = StatusInputs {
            generation,
            repairs,
            ..StatusInputs::default()
        };
        for namespace in &namespaces {
            if namespace.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns_name = namespace.metadata.name.as_deref().unwrap_or_default();
            let labels: &CachedNamespace = namespace;
            if !selects_labelled(&baseline.spec, ns_name, labels, &ctx.operator_namespace) {
                continue;
            }
            inputs.namespaces_selected += 1;
            match results.get(ns_name) {
                Some(result) if result.selected && result.generation == generation => {
                    let lapsed = result.waived.iter().any(|w| !waivers.is_active(&w.waiver));
                    if !result.findings.is_empty() || lapsed {
                        inputs.namespaces_drifted += 1;
                    }
                    if result.gated {
                        inputs.namespaces_gated += 1;
                    }
                }
                _ => inputs.namespaces_pending += 1,
            }
        }
        for result in results.values() {
            inputs.drift.extend(result.findings.iter().cloned());
            inputs.waived.extend(result.waived.iter().cloned());
            if let Some(failure) = &result.failure {
                inputs.failures.push(failure.clone());
            }
            inputs
                .shared_pod_security_with
                .extend(result.shared_pod_security_with.iter().cloned());
        }
        inputs
    });
    drop(namespaces);
    let nodes = crate::controller::feeds::nodes::node_status(ctx, baseline);
    inputs.nodes_selected = nodes.selected;
    inputs.nodes_compliant = nodes.compliant;
    // Node, control-plane and version findings are in no namespace.
    let mut elsewhere = nodes.drift;
    inputs.failures.extend(nodes.failures);
    let versions = crate::controller::feeds::versions::version_status(ctx, baseline);
    // Also when a waiver starts or expires: node findings have no namespace reconcile to
    // requeue, and the waivers' states in status change then.
    let next_change = [
        versions.as_ref().and_then(|(v, _)| v.next_change),
        waivers.next_change(),
    ]
    .into_iter()
    .flatten()
    .min();
    record_end_of_life(ctx, &name, versions.as_ref().map(|(v, _)| v));
    if let Some((verdict, status)) = versions {
        elsewhere.extend(verdict.findings);
        inputs.kubernetes_version = Some(status);
    }
    let split = waivers.split(elsewhere, None);
    let cluster_report = has_cluster_checks(&baseline.spec).then(|| {
        let scope = ClusterScope {
            nodes_selected: nodes.selected,
            versions_read: inputs.kubernetes_version.is_some(),
        };
        build_report(
            &split.drift,
            &split.waived,
            &cluster_checks(&baseline.spec, scope),
            ctx.reports.max_results(),
        )
    });
    ctx.reports.set_cluster(&name, cluster_report);
    inputs.drift.extend(split.drift);
    inputs.waived.extend(split.waived);
    // A namespace result recorded before its waiver expired (or was removed) and not yet
    // re-planned: its findings are drift from now on.
    let (waived, lapsed): (Vec<_>, Vec<_>) = std::mem::take(&mut inputs.waived)
        .into_iter()
        .partition(|w| waivers.is_active(&w.waiver));
    inputs.waived = waived;
    inputs
        .drift
        .extend(lapsed.iter().map(crate::api::WaivedEntry::entry));
    inputs.waived.sort();
    inputs.waived.dedup();
    inputs.waivers = waivers.report(&inputs.waived);

    let namespace_counts = inputs.namespace_counts();
    let mut drift_by_check = std::collections::BTreeMap::<String, i64>::new();
    for entry in &inputs.drift {
        *drift_by_check.entry(entry.check.clone()).or_default() += 1;
    }
    let mut waived_by_waiver = std::collections::BTreeMap::<String, i64>::new();
    for entry in &inputs.waived {
        *waived_by_waiver.entry(entry.waiver.clone()).or_default() += 1;
    }
    let status = build_status(inputs, baseline.status.as_ref(), &Time(now));
    ctx.metrics.set_waivers(
        &name,
        status.summary.waived,
        &baseline.spec.waivers,
        &waived_by_waiver,
    );
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    ctx.metrics
        .set_gated(&name, status.summary.namespaces_gated);
    ctx.metrics.set_baseline(
        &name,
        &drift_by_check,
        [
            ("compliant", count(namespace_counts.compliant())),
            ("drifted", count(namespace_counts.drifted)),
            ("pending", count(namespace_counts.pending)),
        ],
        [
            ("compliant", status.summary.nodes_compliant),
            (
                "drifted",
                status.summary.nodes_selected - status.summary.nodes_compliant,
            ),
        ],
        // The rule the Compliant condition was built with, over the same counts.
        Compliance::of(
            usize::try_from(status.drift_total).unwrap_or(usize::MAX),
            namespace_counts.pending,
        ),
    );
    if baseline.status.as_ref() == Some(&status) {
        return Ok(await_change_or_time(next_change));
    }
    // A status written by a predecessor (a failover, a restart) within the minute counts.
    let status_path = format!(
        "{}/{name}/status",
        <SecurityBaseline as kube::Resource>::url_path(&(), None)
    );
    let now = std::time::Instant::now();
    if let Some(at) = crate::controller::state::repair_budget::last_written_by_us(
        baseline.metadata.managed_fields.as_deref(),
        crate::api::FIELD_MANAGER,
        Some("status"),
        now,
    ) {
        ctx.repair_budget.seed(
            crate::controller::state::repair_budget::WriteTarget::at_path(&status_path),
            at,
        );
    }
    // Checked here, not left to the client's budget layer: every namespace result change
    // re-runs this, and each refused attempt there is a warning (198 in a minute of a
    // benchmark run). Written once the budget allows, with whatever the status says then.
    let target = crate::controller::state::repair_budget::WriteTarget::at_path(&status_path);
    if let Err(wait) = ctx.repair_budget.check(target, now) {
        debug!(?wait, "status write budget spent; writing it later");
        return Ok(RequeueAction::requeue(wait));
    }
    let api: Api<SecurityBaseline> = Api::all(ctx.client.clone());
    let patch = serde_json::json!({
        "apiVersion": "kube-baseline.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "status": status,
    });
    let params: PatchParams = apply_params();
    match api.patch_status(&name, &params, &Patch::Apply(patch)).await {
        Ok(_) => {}
        // The status's write budget is spent (it changed 3 times within the minute):
        // written again when the budget allows, with whatever it says by then.
        Err(error) if crate::controller::state::repair_budget::budget_spent(&error).is_some() => {
            let wait = crate::controller::state::repair_budget::budget_spent(&error)
                .map_or(crate::controller::state::repair_budget::WINDOW, |spent| {
                    spent.retry_in
                });
            debug!(?wait, "status write budget spent; writing it later");
            return Ok(RequeueAction::requeue(wait));
        }
        Err(source) => {
            return Err(ReconcileError::WriteStatus {
                name: name.clone(),
                source,
            });
        }
    }
    debug!(drift = status.drift_total, "status written");
    // After the write: the next comparison is with this status, so each change is one Event
    // even when a write is refused and retried.
    if namespace_counts.pending == 0 {
        publish_waiver_events(ctx, baseline, &status).await;
    }
    Ok(await_change_or_time(next_change))
}

/// Waits for a change, or until `next_change`: the instant a finding changes by time alone
/// (a release reaching its end of life).
fn await_change_or_time(next_change: Option<k8s_openapi::jiff::Timestamp>) -> RequeueAction {
    let Some(at) = next_change else {
        return RequeueAction::await_change();
    };
    let wait = k8s_openapi::jiff::Timestamp::now()
        .duration_until(at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    // At least a second: the instant has passed only once `now` is past it.
    RequeueAction::requeue(wait.max(Duration::from_secs(1)))
}

/// The end-of-life metric of a baseline with version checks (removed without them).
fn record_end_of_life(
    ctx: &Context,
    baseline: &str,
    versions: Option<&crate::domain::versions::VersionVerdict>,
) {
    let eol = versions.and_then(|v| v.end_of_life.as_ref());
    let minor = eol.map(|eol| eol.minor.to_string());
    let source = eol.map(|eol| eol.source.label().to_owned());
    let series = eol
        .zip(minor.as_deref())
        .zip(source.as_deref())
        .map(|((eol, minor), source)| (minor, source, eol.first_unsupported_instant().as_second()));
    ctx.metrics.set_end_of_life(baseline, series);
}

/// Events about waivers, once per change: compared with the status last written, so an
/// unchanged status (an idle cluster) emits nothing. `WaiverExpired` when a waiver's
/// findings return because it expired; `WaiverStale` when an active waiver matches nothing
/// (only once every namespace is evaluated: a pending one might still match).
async fn publish_waiver_events(
    ctx: &Context,
    baseline: &SecurityBaseline,
    status: &crate::api::SecurityBaselineStatus,
) {
    let before = baseline
        .status
        .as_ref()
        .map(|s| s.waivers.as_slice())
        .unwrap_or_default();
    // A stale waiver in a status written while namespaces were pending was not announced.
    let announced_stale = baseline
        .status
        .as_ref()
        .is_some_and(|s| s.summary.namespaces_pending == 0);
    let reference = kube::Resource::object_ref(baseline, &());
    for waiver in &status.waivers {
        let previous = before.iter().find(|p| p.name == waiver.name);
        let (reason, note) = if waiver.state == crate::api::WaiverState::Expired
            && previous.is_none_or(|p| p.state != crate::api::WaiverState::Expired)
        {
            (
                "WaiverExpired",
                format!(
                    "waiver {} expired at {}: the findings it accepted are drift again",
                    waiver.name, waiver.expires
                ),
            )
        } else if is_stale(waiver) && (!announced_stale || previous.is_none_or(|p| !is_stale(p))) {
            (
                "WaiverStale",
                format!(
                    "waiver {} matches no finding: remove it, or fix its checks and objects",
                    waiver.name
                ),
            )
        } else {
            continue;
        };
        let event = kube::runtime::events::Event {
            type_: kube::runtime::events::EventType::Warning,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Waive".to_owned(),
            secondary: None,
        };
        ctx.recorder.publish(&event, &reference).await;
    }
}
