//! `kube-baseline agent`: the node agent (a DaemonSet).
//!
//! Every `--interval` it finds the kubelet and kube-apiserver in `/proc`, reads their flags
//! and the files they point at (kubelet config and drop-ins, audit policy, encryption
//! config), and publishes the observations as the node's `NodeReport` — only when they
//! changed. With `--enforce` it also writes the rendered audit policy and kubelet drop-in
//! (see [`enforce`]); it never restarts anything.
//!
//! The layers: [`host`] touches the node, [`discover`] finds processes and paths,
//! [`observe`] turns texts into observations (pure, shared with `check`), [`enforce`]
//! writes files, and this module talks to the cluster.

pub mod discover;
pub mod enforce;
pub mod host;
pub mod live;
pub mod membership;
pub mod observe;
pub mod server_cert;
pub mod version;

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio::signal::unix::{SignalKind, signal};
use tracing::Instrument;

use crate::api::{
    AGENT_FIELD_MANAGER, DEFAULT_INSTALL_NAMESPACE, KubeletSettings, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, NodeReport, NodeReportSpec, SecurityBaseline,
};
use crate::domain::node::audit_policy::{AUDIT_POLICY_CONFIG_MAP, AUDIT_POLICY_KEY};
use crate::domain::node::kubelet;

pub use discover::HostOptions;
pub use enforce::{Desired, Want};
pub use host::Host;
use membership::ClusterCa;
pub use observe::{NodeSources, SourceFile, observe};

/// Options of `kube-baseline agent`.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Name of this node (the NodeReport is named after it); in a DaemonSet, from the
    /// downward API (spec.nodeName).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,

    /// Where the host's / is mounted; /proc under it must show the host's processes.
    #[arg(long, default_value = "/")]
    pub host_root: PathBuf,

    /// Time between observations, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub interval: Duration,

    /// Observe, publish (and enforce) once, then exit.
    #[arg(long)]
    pub once: bool,

    /// Write the rendered audit policy and the kubelet drop-in (never restarts anything).
    #[arg(long)]
    pub enforce: bool,

    /// Print the NodeReport as YAML instead of publishing it; the cluster is not contacted
    /// (desired content then only comes from --audit-policy-source and
    /// --kubelet-settings-source).
    #[arg(long)]
    pub print: bool,

    /// Namespace of the operator (where the rendered audit policy ConfigMap lives).
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_INSTALL_NAMESPACE)]
    pub namespace: String,

    /// Host path of the kubelet config file, instead of the kubelet's --config.
    #[arg(long, value_name = "HOST_PATH")]
    pub kubelet_config: Option<String>,

    /// Host path of the kubelet drop-in directory, instead of the kubelet's --config-dir.
    #[arg(long, value_name = "HOST_PATH")]
    pub kubelet_config_dir: Option<String>,

    /// Host path of the kube-apiserver's static Pod manifest or a text file of its flags,
    /// instead of its command line (when its process is not visible).
    #[arg(long, value_name = "HOST_PATH")]
    pub apiserver_flags_file: Option<String>,

    /// Host path of the audit policy, instead of the kube-apiserver's --audit-policy-file
    /// (also where --enforce writes it).
    #[arg(long, value_name = "HOST_PATH")]
    pub audit_policy_file: Option<String>,

    /// A local file with the rendered audit policy, instead of the ConfigMap
    /// kube-baseline-audit-policy (for tests and air-gapped use).
    #[arg(long, value_name = "PATH")]
    pub audit_policy_source: Option<PathBuf>,

    /// A local YAML file with kubelet settings (the shape of spec.kubelet.settings),
    /// instead of the SecurityBaselines selecting this node.
    #[arg(long, value_name = "PATH")]
    pub kubelet_settings_source: Option<PathBuf>,

    /// This node's IP: where the local kube-apiserver is asked for its version when its
    /// --bind-address is unspecified (0.0.0.0, ::); 127.0.0.1 when not given. In a
    /// DaemonSet, from the downward API (status.hostIP).
    #[arg(long, env = "KB_HOST_IP", value_name = "IP")]
    pub host_ip: Option<String>,

    /// Send the live probes (the kube-apiserver without credentials, etcd without a client
    /// certificate) on every pass, also with --print; without it they are sent only while a
    /// SecurityBaseline has controlPlane.liveProbes.
    #[arg(long)]
    pub live_probes: bool,
}

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No client configuration (kubeconfig or in-cluster).
    #[error("cannot read the client configuration (kubeconfig or in-cluster config): {0}")]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built from its configuration.
    #[error("cannot create a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The NodeReport could not be read or written.
    #[error("cannot {action} NodeReport {node}: {source}")]
    Report {
        /// What was attempted.
        action: &'static str,
        /// The node.
        node: String,
        #[source]
        source: kube::Error,
    },
    /// A pass panicked or was cancelled.
    #[error("observation pass failed: {0}")]
    Pass(#[source] tokio::task::JoinError),
    /// Signal handlers could not be installed.
    #[error("cannot listen for SIGTERM: {0}")]
    Signal(#[source] std::io::Error),
    /// The report could not be printed.
    #[error("cannot print the NodeReport: {0}")]
    Print(String),
}

/// Parses 60s, 5m, 1h, 500ms or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 60s, 5m or 1h"))?;
    let duration = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
            ));
        }
    };
    if duration.is_zero() {
        return Err("the interval must be positive".to_owned());
    }
    Ok(duration)
}

/// One observation: what was published and what was written.
#[derive(Debug, Clone, PartialEq)]
pub struct PassOutcome {
    /// The observations.
    pub report: NodeReportSpec,
    /// Host paths written.
    pub written: Vec<String>,
    /// Host paths removed.
    pub removed: Vec<String>,
    /// How to ask the observed kube-apiserver for its version (or why it cannot be
    /// asked); None when none was observed. The async caller asks ([`version`]).
    pub version_probe: Option<Result<version::VersionProbe, String>>,
    /// Where the live probes ask etcd; None when no kube-apiserver was observed. The async
    /// caller probes ([`live`]) when a baseline asks.
    pub live_plan: Option<live::LivePlan>,
}

/// One pass, synchronously: discover, enforce (compare and, with `enforce`, write), then
/// read everything (after the writes, so PendingRestart shows at once) and observe.
pub fn pass(
    host: &Host,
    options: &HostOptions,
    node_name: &str,
    desired: &Desired,
    enforce: bool,
) -> PassOutcome {
    let targets = discover::discover(host, options);
    let enforced = enforce::enforce_files(host, &targets, desired, enforce);
    let sources = discover::read_sources(host, node_name, &targets);
    let mut report = observe::observe(&sources);
    report.enforce = enforce;
    report.enforcement = enforced.results;
    observe::fit_to_schema(&mut report);
    let version_probe = match &targets.api_server {
        observe::Found::Found(target) => Some(version::probe(
            host,
            &target.args,
            options.host_ip.as_deref(),
        )),
        _ => None,
    };
    let live_plan = match &targets.api_server {
        observe::Found::Found(target) => {
            let etcd_args = match &targets.etcd {
                observe::Found::Found(etcd) => Some(etcd.args.as_slice()),
                _ => None,
            };
            Some(live::LivePlan {
                etcd: live::etcd_target(host, &target.args, etcd_args, options.host_ip.as_deref()),
            })
        }
        _ => None,
    };
    PassOutcome {
        report,
        written: enforced.written,
        removed: enforced.removed,
        version_probe,
        live_plan,
    }
}

/// Asks the observed kube-apiserver for its version and records the answer, or why there
/// is none, in the report (only when the kube-apiserver was observed).
async fn add_api_server_version(outcome: &mut PassOutcome, config: &kube::Config) {
    let Some(probe) = &outcome.version_probe else {
        return;
    };
    if outcome.report.api_server.header.state != crate::api::ObservationState::Observed {
        return;
    }
    let read = match probe {
        Err(why) => Err(why.clone()),
        Ok(probe) => version::read_version(config, probe)
            .await
            .map_err(|err| err.to_string()),
    };
    match &read {
        Ok(found) => tracing::debug!(version = %found, "kube-apiserver version read"),
        Err(why) => tracing::warn!(error = %why, "cannot read the kube-apiserver's version"),
    }
    version::record(&mut outcome.report.api_server, read);
}

/// Caches fed by watches: the agent reads what it needs every pass without a GET, which
/// keeps thousands of agents cheap for the API server.
struct Cluster {
    started: tokio::time::Instant,
    /// The agent's client configuration: its credentials also ask the local kube-apiserver
    /// for its version.
    config: kube::Config,
    reports: Api<NodeReport>,
    /// This node's NodeReport as the API server has it: a deleted or hand-edited report is
    /// rewritten on the next pass.
    report: Store<NodeReport>,
    node: Store<Node>,
    baselines: Store<SecurityBaseline>,
    config_map: Store<ConfigMap>,
}

/// Starts a watch feeding a store; it retries with backoff forever (e.g. until RBAC allows).
fn spawn_reflector<K>(api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(err) = event {
                    tracing::warn!(error = %err, "watch failed; retrying");
                }
            })
            .await;
    });
    store
}

/// Whether a store has listed, waiting at most `wait` for its first list.
async fn ready<K>(store: &Store<K>, wait: Duration) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    // A ready store resolves at once; timeout polls it before checking the deadline.
    matches!(
        tokio::time::timeout(wait, store.wait_until_ready()).await,
        Ok(Ok(()))
    )
}

/// How long the agent waits for its watches to list: up to 30 s after start, then not at
/// all (a watch that cannot list, e.g. for lack of RBAC, must not slow every pass).
const STARTUP_WAIT: Duration = Duration::from_secs(30);

impl Cluster {
    async fn connect(args: &AgentArgs, config: kube::Config) -> Result<Self, AgentError> {
        let client = Client::try_from(config.clone()).map_err(AgentError::Client)?;
        let by_name =
            |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
        Ok(Self {
            started: tokio::time::Instant::now(),
            config,
            reports: Api::all(client.clone()),
            report: spawn_reflector(
                Api::<NodeReport>::all(client.clone()),
                by_name(&args.node_name),
            ),
            node: spawn_reflector(Api::<Node>::all(client.clone()), by_name(&args.node_name)),
            baselines: spawn_reflector(
                Api::<SecurityBaseline>::all(client.clone()),
                watcher::Config::default(),
            ),
            config_map: spawn_reflector(
                Api::<ConfigMap>::namespaced(client.clone(), &args.namespace),
                by_name(AUDIT_POLICY_CONFIG_MAP),
            ),
        })
    }

    /// What is left of [`STARTUP_WAIT`].
    fn wait(&self) -> Duration {
        STARTUP_WAIT.saturating_sub(self.started.elapsed())
    }

    fn node(&self) -> Option<std::sync::Arc<Node>> {
        self.node.state().into_iter().next()
    }

    /// The published observations, from the watch; None while it has not listed yet.
    async fn published(&self) -> Option<Option<NodeReportSpec>> {
        if ready(&self.report, self.wait()).await {
            Some(
                self.report
                    .state()
                    .into_iter()
                    .next()
                    .map(|r| r.spec.clone()),
            )
        } else {
            None
        }
    }
}

/// What the baselines want on this node, from the local sources or the cluster caches.
async fn desired(args: &AgentArgs, cluster: Option<&Cluster>) -> Desired {
    let audit_policy = match (&args.audit_policy_source, cluster) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(text) => Want::Content(text),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read --audit-policy-source");
                Want::Unknown
            }
        },
        (None, Some(cluster)) if ready(&cluster.config_map, cluster.wait()).await => {
            match cluster.config_map.state().into_iter().next() {
                None => Want::Absent,
                Some(config_map) => match config_map
                    .data
                    .as_ref()
                    .and_then(|d| d.get(AUDIT_POLICY_KEY))
                {
                    Some(text) => Want::Content(text.clone()),
                    None => {
                        tracing::warn!(
                            config_map = AUDIT_POLICY_CONFIG_MAP,
                            key = AUDIT_POLICY_KEY,
                            "the audit policy ConfigMap has no policy key"
                        );
                        Want::Unknown
                    }
                },
            }
        }
        _ => Want::Unknown,
    };
    let mut desired = Desired {
        audit_policy,
        ..Desired::default()
    };

    let settings: Option<(KubeletSettings, Vec<String>)> = match (
        &args.kubelet_settings_source,
        cluster,
    ) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(text) => match serde_saphyr::from_str::<KubeletSettings>(&text) {
                Ok(settings) => Some((settings, Vec::new())),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "--kubelet-settings-source is not kubelet settings YAML");
                    None
                }
            },
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read --kubelet-settings-source");
                None
            }
        },
        (None, Some(cluster))
            if ready(&cluster.baselines, cluster.wait()).await
                && ready(&cluster.node, cluster.wait()).await =>
        {
            match cluster.node() {
                None => {
                    tracing::warn!(node = %args.node_name, "Node object not found; kubelet settings unknown");
                    None
                }
                Some(node) => {
                    let labels = node.metadata.labels.clone().unwrap_or_default();
                    let baselines = cluster.baselines.state();
                    let pairs: Vec<(String, &crate::api::SecurityBaselineSpec)> = baselines
                        .iter()
                        .map(|b| (b.metadata.name.clone().unwrap_or_default(), &b.spec))
                        .collect();
                    let wanted = kubelet::desired_kubelet(
                        pairs.iter().map(|(name, spec)| (name.as_str(), *spec)),
                        &labels,
                    );
                    Some((wanted.settings, wanted.conflicts))
                }
            }
        }
        _ => None,
    };
    match settings {
        None => {}
        Some((settings, notes)) => match kubelet::render_drop_in(&settings) {
            Ok(Some(text)) => {
                desired.kubelet_drop_in = Want::Content(text);
                desired.kubelet_notes = notes;
            }
            Ok(None) => desired.kubelet_drop_in = Want::Absent,
            Err(err) => tracing::warn!(error = %err, "cannot render the kubelet drop-in"),
        },
    }
    desired
}

/// The NodeReport object for a spec: named after the node, owned by the Node (so it is
/// garbage-collected with it), labelled as kube-baseline's.
fn report_object(spec: NodeReportSpec, node: Option<&Node>) -> NodeReport {
    let name = spec.node_name.clone();
    let owner = node.and_then(|node| {
        Some(OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: node.metadata.name.clone()?,
            uid: node.metadata.uid.clone()?,
            ..OwnerReference::default()
        })
    });
    NodeReport {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into()),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        spec,
    }
}

/// Runs the agent until SIGTERM (or after one pass with --once).
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let host = Host::new(&args.host_root);
    // The cluster's CA tells its processes from other clusters' on this host.
    let config = match kube::Config::infer().await {
        Ok(config) => Some(config),
        Err(_) if args.print => None,
        Err(error) => return Err(AgentError::Config(error)),
    };
    let options = HostOptions {
        kubelet_config: args.kubelet_config.clone(),
        kubelet_config_dir: args.kubelet_config_dir.clone(),
        apiserver_flags_file: args.apiserver_flags_file.clone(),
        audit_policy_file: args.audit_policy_file.clone(),
        cluster_ca: config
            .as_ref()
            .and_then(|c| c.root_cert.clone())
            .map(ClusterCa::new)
            .unwrap_or_default(),
        host_ip: args.host_ip.clone(),
    };
    let cluster = match config {
        Some(config) if !args.print => Some(Cluster::connect(&args, config).await?),
        _ => None,
    };
    // What this agent last published: the fallback while the report watch is not ready,
    // so an unchanged observation is never rewritten.
    let mut published: Option<NodeReportSpec> = None;
    let mut sigterm = signal(SignalKind::terminate()).map_err(AgentError::Signal)?;
    tracing::info!(node = %args.node_name, enforce = args.enforce, interval = ?args.interval, "agent started");

    loop {
        let span = tracing::info_span!("pass", node = %args.node_name, enforce = args.enforce);
        let result = async {
            let desired = desired(&args, cluster.as_ref()).await;
            let (host, options, node, enforce) = (
                host.clone(),
                options.clone(),
                args.node_name.clone(),
                args.enforce,
            );
            let mut outcome = tokio::task::spawn_blocking(move || {
                pass(&host, &options, &node, &desired, enforce)
            })
            .await
            .map_err(AgentError::Pass)?;
            // --print does not contact the cluster, its kube-apiserver here included.
            if let Some(cluster) = &cluster {
                add_api_server_version(&mut outcome, &cluster.config).await;
            }
            // The probes cost the servers a rejected request each: only while asked for.
            let wanted = if args.live_probes {
                live::Wanted::ALL
            } else {
                cluster.as_ref().map_or_else(live::Wanted::default, |c| {
                    live::Wanted::of(c.baselines.state().iter().map(|b| &b.spec))
                })
            };
            live::probe_all(
                &mut outcome.report.api_server,
                wanted,
                outcome.version_probe.as_ref(),
                outcome.live_plan.as_ref(),
            )
            .await;
            match &cluster {
                None => {
                    let yaml = serde_saphyr::to_string(&report_object(outcome.report, None))
                        .map_err(|err| AgentError::Print(err.to_string()))?;
                    println!("---\n{yaml}");
                }
                Some(cluster)
                    if cluster
                        .published()
                        .await
                        .unwrap_or_else(|| published.clone())
                        .as_ref()
                        == Some(&outcome.report) =>
                {
                    tracing::debug!("observations unchanged; NodeReport not rewritten");
                }
                Some(cluster) => {
                    let node = cluster.node();
                    let object = report_object(outcome.report.clone(), node.as_deref());
                    cluster
                        .reports
                        .patch(
                            &args.node_name,
                            &PatchParams::apply(AGENT_FIELD_MANAGER).force(),
                            &Patch::Apply(&object),
                        )
                        .await
                        .map_err(|source| AgentError::Report {
                            action: "apply",
                            node: args.node_name.clone(),
                            source,
                        })?;
                    tracing::info!("NodeReport updated");
                    published = Some(outcome.report);
                }
            }
            Ok::<(), AgentError>(())
        }
        .instrument(span)
        .await;
        if let Err(err) = result {
            if args.once {
                return Err(err);
            }
            // A transient API error must not kill the DaemonSet pod: retry next interval.
            tracing::error!(error = %err, "pass failed");
        }
        if args.once {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(args.interval) => {}
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: stopping");
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted: stopping");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
