//! The controller (`kube-baseline run`): watches feed in-memory indexes, two reconcilers
//! turn them into writes and status.
//!
//! - [`namespaces`]: one reconcile per Namespace. For every baseline it plans (pure, in
//!   `domain`) what the namespace needs, applies only the differences and records the drift
//!   that remains. Work per event is proportional to one namespace.
//! - [`baselines`]: one reconcile per SecurityBaseline: the finalizer and the status,
//!   aggregated from the namespace results and written only when it changes.
//! - [`replan`]: after a baseline's spec changes, every namespace is re-planned, released
//!   into the namespace queue a few at a time so new namespaces do not wait behind them.
//! - [`queue`]: every namespace trigger waits in our own queue, new namespaces first, and
//!   goes to kube-runtime only when it has a free slot.
//! - [`watches`], [`rbac`], [`nodes`]: the watches that feed the in-memory indexes
//!   ([`cache`]) and say which namespaces a change may re-plan.

mod feeds;
pub(crate) mod reconcile;
mod runtime;
#[cfg(test)]
mod scenario_tests;
mod state;

use feeds::{
    gateways, ingresses, initial_lists, lenient, nodes, pods, rbac, tls_secrets, versions, watches,
};
use reconcile::{baselines, namespaces, queue, replan};
use runtime::{adaptive_limit, http, leader, throttle};
use state::namespace_store::{CachedNamespace, NamespaceSlimmer};
use state::repair_budget;

use std::time::Duration;

use clap::Args;
use futures::{FutureExt, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::client::retry::RetryPolicy;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tower::buffer::BufferLayer;
use tower::layer::util::{Identity, Stack};
use tower::retry::RetryLayer;
use tracing::{info, warn};

use crate::api::{DEFAULT_INSTALL_NAMESPACE, SecurityBaseline};
pub use state::context::Context;

/// Flags of `kube-baseline run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespace the operator runs in; always excluded from baselines like kube-system.
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_INSTALL_NAMESPACE)]
    pub namespace: String,

    /// Namespaces reconciled in parallel.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,

    /// Only reconcile SecurityBaselines matching this label selector (sharding, canaries,
    /// isolated test runs). Default: all.
    #[arg(long, value_name = "SELECTOR")]
    pub baseline_selector: Option<String>,

    /// This instance's shard name, when several instances split the baselines between
    /// them with --baseline-selector over namespaces they share: each applies Pod Security
    /// labels under its own field manager (`kube-baseline-shard-<NAME>`), so none removes
    /// another's labels (lowercase letters, digits and '-', at most 63).
    #[arg(long, value_name = "NAME", value_parser = parse_shard)]
    pub shard: Option<String>,

    /// Only consider Namespaces matching this label selector. Namespaces outside it are
    /// never read or written. Default: all.
    #[arg(long, value_name = "SELECTOR")]
    pub namespace_selector: Option<String>,

    /// Only consider Nodes matching this label selector for kubelet and control-plane
    /// checks; NodeReports of other nodes are ignored (isolated test runs). Default: all.
    #[arg(long, value_name = "SELECTOR")]
    pub node_selector: Option<String>,

    /// Name reported in Events and used as the leader-election identity (the pod name in a
    /// cluster).
    #[arg(long, env = "POD_NAME", default_value = "kube-baseline")]
    pub instance: String,

    /// A hard cap on requests per second to the API server (0, the default: no cap). Without
    /// it the operator sends as fast as its reconciles ask and backs off when the API server
    /// pushes back (429 or 503: fewer requests in flight, growing again after Retry-After);
    /// with it, every request, watches included, also takes a token of this rate.
    #[arg(long, default_value_t = 0.0)]
    pub kube_api_qps: f64,

    /// Requests that may be sent at once above --kube-api-qps after a quiet period (only
    /// with --kube-api-qps).
    #[arg(long, default_value_t = 100)]
    pub kube_api_burst: u32,

    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_address: std::net::SocketAddr,

    /// Elect a leader through a Lease in --namespace, so several replicas are safe: only the
    /// leader watches and writes; the others wait for the lease.
    #[arg(long)]
    pub leader_elect: bool,

    /// Name of the leader-election Lease.
    #[arg(long, default_value = "kube-baseline")]
    pub lease_name: String,

    /// Seconds a lease stays valid without renewal: a crashed leader blocks a successor for
    /// this long, plus up to one standby poll (1 s). A released lease (graceful shutdown) is
    /// taken over within a second.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,

    /// Seconds between reads of the API server's /version (and, while a baseline sets
    /// kubernetesVersion.deprecatedAPIs, its /metrics) for the version checks.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub version_interval_seconds: u64,

    /// Read Secrets of type kubernetes.io/tls for the certificate checks of spec.tls (needs
    /// the RBAC of config/rbac/tls-secrets). Without it those checks are Unknown.
    #[arg(long)]
    pub tls_secrets: bool,

    /// Which policy reports to write, when their CRDs are installed (never installed by the
    /// operator): `openreports` (openreports.io Report / ClusterReport), `policyreport`
    /// (the older wgpolicyk8s.io PolicyReport / ClusterPolicyReport) or `none`.
    #[arg(long, value_enum, default_value_t = ReportsFlag::Openreports)]
    pub reports: ReportsFlag,

    /// Results listed per report at most (the summary counts every result).
    #[arg(long, default_value_t = crate::domain::reports::DEFAULT_MAX_RESULTS,
          value_parser = clap::value_parser!(u16).range(1..=5000))]
    pub report_max_results: u16,
}

/// Values of `--reports`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportsFlag {
    Openreports,
    Policyreport,
    None,
}

impl ReportsFlag {
    /// The reports API to write; None for `none`.
    pub fn api(self) -> Option<crate::domain::reports::ReportApi> {
        match self {
            Self::Openreports => Some(crate::domain::reports::ReportApi::OpenReports),
            Self::Policyreport => Some(crate::domain::reports::ReportApi::PolicyReport),
            Self::None => None,
        }
    }
}

/// Errors that stop the controller.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot find a kubeconfig or in-cluster config: {0}")]
    Config(#[source] kube::config::InferConfigError),
    #[error("cannot build a Kubernetes client from the kubeconfig or in-cluster config: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    Lease(#[from] leader::LeaseError),
    #[error("lost the leader lease; exiting so that only the new leader writes")]
    LostLease,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    let mut config = kube::Config::infer().await.map_err(RunError::Config)?;
    // kube's retry layer sits below any layer added here, so a retry would skip the fence:
    // it is switched off and the retries are made above the fence (`retry_policy`).
    config.default_retry = false;
    // Every request but the Lease's passes the write fence: with --leader-elect, writes
    // stop the moment the lease may have passed to another replica.
    let fence = if args.leader_elect {
        leader::WriteFence::closed()
    } else {
        leader::WriteFence::open()
    };
    let write_timeout = leader::write_timeout(args.leader_elect, args.lease_duration_seconds);
    // One budget per object for every mutating request (see `repair_budget`).
    let budget = std::sync::Arc::<repair_budget::RepairBudget>::default();
    let client = kube::client::ClientBuilder::try_from(config.clone())
        .map_err(RunError::Client)?
        .with_layer(&client_stack(
            fence.clone(),
            write_timeout,
            budget.clone(),
            &args,
        ))
        .build();
    // The Lease has its own client: renewals must neither be fenced nor wait behind a
    // burst of reconcile requests in the shared token bucket. No retries: the renewal
    // loop tries again itself, within the lease.
    let lease_client = kube::client::ClientBuilder::try_from(config)
        .map_err(RunError::Client)?
        .build();
    run_with_clients(client, lease_client, fence, budget, args).await
}

/// Requests waiting to be handed to kube's HTTP stack (they wait there only while the
/// stack is busy taking the one before: microseconds).
const REQUEST_BUFFER: usize = 1024;

/// Retries of 429, 503 and 504 answers (honouring Retry-After), each attempt through the
/// token bucket, the fence and the write budget again. Fewer and shorter than kube's
/// default (15, up to 1,000 s apart): two, so one write's attempts fit in its object's
/// budget of 3 a minute; a write still failing after that is requeued by its reconcile.
fn retry_policy() -> kube::client::retry::RetryPolicy {
    kube::client::retry::RetryPolicy::new(
        Duration::from_millis(200),
        Duration::from_secs(5),
        2,
        true,
    )
    .unwrap_or_default()
}

type Request = ::http::Request<kube::client::Body>;

/// The layers our client adds over kube's HTTP stack, innermost first.
type ClientStack = Stack<
    repair_budget::WriteBudgetLayer,
    Stack<leader::FenceLayer, Stack<adaptive_limit::AdaptiveLimitLayer, FromBuffer>>,
>;
type FromBuffer = Stack<
    BufferLayer<Request>,
    Stack<throttle::ThrottleLayer, Stack<RetryLayer<RetryPolicy>, Identity>>,
>;

/// Retries, then the optional token bucket, then the adaptive limit, then the fence, then
/// the write budget, innermost: every attempt that leaves the process (a retry too) waits
/// for its place, is checked against the fence after that wait, and is counted against its
/// object's budget. kube's stack cannot be cloned, and a retry needs a service it can call
/// again: hence the buffer; below it one service sees every request, in order, so the
/// adaptive limit admits them first come, first served.
fn client_stack(
    fence: std::sync::Arc<leader::WriteFence>,
    write_timeout: Duration,
    budget: std::sync::Arc<repair_budget::RepairBudget>,
    args: &RunArgs,
) -> ClientStack {
    tower::ServiceBuilder::new()
        .layer(RetryLayer::new(retry_policy()))
        .layer(throttle::ThrottleLayer::new(
            args.kube_api_qps,
            args.kube_api_burst,
        ))
        .layer(BufferLayer::new(REQUEST_BUFFER))
        .layer(adaptive_limit::AdaptiveLimitLayer::new(
            std::sync::Arc::default(),
        ))
        .layer(leader::FenceLayer::new(fence, write_timeout))
        .layer(repair_budget::WriteBudgetLayer::new(budget))
        .into_inner()
}

/// Runs the controller with the given clients: `client` for everything but the Lease,
/// passing `fence`; `lease_client` for leader election.
async fn run_with_clients(
    client: Client,
    lease_client: Client,
    fence: std::sync::Arc<leader::WriteFence>,
    budget: std::sync::Arc<repair_budget::RepairBudget>,
    args: RunArgs,
) -> Result<(), RunError> {
    info!(namespace = %args.namespace, concurrency = args.concurrency, "starting controller");
    warn_if_unsharded(&args);
    let (baseline_store, baseline_writer) = reflector::store::<SecurityBaseline>();
    let (namespace_store, namespace_writer) = reflector::store();
    // One watch of one namespace: whether the API server streams initial lists.
    let initial_lists = initial_lists::probe(&client).await;
    let namespace_stream = namespace_watch(&client, &args, initial_lists, namespace_writer);
    let (status_trigger, status_requests) = futures::channel::mpsc::unbounded();
    let ctx = std::sync::Arc::new(
        Context::new(
            client.clone(),
            &args,
            baseline_store.clone(),
            namespace_store.clone(),
            status_trigger,
            budget,
        )
        .with_initial_lists(initial_lists),
    );
    let baselines = BaselineFeed::new(&client, &args, &ctx, baseline_writer);
    let (readiness, readiness_rx) = tokio::sync::watch::channel(http::Readiness::Starting);
    tokio::spawn(http::serve(
        args.metrics_address,
        ctx.metrics.clone(),
        readiness_rx,
    ));
    // Nothing above but the probe has touched the API server: streams start when polled. A
    // standby waits here, so it neither watches nor writes until it leads.
    let Some(leadership) = wait_for_leadership(&args, lease_client, fence, &readiness).await?
    else {
        info!("stopped while waiting for the lease");
        return Ok(());
    };
    let (lease_lost, held_lease) = leadership.split();
    let shutdown = Shutdown::new();
    // A spec change re-plans every namespace, released a few at a time (see `replan`).
    let (replans, replan_requests) = futures::channel::mpsc::unbounded::<String>();
    let replan_pacer = replan_pacer(
        ctx.clone(),
        namespace_store.clone(),
        usize::from(args.concurrency),
        baselines.for_namespaces,
        replans,
    );
    let namespace_controller = namespace_controller(
        &client,
        &ctx,
        namespace_stream,
        namespace_store,
        replan_requests,
        args.concurrency,
        shutdown.requested(),
    );
    let baseline_controller = Controller::for_stream(baselines.for_status, baseline_store)
        .reconcile_on(status_requests.map(|name: String| ObjectRef::new(&name)))
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(200)))
        .graceful_shutdown_on(shutdown.requested())
        .run(baselines::reconcile, baselines::error_policy, ctx.clone())
        .for_each(|_| future::ready(()));
    // The watches never end on their own; the controllers end after a graceful shutdown.
    tokio::select! {
        () = lease_lost => {
            // Stop at once: a successor may already be writing.
            tracing::error!("lost the leader lease; exiting");
            return Err(RunError::LostLease);
        }
        () = baselines.watch => {}
        () = caches_synced(ctx.clone(), readiness) => {}
        () = replan_pacer => {}
        () = nodes::run(client.clone(), ctx.clone(), args.node_selector.clone()) => {}
        () = reconcile::reports::run(client.clone(), ctx.clone()) => {}
        () = versions::run(
            client.clone(),
            ctx.clone(),
            Duration::from_secs(args.version_interval_seconds),
        ) => {}
        _ = future::join(namespace_controller, baseline_controller) => {}
        () = shutdown.on_signal() => {}
    }
    if let Some(lease) = held_lease {
        lease.release().await;
    }
    info!("controller stopped");
    Ok(())
}

fn warn_if_unsharded(args: &RunArgs) {
    if args.baseline_selector.is_some() && args.shard.is_none() {
        warn!(
            "--baseline-selector without --shard: if another instance reconciles other \
             baselines over the same namespaces, give each its own --shard, or their Pod \
             Security label applies (one field manager) undo each other"
        );
    }
}

/// One watch of SecurityBaselines feeds the store and fans out to both controllers: the
/// baseline controller (status, finalizer) and the namespace controller (re-plan every
/// namespace when a spec changes).
struct BaselineFeed<W> {
    /// The watch itself; never ends.
    watch: W,
    for_status: futures::channel::mpsc::UnboundedReceiver<Result<SecurityBaseline, watcher::Error>>,
    for_namespaces: futures::channel::mpsc::UnboundedReceiver<std::sync::Arc<SecurityBaseline>>,
}

impl BaselineFeed<()> {
    fn new(
        client: &Client,
        args: &RunArgs,
        ctx: &Context,
        writer: reflector::store::Writer<SecurityBaseline>,
    ) -> BaselineFeed<impl std::future::Future<Output = ()> + use<>> {
        let (baseline_events, for_status) = futures::channel::mpsc::unbounded();
        let (spec_events, for_namespaces) = futures::channel::mpsc::unbounded();
        let mut config = watcher::Config::default();
        if let Some(selector) = &args.baseline_selector {
            config = config.labels(selector);
        }
        // Lenient: a baseline this version cannot read (a newer CRD) is not fatal; it is
        // left out of the store and counted as present (see `lenient`).
        let watch = lenient::watch_all::<SecurityBaseline>(
            client.clone(),
            config,
            ctx.unreadable_baselines.clone(),
        )
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .for_each(move |event| {
            match event {
                Ok(baseline) => {
                    // Sends fail only once the controllers have shut down.
                    let _ = spec_events.unbounded_send(std::sync::Arc::new(baseline.clone()));
                    let _ = baseline_events.unbounded_send(Ok(baseline));
                }
                Err(error) => warn!(%error, "SecurityBaseline watch failed; retrying"),
            }
            future::ready(())
        });
        BaselineFeed {
            watch,
            for_status,
            for_namespaces,
        }
    }
}

/// Waits until the caches are synced, then serves /readyz and prunes what deleted
/// baselines left behind.
async fn caches_synced(
    ctx: std::sync::Arc<Context>,
    readiness: tokio::sync::watch::Sender<http::Readiness>,
) {
    ctx.sync_caches().await;
    readiness.send_replace(http::Readiness::Serving);
    info!("caches synced; reconciling");
    baselines::prune_deleted(ctx).await;
}

/// SIGTERM (or Ctrl-C) fanned out to the controllers, which then finish their in-flight
/// reconciles.
struct Shutdown {
    begun: tokio::sync::broadcast::Sender<()>,
}

impl Shutdown {
    fn new() -> Self {
        Self {
            begun: tokio::sync::broadcast::channel(1).0,
        }
    }

    /// Resolves once shutdown has begun (a controller's `graceful_shutdown_on`).
    fn requested(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static + use<> {
        let mut begun = self.begun.subscribe();
        async move {
            let _ = begun.recv().await;
        }
    }

    /// Waits for the signal, tells the controllers, then gives in-flight reconciles a
    /// bounded time: a reconcile stuck on an unreachable API server must not keep the pod
    /// from stopping.
    async fn on_signal(self) {
        shutdown_signal().await;
        info!("shutting down: finishing in-flight reconciles");
        let _ = self.begun.send(());
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        warn!(grace = ?SHUTDOWN_GRACE, "in-flight reconciles did not finish; stopping anyway");
    }
}

/// The Namespace watch (metadata only, `--namespace-selector`), slimmed to what the
/// reconcilers read (`CachedNamespace`) and reflected into the store.
fn namespace_watch(
    client: &Client,
    args: &RunArgs,
    initial_lists: initial_lists::InitialLists,
    writer: reflector::store::Writer<CachedNamespace>,
) -> impl futures::Stream<Item = Result<CachedNamespace, watcher::Error>> + use<> {
    let mut config = initial_lists.config();
    if let Some(selector) = &args.namespace_selector {
        config = config.labels(selector);
    }
    let mut slimmer = NamespaceSlimmer::new(args.label_field_manager());
    initial_lists::watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        config,
    )
    .default_backoff()
    .map_ok(move |event| slimmer.slim_event(event))
    .reflect(writer)
    .applied_objects()
}

/// The namespace controller: a reconcile per Namespace event, per re-plan, and per change
/// to an object of ours, a name we generate or an RBAC object.
fn namespace_controller(
    client: &Client,
    ctx: &std::sync::Arc<Context>,
    namespaces: impl futures::Stream<Item = Result<CachedNamespace, watcher::Error>> + Send + 'static,
    store: reflector::Store<CachedNamespace>,
    replan_requests: futures::channel::mpsc::UnboundedReceiver<String>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> {
    let role_feed = watches::KindFeed::new(
        ctx,
        crate::domain::generated::GeneratedKind::Role,
        crate::domain::generated::NamespacedObject::Role,
    );
    let lists = ctx.initial_lists;
    let changes = futures::stream::select(
        watches::namespace_triggers(client, lists, ctx),
        futures::stream::select(
            rbac::namespace_triggers(client, lists, &ctx.rbac, role_feed),
            futures::stream::select(
                ingresses::namespace_triggers(client, lists, ctx.ingresses.clone()),
                futures::stream::select(
                    gateways::namespace_triggers(client, lists, ctx.gateways.clone()),
                    futures::stream::select(
                        match ctx.tls_secrets.clone() {
                            Some(index) => {
                                tls_secrets::namespace_triggers(client, lists, index).boxed()
                            }
                            None => futures::stream::empty().boxed(),
                        },
                        pods::namespace_triggers(
                            client,
                            lists,
                            ctx.previews.clone(),
                            ctx.metrics.clone(),
                        ),
                    ),
                ),
            ),
        ),
    );
    let is_new = {
        let ctx = ctx.clone();
        move |namespace: &str| ctx.reconcile_clock.never_started(namespace)
    };
    queued_controller(
        NamespaceTriggers {
            namespaces,
            changes,
            replans: replan_requests,
            is_new,
        },
        store,
        concurrency,
        shutdown,
        namespaces::reconcile,
        namespaces::error_policy,
        ctx.clone(),
    )
}

/// What triggers namespace reconciles, and how to tell a new namespace.
struct NamespaceTriggers<N, C, R, F> {
    /// The Namespace watch (already reflected into the store).
    namespaces: N,
    /// Changes to the objects a namespace's plan reads, our own writes' echoes included.
    changes: C,
    /// The re-plan backlog, as `replan` releases it.
    replans: R,
    /// Whether this process has never reconciled a namespace.
    is_new: F,
}

/// kube-runtime's controller over namespaces, fed through our own queue (see `queue`):
/// new namespaces first, then changes, then re-plans, and only as its slots free up.
fn queued_controller<N, C, R, F, Fut, Ctx>(
    triggers: NamespaceTriggers<N, C, R, F>,
    store: reflector::Store<CachedNamespace>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    reconcile: impl Fn(std::sync::Arc<CachedNamespace>, std::sync::Arc<Ctx>) -> Fut,
    error_policy: impl Fn(
        std::sync::Arc<CachedNamespace>,
        &Fut::Error,
        std::sync::Arc<Ctx>,
    ) -> kube::runtime::controller::Action,
    ctx: std::sync::Arc<Ctx>,
) -> impl std::future::Future<Output = ()>
where
    N: futures::Stream<Item = Result<CachedNamespace, watcher::Error>> + Send + 'static,
    C: futures::Stream<Item = ObjectRef<CachedNamespace>> + Send + 'static,
    R: futures::Stream<Item = String> + Send + 'static,
    F: Fn(&str) -> bool + Send + 'static,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    use queue::Lane;
    let queue = std::sync::Arc::new(queue::WorkQueue::new(usize::from(concurrency)));
    let NamespaceTriggers {
        namespaces,
        changes,
        replans,
        is_new,
    } = triggers;
    let namespaces = namespaces
        .filter_map(|event| watches::log_and_skip(event, "Namespace"))
        .map(move |namespace| {
            let name = namespace.name_any();
            let lane = if is_new(&name) {
                Lane::New
            } else {
                Lane::Change
            };
            (name, lane)
        });
    let feed = {
        let queue = queue.clone();
        async move {
            queue
                .feed(futures::stream::select(
                    namespaces,
                    futures::stream::select(
                        changes.map(|namespace| (namespace.name, Lane::Change)),
                        replans.map(|namespace| (namespace, Lane::Replan)),
                    ),
                ))
                .await;
            future::pending::<()>().await;
        }
    };
    let running = queue.clone();
    let dropped = queue.clone();
    // The store is fed by the Namespace watch above, through the queue: kube-runtime's own
    // trigger stream is empty.
    let controller = Controller::for_stream(
        futures::stream::pending::<Result<CachedNamespace, watcher::Error>>(),
        store,
    )
    .reconcile_on(queue.releases().map(|namespace| ObjectRef::new(&namespace)))
    .with_config(ControllerConfig::default().concurrency(concurrency))
    .graceful_shutdown_on(shutdown)
    .run(
        move |namespace: std::sync::Arc<CachedNamespace>, ctx| {
            let slot = running.running(&namespace.name_any());
            futures::TryFutureExt::into_future(reconcile(namespace, ctx)).map(move |result| {
                drop(slot);
                result
            })
        },
        error_policy,
        ctx,
    )
    .for_each(move |result| {
        if let Err(kube::runtime::controller::Error::ObjectNotFound(object)) = result {
            dropped.dropped(&object.name);
        }
        future::ready(())
    });
    async move {
        futures::pin_mut!(feed, controller);
        future::select(feed, controller).await;
    }
}

/// How this instance leads: elected through the Lease, or alone (no leader election).
enum Leading {
    Elected(Box<leader::Leadership>),
    Alone,
}

impl Leading {
    /// What resolves when the lease is lost (never without leader election), and the lease
    /// to release at the end.
    fn split(
        self,
    ) -> (
        impl std::future::Future<Output = ()>,
        Option<leader::HeldLease>,
    ) {
        match self {
            Self::Elected(leadership) => {
                let (lost, held) = (*leadership).split();
                let lost = async move {
                    let _ = lost.await;
                };
                (futures::future::Either::Left(lost), Some(held))
            }
            Self::Alone => (futures::future::Either::Right(future::pending()), None),
        }
    }
}

/// With `--leader-elect`, waits for the Lease (a standby neither watches nor writes until
/// then); None when stopped while waiting.
async fn wait_for_leadership(
    args: &RunArgs,
    lease_client: Client,
    fence: std::sync::Arc<leader::WriteFence>,
    readiness: &tokio::sync::watch::Sender<http::Readiness>,
) -> Result<Option<Leading>, RunError> {
    if !args.leader_elect {
        return Ok(Some(Leading::Alone));
    }
    readiness.send_replace(http::Readiness::Standby);
    let settings = leader::LeaseSettings {
        namespace: args.namespace.clone(),
        name: args.lease_name.clone(),
        identity: format!("{}-{}", args.instance, std::process::id()),
        duration_seconds: args.lease_duration_seconds,
    };
    tokio::select! {
        leadership = leader::acquire(lease_client, &settings, fence) => {
            readiness.send_replace(http::Readiness::Starting);
            Ok(Some(Leading::Elected(Box::new(leadership?))))
        }
        () = shutdown_signal() => Ok(None),
    }
}

/// A spec change re-plans every namespace, released a few at a time (see `replan`);
/// never ends (the controllers decide when to stop).
async fn replan_pacer(
    ctx: std::sync::Arc<Context>,
    store: reflector::Store<CachedNamespace>,
    window: usize,
    baselines: futures::channel::mpsc::UnboundedReceiver<std::sync::Arc<SecurityBaseline>>,
    replans: futures::channel::mpsc::UnboundedSender<String>,
) {
    // Newest first: a namespace created just before the change may have been protected
    // under the old spec a moment ago, and is the likeliest to be in use by someone waiting
    // for it.
    let namespaces = || {
        let mut all: Vec<_> = store
            .state()
            .iter()
            .map(|n| (n.metadata.creation_timestamp.clone(), n.name_any()))
            .collect();
        all.sort_by(|a, b| b.cmp(a));
        all.into_iter().map(|(_, name)| name).collect()
    };
    let spec_changes = watches::baseline_spec_changes(baselines);
    replan::pace(
        &ctx.reconcile_clock,
        spec_changes,
        namespaces,
        replans,
        window,
    )
    .await;
    future::pending::<()>().await;
}

impl RunArgs {
    /// The field manager of our Pod Security label applies: `kube-baseline`, or
    /// `kube-baseline-shard-<NAME>` for a shard.
    pub fn label_field_manager(&self) -> String {
        match &self.shard {
            None => crate::api::FIELD_MANAGER.to_string(),
            Some(name) => format!("{}-shard-{name}", crate::api::FIELD_MANAGER),
        }
    }
}

fn parse_shard(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{name:?} is not a shard name: use lowercase letters, digits and '-', at most 63"
        ))
    }
}

/// How long a graceful shutdown waits for in-flight reconciles (Kubernetes' default
/// termination grace period is 30 s; the lease must still be released within it).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tower::{Layer, ServiceExt};

    /// `kube-baseline run`'s flags at their defaults.
    fn default_args() -> RunArgs {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            run: RunArgs,
        }
        <Flags as clap::Parser>::parse_from(["kube-baseline"]).run
    }

    #[tokio::test]
    async fn every_attempt_of_the_client_passes_the_fence_retries_too() {
        // The fence closes while the first attempt is answered 429 (say, the leader was
        // frozen past its lease before the retry): the retry must not go out.
        let fence = leader::WriteFence::closed();
        fence.set_for_test(Some(std::time::Instant::now() + Duration::from_secs(60)));
        let attempts = Arc::new(AtomicUsize::new(0));
        let wire = {
            let fence = fence.clone();
            let attempts = attempts.clone();
            tower::service_fn(move |_: Request| {
                attempts.fetch_add(1, Ordering::SeqCst);
                fence.set_for_test(None);
                async {
                    let mut response = ::http::Response::new(());
                    *response.status_mut() = ::http::StatusCode::TOO_MANY_REQUESTS;
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let client = client_stack(
            fence,
            Duration::from_secs(10),
            Arc::default(),
            &default_args(),
        )
        .layer(wire);
        let mut request = Request::new(kube::client::Body::from(b"{}".to_vec()));
        *request.method_mut() = ::http::Method::PATCH;
        *request.uri_mut() = ::http::Uri::from_static("/api/v1/namespaces/a");
        let refused = client
            .oneshot(request)
            .await
            .expect_err("the retry meets the closed fence");
        assert!(refused.to_string().contains("leader lease"), "{refused}");
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "attempts on the wire");
    }
}
