//! One reconcile per Namespace: plan every baseline against it (pure), apply only the
//! differences, record the drift that remains.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::controller::Action as RequeueAction;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{Instrument, debug, info_span, warn};

use crate::api::{DriftEntry, DriftReason, EnforcementMode, SecurityBaseline, WaivedEntry};
use crate::controller::reconcile::apply::{self, WriteError};
use crate::controller::state::context::Context;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::controller::state::previews::{Lookup, Target};
use crate::controller::state::repair_budget::{self, WriteTarget};
use crate::controller::state::results::NamespaceResult;
use crate::controller::state::writes_in_flight::BodyHash;
use crate::domain::generated::{
    BaselineRef, GeneratedKind, NamespacedObject, check_ids, gated_rollout, wanted_pod_security,
};
use crate::domain::plan::{Change, NamespacePlan, NamespaceState, mark_conflicts, plan_release};
use crate::domain::pod_security::preview::{
    self as ps_preview, Preview, enforce_labels, hold_enforce, raises_enforce,
};
use crate::domain::pod_security::{
    WantedPodSecurity, labels_to_apply, merged_labels, namespace_labels_to_apply,
    pod_security_drift,
};
use crate::domain::selection::{NamespaceFacts, selects};
use crate::domain::snapshot::plan_with_audit;
use crate::domain::tls::{GatewayFacts, IngressFacts, NamespaceTls, SecretFacts, SecretsView};
use crate::domain::waivers::Waivers;

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
    _: Arc<CachedNamespace>,
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

    /// A waiver accepts this baseline's Pod Security label drift here.
    fn pod_security_waived(&self) -> bool {
        self.plan
            .waived
            .iter()
            .any(|w| w.kind == "Namespace" && w.check == check_ids::POD_SECURITY)
    }
}

pub async fn reconcile(
    namespace: Arc<CachedNamespace>,
    ctx: Arc<Context>,
) -> Result<RequeueAction, ReconcileError> {
    let name = namespace.name_any();
    tracing::trace!(namespace = %name, "namespace reconcile queued");
    ctx.wait_ready().await;
    // Before the baselines are read: a spec change seen later re-plans this namespace.
    ctx.reconcile_clock.starting(&name);
    let _reconciling = ctx.reports.reconciling();
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
    namespace: &CachedNamespace,
    ctx: &Context,
) -> Result<RequeueAction, ReconcileError> {
    if namespace.metadata.deletion_timestamp.is_some() {
        forget_deleted(name, ctx);
        return Ok(RequeueAction::await_change());
    }
    let observed_labels = namespace.labels();
    let mut planned = plan_baselines(name, &observed_labels, ctx);
    ctx.settle_writes(name, namespace.metadata.resource_version.as_deref());
    // The objects and the namespace's labels at once: neither reads the other's answer, and
    // a new namespace is then protected after one round trip, not two (longer the busier
    // the API server is).
    let mut label_writes = ObjectWrites::default();
    let (mut writes, labels) = futures::future::join(
        apply_objects(ctx, &planned),
        apply_labels(
            ctx,
            name,
            namespace,
            &observed_labels,
            &planned,
            &mut label_writes,
        ),
    )
    .await;
    writes.absorb(label_writes);
    mark_unwritten(&mut planned, &writes);
    for planned in &planned {
        record(ctx, name, namespace, planned, &writes, &labels).await;
    }
    let findings_change = planned.iter().filter_map(|p| p.plan.next_change).min();
    writes.into_requeue(name, until(findings_change))
}

/// How long until `instant` (at least a second: it has passed only once `now` is past it).
fn until(instant: Option<k8s_openapi::jiff::Timestamp>) -> Option<Duration> {
    let wait = k8s_openapi::jiff::Timestamp::now()
        .duration_until(instant?)
        .try_into()
        .unwrap_or(Duration::ZERO);
    Some(wait.max(Duration::from_secs(1)))
}

/// A namespace being deleted: its objects go with it; it no longer counts for any baseline.
fn forget_deleted(name: &str, ctx: &Context) {
    ctx.forget_namespace(name);
    for baseline in ctx.results.forget_namespace(name) {
        ctx.refresh_status(&baseline);
    }
}

/// Plans every readable baseline against the namespace (pure, in `domain`).
fn plan_baselines(name: &str, labels: &BTreeMap<String, String>, ctx: &Context) -> Vec<Planned> {
    let facts = NamespaceFacts { name, labels };
    // A baseline that cannot be read is not planned: nothing it owns is written.
    let mut baselines = ctx.readable_baselines();
    baselines.sort_by_key(|b| b.name_any());
    baselines
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
                    labels,
                    selected,
                    ours: &ours,
                };
                let lookup = |kind, object_name: &str| ctx.lookup_name(kind, name, object_name);
                let tls = NamespaceTlsFacts::read(ctx, name, baseline.spec.tls.is_some());
                let ingresses: Vec<&_> = tls.ingresses.iter().map(AsRef::as_ref).collect();
                let gateways: Vec<&_> = tls.gateways.iter().map(AsRef::as_ref).collect();
                let now = k8s_openapi::jiff::Timestamp::now();
                let tls = NamespaceTls {
                    ingresses: &ingresses,
                    gateways: &gateways,
                    secrets: tls.secrets_view(),
                    now,
                };
                let waivers = Waivers::new(&baseline.spec.waivers, now);
                let plan = ctx.rbac.read(|index| {
                    plan_with_audit(
                        &baseline.spec,
                        reference,
                        &state,
                        &lookup,
                        index,
                        &tls,
                        &waivers,
                    )
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
        .collect()
}

/// What the TLS checks read of one namespace, from the caches.
struct NamespaceTlsFacts {
    ingresses: Vec<Arc<IngressFacts>>,
    gateways: Vec<Arc<GatewayFacts>>,
    /// The Secrets the Ingresses name that the cache holds; None without `--tls-secrets`.
    secrets: Option<Vec<(String, Arc<SecretFacts>)>>,
}

impl NamespaceTlsFacts {
    fn read(ctx: &Context, namespace: &str, wanted: bool) -> Self {
        if !wanted {
            return Self {
                ingresses: Vec::new(),
                gateways: Vec::new(),
                secrets: None,
            };
        }
        let ingresses = ctx.ingresses.in_namespace(namespace, |_| true);
        let gateways = ctx.gateways.in_namespace(namespace);
        let secrets = ctx.tls_secrets.as_ref().map(|index| {
            let named: BTreeSet<&str> = ingresses
                .iter()
                .flat_map(|ingress| &ingress.tls)
                .filter_map(|entry| entry.secret_name.as_deref())
                .collect();
            named
                .into_iter()
                .filter_map(|name| Some((name.to_owned(), index.get(namespace, name)?)))
                .collect()
        });
        Self {
            ingresses,
            gateways,
            secrets,
        }
    }

    fn secrets_view(&self) -> SecretsView<'_> {
        match &self.secrets {
            None => SecretsView::NotRead(crate::controller::feeds::tls_secrets::NOT_READ),
            Some(secrets) => SecretsView::Read {
                secrets: secrets
                    .iter()
                    .map(|(name, facts)| (name.as_str(), facts.as_ref()))
                    .collect(),
                only_tls_type: true,
            },
        }
    }
}

/// What the object writes of one reconcile did, by baseline: (kind, name) sets.
#[derive(Default)]
struct ObjectWrites {
    failures: Vec<(String, WriteError)>,
    done: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Applies already made whose watch events the cache has not seen yet (a reconcile
    /// triggered by our own earlier write): neither written again nor drift.
    in_flight: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Objects whose write budget is spent (another writer keeps changing them): not
    /// written now, reported as Conflict, retried when the budget allows.
    paused: BTreeMap<String, BTreeSet<(String, String)>>,
    /// Creates the API server refused because an object that is not ours took the name.
    refused: BTreeMap<String, BTreeSet<(String, String)>>,
    retry_after: Option<Duration>,
}

impl ObjectWrites {
    /// Takes in what another step of the same reconcile did (its failures after ours).
    fn absorb(&mut self, other: ObjectWrites) {
        let ObjectWrites {
            failures,
            done,
            in_flight,
            paused,
            refused,
            retry_after,
        } = other;
        self.failures.extend(failures);
        for (mine, theirs) in [
            (&mut self.done, done),
            (&mut self.in_flight, in_flight),
            (&mut self.paused, paused),
            (&mut self.refused, refused),
        ] {
            for (baseline, keys) in theirs {
                mine.entry(baseline).or_default().extend(keys);
            }
        }
        if let Some(wait) = retry_after {
            self.retry_within(wait);
        }
    }

    /// When to reconcile again: after a failure (an error), when a budget allows, when a
    /// finding changes by time alone (`findings_change`, e.g. a certificate expiring), or
    /// on the next change.
    fn into_requeue(
        self,
        name: &str,
        findings_change: Option<Duration>,
    ) -> Result<RequeueAction, ReconcileError> {
        let Self {
            failures,
            retry_after,
            ..
        } = self;
        let failure_count = failures.len();
        match failures.into_iter().next() {
            None => {
                // One more repair once the budget allows (plus a little, so the check passes).
                let budget = retry_after.map(|wait| wait + Duration::from_millis(100));
                let sooner = match (budget, findings_change) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Ok(sooner.map_or_else(RequeueAction::await_change, RequeueAction::requeue))
            }
            Some((_, first)) => Err(ReconcileError::Writes {
                namespace: name.to_string(),
                count: failure_count,
                first,
            }),
        }
    }
}

/// Applies each baseline's planned changes, skipping those in flight, paused by the write
/// budget or refused by the write guard. The writes go out together: they are different
/// objects, and a new namespace's protection then costs one round trip, not one per object.
async fn apply_objects(ctx: &Context, planned: &[Planned]) -> ObjectWrites {
    let mut writes = ObjectWrites::default();
    let mut ready = Vec::new();
    for planned in planned {
        for change in &planned.plan.changes {
            if let Some(write) = ready_to_write(ctx, planned, change, &mut writes) {
                ready.push((planned, change, write));
            }
        }
    }
    let answers =
        futures::future::join_all(ready.iter().map(|(_, change, write)| {
            apply::execute(&ctx.client, change, write.take_over_first())
        }))
        .await;
    for ((planned, change, write), answer) in ready.into_iter().zip(answers) {
        note_write(ctx, planned, change, write, answer, &mut writes);
    }
    writes
}

/// (kind, name) of the object a change writes.
fn change_key(change: &Change) -> (String, String) {
    match change {
        Change::Create(object) | Change::Apply(object) => (
            object.kind().as_str().to_string(),
            object.name().to_string(),
        ),
        Change::Delete { kind, name, .. } => (kind.as_str().to_string(), name.clone()),
    }
}

/// Adds `key` to `baseline`'s set.
fn note(
    sets: &mut BTreeMap<String, BTreeSet<(String, String)>>,
    baseline: &str,
    key: (String, String),
) {
    sets.entry(baseline.to_string()).or_default().insert(key);
}

impl ObjectWrites {
    /// Waits at most `wait` before the next reconcile.
    fn retry_within(&mut self, wait: Duration) {
        self.retry_after = Some(self.retry_after.map_or(wait, |r| r.min(wait)));
    }
}

/// A planned change that goes out now.
enum ReadyWrite {
    /// A create or an apply over the cached version the plan was made from, with the body
    /// sent; an apply to an object we created takes its fields over first.
    Object {
        over: Option<String>,
        body: BodyHash,
        take_over_first: bool,
    },
    Delete,
}

impl ReadyWrite {
    fn take_over_first(&self) -> bool {
        matches!(
            self,
            ReadyWrite::Object {
                take_over_first: true,
                ..
            }
        )
    }
}

/// Whether a planned change is written now, or None after noting why not.
fn ready_to_write(
    ctx: &Context,
    planned: &Planned,
    change: &Change,
    writes: &mut ObjectWrites,
) -> Option<ReadyWrite> {
    match change {
        Change::Create(object) => {
            ready_to_apply(ctx, planned, object, writes).map(|(over, body)| ReadyWrite::Object {
                over,
                body,
                take_over_first: false,
            })
        }
        Change::Apply(object) => {
            ready_to_apply(ctx, planned, object, writes).map(|(over, body)| ReadyWrite::Object {
                over,
                body,
                take_over_first: ctx.apply_needs_take_over(object),
            })
        }
        Change::Delete { .. } => Some(ReadyWrite::Delete),
    }
}

/// Records what the API server answered to one planned change.
fn note_write(
    ctx: &Context,
    planned: &Planned,
    change: &Change,
    ready: ReadyWrite,
    answer: Result<Option<String>, WriteError>,
    writes: &mut ObjectWrites,
) {
    match answer {
        Ok(taken_over) => {
            if let (
                Change::Create(object) | Change::Apply(object),
                ReadyWrite::Object { over, body, .. },
            ) = (change, ready)
            {
                // After a take-over the apply went over the version it left.
                ctx.applied(object, taken_over.or(over), body);
            }
            note(&mut writes.done, &planned.name, change_key(change));
        }
        Err(error) if error.refused_by_write_guard() || error.name_taken() => {
            // Someone created an object by this name after our cache was read; the API
            // server refused our create, or to let us take theirs over. Its watch event
            // re-plans.
            debug!(%error, "not ours: the name is taken");
            if let Change::Create(_) | Change::Apply(_) = change {
                note(&mut writes.refused, &planned.name, change_key(change));
            }
        }
        // The client's budget (it counts failed attempts and retries too, which
        // the check above does not see coming) refused it: paused, not failed.
        Err(error) if error.budget_wait().is_some() => {
            let wait = error.budget_wait().unwrap_or(repair_budget::WINDOW);
            note(&mut writes.paused, &planned.name, change_key(change));
            writes.retry_within(wait);
        }
        Err(error) => writes.failures.push((planned.name.clone(), error)),
    }
}

/// Whether an apply goes ahead: Some((the cached version it is written over, its body)),
/// or None after noting why not (already in flight, or its write budget spent).
fn ready_to_apply(
    ctx: &Context,
    planned: &Planned,
    object: &NamespacedObject,
    writes: &mut ObjectWrites,
) -> Option<(Option<String>, BodyHash)> {
    let body = BodyHash::of(object);
    let key = (object.kind(), object.name().to_string());
    let planned_over = planned.seen.get(&key).cloned().flatten();
    // The object changed in the cache since the plan was made (typically: the watch event
    // of our own earlier write arrived meanwhile). The plan is stale for it, and that event
    // has queued this namespace again: the next reconcile decides, not this one (writing now
    // was a duplicate write and a Repaired event for drift that never was).
    let cache_moved = ctx.version_before_apply(object) != planned_over;
    let written = (
        object.kind().as_str().to_string(),
        object.name().to_string(),
    );
    if cache_moved || ctx.apply_in_flight(object, body) {
        note(&mut writes.in_flight, &planned.name, written);
        return None;
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
        note(&mut writes.paused, &planned.name, written);
        writes.retry_within(wait);
        return None;
    }
    // The version the plan was made from is the one the cache still shows.
    Some((planned_over, body))
}

/// Drift on objects we did not write this time is a Conflict: their budget is spent, or
/// the write guard kept us from taking the name.
fn mark_unwritten(planned: &mut [Planned], writes: &ObjectWrites) {
    for planned in planned.iter_mut() {
        if let Some(objects) = writes.paused.get(&planned.name) {
            mark_conflicts(&mut planned.plan.findings, objects, &budget_spent_message());
        }
        if let Some(objects) = writes.refused.get(&planned.name) {
            mark_conflicts(&mut planned.plan.findings, objects, TAKEN_MESSAGE);
        }
    }
}

/// What the label step left: the labels after it, whether its budget paused it, and the
/// baselines sharing the Pod Security labels.
struct LabelsOutcome {
    after: BTreeMap<String, String>,
    /// The labels were written by this reconcile (not already in flight from an earlier
    /// one, whose repair was counted then).
    written_now: bool,
    paused: bool,
    sharing: BTreeSet<String>,
    /// Why a Gated rollout holds the enforce change back (its preview is not clean).
    held: Option<Preview>,
    /// What the enforce level in place rejects of the existing pods (recorded when it was
    /// raised, or rechecked after their change); None when unknown or not asked.
    enforced: Option<Preview>,
    /// Per Audit baseline: what enforcing its level would reject.
    audit: BTreeMap<String, Preview>,
}

/// The Pod Security labels the namespace should carry, merged over the baselines.
struct DesiredLabels<'a> {
    /// Enforce baselines selecting the namespace, with the labels each wants.
    wants: Vec<(String, WantedPodSecurity<'a>)>,
    /// Label keys our field manager owns on the namespace.
    owned: BTreeSet<String>,
    /// What we apply (stricter labels set by others are neither taken nor lowered).
    labels: BTreeMap<String, String>,
    /// Some enforcing baseline here has `podSecurity.rollout: Gated`.
    gated: bool,
    /// What the enforcing baselines without a Gated rollout want, merged.
    immediate: BTreeMap<String, String>,
}

/// Merges what Enforce baselines want with what Audit baselines hold (pure, in `domain`);
/// with a baseline this version cannot read, nothing is released or loosened.
fn desired_labels<'a>(
    ctx: &Context,
    namespace: &CachedNamespace,
    labels: &BTreeMap<String, String>,
    planned: &'a [Planned],
) -> DesiredLabels<'a> {
    // A baseline whose Pod Security finding here is waived holds its labels like an Audit
    // baseline: the team's labels are kept, not repaired.
    let wants: Vec<(String, WantedPodSecurity<'_>)> = planned
        .iter()
        .filter(|p| p.selected && p.enforcing() && !p.pod_security_waived())
        .map(|p| (p.name.clone(), wanted_pod_security(&p.baseline.spec)))
        .filter(|(_, want)| !want.is_empty())
        .collect();
    let owned = namespace.owned_label_keys();
    let auditing: Vec<WantedPodSecurity<'_>> = planned
        .iter()
        .filter(|p| p.selected && (!p.enforcing() || p.pod_security_waived()))
        .map(|p| wanted_pod_security(&p.baseline.spec))
        .collect();

    // An unreadable baseline may select any namespace and want any of our labels (its
    // selector and wants cannot be read): release and loosen nothing.
    let hold_everything = ctx.unreadable_baselines.any();
    if hold_everything {
        debug!(
            unreadable = ?ctx.unreadable_baselines.names(),
            "Pod Security labels held for baselines this version cannot read"
        );
    }
    let enforcing: Vec<&WantedPodSecurity<'_>> = wants.iter().map(|(_, want)| want).collect();
    let labels = labels_to_apply(&enforcing, &auditing, labels, &owned, hold_everything);
    let is_gated = |name: &String| {
        planned
            .iter()
            .any(|p| &p.name == name && gated_rollout(&p.baseline.spec))
    };
    let gated = wants.iter().any(|(name, _)| is_gated(name));
    let immediate = merged_labels(
        wants
            .iter()
            .filter(|(name, _)| !is_gated(name))
            .map(|(_, want)| want),
    );
    DesiredLabels {
        wants,
        owned,
        labels,
        gated,
        immediate,
    }
}

/// How a preview is sent: the real apply's body as a dry run (a Gated rollout: exactly the
/// change it would make), or a merge patch of the enforce labels alone (Audit mode, and the
/// recheck of a level already in place).
enum DryRun<'a> {
    Apply {
        labels: &'a BTreeMap<String, String>,
        resource_version: Option<&'a str>,
    },
    Merge,
}

/// The namespace's preview of `target` (enforce labels): remembered while its pods are
/// unchanged, else made now as a dry run. Also when to look again (a pod change settling,
/// an Unknown's retry).
async fn preview(
    ctx: &Context,
    name: &str,
    target: &Target,
    dry_run: DryRun<'_>,
) -> (Preview, Option<Duration>) {
    let now = Instant::now();
    match ctx.previews.lookup(name, target, now) {
        Lookup::Current(preview) => return (preview, ctx.previews.retry_in(name, target, now)),
        Lookup::Stale {
            last,
            settle: Some(wait),
        } => return (last, Some(wait)),
        Lookup::Stale { settle: None, .. } | Lookup::Missing => {}
    }
    let epoch = ctx.previews.epoch(name);
    let warnings = match dry_run {
        DryRun::Apply {
            labels,
            resource_version,
        } => apply::apply_namespace_labels(
            &ctx.client,
            &ctx.label_manager,
            name,
            resource_version,
            labels,
            true,
        )
        .await
        .map_err(|error| error.source),
        DryRun::Merge => apply::dry_run_namespace_labels(&ctx.client, name, target).await,
    };
    let preview = match warnings {
        Ok(warnings) => ps_preview::preview_from_warnings(&warnings),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Planned from a version the namespace has left: its event re-plans it.
            ctx.metrics.count_preview("failed");
            return (
                Preview::Unknown("the namespace changed during the dry run".to_owned()),
                None,
            );
        }
        Err(error) => {
            warn!(%error, namespace = name, "Pod Security preview failed");
            Preview::Unknown(format!("the dry run of the label change failed: {error}"))
        }
    };
    ctx.metrics.count_preview(match &preview {
        Preview::Clean => "clean",
        Preview::Violations { .. } => "violations",
        Preview::Unknown(_) => "unknown",
    });
    ctx.previews
        .remember(name, target.clone(), preview.clone(), epoch, Instant::now());
    let again = ctx.previews.retry_in(name, target, Instant::now());
    (preview, again)
}

/// The labels to apply after the Pod Security preview: `desired`, or, when a Gated
/// rollout would raise enforce over pods it rejects (or that is unknown), `desired` with
/// the enforce change held back and the preview that holds it.
async fn gate_enforce(
    ctx: &Context,
    name: &str,
    namespace: &CachedNamespace,
    observed: &BTreeMap<String, String>,
    desired: &DesiredLabels<'_>,
    writes: &mut ObjectWrites,
) -> (BTreeMap<String, String>, Option<(Target, Preview)>) {
    if !desired.gated || !raises_enforce(&desired.labels, observed) {
        return (desired.labels.clone(), None);
    }
    let target = enforce_labels(&desired.labels);
    let dry_run = DryRun::Apply {
        labels: &desired.labels,
        resource_version: namespace.metadata.resource_version.as_deref(),
    };
    let (preview, again) = preview(ctx, name, &target, dry_run).await;
    if let Some(wait) = again {
        writes.retry_within(wait);
    }
    if preview == Preview::Clean {
        return (desired.labels.clone(), Some((target, preview)));
    }
    let held = hold_enforce(
        &desired.labels,
        observed,
        &desired.owned,
        &desired.immediate,
    );
    (held, Some((target, preview)))
}

/// What the enforce level in place rejects of the namespace's pods: what its raise
/// answered (`raised`), or the remembered answer, rechecked once the pods changed.
async fn enforced_preview(
    ctx: &Context,
    name: &str,
    after: &BTreeMap<String, String>,
    raised: Option<(Preview, u64)>,
    writes: &mut ObjectWrites,
) -> Option<(Target, Preview)> {
    let current = enforce_labels(after);
    if let Some((preview, epoch)) = raised {
        ctx.previews.remember(
            name,
            current.clone(),
            preview.clone(),
            epoch,
            Instant::now(),
        );
        return Some((current, preview));
    }
    match ctx.previews.lookup(name, &current, Instant::now()) {
        Lookup::Missing => None,
        Lookup::Current(preview) => Some((current, preview)),
        Lookup::Stale {
            last,
            settle: Some(wait),
        } => {
            writes.retry_within(wait);
            Some((current, last))
        }
        Lookup::Stale { last, settle: None } => {
            let Some(recheck) =
                ps_preview::recheck_labels(&current, ctx.versions.api_server_minor())
            else {
                // No equivalent change to dry-run: what was found stays until the next one.
                return Some((current, last));
            };
            let epoch = ctx.previews.epoch(name);
            let outcome = apply::dry_run_namespace_labels(&ctx.client, name, &recheck).await;
            let preview = match outcome {
                Ok(warnings) => ps_preview::preview_from_warnings(&warnings),
                Err(error) => {
                    Preview::Unknown(format!("the dry run of the recheck failed: {error}"))
                }
            };
            ctx.previews.remember(
                name,
                current.clone(),
                preview.clone(),
                epoch,
                Instant::now(),
            );
            Some((current, preview))
        }
    }
}

/// Each selected Audit baseline's preview: what enforcing its level would reject (a merge
/// patch as a dry run; Audit writes nothing).
async fn audit_previews(
    ctx: &Context,
    name: &str,
    after: &BTreeMap<String, String>,
    planned: &[Planned],
    writes: &mut ObjectWrites,
) -> Vec<(String, Target, Preview)> {
    let mut previews = Vec::new();
    for planned in planned.iter().filter(|p| p.selected && !p.enforcing()) {
        let want = wanted_pod_security(&planned.baseline.spec);
        let Some(target) = ps_preview::target_labels(&want, after) else {
            continue;
        };
        let (preview, again) = preview(ctx, name, &target, DryRun::Merge).await;
        if let Some(wait) = again {
            writes.retry_within(wait);
        }
        previews.push((planned.name.clone(), target, preview));
    }
    previews
}

/// The namespace's write budget (label writes are writes to the namespace object), seeded
/// with a predecessor's label write within the minute (a failover, a restart).
fn labels_budget(ctx: &Context, name: &str, namespace: &CachedNamespace) -> Result<(), Duration> {
    let target = WriteTarget::object(
        &kube::core::ApiResource::erase::<Namespace>(&()),
        None,
        name,
    );
    if let Some(at) = namespace
        .last_written_by_us()
        .and_then(|last| repair_budget::within_window(last, Instant::now()))
    {
        ctx.repair_budget.seed(target, at);
    }
    ctx.repair_budget.check(target, Instant::now())
}

/// Merges the Pod Security labels the baselines want, previews a stricter enforce level
/// where that is asked (a Gated rollout, Audit mode) or recorded (the raise itself), and
/// applies what is ours to apply.
async fn apply_labels(
    ctx: &Context,
    name: &str,
    namespace: &CachedNamespace,
    labels: &BTreeMap<String, String>,
    planned: &[Planned],
    writes: &mut ObjectWrites,
) -> LabelsOutcome {
    let desired = desired_labels(ctx, namespace, labels, planned);
    let (to_apply, gate) = gate_enforce(ctx, name, namespace, labels, &desired, writes).await;
    let written = write_labels(ctx, name, namespace, labels, &desired, &to_apply, writes).await;
    let held = gate
        .clone()
        .filter(|(_, preview)| *preview != Preview::Clean);
    let enforced = match &held {
        Some(_) => None,
        None => enforced_preview(ctx, name, &written.after, written.raised, writes).await,
    };
    let audit = audit_previews(ctx, name, &written.after, planned, writes).await;
    // Previews of targets no longer in play are dropped (and their pods no longer watched).
    let mut targets: Vec<&Target> = Vec::new();
    targets.extend(held.as_ref().map(|(target, _)| target));
    targets.extend(enforced.as_ref().map(|(target, _)| target));
    targets.extend(audit.iter().map(|(_, target, _)| target));
    ctx.previews.keep_only(name, &targets);
    LabelsOutcome {
        after: written.after,
        written_now: written.written_now,
        paused: written.paused,
        sharing: desired.wants.iter().map(|(b, _)| b.clone()).collect(),
        held: held.map(|(_, preview)| preview),
        enforced: enforced.map(|(_, preview)| preview),
        audit: audit
            .into_iter()
            .map(|(baseline, _, preview)| (baseline, preview))
            .collect(),
    }
}

/// What the label write did.
struct LabelsWritten {
    after: BTreeMap<String, String>,
    written_now: bool,
    paused: bool,
    /// When the write raised enforce: PodSecurity admission's verdict on the existing pods,
    /// and the pod epoch before the write.
    raised: Option<(Preview, u64)>,
}

/// Applies `to_apply` when it differs from what the namespace carries (and the write
/// budget allows).
async fn write_labels(
    ctx: &Context,
    name: &str,
    namespace: &CachedNamespace,
    labels: &BTreeMap<String, String>,
    desired: &DesiredLabels<'_>,
    to_apply: &BTreeMap<String, String>,
    writes: &mut ObjectWrites,
) -> LabelsWritten {
    let mut after = labels.clone();
    let mut budget = labels_budget(ctx, name, namespace);
    if let Err(wait) = budget {
        writes.retry_within(wait);
    }
    let Some(to_apply) =
        namespace_labels_to_apply(to_apply, labels, &desired.owned).filter(|_| budget.is_ok())
    else {
        return LabelsWritten {
            after,
            written_now: false,
            paused: budget.is_err(),
            raised: None,
        };
    };
    // A reconcile triggered by our own writes can run before the namespace cache has our
    // label write: applying the same labels again would be a duplicate write.
    debug!(labels = ?to_apply, owned = ?desired.owned, observed = ?labels, "applying Pod Security labels");
    let resource_version = namespace.metadata.resource_version.as_deref();
    let in_flight = ctx.labels_in_flight(name, resource_version, &to_apply);
    let epoch = ctx.previews.epoch(name);
    let written = if in_flight {
        Ok(None)
    } else {
        apply::apply_namespace_labels(
            &ctx.client,
            &ctx.label_manager,
            name,
            resource_version,
            &to_apply,
            false,
        )
        .await
        .inspect(|_| ctx.labels_written(name, resource_version, to_apply.clone()))
        .map(Some)
    };
    let written_ok = written.is_ok();
    let mut raised = None;
    match written {
        Ok(warnings) => {
            if let Some(warnings) = warnings.filter(|_| raises_enforce(&to_apply, labels)) {
                raised = Some((ps_preview::preview_from_warnings(&warnings), epoch));
            }
            for released in desired.owned.iter().filter(|k| !to_apply.contains_key(*k)) {
                after.remove(released);
            }
            after.extend(to_apply);
        }
        // Planned from a version the namespace has left: its event re-plans it.
        Err(error) if error.is_stale() => debug!(%error, "labels planned from a stale namespace"),
        Err(error) => match error.budget_wait() {
            Some(wait) => {
                writes.retry_within(wait);
                budget = Err(wait);
            }
            None => {
                let blamed = desired
                    .wants
                    .first()
                    .map(|(b, _)| b.clone())
                    .unwrap_or_default();
                writes.failures.push((blamed, error));
            }
        },
    }
    LabelsWritten {
        after,
        written_now: !in_flight && written_ok,
        paused: budget.is_err(),
        raised,
    }
}

/// One baseline's drift in the namespace after this reconcile's writes.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Drift still there (or not yet known to be gone), sorted.
    remaining: Vec<DriftEntry>,
    /// Drift on objects written in this reconcile.
    repaired: Vec<DriftEntry>,
    /// Findings repaired, Pod Security labels included.
    repairs: usize,
    /// The baseline's Gated rollout holds enforce back here.
    gated: bool,
    /// Findings a waiver accepts (not drift), sorted.
    waived: Vec<WaivedEntry>,
}

/// Applies the baseline's waivers to what remains: the object findings were split when
/// planning (their repairs dropped); the Namespace findings are recomputed after the label
/// step, so they are split here, with the same domain code. Pure.
fn waive_remaining(
    outcome: &mut Outcome,
    planned: &Planned,
    name: &str,
    labels: &BTreeMap<String, String>,
    now: k8s_openapi::jiff::Timestamp,
) {
    let waivers = Waivers::new(&planned.baseline.spec.waivers, now);
    let split = waivers.split(std::mem::take(&mut outcome.remaining), Some((name, labels)));
    outcome.remaining = split.drift;
    outcome.waived = planned
        .plan
        .waived
        .iter()
        .filter(|w| w.kind != "Namespace")
        .cloned()
        .chain(split.waived)
        .collect();
    outcome.waived.sort();
    outcome.waived.dedup();
}

/// Splits `planned`'s findings into repaired and remaining, from what was written (`done`),
/// what is in flight, and the labels after the label step. Pure.
fn outcome(
    name: &str,
    planned: &Planned,
    done: Option<&BTreeSet<(String, String)>>,
    in_flight: Option<&BTreeSet<(String, String)>>,
    labels: &LabelsOutcome,
) -> Outcome {
    let key = |f: &DriftEntry| (f.kind.clone(), f.name.clone());
    // An audit Violation is never repaired by a write of ours, even on an object we wrote.
    let repaired_here = |finding: &DriftEntry| {
        finding.reason != DriftReason::Violation && done.is_some_and(|d| d.contains(&key(finding)))
    };
    let objects = planned
        .plan
        .findings
        .iter()
        .filter(|f| f.kind != "Namespace");
    let mut remaining: Vec<DriftEntry> = objects
        .clone()
        .filter(|f| !repaired_here(f))
        .filter(|f| {
            f.reason == DriftReason::Violation || !in_flight.is_some_and(|w| w.contains(&key(f)))
        })
        .cloned()
        .collect();
    let repaired: Vec<DriftEntry> = objects.filter(|f| repaired_here(f)).cloned().collect();
    let mut repairs = repaired.len();
    let gated = planned.selected
        && planned.enforcing()
        && labels.held.is_some()
        && gated_rollout(&planned.baseline.spec);
    if planned.selected {
        let before = planned
            .plan
            .findings
            .iter()
            .filter(|f| f.kind == "Namespace")
            .count();
        let mut after = pod_security_drift(
            name,
            &wanted_pod_security(&planned.baseline.spec),
            &labels.after,
        );
        if planned.enforcing() {
            if labels.written_now {
                repairs += before.saturating_sub(after.len());
            }
            if labels.paused {
                let namespace_key = after.iter().map(key).collect();
                mark_conflicts(&mut after, &namespace_key, &budget_spent_message());
            }
        }
        if gated {
            ps_preview::note_held_enforce(&mut after);
        }
        remaining.extend(after);
        remaining.extend(preview_finding(name, planned, labels));
    }
    remaining.sort();
    Outcome {
        remaining,
        repaired,
        repairs,
        gated,
        waived: Vec::new(),
    }
}

/// The baseline's `pod-security.preview` finding here: what its enforce level would
/// reject (held back by its Gated rollout, or in place), or, in Audit mode, what enforcing
/// it would reject.
fn preview_finding(name: &str, planned: &Planned, labels: &LabelsOutcome) -> Option<DriftEntry> {
    let spec = &planned.baseline.spec;
    if !planned.enforcing() {
        return labels
            .audit
            .get(&planned.name)
            .and_then(|preview| ps_preview::finding(name, preview));
    }
    if !wanted_pod_security(spec).contains_key("enforce") {
        return None;
    }
    if let (true, Some(preview)) = (gated_rollout(spec), &labels.held) {
        let enforce_key = format!("{}enforce", crate::domain::generated::POD_SECURITY_PREFIX);
        let held_at = labels.after.get(&enforce_key).map(String::as_str);
        return ps_preview::gated_finding(name, preview, held_at);
    }
    labels
        .enforced
        .as_ref()
        .and_then(|preview| ps_preview::finding(name, preview))
}

/// What the baseline's status keeps of this namespace; None when there is nothing to keep.
fn namespace_result(
    planned: &Planned,
    outcome: &Outcome,
    failures: &[(String, WriteError)],
    sharing: &BTreeSet<String>,
) -> Option<NamespaceResult> {
    let remaining = &outcome.remaining;
    let failure = failures
        .iter()
        .find(|(baseline, _)| baseline == &planned.name)
        .map(|(_, error)| error.to_failure());
    let shares = planned.selected && planned.enforcing() && sharing.contains(&planned.name);
    let waived = &outcome.waived;
    (planned.selected || !remaining.is_empty() || !waived.is_empty() || failure.is_some()).then(
        || NamespaceResult {
            generation: planned.baseline.metadata.generation.unwrap_or_default(),
            selected: planned.selected,
            findings: remaining.to_vec(),
            waived: waived.clone(),
            failure,
            shared_pod_security_with: if shares {
                sharing
                    .iter()
                    .filter(|b| **b != planned.name)
                    .cloned()
                    .collect()
            } else {
                BTreeSet::new()
            },
            gated: outcome.gated,
        },
    )
}

/// Records what is left of one baseline's drift here, counts repairs, emits Events.
async fn record(
    ctx: &Context,
    name: &str,
    namespace: &CachedNamespace,
    planned: &Planned,
    writes: &ObjectWrites,
    labels: &LabelsOutcome,
) {
    let mut outcome = outcome(
        name,
        planned,
        writes.done.get(&planned.name),
        writes.in_flight.get(&planned.name),
        labels,
    );
    waive_remaining(
        &mut outcome,
        planned,
        name,
        &namespace.labels(),
        k8s_openapi::jiff::Timestamp::now(),
    );
    let result = namespace_result(planned, &outcome, &writes.failures, &labels.sharing);
    let previous = ctx.results.record(&planned.name, name, result.clone());
    let generation = planned.baseline.metadata.generation.unwrap_or_default();
    let spec_rollout = is_spec_rollout(previous.as_ref(), generation);
    if spec_rollout {
        outcome.repaired.clear();
    }
    let counts_repairs =
        planned.enforcing() && !planned.deleting && outcome.repairs > 0 && !spec_rollout;
    if counts_repairs {
        let repairs = outcome.repairs;
        ctx.results
            .add_repairs(&planned.name, i64::try_from(repairs).unwrap_or(i64::MAX));
        ctx.metrics
            .add_repairs(&planned.name, u64::try_from(repairs).unwrap_or_default());
    }
    // The status counts repairs: one that leaves the result as it was changes it too.
    if counts_repairs || previous != result {
        ctx.refresh_status(&planned.name);
    }
    if previous != result {
        ctx.reports.namespace_changed(&planned.name, name);
    }
    publish_news(ctx, name, namespace, planned, previous, &outcome).await;
}

/// Whether this is the namespace's first result at a new baseline generation: what is
/// written then carries out the spec change (a Role the new spec adds, a raised level), it
/// is not drift repaired. Counted as repairs, a spec change to a baseline over 10,000
/// namespaces made 10,000 repairs and 10,000 `Repaired` Events, as many writes as the
/// re-plan itself.
fn is_spec_rollout(previous: Option<&NamespaceResult>, generation: i64) -> bool {
    previous.is_some_and(|previous| previous.generation != generation)
}

/// Events are news: drift that appears while we run, and repairs. A first look at a
/// namespace after start-up (its state predates us) is not news, so a restart writes no
/// Events.
async fn publish_news(
    ctx: &Context,
    name: &str,
    namespace: &CachedNamespace,
    planned: &Planned,
    previous: Option<NamespaceResult>,
    outcome: &Outcome,
) {
    let is_news = previous.is_some()
        || namespace
            .metadata
            .creation_timestamp
            .as_ref()
            .is_some_and(|created| created_since(created.0, ctx.started));
    if !is_news || planned.deleting {
        return;
    }
    let was_gated = previous.as_ref().is_some_and(|p| p.gated);
    let previous_findings = previous.map(|p| p.findings).unwrap_or_default();
    publish_rollout(ctx, name, planned, was_gated, outcome).await;
    let new_drift: Vec<&DriftEntry> = outcome
        .remaining
        .iter()
        .filter(|f| !previous_findings.contains(f))
        .collect();
    let reference = planned.baseline.object_ref(&());
    if !outcome.repaired.is_empty() && planned.enforcing() {
        let repaired: Vec<&DriftEntry> = outcome.repaired.iter().collect();
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

/// A Gated rollout's news: enforce held back (the pods it would reject named), or raised
/// once the preview came back clean.
async fn publish_rollout(
    ctx: &Context,
    name: &str,
    planned: &Planned,
    was_gated: bool,
    outcome: &Outcome,
) {
    let reference = planned.baseline.object_ref(&());
    if outcome.gated && !was_gated {
        let preview = outcome
            .remaining
            .iter()
            .find(|f| f.check == crate::domain::generated::check_ids::POD_SECURITY_PREVIEW)
            .map_or(String::new(), |f| format!(": {}", f.message));
        publish(
            ctx,
            &reference,
            EventType::Warning,
            "PodSecurityGated",
            format!("namespace {name}{preview}"),
        )
        .await;
    } else if was_gated && !outcome.gated && planned.selected {
        publish(
            ctx,
            &reference,
            EventType::Normal,
            "PodSecurityEnforced",
            format!(
                "namespace {name}: the enforce level is raised: no existing pod violates it any more"
            ),
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
    ctx.recorder.publish(&event, reference).await;
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

    fn finding(kind: &str, name: &str, check: &str, reason: DriftReason) -> DriftEntry {
        DriftEntry {
            namespace: "shop".to_owned(),
            kind: kind.to_owned(),
            name: name.to_owned(),
            check: check.to_owned(),
            reason,
            message: String::new(),
        }
    }

    fn planned(mode: &str, findings: Vec<DriftEntry>) -> Planned {
        let baseline: SecurityBaseline = serde_saphyr::from_str(&format!(
            "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\n\
             metadata: {{name: b}}\nspec: {{mode: {mode}, podSecurity: {{enforce: restricted}}}}\n"
        ))
        .expect("baseline");
        Planned {
            baseline: Arc::new(baseline),
            name: "b".to_owned(),
            selected: true,
            deleting: false,
            plan: NamespacePlan {
                findings,
                ..NamespacePlan::default()
            },
            seen: BTreeMap::new(),
        }
    }

    fn labels(pairs: &[(&str, &str)], paused: bool) -> LabelsOutcome {
        LabelsOutcome {
            written_now: !paused,
            after: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            paused,
            sharing: BTreeSet::new(),
            held: None,
            enforced: None,
            audit: BTreeMap::new(),
        }
    }

    fn set(keys: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        keys.iter()
            .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
            .collect()
    }

    const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";

    #[test]
    fn pod_security_findings_recomputed_after_the_label_step_are_waived_too() {
        use DriftReason::*;
        let mut planned = planned("Enforce", Vec::new());
        let mut baseline = (*planned.baseline).clone();
        baseline.spec.waivers = serde_saphyr::from_str(
            r#"
- {name: labels, checks: [pod-security.labels], namespaces: [shop], reason: the team runs baseline here, owner: team, granted: "2026-12-01T00:00:00Z", expires: "2026-12-31T00:00:00Z"}
"#,
        )
        .expect("waivers");
        planned.baseline = Arc::new(baseline);
        // What planning waived: an object finding (kept) and the label finding (recomputed).
        let object = finding("NetworkPolicy", "deny", "network.default-deny", Modified);
        let label = finding("Namespace", "shop", "pod-security.labels", Modified);
        planned.plan.waived = vec![
            WaivedEntry::new(object.clone(), "other"),
            WaivedEntry::new(label.clone(), "labels"),
        ];
        assert!(planned.pod_security_waived());
        let outcome_labels = labels(&[(ENFORCE_LABEL, "baseline")], false);
        let mut result = outcome("shop", &planned, None, None, &outcome_labels);
        assert_eq!(result.remaining.len(), 1, "{:?}", result.remaining);
        let now = "2026-12-02T00:00:00Z".parse().expect("time");
        waive_remaining(&mut result, &planned, "shop", &BTreeMap::new(), now);
        assert!(result.remaining.is_empty(), "{:?}", result.remaining);
        let waived: Vec<(&str, &str)> = result
            .waived
            .iter()
            .map(|w| (w.kind.as_str(), w.waiver.as_str()))
            .collect();
        assert_eq!(
            waived,
            [("Namespace", "labels"), ("NetworkPolicy", "other")]
        );
        // Expired: the label finding is drift again.
        let mut later = outcome("shop", &planned, None, None, &outcome_labels);
        let expired = "2026-12-31T00:00:00Z".parse().expect("time");
        waive_remaining(&mut later, &planned, "shop", &BTreeMap::new(), expired);
        assert_eq!(later.remaining.len(), 1);
    }

    #[test]
    fn written_drift_is_repaired_in_flight_drift_is_neither_and_violations_stay() {
        use DriftReason::*;
        let deny = finding("NetworkPolicy", "deny", "network.default-deny", Missing);
        let dns = finding("NetworkPolicy", "dns", "network.allow-dns", Modified);
        let role = finding("Role", "reader", "role.provisioned", Missing);
        let audit = finding("NetworkPolicy", "deny", "rbac.something", Violation);
        let label = finding("Namespace", "shop", "pod-security.labels", Missing);
        let planned = planned(
            "Enforce",
            vec![
                deny.clone(),
                dns.clone(),
                role.clone(),
                audit.clone(),
                label,
            ],
        );
        let done = set(&[("NetworkPolicy", "deny")]);
        let in_flight = set(&[("NetworkPolicy", "dns")]);
        let after = labels(&[(ENFORCE_LABEL, "restricted")], false);
        let outcome = outcome("shop", &planned, Some(&done), Some(&in_flight), &after);
        assert_eq!(outcome.repaired, [deny]);
        assert_eq!(outcome.remaining, [audit, role], "sorted; dns in flight");
        assert_eq!(outcome.repairs, 2, "the policy and the label");
    }

    #[test]
    fn audit_mode_counts_no_repair_and_a_paused_label_write_is_a_conflict() {
        let label = finding(
            "Namespace",
            "shop",
            "pod-security.labels",
            DriftReason::Missing,
        );
        let audit = planned("Audit", vec![label.clone()]);
        let outcome_audit = outcome("shop", &audit, None, None, &labels(&[], false));
        assert_eq!(outcome_audit.repairs, 0);
        assert_eq!(outcome_audit.remaining.len(), 1);
        assert_eq!(outcome_audit.remaining[0].reason, DriftReason::Missing);

        let enforce = planned("Enforce", vec![label]);
        let paused = outcome("shop", &enforce, None, None, &labels(&[], true));
        assert_eq!(paused.repairs, 0);
        assert!(
            paused
                .remaining
                .iter()
                .all(|f| f.reason == DriftReason::Conflict),
            "{paused:?}"
        );
    }
}
