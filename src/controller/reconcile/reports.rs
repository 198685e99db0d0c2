//! Policy reports (see `domain::reports`): one per (baseline, selected namespace) and one
//! per baseline for its cluster-scoped findings, written only when their content changes.
//!
//! - The report CRDs are optional and never installed by us: their API group is looked up
//!   at start and every [`DISCOVERY_EVERY`], so reports start when the CRDs appear and stop
//!   when they go.
//! - What the cluster holds is followed by a metadata-only watch of our reports (label
//!   `app.kubernetes.io/managed-by=kube-baseline`): each report's content hash annotation,
//!   nothing else is cached. A report is written only when its new content hash differs, so
//!   an idle cluster and a restart write none.
//! - Reconciles only mark a (baseline, namespace) dirty; one writer drains the marks a few
//!   at a time, computing each report from the latest result, so a namespace that changes
//!   several times before its turn is written once.
//! - A report whose namespace is no longer selected is deleted; a baseline's reports carry
//!   its ownerReference, so garbage collection removes them with the baseline.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::api::{BASELINE_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecurityBaseline};
use crate::controller::reconcile::apply::apply_params;
use crate::controller::state::context::Context;
use crate::controller::state::namespace_store::CachedNamespace;
use crate::domain::generated::BaselineRef;
use crate::domain::reports::{
    CONTENT_HASH_ANNOTATION, ReportApi, ReportBody, ReportResource, ReportScope, content_hash,
    namespace_checks, report_name, report_object,
};
use crate::domain::selection::selects_labelled;

/// How often the report API group is looked up (it may be installed or removed any time).
const DISCOVERY_EVERY: Duration = Duration::from_secs(30);
/// How often reports are compared with the results they come from, for what no event
/// told: a namespace unselected while the operator was down.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Reports written at once (in a lull: the namespace reconciles' default concurrency).
const WRITERS: usize = 8;

/// One report: a baseline's, in a namespace or (None) for the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReportKey {
    pub baseline: String,
    pub namespace: Option<String>,
}

/// The reports' shared state.
#[derive(Debug)]
pub struct Reports {
    /// None with `--reports none`.
    api: Option<ReportApi>,
    max_results: usize,
    /// Whether the API group serves both report resources now.
    served: tokio::sync::watch::Sender<bool>,
    /// The content hash of each of our reports the cluster holds; None until listed.
    held: Mutex<Option<HashMap<ReportKey, String>>>,
    /// Reports to compare and write.
    dirty: Mutex<BTreeSet<ReportKey>>,
    wake: tokio::sync::Notify,
    /// The latest cluster-scoped content of each baseline (from its status computation).
    cluster: Mutex<HashMap<String, ReportBody>>,
    /// Namespace reconciles running now (reports wait for a lull: see [`write_dirty`]).
    reconciling: std::sync::atomic::AtomicUsize,
}

/// Counts a namespace reconcile as running while it lives.
#[derive(Debug)]
pub struct Reconciling<'a>(&'a Reports);

impl Drop for Reconciling<'_> {
    fn drop(&mut self) {
        self.0
            .reconciling
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Reports {
    pub fn new(api: Option<ReportApi>, max_results: usize) -> Self {
        Self {
            api,
            max_results,
            served: tokio::sync::watch::Sender::new(false),
            held: Mutex::new(None),
            dirty: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            cluster: Mutex::default(),
            reconciling: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Marks a namespace reconcile as running until the guard is dropped.
    pub fn reconciling(&self) -> Reconciling<'_> {
        self.reconciling
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Reconciling(self)
    }

    fn reconciles_running(&self) -> usize {
        self.reconciling.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The result limit per report.
    pub fn max_results(&self) -> usize {
        self.max_results
    }

    /// Whether reports are written at all (a flag, and the CRDs being served).
    pub fn enabled(&self) -> bool {
        self.api.is_some() && *self.served.borrow()
    }

    /// A (baseline, namespace) result changed: its report is compared (and written) soon.
    pub fn namespace_changed(&self, baseline: &str, namespace: &str) {
        if self.api.is_none() {
            return;
        }
        self.mark(ReportKey {
            baseline: baseline.to_owned(),
            namespace: Some(namespace.to_owned()),
        });
    }

    /// A baseline's cluster-scoped content; None when it has no cluster-scoped checks.
    pub fn set_cluster(&self, baseline: &str, body: Option<ReportBody>) {
        if self.api.is_none() {
            return;
        }
        let changed = {
            let mut cluster = self.cluster.lock();
            match body {
                Some(body) => cluster.insert(baseline.to_owned(), body.clone()) != Some(body),
                None => cluster.remove(baseline).is_some(),
            }
        };
        let key = ReportKey {
            baseline: baseline.to_owned(),
            namespace: None,
        };
        if changed || !self.holds(&key) {
            self.mark(key);
        }
    }

    /// A baseline is gone: its cluster content is dropped (its reports go by garbage
    /// collection, through their ownerReference).
    pub fn forget_baseline(&self, baseline: &str) {
        self.cluster.lock().remove(baseline);
    }

    fn holds(&self, key: &ReportKey) -> bool {
        self.held
            .lock()
            .as_ref()
            .is_some_and(|held| held.contains_key(key))
    }

    /// Marks a report to compare; nothing while the CRDs are not served (when they appear,
    /// every result is marked), so a cluster without them holds no backlog of marks.
    fn mark(&self, key: ReportKey) {
        if !self.enabled() {
            return;
        }
        self.dirty.lock().insert(key);
        self.wake.notify_one();
    }

    fn held_hash(&self, key: &ReportKey) -> Option<String> {
        self.held.lock().as_ref()?.get(key).cloned()
    }

    fn set_held(&self, key: ReportKey, hash: Option<String>) {
        if let Some(held) = self.held.lock().as_mut() {
            match hash {
                Some(hash) => held.insert(key, hash),
                None => held.remove(&key),
            };
        }
    }
}

/// Runs discovery, the watch of our reports, the writer and the sweep. Never returns.
pub async fn run(client: Client, ctx: Arc<Context>) {
    let Some(api) = ctx.reports.api else {
        return futures::future::pending().await;
    };
    ctx.wait_ready().await;
    let follow = follow_served(client.clone(), ctx.clone(), api);
    let writer = write_dirty(client, ctx.clone(), api);
    let sweep = sweep(ctx);
    futures::future::join3(follow, writer, sweep).await;
}

/// Looks up the API group every [`DISCOVERY_EVERY`]; while both resources are served,
/// follows our reports with a metadata watch into `held`.
async fn follow_served(client: Client, ctx: Arc<Context>, api: ReportApi) {
    loop {
        let served = serves(&client, api).await;
        if served && !*ctx.reports.served.borrow() {
            info!(
                group = api.namespaced().group,
                "the report CRDs are served: writing reports"
            );
            ctx.reports.served.send_replace(true);
            // Reports lost with the CRDs (or never written) are compared again.
            mark_every_result(&ctx);
            // Stops when the group stops being served (checked by the watch's own loop).
            follow_reports(&client, &ctx, api).await;
            info!(
                group = api.namespaced().group,
                "the report CRDs are gone: no reports written"
            );
            ctx.reports.served.send_replace(false);
            *ctx.reports.held.lock() = None;
            ctx.reports.dirty.lock().clear();
        }
        tokio::time::sleep(DISCOVERY_EVERY).await;
    }
}

/// Marks the report of every selected namespace result and every baseline's cluster content.
fn mark_every_result(ctx: &Context) {
    for baseline in ctx.results.baselines() {
        let namespaces: Vec<String> = ctx.results.read(&baseline, |results, _| {
            results
                .iter()
                .filter(|(_, result)| result.selected)
                .map(|(namespace, _)| namespace.clone())
                .collect()
        });
        for namespace in namespaces {
            ctx.reports.namespace_changed(&baseline, &namespace);
        }
    }
    let clusters: Vec<String> = ctx.reports.cluster.lock().keys().cloned().collect();
    for baseline in clusters {
        ctx.reports.mark(ReportKey {
            baseline,
            namespace: None,
        });
    }
}

/// Whether the API server serves both report resources of `api`.
async fn serves(client: &Client, api: ReportApi) -> bool {
    let namespaced = api.namespaced();
    match client
        .list_api_group_resources(&namespaced.api_version())
        .await
    {
        Ok(list) => [namespaced.plural, api.cluster().plural]
            .iter()
            .all(|plural| list.resources.iter().any(|r| r.name == *plural)),
        Err(error) => {
            debug!(%error, "report API group not served");
            false
        }
    }
}

fn dynamic_resource(resource: ReportResource) -> ApiResource {
    ApiResource {
        group: resource.group.to_owned(),
        version: resource.version.to_owned(),
        api_version: resource.api_version(),
        kind: resource.kind.to_owned(),
        plural: resource.plural.to_owned(),
    }
}

/// Feeds `held` from metadata watches of our namespaced and cluster reports until the API
/// group is no longer served. A report deleted by someone else is marked dirty (written
/// again if still wanted).
async fn follow_reports(client: &Client, ctx: &Context, api: ReportApi) {
    let config =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
    let events = futures::stream::select(
        watcher(
            Api::<PartialObjectMeta<DynamicObject>>::all_with(
                client.clone(),
                &dynamic_resource(api.namespaced()),
            ),
            config.clone(),
        )
        .map_ok(|event| (true, event))
        .boxed(),
        watcher(
            Api::<PartialObjectMeta<DynamicObject>>::all_with(
                client.clone(),
                &dynamic_resource(api.cluster()),
            ),
            config,
        )
        .map_ok(|event| (false, event))
        .boxed(),
    );
    let mut events = std::pin::pin!(events);
    let mut listing: [Option<HashMap<ReportKey, String>>; 2] = [None, None];
    // Each scope's first list, until both are in.
    let mut listed: [Option<HashMap<ReportKey, String>>; 2] = [None, None];
    let mut check = tokio::time::interval(DISCOVERY_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            _ = check.tick() => {
                if !serves(client, api).await {
                    return;
                }
            }
            event = events.next() => {
                let Some(event) = event else { return };
                let (namespaced, event) = match event {
                    Ok(event) => event,
                    Err(error) => {
                        debug!(%error, "report watch failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                on_event(ctx, usize::from(!namespaced), event, &mut listing, &mut listed);
            }
        }
    }
}

fn on_event(
    ctx: &Context,
    which: usize,
    event: watcher::Event<PartialObjectMeta<DynamicObject>>,
    listing: &mut [Option<HashMap<ReportKey, String>>; 2],
    listed: &mut [Option<HashMap<ReportKey, String>>; 2],
) {
    match event {
        watcher::Event::Init => listing[which] = Some(HashMap::new()),
        watcher::Event::InitApply(object) => {
            if let (Some(list), Some((key, hash))) = (listing[which].as_mut(), held_entry(&object))
            {
                list.insert(key, hash);
            }
        }
        watcher::Event::InitDone => {
            let list = listing[which].take().unwrap_or_default();
            let mut held = ctx.reports.held.lock();
            match held.as_mut() {
                // A re-list (the watch restarted): it replaces this scope's entries.
                Some(held) => {
                    held.retain(|key, _| key.namespace.is_some() != (which == 0));
                    held.extend(list);
                }
                None => {
                    listed[which] = Some(list);
                    if listed.iter().all(Option::is_some) {
                        *held = Some(
                            listed
                                .iter_mut()
                                .flat_map(|l| l.take().unwrap_or_default())
                                .collect(),
                        );
                        drop(held);
                        // Compare every result with what is there now.
                        ctx.reports.wake.notify_one();
                    }
                }
            }
        }
        watcher::Event::Apply(object) => {
            if let Some((key, hash)) = held_entry(&object) {
                ctx.reports.set_held(key, Some(hash));
            }
        }
        watcher::Event::Delete(object) => {
            if let Some((key, _)) = held_entry(&object) {
                ctx.reports.set_held(key.clone(), None);
                ctx.reports.mark(key);
            }
        }
    }
}

/// The key and content hash of one of our reports; None for a report not named as ours.
fn held_entry(object: &PartialObjectMeta<DynamicObject>) -> Option<(ReportKey, String)> {
    let baseline = object.labels().get(BASELINE_LABEL)?.clone();
    if object.name_any() != report_name(&baseline) {
        return None;
    }
    let hash = object
        .annotations()
        .get(CONTENT_HASH_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    Some((
        ReportKey {
            baseline,
            namespace: object.namespace(),
        },
        hash,
    ))
}

/// Writes the dirty reports, [`WRITERS`] at a time and [`BATCH`] per lull, once the held
/// reports are listed. Enforcement goes first: a batch waits until the start-up pass is
/// over and no namespace reconcile runs (the reports of a converge or a re-plan follow it
/// instead of slowing it), or at most [`MAX_DEFERRAL`] under constant churn.
async fn write_dirty(client: Client, ctx: Arc<Context>, api: ReportApi) {
    loop {
        ctx.reports.wake.notified().await;
        if !ctx.reports.enabled() || ctx.reports.held.lock().is_none() {
            continue;
        }
        wait_for_lull(&ctx.reports, || ctx.in_startup_pass()).await;
        let batch: Vec<ReportKey> = {
            let mut dirty = ctx.reports.dirty.lock();
            let batch: Vec<ReportKey> = dirty.iter().take(BATCH).cloned().collect();
            for key in &batch {
                dirty.remove(key);
            }
            batch
        };
        futures::stream::iter(batch)
            .for_each_concurrent(WRITERS, |key| {
                let client = client.clone();
                let ctx = ctx.clone();
                async move { write_one(&client, &ctx, api, key).await }
            })
            .await;
        // What is left, and marks made while this batch was written.
        if !ctx.reports.dirty.lock().is_empty() {
            ctx.reports.wake.notify_one();
        }
    }
}

/// Reports written per lull between namespace reconciles.
const BATCH: usize = 64;
/// The longest reports wait for a lull under constant churn: they are written within it.
const MAX_DEFERRAL: Duration = Duration::from_secs(120);
/// The longest reports wait for the start-up pass (the cold converge) to end. The pass
/// ends once every namespace was reconciled, so this only bounds the unforeseen: on a slow
/// day 10,000 namespaces take over 4 minutes on 2 cores, longer than [`MAX_DEFERRAL`].
const MAX_STARTUP_DEFERRAL: Duration = Duration::from_secs(15 * 60);
/// How often a waiting writer looks again.
const LULL_POLL: Duration = Duration::from_millis(100);
/// How often it looks while the start-up pass runs: that check walks the namespaces the
/// pass still waits for (up to all of them), and the pass lasts minutes.
const STARTUP_POLL: Duration = Duration::from_secs(1);

/// Waits until the start-up pass is over and no namespace reconcile has run for one
/// [`LULL_POLL`]; or [`MAX_STARTUP_DEFERRAL`] while the pass runs, [`MAX_DEFERRAL`] after.
async fn wait_for_lull(reports: &Reports, in_startup_pass: impl Fn() -> bool) {
    let started = tokio::time::Instant::now();
    let mut quiet_polls = 0;
    loop {
        let starting_up = in_startup_pass();
        let deferral = if starting_up {
            MAX_STARTUP_DEFERRAL
        } else {
            MAX_DEFERRAL
        };
        if started.elapsed() >= deferral {
            return;
        }
        if !starting_up && reports.reconciles_running() == 0 {
            quiet_polls += 1;
            if quiet_polls >= 2 {
                return;
            }
        } else {
            quiet_polls = 0;
        }
        tokio::time::sleep(if starting_up { STARTUP_POLL } else { LULL_POLL }).await;
    }
}

/// What one report should be: Some(body) to hold, None to delete, Err(()) when not known
/// yet (a selected namespace not evaluated at the current generation: marked again when
/// its result is recorded).
fn wanted(
    ctx: &Context,
    baseline: &SecurityBaseline,
    key: &ReportKey,
) -> Result<Option<ReportBody>, ()> {
    if baseline.metadata.deletion_timestamp.is_some() {
        return Ok(None);
    }
    let Some(namespace) = &key.namespace else {
        return Ok(ctx.reports.cluster.lock().get(&key.baseline).cloned());
    };
    let generation = baseline.metadata.generation.unwrap_or_default();
    let max_results = ctx.reports.max_results;
    let recorded = ctx
        .results
        .read(&key.baseline, |results, _| match results.get(namespace) {
            Some(result) if result.selected && result.generation == generation => {
                let checks = namespace_checks(&baseline.spec);
                Some(Ok(Some(crate::domain::reports::build(
                    &result.findings,
                    &result.waived,
                    &checks,
                    max_results,
                ))))
            }
            Some(result) if result.selected => Some(Err(())),
            _ => None,
        });
    if let Some(recorded) = recorded {
        return recorded;
    }
    // No selected result: deleted only when the baseline does not select the namespace
    // (after a restart, a namespace the start-up pass has not reached has no result yet).
    let Some(cached) = ctx.namespaces.get(&ObjectRef::new(namespace)) else {
        return Ok(None);
    };
    let labels: &CachedNamespace = &cached;
    if selects_labelled(&baseline.spec, namespace, labels, &ctx.operator_namespace) {
        Err(())
    } else {
        Ok(None)
    }
}

async fn write_one(client: &Client, ctx: &Context, api: ReportApi, key: ReportKey) {
    let baseline = ctx
        .readable_baselines()
        .into_iter()
        .find(|b| b.name_any() == key.baseline);
    let Some(baseline) = baseline else {
        // Gone: garbage collection removes its reports.
        return;
    };
    let Ok(wanted) = wanted(ctx, &baseline, &key) else {
        return;
    };
    let held = ctx.reports.held_hash(&key);
    let resource = match key.namespace {
        Some(_) => api.namespaced(),
        None => api.cluster(),
    };
    let reports: Api<DynamicObject> = match &key.namespace {
        Some(namespace) => {
            Api::namespaced_with(client.clone(), namespace, &dynamic_resource(resource))
        }
        None => Api::all_with(client.clone(), &dynamic_resource(resource)),
    };
    let name = report_name(&key.baseline);
    match wanted {
        Some(body) => {
            let hash = content_hash(&body);
            if held.as_deref() == Some(hash.as_str()) {
                return;
            }
            let uid = baseline.uid().unwrap_or_default();
            let scope = key
                .namespace
                .as_deref()
                .map_or(ReportScope::Cluster, ReportScope::Namespace);
            let object = report_object(
                api,
                scope,
                BaselineRef {
                    name: &key.baseline,
                    uid: &uid,
                },
                &body,
                k8s_openapi::jiff::Timestamp::now().as_second(),
            );
            match reports
                .patch(&name, &apply_params(), &Patch::Apply(object))
                .await
            {
                Ok(_) => {
                    ctx.metrics.count_report_write("apply");
                    ctx.reports.set_held(key, Some(hash));
                }
                Err(error) => retry_later(ctx, key, &error),
            }
        }
        None if held.is_some() => match reports.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.metrics.count_report_write("delete");
                ctx.reports.set_held(key, None);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                ctx.reports.set_held(key, None);
            }
            Err(error) => retry_later(ctx, key, &error),
        },
        None => {}
    }
}

/// A failed write is tried again after a while (the budget's wait when it was the budget).
fn retry_later(ctx: &Context, key: ReportKey, error: &kube::Error) {
    let wait = crate::controller::state::repair_budget::budget_spent(error)
        .map_or(Duration::from_secs(5), |spent| spent.retry_in);
    warn!(%error, baseline = %key.baseline, namespace = ?key.namespace, ?wait, "cannot write a report; trying again later");
    let reports = ctx.reports.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        reports.mark(key);
    });
}

/// Every [`SWEEP_EVERY`], marks the held namespace reports whose baseline no longer has a
/// selected result there (unselected while no reconcile saw it).
async fn sweep(ctx: Arc<Context>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    loop {
        every.tick().await;
        let keys: Vec<ReportKey> = ctx
            .reports
            .held
            .lock()
            .as_ref()
            .map(|held| {
                held.keys()
                    .filter(|k| k.namespace.is_some())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for key in keys {
            let Some(namespace) = &key.namespace else {
                continue;
            };
            let selected = ctx.results.read(&key.baseline, |results, _| {
                results.get(namespace).is_some_and(|r| r.selected)
            });
            if !selected {
                ctx.reports.mark(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reports_wait_while_a_namespace_reconcile_runs_and_at_most_the_deferral() {
        let reports = Reports::new(Some(ReportApi::OpenReports), 10);
        let started = tokio::time::Instant::now();
        wait_for_lull(&reports, || false).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no reconcile: at once"
        );

        let running = reports.reconciling();
        let started = tokio::time::Instant::now();
        wait_for_lull(&reports, || false).await;
        let waited = started.elapsed();
        assert!(
            waited >= MAX_DEFERRAL && waited < MAX_DEFERRAL + Duration::from_secs(1),
            "a reconcile runs: the writer waits the whole deferral, not more: {waited:?}"
        );
        drop(running);
        assert_eq!(reports.reconciles_running(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn reports_go_out_once_the_reconciles_end() {
        let reports = Arc::new(Reports::new(Some(ReportApi::OpenReports), 10));
        let guard_owner = reports.clone();
        let started = tokio::time::Instant::now();
        tokio::spawn(async move {
            let _running = guard_owner.reconciling();
            tokio::time::sleep(Duration::from_secs(3)).await;
        });
        tokio::task::yield_now().await;
        wait_for_lull(&reports, || false).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
            "{waited:?}"
        );
    }

    /// Without the CRDs every recorded result used to leave a mark behind: 10,000 of them
    /// held for nothing at 10,000 namespaces.
    #[test]
    fn results_leave_no_marks_while_the_crds_are_not_served() {
        let reports = Reports::new(Some(ReportApi::OpenReports), 10);
        reports.namespace_changed("b", "shop");
        reports.set_cluster("b", None);
        assert!(reports.dirty.lock().is_empty());
        reports.served.send_replace(true);
        reports.namespace_changed("b", "shop");
        assert_eq!(reports.dirty.lock().len(), 1);
    }

    /// A converge of 10,000 namespaces took 263 s on a slow day (d061422): the reports
    /// waited 120 s, then 127 of them went out in the middle of it.
    #[tokio::test(start_paused = true)]
    async fn reports_wait_for_the_start_up_pass_however_long_it_runs() {
        let reports = Reports::new(Some(ReportApi::OpenReports), 10);
        let pass_ends = tokio::time::Instant::now() + Duration::from_secs(300);
        let started = tokio::time::Instant::now();
        // Between two reconciles of the pass nothing runs: not a lull while it lasts.
        wait_for_lull(&reports, || tokio::time::Instant::now() < pass_ends).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
            "until the pass ends: {waited:?}"
        );
        // A pass that never ends still lets the reports out, later.
        let started = tokio::time::Instant::now();
        wait_for_lull(&reports, || true).await;
        assert_eq!(started.elapsed(), MAX_STARTUP_DEFERRAL);
    }

    #[test]
    fn a_report_is_ours_only_by_its_baseline_label_and_name() {
        let mut object: PartialObjectMeta<DynamicObject> = serde_json::from_value(
            serde_json::json!({"apiVersion": "openreports.io/v1alpha1", "kind": "Report", "metadata": {}}),
        )
        .expect("metadata");
        object.metadata.name = Some("baseline-restricted-report".to_owned());
        object.metadata.namespace = Some("team-a".to_owned());
        object.metadata.labels =
            Some([(BASELINE_LABEL.to_owned(), "restricted".to_owned())].into());
        object.metadata.annotations =
            Some([(CONTENT_HASH_ANNOTATION.to_owned(), "abc".to_owned())].into());
        let (key, hash) = held_entry(&object).expect("ours");
        assert_eq!(
            key,
            ReportKey {
                baseline: "restricted".to_owned(),
                namespace: Some("team-a".to_owned())
            }
        );
        assert_eq!(hash, "abc");
        object.metadata.name = Some("someone-elses".to_owned());
        assert!(held_entry(&object).is_none());
    }
}
