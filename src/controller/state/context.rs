//! What every reconcile shares: the client, the caches and the results.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::reflector::Store;
use kube::{Client, ResourceExt};
use parking_lot::Mutex;

use crate::api::{BASELINE_LABEL, SecurityBaseline};
use crate::controller::RunArgs;
use crate::controller::feeds::lenient::Unreadable;
use crate::controller::state::cache::{CachedObject, CompactIndex, TakenName};
use crate::controller::state::namespace_store::CachedNamespace;
use crate::controller::state::results::Results;
use crate::controller::state::writes_in_flight::{BodyHash, ObjectKey, WritesInFlight};
use crate::domain::field_ownership::apply_removes_fields;
use crate::domain::generated::{GeneratedKind, NamespacedObject};

/// Shared state of the controller.
pub struct Context {
    pub client: Client,
    pub operator_namespace: String,
    /// The field manager of our Pod Security label applies (see [`RunArgs::label_field_manager`]).
    pub label_manager: String,
    pub baselines: Store<SecurityBaseline>,
    /// SecurityBaselines that exist but this version cannot read (see `lenient`): present,
    /// never acted on.
    pub unreadable_baselines: Arc<Unreadable>,
    pub namespaces: Store<CachedNamespace>,
    /// Our generated objects (label-filtered watches), per kind.
    pub generated: BTreeMap<GeneratedKind, Arc<CompactIndex<CachedObject>>>,
    /// Names of every object of the generated kinds, ours or not (and the baseline each is
    /// labelled for), to tell a free generated name from one taken by someone else without
    /// a GET.
    pub names: BTreeMap<GeneratedKind, Arc<CompactIndex<TakenName>>>,
    pub results: Results,
    pub metrics: Arc<crate::controller::runtime::metrics::Metrics>,
    /// Every Ingress's hosts and labels, for the TLS checks.
    pub ingresses: Arc<crate::controller::feeds::ingresses::IngressIndex>,
    /// Every `kubernetes.io/tls` Secret's certificate facts, with `--tls-secrets` only.
    pub tls_secrets: Option<Arc<crate::controller::feeds::tls_secrets::TlsSecretIndex>>,
    /// Every Gateway's listeners, listener status and labels, for the TLS checks (empty
    /// while the Gateway API CRD is absent).
    pub gateways: Arc<crate::controller::feeds::gateways::GatewayCache>,
    /// Roles, ClusterRoles and bindings, for the RBAC audit.
    pub rbac: Arc<crate::controller::feeds::rbac::RbacCache>,
    /// Node labels, NodeReports and the published audit policy (node checks).
    pub node_caches: crate::controller::feeds::nodes::NodeCaches,
    /// The API server's version and deprecated-API metrics (version checks).
    pub versions: crate::controller::feeds::versions::VersionCache,
    pub recorder: crate::controller::runtime::events::EventRecorder,
    /// Asks the baseline reconciler to refresh a baseline's status.
    pub status_trigger: UnboundedSender<String>,
    /// When the controller started: drift that appears after it is news (an Event).
    pub started: k8s_openapi::jiff::Timestamp,
    /// Raised once every cache has its first full list.
    caches_synced: tokio::sync::watch::Sender<bool>,
    /// Namespaces that existed when the caches synced and that this process has not
    /// reconciled yet (the start-up pass). None once the pass is done.
    startup_pass: Mutex<Option<HashSet<String>>>,
    /// Pod Security label writes and applies whose watch events have not reached the
    /// caches yet, so that a reconcile triggered by our own earlier write does not write
    /// again (and report a repair that was none). Shared with the generated kinds' feeds,
    /// which settle each write when its object's next watch event arrives.
    pub(crate) writes_in_flight: Arc<Mutex<WritesInFlight>>,
    /// Requests per object in the last minute (shared with the client's budget layer,
    /// which records every attempt): no write fight with another field manager.
    pub repair_budget: Arc<crate::controller::state::repair_budget::RepairBudget>,
    /// When each namespace's latest reconcile started (paces re-plans after a spec change).
    pub reconcile_clock: crate::controller::reconcile::replan::ReconcileClock,
    /// What the Pod Security previews found, and whether pods changed since.
    pub previews: Arc<crate::controller::state::previews::Previews>,
    /// Policy reports: what the cluster holds and what is to be written.
    pub reports: Arc<crate::controller::reconcile::reports::Reports>,
    /// How the watches of many objects take their initial list (asked of the API server
    /// at start-up; paginated until then).
    pub initial_lists: crate::controller::feeds::initial_lists::InitialLists,
}

fn object_key(object: &NamespacedObject) -> ObjectKey<'_> {
    ObjectKey {
        kind: object.kind(),
        namespace: object.namespace(),
        name: object.name(),
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("operator_namespace", &self.operator_namespace)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// The context with the initial-list strategy the API server was found to serve.
    pub fn with_initial_lists(
        self,
        initial_lists: crate::controller::feeds::initial_lists::InitialLists,
    ) -> Self {
        Self {
            initial_lists,
            ..self
        }
    }

    pub fn new(
        client: Client,
        args: &RunArgs,
        baselines: Store<SecurityBaseline>,
        namespaces: Store<CachedNamespace>,
        status_trigger: UnboundedSender<String>,
        repair_budget: Arc<crate::controller::state::repair_budget::RepairBudget>,
    ) -> Self {
        let reporter = Reporter {
            controller: "kube-baseline".to_string(),
            instance: Some(args.instance.clone()),
        };
        let metrics: Arc<crate::controller::runtime::metrics::Metrics> = Arc::default();
        Self {
            recorder: crate::controller::runtime::events::EventRecorder::new(
                client.clone(),
                reporter,
                metrics.clone(),
            ),
            client,
            operator_namespace: args.namespace.clone(),
            label_manager: args.label_field_manager(),
            baselines,
            unreadable_baselines: Arc::new(Unreadable::new("SecurityBaseline", metrics.clone())),
            namespaces,
            generated: GeneratedKind::ALL
                .into_iter()
                .map(|k| (k, Arc::default()))
                .collect(),
            names: GeneratedKind::ALL
                .into_iter()
                .map(|k| (k, Arc::default()))
                .collect(),
            results: Results::default(),
            rbac: Arc::default(),
            ingresses: Arc::default(),
            tls_secrets: args.tls_secrets.then(Arc::default),
            gateways: Arc::default(),
            node_caches: crate::controller::feeds::nodes::NodeCaches::new(metrics.clone()),
            versions: crate::controller::feeds::versions::VersionCache::default(),
            metrics,
            status_trigger,
            started: k8s_openapi::jiff::Timestamp::now(),
            caches_synced: tokio::sync::watch::Sender::new(false),
            startup_pass: Mutex::new(None),
            writes_in_flight: Arc::default(),
            repair_budget,
            reconcile_clock: crate::controller::reconcile::replan::ReconcileClock::default(),
            previews: Arc::default(),
            reports: Arc::new(crate::controller::reconcile::reports::Reports::new(
                args.reports.api(),
                usize::from(args.report_max_results),
            )),
            initial_lists: crate::controller::feeds::initial_lists::InitialLists::Paginated,
        }
    }

    /// Waits until every cache has its first full list: acting on a partial view would
    /// recreate objects that exist or report drift that is not there. Many reconciles wait
    /// at once, so they wait on one flag that [`Context::sync_caches`] raises.
    pub async fn wait_ready(&self) {
        let mut ready = self.caches_synced.subscribe();
        // An error means the sender is gone, which cannot happen while `self` lives.
        let _ = ready.wait_for(|synced| *synced).await;
    }

    /// Waits for every store and index, then raises the flag reconciles wait on. Runs once,
    /// in one task: kube's `Store::wait_until_ready` wakes only one of several waiters.
    pub async fn sync_caches(&self) {
        // The stores only fail to become ready if their writer is dropped, i.e. on shutdown.
        let _ = self.baselines.wait_until_ready().await;
        let _ = self.namespaces.wait_until_ready().await;
        for index in self.generated.values() {
            index.wait_ready().await;
        }
        for index in self.names.values() {
            index.wait_ready().await;
        }
        self.rbac.wait_ready().await;
        self.ingresses.wait_ready().await;
        if let Some(secrets) = &self.tls_secrets {
            secrets.wait_ready().await;
        }
        self.gateways.wait_ready().await;
        self.node_caches.wait_ready().await;
        let existing: HashSet<String> = self
            .namespaces
            .state()
            .iter()
            .map(|namespace| namespace.name_any())
            .collect();
        *self.startup_pass.lock() = (!existing.is_empty()).then_some(existing);
        self.caches_synced.send_replace(true);
    }

    /// Whether the start-up pass is still running: some namespace that existed at start-up
    /// (and still exists) has not been reconciled by this process yet. Until then a
    /// baseline's status at an already observed generation would only say "not yet
    /// reconciled" about namespaces this process has not looked at, so it is not written
    /// (a restart on a converged cluster writes nothing).
    pub fn in_startup_pass(&self) -> bool {
        let mut pass = self.startup_pass.lock();
        let Some(pending) = pass.as_mut() else {
            return false;
        };
        // A namespace deleted meanwhile is never reconciled: stop waiting for it.
        pending.retain(|name| self.namespaces.get(&ObjectRef::new(name)).is_some());
        if pending.is_empty() {
            *pass = None;
            return false;
        }
        true
    }

    /// The baselines to act on: every cached one except those that exist but cannot be
    /// read (their cached version, if any, is an old one: acting on it could change what
    /// they own) and those deleted while unreadable.
    pub fn readable_baselines(&self) -> Vec<Arc<SecurityBaseline>> {
        let mut baselines = self.baselines.state();
        baselines.retain(|b| !self.unreadable_baselines.hides(&b.name_any()));
        baselines
    }

    /// Records that `namespace` was reconciled; when that ends the start-up pass, asks for
    /// every baseline's status.
    pub fn reconciled(&self, namespace: &str) {
        let ended = {
            let mut pass = self.startup_pass.lock();
            match pass.as_mut() {
                Some(pending) => {
                    pending.remove(namespace);
                    let ended = pending.is_empty();
                    if ended {
                        *pass = None;
                    }
                    ended
                }
                None => false,
            }
        };
        if ended {
            for baseline in self.readable_baselines() {
                self.refresh_status(&baseline.name_any());
            }
        }
    }

    /// Whether `labels` were already applied by us to `namespace` at `resource_version`, the
    /// version the cache still shows (our write's watch event has not arrived yet), so
    /// applying them again would be a duplicate write.
    pub fn labels_in_flight(
        &self,
        namespace: &str,
        resource_version: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.writes_in_flight
            .lock()
            .labels_in_flight(namespace, resource_version, labels)
    }

    /// Remembers a successful label write over `resource_version` (see
    /// [`Context::labels_in_flight`]).
    pub fn labels_written(
        &self,
        namespace: &str,
        resource_version: Option<&str>,
        labels: BTreeMap<String, String>,
    ) {
        let mut writes = self.writes_in_flight.lock();
        writes.labels_written(namespace, resource_version, labels);
        self.sweep_writes_if_due(&mut writes);
    }

    /// Settles every namespace's writes once enough are remembered (see
    /// [`WritesInFlight::sweep_due`]).
    fn sweep_writes_if_due(&self, writes: &mut WritesInFlight) {
        if !writes.sweep_due() {
            return;
        }
        writes.sweep(
            |namespace| {
                self.namespaces
                    .get(&ObjectRef::new(namespace))
                    .and_then(|cached| cached.metadata.resource_version.clone())
            },
            |kind, namespace, name| self.cached_version(kind, namespace, name),
            Instant::now(),
        );
    }

    /// The resourceVersion of our cached object, if cached.
    fn cached_version(&self, kind: GeneratedKind, namespace: &str, name: &str) -> Option<String> {
        self.generated
            .get(&kind)?
            .get(namespace, name)?
            .resource_version()
            .map(str::to_string)
    }

    /// Whether exactly this apply was already made over the version the cache still shows.
    pub fn apply_in_flight(&self, object: &NamespacedObject, body: BodyHash) -> bool {
        let cached = self.cached_version(object.kind(), object.namespace(), object.name());
        self.writes_in_flight.lock().apply_in_flight(
            object_key(object),
            cached.as_deref(),
            body,
            Instant::now(),
        )
    }

    /// Whether applying `desired` must first take over the fields our create recorded:
    /// the cache shows our field manager holding fields of the object by a plain write, and
    /// the apply removes something (`field_ownership::apply_removes_fields`).
    pub fn apply_needs_take_over(&self, desired: &NamespacedObject) -> bool {
        self.generated
            .get(&desired.kind())
            .and_then(|index| index.get(desired.namespace(), desired.name()))
            .is_some_and(|cached| {
                cached.holds_plain_writes()
                    && apply_removes_fields(desired, &cached.object(desired.namespace()))
            })
    }

    /// The cached version an apply is about to be written over (see [`Context::applied`]).
    pub fn version_before_apply(&self, object: &NamespacedObject) -> Option<String> {
        self.cached_version(object.kind(), object.namespace(), object.name())
    }

    /// Remembers a successful apply over `written_over`.
    pub fn applied(&self, object: &NamespacedObject, written_over: Option<String>, body: BodyHash) {
        let mut writes = self.writes_in_flight.lock();
        writes.applied(object_key(object), written_over, body, Instant::now());
        self.sweep_writes_if_due(&mut writes);
    }

    /// Drops what is remembered of writes in `namespace` that the caches have caught up
    /// with (called on every reconcile, so the memory holds only writes in flight).
    pub fn settle_writes(&self, namespace: &str, namespace_version: Option<&str>) {
        self.writes_in_flight.lock().settle(
            namespace,
            namespace_version,
            |kind, name| self.cached_version(kind, namespace, name),
            Instant::now(),
        );
    }

    /// Forgets what is remembered about a namespace that is going away.
    pub fn forget_namespace(&self, namespace: &str) {
        self.reconcile_clock.forget(namespace);
        self.writes_in_flight.lock().forget_namespace(namespace);
        self.previews.forget_namespace(namespace);
    }

    /// Our objects of `baseline` in `namespace`, every kind.
    pub fn generated_in(&self, namespace: &str, baseline: &str) -> Vec<Arc<NamespacedObject>> {
        self.generated
            .values()
            .flat_map(|index| {
                index.in_namespace(namespace, |o| {
                    o.shared().label(BASELINE_LABEL) == Some(baseline)
                })
            })
            .map(|cached| Arc::new(cached.object(namespace)))
            .collect()
    }

    /// Whether any object of ours for `baseline` is left anywhere.
    pub fn has_generated(&self, baseline: &str) -> bool {
        self.generated
            .values()
            .any(|index| index.any(|o| o.shared().label(BASELINE_LABEL) == Some(baseline)))
    }

    /// Any object of `kind` named `name` in `namespace`, ours or not, as the metadata the
    /// plan reads of it: its name and its baseline label.
    pub fn lookup_name(
        &self,
        kind: GeneratedKind,
        namespace: &str,
        name: &str,
    ) -> Option<ObjectMeta> {
        // Others' objects are in the name index, ours in the generated index. An object
        // moving between them enters one before it leaves the other, so asking the name
        // index again after the generated index cannot miss it (whichever way it moves).
        let others = || self.names.get(&kind)?.get(namespace, name);
        let baseline = match others() {
            Some(taken) => taken.baseline,
            None => match self.generated.get(&kind)?.get(namespace, name) {
                Some(ours) => ours.shared().label(BASELINE_LABEL).map(Arc::from),
                None => others()?.baseline,
            },
        };
        Some(ObjectMeta {
            name: Some(name.to_string()),
            labels: baseline.map(|baseline| {
                BTreeMap::from([(BASELINE_LABEL.to_string(), baseline.to_string())])
            }),
            ..ObjectMeta::default()
        })
    }

    /// Asks for a status refresh of `baseline`.
    pub fn refresh_status(&self, baseline: &str) {
        // Fails only when the baseline controller is gone (shutdown).
        let _ = self.status_trigger.unbounded_send(baseline.to_string());
    }
}
