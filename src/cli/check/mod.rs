//! `kube-baseline check`: the controller's evaluation with no controller. Baselines from
//! files (or the embedded default), the cluster from manifests or, with `--live`, from the
//! current kubeconfig (persisting nothing), nodes from NodeReports or node files; drift printed as a
//! table, JSON or YAML. Exit 0 compliant, 1 drift, 2 error.
//!
//! The evaluation is [`crate::domain::snapshot::evaluate_baseline`], built from the same pure
//! functions the controller calls, so both always agree.

mod baselines;
mod documents;
#[cfg(test)]
mod fuzz_tests;
mod inventory;
mod live;
mod node_files;
mod output;
mod preview;

use std::io::Write;
use std::process::ExitCode;

use crate::api::DEFAULT_INSTALL_NAMESPACE;
use crate::cli::exit;
use crate::domain::snapshot::evaluate_baseline;

use baselines::{BaselineError, LoadedBaseline};
use documents::InputError;
use inventory::{DuplicateObservations, Inventory, ManifestError};
use live::LiveError;
pub use node_files::NodeFileArgs;
use node_files::NodeFileError;
pub use output::Format;
use output::RenderError;
use output::{BaselineReport, Report};

pub(crate) const LONG_ABOUT: &str = "\
Evaluate SecurityBaselines the way the controller does, with no controller: against manifests \
(files, directories, stdin, `kubectl get -o yaml` lists) or, with --live, against the cluster \
of the current kubeconfig. Nothing is written anywhere, so the drift shown is what \
the controller would report in Audit mode (and repair in Enforce mode); the Pod Security \
preview sends the label changes it would make as dry runs (dryRun=All), which persist nothing.

Baselines: every SecurityBaseline document of the --baseline files, validated first like \
admission would (the CRD's CEL rules, unknown fields, types). Without --baseline, the embedded \
default config/samples/restricted.yaml is used (the `restricted` baseline: namespaces labelled \
env=prod), or with --live every SecurityBaseline in the cluster.

Manifests: Namespace, NetworkPolicy, Role, ResourceQuota, LimitRange, RoleBinding, ClusterRole, \
ClusterRoleBinding, Node and NodeReport objects are evaluated; other kinds are ignored and \
counted (--verbose lists them). A malformed document (bad YAML, no apiVersion or kind, a known \
kind that does not deserialize) is an error naming the file and document number; namespaced \
objects must name their namespace (\"default\" is not assumed); an object given twice is an \
error; objects of a namespace without a Namespace manifest are not evaluated (a warning says \
so).

Nodes: NodeReports (from `kube-baseline agent --print` or the cluster) or the --node files \
are evaluated like the controller does; a selected Node without observations is Unknown. The \
nodes are the cluster's Nodes (with --live, narrowed by --node-selector) or the Node manifests, \
plus the node of --node; a NodeReport whose Node is not among them is a leftover and ignored. \
Manifests with NodeReports but no Node at all: each report stands for its node, without labels. \
When the manifests hold no Node, NodeReport or --node at all, node checks are not evaluated and \
the summary says so.

Exit status: 0 compliant, 1 drift found, 2 error (unreadable or malformed input, invalid \
baseline, cluster unreachable).";

const EXAMPLES: &str = "\
Examples:
  # The sample cluster in the repository against the embedded restricted baseline (exits 1)
  kube-baseline check examples/cluster

  # A compliant sample (exits 0)
  kube-baseline check examples/compliant

  # Your own baseline against exported objects, from stdin, as JSON
  kubectl get namespaces,networkpolicies,roles,rolebindings -A -o yaml \\
    | kube-baseline check --baseline my-baseline.yaml - -o json

  # A node without the agent, from copies of its files
  kube-baseline check examples/cluster --node cp-1 \\
    --kubelet-config examples/node/kubelet/config.yaml \\
    --kubelet-config-dir examples/node/kubelet/kubelet.conf.d \\
    --apiserver-flags examples/node/kube-apiserver.yaml \\
    --audit-policy examples/node/audit-policy.yaml \\
    --encryption-config examples/node/encryption-config.yaml

  # The live cluster (lists, GETs and dry runs: nothing persisted), every SecurityBaseline in it
  kube-baseline check --live";

/// Options of `kube-baseline check`.
#[derive(clap::Args, Debug, Clone)]
#[command(after_long_help = EXAMPLES)]
pub struct CheckArgs {
    /// Manifests to evaluate: files, directories (recursively: *.yaml, *.yml, *.json, in
    /// sorted order, hidden entries skipped) or - for stdin. Multi-document YAML and List
    /// documents are read.
    #[arg(value_name = "MANIFESTS", conflicts_with = "live")]
    pub manifests: Vec<String>,

    /// A file of one or more SecurityBaseline documents; repeat for several files. Default:
    /// the embedded config/samples/restricted.yaml, or with --live every SecurityBaseline in
    /// the cluster.
    #[arg(short = 'b', long = "baseline", value_name = "FILE")]
    pub baselines: Vec<String>,

    /// Read the cluster of the current kubeconfig instead of manifests. Read-only: list
    /// requests (namespaces, networkpolicies, roles, resourcequotas, limitranges,
    /// rolebindings, clusterroles, clusterrolebindings, nodes, nodereports,
    /// securitybaselines; ingresses and gateways when a baseline sets tls, and
    /// kubernetes.io/tls secrets with --tls-secrets), GET /version and, when a baseline sets
    /// kubernetesVersion.deprecatedAPIs, GET /metrics; and, for the Pod Security preview,
    /// each enforce label change as a dry run (dryRun=All: persists nothing; needs patch on
    /// namespaces, else that finding is Unknown).
    #[arg(long)]
    pub live: bool,

    /// The kube-apiserver version the manifests stand for (what /version says, e.g.
    /// v1.33.4), for the kubernetesVersion checks. Without it (and without Nodes) those
    /// checks are not evaluated.
    #[arg(long, value_name = "VERSION", conflicts_with = "live")]
    pub kubernetes_version: Option<String>,

    /// A saved copy of the API server's metrics (kubectl get --raw /metrics > FILE), for
    /// kubernetesVersion.deprecatedAPIs.
    #[arg(long, value_name = "FILE", conflicts_with = "live")]
    pub apiserver_metrics: Option<String>,

    /// With --live: only the Nodes matching this label selector are checked, as by an
    /// operator started with the same --node-selector (the API server applies it for both);
    /// a NodeReport of a Node outside it is ignored, like a deleted Node's.
    #[arg(long, value_name = "SELECTOR", requires = "live")]
    pub node_selector: Option<String>,

    /// With --live: also list the Secrets of type kubernetes.io/tls, for the certificate
    /// checks of spec.tls (without it they are Unknown). Only the leaf certificate's
    /// expiry and DNS names are read; nothing of a Secret is printed.
    #[arg(long, requires = "live")]
    pub tls_secrets: bool,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,

    /// The operator's namespace, never selected unless a baseline sets
    /// includeSystemNamespaces (like kube-system).
    #[arg(long, value_name = "NAMESPACE", default_value = DEFAULT_INSTALL_NAMESPACE)]
    pub operator_namespace: String,

    /// Also print (on stderr) what was read and every ignored object.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    #[command(flatten)]
    pub node_files: NodeFileArgs,
}

/// Why `check` cannot give a verdict (exit 2). Several are reported at once where they are
/// independent (every malformed document, every failed list request).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(
        "no manifests given: pass files, directories or - (stdin), node files with --node, or use --live"
    )]
    NoInput,
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    NodeFiles(#[from] NodeFileError),
    #[error(transparent)]
    Observations(#[from] DuplicateObservations),
    #[error(transparent)]
    Live(#[from] LiveError),
    #[error("the cluster has no SecurityBaseline; pass one with --baseline FILE")]
    NoClusterBaseline,
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Every error of a step, as `check`'s.
fn all<E: Into<CheckError>>(errors: Vec<E>) -> Vec<CheckError> {
    errors.into_iter().map(Into::into).collect()
}

/// Runs `check`; the exit code is the result.
pub fn run(args: CheckArgs) -> ExitCode {
    match check(&args) {
        Ok((text, compliant)) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(err) = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("error: cannot write to stdout: {err}");
                return ExitCode::from(exit::ERROR);
            }
            ExitCode::from(if compliant { exit::OK } else { exit::DRIFT })
        }
        Err(errors) => {
            for error in errors {
                eprintln!("error: {error}");
            }
            ExitCode::from(exit::ERROR)
        }
    }
}

/// The rendered output and whether every baseline is compliant.
fn check(args: &CheckArgs) -> Result<(String, bool), Vec<CheckError>> {
    if !args.live && args.manifests.is_empty() && args.node_files.node.is_none() {
        return Err(vec![CheckError::NoInput]);
    }
    let mut baselines = if args.baselines.is_empty() {
        if args.live {
            Vec::new()
        } else {
            baselines::embedded().map_err(all)?
        }
    } else {
        baselines::from_files(&args.baselines).map_err(all)?
    };

    let mut inventory = if args.live {
        let mut wanted = live::Optional::of(baselines.iter().map(|b| &b.baseline.spec));
        wanted.secrets_allowed = args.tls_secrets;
        let cluster = read_live(
            args.baselines.is_empty(),
            wanted,
            args.node_selector.as_deref(),
        )?;
        if args.baselines.is_empty() {
            if cluster.baselines.is_empty() {
                return Err(vec![CheckError::NoClusterBaseline]);
            }
            baselines = cluster.baselines;
        }
        cluster.inventory
    } else {
        let documents = if args.manifests.is_empty() {
            Vec::new()
        } else {
            documents::read_inputs(&args.manifests).map_err(all)?
        };
        let mut inventory = Inventory::default();
        inventory.add_documents(&documents).map_err(all)?;
        inventory.api_server_version = args
            .kubernetes_version
            .as_ref()
            .map(|version| Ok(version.clone()));
        if let Some(path) = &args.apiserver_metrics {
            let text = std::fs::read_to_string(path).map_err(|source| {
                vec![CheckError::Input(InputError::ReadFile {
                    path: path.into(),
                    source,
                })]
            })?;
            inventory.deprecated_metrics =
                Some(Ok(crate::domain::versions::deprecated_family(&text)));
        }
        inventory
    };
    if let Some(report) = node_files::observe_files(&args.node_files).map_err(|e| vec![e.into()])? {
        let origin = format!("--node {}", report.node_name);
        inventory.node_of_files = Some(report.node_name.clone());
        inventory
            .add_node_report(report, &origin)
            .map_err(|e| vec![e.into()])?;
    }
    explain_inputs(args, &inventory);

    let snapshot = inventory.into_snapshot(args.live);
    let mut verdicts: Vec<_> = baselines
        .iter()
        .map(|loaded| evaluate_baseline(&loaded.baseline, &snapshot, &args.operator_namespace))
        .collect();
    if args.live {
        add_previews(&baselines, &snapshot, &mut verdicts)?;
    } else if baselines.iter().any(|b| {
        b.baseline
            .spec
            .pod_security
            .as_ref()
            .is_some_and(|p| p.enforce.is_some())
    }) {
        eprintln!(
            "note: pod-security.preview (what enforcing the Pod Security level would reject) needs --live: the API server evaluates the pods"
        );
    }
    let reports: Vec<BaselineReport> = baselines
        .iter()
        .zip(verdicts)
        .map(|(LoadedBaseline { baseline, source }, verdict)| {
            BaselineReport::new(
                baseline.metadata.name.as_deref().unwrap_or_default(),
                source,
                baseline.spec.mode,
                baseline.spec.kubernetes_version.is_some(),
                &baseline.spec.waivers,
                verdict,
            )
        })
        .collect();
    let report = Report {
        compliant: reports.iter().all(|r| r.compliant),
        baselines: reports,
    };
    let text = output::render(&report, args.output).map_err(|e| vec![e.into()])?;
    Ok((text, report.compliant))
}

/// Adds each baseline's `pod-security.preview` findings: the label changes it would make,
/// dry-run on the cluster (each distinct change once).
fn add_previews(
    baselines: &[LoadedBaseline],
    snapshot: &crate::domain::snapshot::ClusterSnapshot,
    verdicts: &mut [crate::domain::snapshot::BaselineVerdict],
) -> Result<(), Vec<CheckError>> {
    let targets: Vec<_> = baselines
        .iter()
        .zip(verdicts.iter())
        .map(|(loaded, verdict)| {
            crate::domain::snapshot::preview_targets(&loaded.baseline.spec, snapshot, verdict)
        })
        .collect();
    let distinct: std::collections::BTreeSet<_> = targets.iter().flatten().cloned().collect();
    if distinct.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| vec![CheckError::Runtime(err)])?;
    let outcomes: std::collections::BTreeMap<_, _> = distinct
        .iter()
        .cloned()
        .zip(
            runtime
                .block_on(preview::dry_run_all(distinct.iter().cloned().collect()))
                .map_err(|err| vec![CheckError::Live(live::LiveError::Client(err))])?
                .into_iter()
                .map(|(_, outcome)| outcome),
        )
        .collect();
    for ((verdict, targets), loaded) in verdicts.iter_mut().zip(targets).zip(baselines) {
        let gated = crate::domain::generated::gated_rollout(&loaded.baseline.spec);
        for target in targets {
            let outcome = outcomes
                .get(&target)
                .map(|o| o.as_deref().map_err(String::as_str));
            let Some(mut finding) = outcome
                .and_then(|o| crate::domain::pod_security::preview::dry_run_finding(&target.0, o))
            else {
                continue;
            };
            if gated {
                // What the controller does: enforce stays where it is, and says why.
                let held_at = snapshot
                    .namespaces
                    .iter()
                    .find(|(name, _)| *name == target.0)
                    .and_then(|(_, labels)| {
                        labels.get(&format!(
                            "{}enforce",
                            crate::domain::generated::POD_SECURITY_PREFIX
                        ))
                    });
                if let Some(outcome) = outcome {
                    let preview = crate::domain::pod_security::preview::dry_run_preview(outcome);
                    finding = crate::domain::pod_security::preview::gated_finding(
                        &target.0,
                        &preview,
                        held_at.map(String::as_str),
                    )
                    .unwrap_or(finding);
                }
                let namespace = target.0.as_str();
                for entry in verdict.findings.iter_mut() {
                    if entry.namespace == namespace {
                        crate::domain::pod_security::preview::note_held_enforce(
                            std::slice::from_mut(entry),
                        );
                    }
                }
            }
            verdict.add_finding(&loaded.baseline.spec, snapshot, finding);
        }
    }
    Ok(())
}

fn read_live(
    want_baselines: bool,
    wanted: live::Optional,
    node_selector: Option<&str>,
) -> Result<live::LiveCluster, Vec<CheckError>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| vec![CheckError::Runtime(err)])?;
    runtime
        .block_on(live::read_cluster(want_baselines, wanted, node_selector))
        .map_err(all)
}

/// Notes on stderr: what was ignored or cannot be evaluated, and with --verbose what was read.
fn explain_inputs(args: &CheckArgs, inventory: &Inventory) {
    for note in &inventory.notes {
        eprintln!("note: {note}");
    }
    if !args.live {
        for namespace in inventory.namespaces_without_manifest() {
            eprintln!(
                "warning: namespace {namespace} has objects but no Namespace manifest, so it is not evaluated (add it, e.g. kubectl get namespace {namespace} -o yaml)"
            );
        }
    }
    if args.verbose {
        let counts: Vec<String> = inventory
            .counts()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{n} {kind}"))
            .collect();
        eprintln!(
            "read: {}",
            if counts.is_empty() {
                "nothing check evaluates".to_owned()
            } else {
                counts.join(", ")
            }
        );
        for (origin, object) in &inventory.ignored {
            eprintln!("ignored: {origin}: {object}");
        }
    } else if !inventory.ignored.is_empty() {
        eprintln!(
            "note: {} objects of kinds check does not evaluate were ignored (--verbose lists them)",
            inventory.ignored.len()
        );
    }
}
