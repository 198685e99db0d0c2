//! Scale benchmark of kube-baseline (issue 8), on the local control plane from e2e/cluster.
//!
//! Run it through `e2e/bench-run`, which builds the release binaries, starts a fresh control
//! plane per size and merges the results. One invocation of this binary measures one size N:
//!
//! 1. raw limit: the exact objects the baseline generates for N namespaces (the operator's
//!    own `desired_objects` and Pod Security label patch), written by server-side apply
//!    (sample baseline) or plain creates (one-policy baseline) from a plain kube client, as
//!    a ServiceAccount bound to the operator's ClusterRole, at the operator's concurrency;
//! 2. cold converge: the release operator started (as its own ServiceAccount; at its
//!    shipped pacing defaults unless --operator-qps is given) on N pre-existing selected
//!    namespaces; completion is seen through watches; the time to its first write and where
//!    it went (lease, initial lists) from the audit log;
//! 3. event → action on an idle converged cluster (sequential new namespaces);
//! 4. drift repair (sequential deletions of a generated NetworkPolicy);
//! 5. writes by the operator during an idle minute and across a restart (audit log);
//! 6. event → action during a converge (a spec change re-converging every namespace);
//! 7. the operator's peak RSS and CPU seconds from /proc.
//!
//! It is not a test: nothing is asserted on timings; it prints figures and writes JSON.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::Role;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kube_baseline::api::{BASELINE_LABEL, FIELD_MANAGER, MANAGED_BY_LABEL, SecurityBaseline};
use kube_baseline::domain::generated::{
    BaselineRef, GeneratedKind, desired_objects, wanted_pod_security,
};
use kube_baseline::domain::pod_security::merged_labels;
use kube_baseline_e2e::{
    OPERATOR_NAMESPACE, TEST_LABEL, TestEnv, client_from_kubeconfig, kubectl_result,
    service_account_user, strip_ansi,
};
use serde_json::{Value, json};

/// The sample baseline: what README calls the default (deny-all + allow-dns
/// NetworkPolicies, one Role, restricted Pod Security labels), plus the RBAC audit.
const SAMPLE_SPEC: &str = r#"mode: Enforce
namespaceSelector: {}
onUnselect: Delete
networkPolicy:
  defaultDeny: {ingress: true, egress: true}
  allowDNS: true
podSecurity: {enforce: restricted, audit: restricted, warn: restricted, version: latest}
rbac:
  roles:
  - name: app-reader
    rules:
    - {apiGroups: [""], resources: [pods, services, configmaps], verbs: [get, list, watch]}
  audit: {enabled: true}
"#;

/// The sample baseline with `podSecurity.rollout: Gated`: a dry run of the label apply (the
/// preview) before each namespace's enforce level is raised.
const GATED_SPEC: &str = r#"mode: Enforce
namespaceSelector: {}
onUnselect: Delete
networkPolicy:
  defaultDeny: {ingress: true, egress: true}
  allowDNS: true
podSecurity: {enforce: restricted, audit: restricted, warn: restricted, version: latest, rollout: Gated}
rbac:
  roles:
  - name: app-reader
    rules:
    - {apiGroups: [""], resources: [pods, services, configmaps], verbs: [get, list, watch]}
  audit: {enabled: true}
"#;

/// One default-deny NetworkPolicy per namespace and nothing else: no allow-dns policy, no
/// Role, no Pod Security labels, RBAC audit off.
const ONE_POLICY_SPEC: &str = r#"mode: Enforce
namespaceSelector: {}
onUnselect: Delete
networkPolicy:
  defaultDeny: {ingress: true, egress: true}
  allowDNS: false
rbac:
  roles: []
  audit: {enabled: false}
"#;

/// The Role the re-plan phase adds to the baseline (one more write per namespace).
fn extra_role() -> Value {
    json!({"name": "extra", "rules": [{"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]}]})
}

/// Which baseline the run enforces, and how its raw limit is written.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BaselineKind {
    /// deny-all + allow-dns, a Role, Pod Security labels, RBAC audit: 4 writes per
    /// namespace; raw = the same forced server-side applies.
    Sample,
    /// A single default-deny NetworkPolicy per namespace: 1 write per namespace; raw =
    /// parallel plain creates (POST) of the same objects.
    OnePolicy,
    /// The sample with `rollout: Gated`: 4 writes and 1 dry run per namespace; raw = the
    /// same applies, the label apply preceded by the same dry run.
    Gated,
}

impl BaselineKind {
    fn name(self) -> &'static str {
        match self {
            Self::Sample => "sample",
            Self::OnePolicy => "one-policy",
            Self::Gated => "gated",
        }
    }

    fn spec(self) -> &'static str {
        match self {
            Self::Sample => SAMPLE_SPEC,
            Self::OnePolicy => ONE_POLICY_SPEC,
            Self::Gated => GATED_SPEC,
        }
    }

    /// Writes per namespace: generated objects, plus the label apply when there are labels.
    fn writes_per_namespace(self) -> usize {
        match self {
            Self::Sample | Self::Gated => 4,
            Self::OnePolicy => 1,
        }
    }

    fn raw_mode(self) -> RawMode {
        match self {
            Self::Sample => RawMode::Apply,
            Self::OnePolicy => RawMode::Create,
            Self::Gated => RawMode::ApplyPreviewingLabels,
        }
    }

    /// The spec patch of the re-plan phase: the baseline's Roles plus `extra`.
    fn replan_patch(self) -> Value {
        let reader = json!({"name": "app-reader", "rules": [{"apiGroups": [""], "resources": ["pods", "services", "configmaps"], "verbs": ["get", "list", "watch"]}]});
        let roles = match self {
            Self::Sample | Self::Gated => vec![reader, extra_role()],
            Self::OnePolicy => vec![extra_role()],
        };
        json!({"spec": {"rbac": {"roles": roles}}})
    }
}

#[derive(Parser, Debug)]
#[command(about = "kube-baseline scale benchmark (one size per run; see e2e/bench-run)")]
struct Args {
    /// Namespaces to converge.
    #[arg(long, default_value_t = 1000)]
    namespaces: usize,
    /// Pass --concurrency N to the operator. Absent: its shipped default (no flag passed).
    #[arg(long)]
    concurrency: Option<u16>,
    /// The raw client's workers (each writes one namespace's objects at a time). Issue 24
    /// defines the raw limit with 8, the operator's default --concurrency.
    #[arg(long, default_value_t = 8)]
    raw_workers: usize,
    /// Which baseline to enforce (and how its raw limit is written).
    #[arg(long, value_enum, default_value_t = BaselineKind::Sample)]
    baseline: BaselineKind,
    /// Pass --kube-api-qps N (0 = unlimited) and --operator-burst to the operator, and also
    /// measure the raw client through the same token bucket. Absent: the operator runs at
    /// its shipped defaults (neither flag passed) and the raw client unthrottled only.
    #[arg(long)]
    operator_qps: Option<f64>,
    /// The operator's --kube-api-burst, passed with --operator-qps only.
    #[arg(long, default_value_t = 100)]
    operator_burst: u32,
    /// Namespaces for the throttled raw measurement (at most N): a token bucket's rate is
    /// its QPS after the burst, so a subset measures it without taking N / QPS seconds.
    #[arg(long, default_value_t = 1000)]
    throttled_raw_namespaces: usize,
    /// Samples for the latency measurements (new namespaces, repairs).
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Pause between two latency samples, ms. Samples are sequential; the pause keeps the
    /// "idle" measurements idle (at 5 writes per new namespace, back-to-back samples
    /// would spend the operator's whole QPS budget and measure its throttle instead).
    #[arg(long, default_value_t = 200)]
    sample_gap_ms: u64,
    /// Length of the idle write window, seconds.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Install the OpenReports CRDs first (the operator then writes a Report per namespace
    /// at its default `--reports openreports`), and measure when every report exists and
    /// how many report writes it took.
    #[arg(long)]
    reports: bool,
    /// Stop after the cold converge (raw limit, converge and start-up figures only).
    #[arg(long)]
    converge_only: bool,
    /// One-policy only: also measure the raw limit by the operator's forced server-side
    /// apply (on N more namespaces, after the plain creates), to split the converge's gap
    /// to plain creates into the write method's share and the rest.
    #[arg(long)]
    raw_apply_too: bool,
    /// One-policy only: what a watch of every NetworkPolicy (the operator's) costs the API
    /// server. Three more raw phases on N more namespaces each: with one more watch of
    /// every NetworkPolicy in JSON (full objects, as the operator watches), with the same
    /// watch in protobuf, and with none (after both, to bound an order effect). Each
    /// watch starts at the current resourceVersion (no initial list) and its bytes are
    /// read and dropped.
    #[arg(long)]
    raw_watch_cost: bool,
    /// With --converge-only: after the converge, stop the operator and measure the raw
    /// limit again (same method, N more namespaces), on the API server as the converge
    /// left it. The first raw limit is measured on the smallest cluster of the run, this
    /// one on the largest: the two bracket the converge.
    #[arg(long, requires = "converge_only")]
    raw_after: bool,
    /// Delete the raw phases' objects before the operator starts, so that it converges a
    /// cluster like the one the raw client wrote to (N namespaces without our objects),
    /// not one that also holds N policies of ours it must list at start-up.
    #[arg(long)]
    clean_raw_objects: bool,
    /// The operator binary (release build).
    #[arg(long, default_value = "target/release/kube-baseline")]
    operator: PathBuf,
    /// The operator's --log-level (verbose levels cost the operator time).
    #[arg(long, default_value = "info")]
    operator_log_level: String,
    /// Write this run's results here (JSON).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of running: merge these per-size JSON files into --json and print the table.
    #[arg(long, num_args = 1..)]
    merge: Vec<PathBuf>,
    /// The command line to record in the merged JSON.
    #[arg(long, default_value = "")]
    command: String,
    /// The commit of the working tree, to record in the merged JSON.
    #[arg(long, default_value = "")]
    commit: String,
    /// Instead of running: read these merged JSON files (several runs of the same sizes and
    /// settings), print each figure's median and range per (baseline, pacing, N), and
    /// write them to --json.
    #[arg(long, num_args = 1..)]
    summarize: Vec<PathBuf>,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if !args.merge.is_empty() {
        merge(&args);
        return;
    }
    if !args.summarize.is_empty() {
        summarize(&args);
        return;
    }
    let result = run(&args).await;
    print_table(std::slice::from_ref(&result));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&result).unwrap()).expect("write json");
    }
}

fn log(message: impl AsRef<str>) {
    eprintln!(
        "[bench {}] {}",
        Timestamp::now().strftime("%H:%M:%S"),
        message.as_ref()
    );
}

// ---------------------------------------------------------------------------------------
// The run

async fn run(args: &Args) -> Value {
    let n = args.namespaces;
    let kind = args.baseline;
    let spec = kind.spec();
    let per_namespace = kind.writes_per_namespace();
    let env = TestEnv::new("bench").await;
    let admin = env.admin.clone();
    log(format!(
        "run {} with N = {n}, {} baseline, operator at {}",
        env.id,
        kind.name(),
        pacing(args)
    ));

    if args.reports {
        install_report_crds();
    }

    // Identities: the operator and the raw client, both bound to config/rbac.
    let op_sa = format!("op-{}", env.id);
    let op_kubeconfig = env
        .service_account_kubeconfig(&op_sa, Some("kube-baseline-manager"))
        .await;
    let raw_sa = format!("raw-{}", env.id);
    let raw_kubeconfig = env
        .service_account_kubeconfig(&raw_sa, Some("kube-baseline-manager"))
        .await;
    let raw_client = client_from_kubeconfig(&raw_kubeconfig).await;
    let op_user = service_account_user(&op_sa);

    // Two identical baselines: one the operator sees (test label), one it does not (owner
    // of the raw client's objects).
    let baseline = env.apply_baseline("b", spec);
    let raw_label = format!("{}-raw", env.id);
    let raw_baseline = format!("{}-raw", env.id);
    let manifest = format!(
        "apiVersion: kube-baseline.dev/v1alpha1\nkind: SecurityBaseline\nmetadata:\n  name: {raw_baseline}\n  labels:\n    {TEST_LABEL}: {raw_label}\nspec:\n{}",
        spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(&manifest));
    assert!(ok, "raw baseline: {stderr}");

    // Raw limit.
    let started = Instant::now();
    let raw_names = names(&format!("{}-r", env.id), n);
    create_namespaces(&admin, &raw_names, &raw_label, 16).await;
    let create_raw_s = started.elapsed().as_secs_f64();
    log(format!(
        "created {n} namespaces for the raw client in {create_raw_s:.1} s"
    ));
    wait_controllers_done(&admin, &raw_names).await;
    let raw_observer = Observer::start(&admin, &raw_baseline, &raw_label, per_namespace).await;
    let cp_cpu_before = control_plane_cpu_seconds();
    let bench_cpu_before = process_cpu_seconds(std::process::id());
    let raw = raw_limit(
        &raw_client,
        &raw_baseline,
        &raw_names,
        args.raw_workers,
        kind.raw_mode(),
        None,
        &raw_observer,
    )
    .await;
    let raw_cp_cpu = control_plane_cpu_seconds() - cp_cpu_before;
    let raw_client_cpu = process_cpu_seconds(std::process::id()) - bench_cpu_before;
    log(format!(
        "raw (unthrottled, {}): {} writes in {:.2} s = {:.0} objects/s; API server + etcd {raw_cp_cpu:.1} CPU s, client {raw_client_cpu:.1} CPU s",
        kind.raw_mode().describe(),
        raw.writes,
        raw.seconds,
        raw.rate
    ));
    let raw_throttled = if let Some(qps) = args.operator_qps.filter(|qps| *qps > 0.0) {
        let m = n.min(args.throttled_raw_namespaces);
        let names_q = names(&format!("{}-q", env.id), m);
        create_namespaces(&admin, &names_q, &raw_label, 16).await;
        let bucket = Arc::new(Bucket::new(qps, args.operator_burst));
        let r = raw_limit(
            &raw_client,
            &raw_baseline,
            &names_q,
            args.raw_workers,
            kind.raw_mode(),
            Some(bucket),
            &raw_observer,
        )
        .await;
        log(format!(
            "raw at the operator's QPS {qps} / burst {}: {} writes in {:.2} s = {:.0} objects/s",
            args.operator_burst, r.writes, r.seconds, r.rate
        ));
        Some(r)
    } else {
        None
    };
    let raw_by_apply = if args.raw_apply_too && kind.raw_mode() == RawMode::Create {
        let names_a = settled_namespaces(&admin, &format!("{}-a", env.id), n, &raw_label).await;
        let (r, cp_cpu) = raw_with_control_plane_cpu(
            &raw_client,
            &raw_baseline,
            &names_a,
            args.raw_workers,
            RawMode::Apply,
            &raw_observer,
        )
        .await;
        log(format!(
            "raw (unthrottled, server-side apply): {} writes in {:.2} s = {:.0} objects/s; API server + etcd {cp_cpu:.1} CPU s",
            r.writes, r.seconds, r.rate
        ));
        Some((r, cp_cpu))
    } else {
        None
    };
    let raw_watch_cost = if args.raw_watch_cost && kind.raw_mode() == RawMode::Create {
        let mut phases = Vec::new();
        for (suffix, watch) in [
            ("wj", Some(WatchEncoding::Json)),
            ("wp", Some(WatchEncoding::Protobuf)),
            ("wn", None),
        ] {
            let names_w =
                settled_namespaces(&admin, &format!("{}-{suffix}", env.id), n, &raw_label).await;
            let watching = match watch {
                Some(encoding) => Some(PolicyWatch::start(&admin, encoding).await),
                None => None,
            };
            let (r, cp_cpu) = raw_with_control_plane_cpu(
                &raw_client,
                &raw_baseline,
                &names_w,
                args.raw_workers,
                RawMode::Create,
                &raw_observer,
            )
            .await;
            let watched_bytes = watching.map(PolicyWatch::stop);
            let label = watch.map_or("none", WatchEncoding::name);
            log(format!(
                "raw (plain create) with one more watch of every NetworkPolicy: {label}: {} writes in {:.2} s = {:.0} objects/s; API server + etcd {cp_cpu:.1} CPU s; watch read {} bytes",
                r.writes,
                r.seconds,
                r.rate,
                watched_bytes.unwrap_or(0)
            ));
            phases.push(json!({"watch": label, "writes": r.writes, "seconds": round(r.seconds), "objects_per_s": round(r.rate), "errors": r.errors, "control_plane_cpu_s": round(cp_cpu), "watch_bytes": watched_bytes}));
        }
        Some(phases)
    } else {
        None
    };
    raw_observer.stop();
    if args.clean_raw_objects {
        let started = Instant::now();
        let deleted = delete_raw_objects(&admin, &raw_label, &raw_baseline).await;
        log(format!(
            "deleted the raw phases' {deleted} objects in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
    }
    let reference_rate = raw_throttled.as_ref().map_or(raw.rate, |r| r.rate);

    // Namespaces the operator converges.
    let started = Instant::now();
    let ns_names = names(&format!("{}-c", env.id), n);
    create_namespaces(&admin, &ns_names, &env.id, 16).await;
    let create_s = started.elapsed().as_secs_f64();
    log(format!(
        "created {n} selected namespaces in {create_s:.1} s"
    ));
    wait_controllers_done(&admin, &ns_names).await;
    // The operator treats a namespace created in the second it started as new (creation
    // timestamps are whole seconds) and records an Event for its first protection: start it
    // in a later second, so the cold converge measures a cluster that existed before it.
    wait_for_next_second().await;

    let observer = Observer::start(&admin, &baseline, &env.id, per_namespace).await;

    // Cold converge.
    let converge_from = Timestamp::now();
    let started = Instant::now();
    let cp_cpu_before = control_plane_cpu_seconds();
    let mut operator = Operator::spawn(args, &env, &op_sa, &op_kubeconfig, "1");
    observer
        .wait_complete(&ns_names, Duration::from_secs(1800))
        .await;
    let converge_s = started.elapsed().as_secs_f64();
    let converge_cpu = operator.cpu_seconds();
    let converge_cp_cpu = control_plane_cpu_seconds() - cp_cpu_before;
    let converge_rss = operator.peak_rss_mib();
    let converge_rss_file = operator.status_kib("RssFile:") / 1024.0;
    let converge_reconciles = operator.namespace_reconciles();
    let converge_to = Timestamp::now();
    let converge_audit = audit_requests(&op_user, converge_from, converge_to);
    let converge_writes = writes_of(&converge_audit);
    let needed_writes = n * per_namespace;
    let converge_rate = needed_writes as f64 / converge_s;
    let first_seen_s = observer
        .first_seen()
        .map(|seen| seen.duration_since(started).as_secs_f64());
    let startup = Startup::from_audit(&converge_audit, converge_from, first_seen_s);
    let from_first_write_rate = startup
        .first_write_s
        .map(|first| needed_writes as f64 / (converge_s - first));
    log(format!("start-up: {startup}"));
    log(format!(
        "converge: {n} namespaces in {converge_s:.2} s = {converge_rate:.0} objects/s ({:.2} x raw at the same QPS, {:.2} x unthrottled raw); operator {converge_cpu:.1} CPU s, peak RSS {converge_rss:.1} MiB; API server + etcd {converge_cp_cpu:.1} CPU s",
        converge_rate / reference_rate,
        converge_rate / raw.rate
    ));
    let ratio = converge_rate / reference_rate;
    let reports = if args.reports {
        let complete = wait_for_reports(&admin, &baseline, n, Duration::from_secs(1800)).await;
        let complete_s = complete.map(|at| at.duration_since(started).as_secs_f64());
        let report_writes = writes_of(&audit_requests(&op_user, converge_from, Timestamp::now()))
            .by_kind
            .iter()
            .filter(|(what, _)| what.ends_with(" reports"))
            .map(|(_, count)| *count)
            .sum::<usize>();
        log(format!(
            "reports: {n} Reports complete {:?} s after the operator started ({:?} s after the objects), {report_writes} report writes",
            complete_s.map(round),
            complete_s.map(|s| round(s - converge_s)),
        ));
        Some(json!({
            "complete_s": complete_s.map(round),
            "after_objects_s": complete_s.map(|s| round(s - converge_s)),
            "writes": report_writes,
        }))
    } else {
        None
    };
    let converged = json!({
        "reports": reports,
        "namespaces": n,
        "concurrency": args.concurrency,
        "raw_workers": args.raw_workers,
        "sample_gap_ms": args.sample_gap_ms,
        "baseline": kind.name(),
        "writes_per_namespace": per_namespace,
        "setup": {
            "create_raw_namespaces_s": round(create_raw_s),
            "create_selected_namespaces_s": round(create_s),
        },
        "operator_pacing": pacing(args),
        "operator_qps": args.operator_qps,
        "operator_burst": args.operator_qps.map(|_| args.operator_burst),
        "raw": {"method": kind.raw_mode().describe(), "writes": raw.writes, "seconds": round(raw.seconds), "objects_per_s": round(raw.rate), "errors": raw.errors, "control_plane_cpu_s": round(raw_cp_cpu), "client_cpu_s": round(raw_client_cpu)},
        "raw_by_apply": raw_by_apply.as_ref().map(|(r, cp_cpu)| json!({"writes": r.writes, "seconds": round(r.seconds), "objects_per_s": round(r.rate), "errors": r.errors, "control_plane_cpu_s": round(*cp_cpu)})),
        "raw_with_one_more_policy_watch": raw_watch_cost,
        "raw_at_operator_qps": raw_throttled.as_ref().map(|r| json!({"writes": r.writes, "seconds": round(r.seconds), "objects_per_s": round(r.rate), "errors": r.errors})),
        "converge": {
            "seconds": round(converge_s),
            "objects_per_s": round(converge_rate),
            "ratio_to_raw": round(ratio),
            "ratio_to_unthrottled_raw": round(converge_rate / raw.rate),
            "ratio_to_raw_by_apply": raw_by_apply.as_ref().map(|(r, _)| round(converge_rate / r.rate)),
            "from_first_write": {
                "seconds": startup.first_write_s.map(|first| round(converge_s - first)),
                "objects_per_s": from_first_write_rate.map(round),
                "ratio_to_raw": from_first_write_rate.map(|rate| round(rate / reference_rate)),
            },
            "startup": startup.to_json(),
            "writes_needed": needed_writes,
            "operator_writes": converge_writes.to_json(),
            "operator_cpu_s": round(converge_cpu),
            // Until the last object exists: echoes of its writes may still be queued.
            "operator_namespace_reconciles": converge_reconciles,
            "control_plane_cpu_s": round(converge_cp_cpu),
            "operator_peak_rss_mib": round(converge_rss),
            // The binary's own pages (mapped from its file) at the converge's end: the
            // part of the RSS no heap change touches.
            "operator_rss_file_mib": round(converge_rss_file),
        },
    });
    if args.converge_only {
        operator.stop();
        let mut converged = converged;
        if args.raw_after {
            let after =
                raw_after_converge(args, &env, &raw_client, &raw_baseline, &raw_label).await;
            let bracketed = (raw.rate + after.raw.rate) / 2.0;
            converged["raw_after"] = after.to_json();
            converged["converge"]["ratio_to_raw_after"] =
                json!(round(converge_rate / after.raw.rate));
            converged["converge"]["ratio_to_raw_bracketed"] =
                json!(round(converge_rate / bracketed));
            log(format!(
                "converge / raw after it: {:.2}; / the mean of the raw rates before and after it ({bracketed:.0} objects/s): {:.2}",
                converge_rate / after.raw.rate,
                converge_rate / bracketed
            ));
        }
        return converged;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Event → action, idle.
    let idle_names = names(&format!("{}-i", env.id), args.samples);
    let mut idle_latency = Vec::new();
    for name in &idle_names {
        let sent = Instant::now();
        create_namespaces(&admin, std::slice::from_ref(name), &env.id, 1).await;
        if let Some(done) = observer
            .wait_complete(std::slice::from_ref(name), Duration::from_secs(30))
            .await
        {
            idle_latency.push(done.duration_since(sent));
        }
        tokio::time::sleep(Duration::from_millis(args.sample_gap_ms)).await;
    }
    let idle_e2a = stats(&idle_latency, args.samples);
    log(format!("event→action idle: {idle_e2a}"));

    // Drift repair.
    let deny_all = kube_baseline::domain::generated::generated_name(&baseline, "deny-all");
    let mut repair_latency = Vec::new();
    for name in ns_names.iter().take(args.samples) {
        let key = (GeneratedKind::NetworkPolicy, name.clone(), deny_all.clone());
        let before = observer.uid(&key);
        let sent = Instant::now();
        Api::<NetworkPolicy>::namespaced(admin.clone(), name)
            .delete(&deny_all, &DeleteParams::default())
            .await
            .expect("delete a generated policy");
        if let Some(done) = observer
            .wait_recreated(&key, before, Duration::from_secs(30))
            .await
        {
            repair_latency.push(done.duration_since(sent));
        }
        tokio::time::sleep(Duration::from_millis(args.sample_gap_ms)).await;
    }
    let repair = stats(&repair_latency, args.samples);
    log(format!("repair: {repair}"));

    // Idle writes, once the status has caught up with the repairs: the write budget holds a
    // status change back up to a minute, and that last report belongs to the repairs.
    let status_settled_s = operator
        .wait_status_counts_repairs(&admin, &baseline, Duration::from_secs(120))
        .await;
    log(format!(
        "status shows every repair after {}",
        status_settled_s.map_or("- (timed out after 120 s)".to_string(), |s| format!(
            "{s:.1} s"
        ))
    ));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_from = Timestamp::now();
    tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
    let idle_writes = audit_writes(&op_user, idle_from, Timestamp::now());
    log(format!(
        "idle {} s: writes {idle_writes}",
        args.idle_seconds
    ));
    let first_cpu = operator.cpu_seconds();
    let first_rss = operator.peak_rss_mib();
    let first_rss_now = operator.rss_mib();

    // Restart.
    let total_namespaces = n + args.samples;
    let restart_from = Timestamp::now();
    let started = Instant::now();
    operator.stop();
    let mut operator = Operator::spawn(args, &env, &op_sa, &op_kubeconfig, "2");
    let resynced = operator
        .wait_reconciled(total_namespaces, Duration::from_secs(1800))
        .await;
    let resync_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let restart_writes = audit_writes(&op_user, restart_from, Timestamp::now());
    log(format!(
        "restart: every namespace reconciled again in {resync_s:.1} s ({resynced}); writes {restart_writes}"
    ));
    let restart_cpu = operator.cpu_seconds();
    let restart_rss = operator.peak_rss_mib();

    // Event → action during a converge: a spec change adds a Role to every namespace, and
    // new namespaces arrive while the operator works through them.
    observer.set_expected(per_namespace + 1);
    let during_names = names(&format!("{}-d", env.id), args.samples);
    let mut all_old: Vec<String> = ns_names.clone();
    all_old.extend(idle_names.iter().cloned());
    // Spread the new namespaces over the time the re-converge (one Role per namespace)
    // would take at the raw rate, so that they arrive while it runs.
    let estimate = Duration::from_secs_f64(total_namespaces as f64 / converge_rate);
    let interval =
        (estimate / u32::try_from(args.samples).unwrap_or(1)).max(Duration::from_millis(5));
    let patch = kind.replan_patch();
    let started = Instant::now();
    Api::<SecurityBaseline>::all(admin.clone())
        .patch(&baseline, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch baseline");
    let creator = {
        let admin = admin.clone();
        let during_names = during_names.clone();
        let label = env.id.clone();
        tokio::spawn(async move {
            let mut sent = HashMap::new();
            for name in &during_names {
                sent.insert(name.clone(), Instant::now());
                create_namespaces(&admin, std::slice::from_ref(name), &label, 1).await;
                tokio::time::sleep(interval).await;
            }
            sent
        })
    };
    let reconverged = observer
        .wait_complete(&all_old, Duration::from_secs(1800))
        .await;
    let reconverge_s = reconverged.map(|t| t.duration_since(started).as_secs_f64());
    let sent = creator.await.expect("creator");
    let mut during_latency = Vec::new();
    for name in &during_names {
        if let Some(done) = observer
            .wait_complete(std::slice::from_ref(name), Duration::from_secs(60))
            .await
        {
            during_latency.push(done.duration_since(sent[name]));
        }
    }
    let during = stats(&during_latency, args.samples);
    let created_during = reconverged.map_or(0, |done| sent.values().filter(|t| **t < done).count());
    log(format!(
        "during a re-converge of {total_namespaces} namespaces ({:.2} s): event→action {during}",
        reconverge_s.unwrap_or(f64::NAN)
    ));
    let final_cpu = operator.cpu_seconds();
    let final_rss = operator.peak_rss_mib();
    operator.stop();

    let mut result = converged;
    let later = json!({
        "event_to_action_idle_ms": idle_e2a.to_json(),
        "repair_ms": repair.to_json(),
        "idle_writes": {"seconds": args.idle_seconds, "status_settled_s": status_settled_s.map(round), "writes": idle_writes.to_json()},
        "restart": {
            "resync_s": round(resync_s),
            "all_reconciled": resynced,
            "writes": restart_writes.to_json(),
        },
        "during_converge": {
            "reconverge_namespaces": total_namespaces,
            "reconverge_s": reconverge_s.map(round),
            "reconverge_objects_per_s": reconverge_s.map(|s| round(total_namespaces as f64 / s)),
            "event_to_action_ms": during.to_json(),
            "namespaces_created_before_reconverge_done": created_during,
        },
        "operator": {
            "leader_elect": true,
            "first_process": {"cpu_s": round(first_cpu), "peak_rss_mib": round(first_rss), "rss_after_idle_mib": round(first_rss_now)},
            "restarted_process": {"cpu_s_resync": round(restart_cpu), "peak_rss_mib_resync": round(restart_rss), "cpu_s_end": round(final_cpu), "peak_rss_mib_end": round(final_rss)},
        },
    });
    if let (Some(result), Value::Object(later)) = (result.as_object_mut(), later) {
        result.extend(later);
    }
    result
}

/// How the operator's client is paced: "defaults" (no flag passed) or the flags passed.
/// The raw limit measured again after the converge (`--raw-after`).
struct RawAfter {
    raw: Raw,
    control_plane_cpu_s: f64,
}

impl RawAfter {
    fn to_json(&self) -> Value {
        json!({
            "writes": self.raw.writes,
            "seconds": round(self.raw.seconds),
            "objects_per_s": round(self.raw.rate),
            "errors": self.raw.errors,
            "control_plane_cpu_s": round(self.control_plane_cpu_s),
        })
    }
}

/// The first raw phase's steps again, on N namespaces created after the converge (the
/// operator stopped): the same method, workers and observer.
async fn raw_after_converge(
    args: &Args,
    env: &TestEnv,
    raw_client: &Client,
    raw_baseline: &str,
    raw_label: &str,
) -> RawAfter {
    let kind = args.baseline;
    let names_z = settled_namespaces(
        &env.admin,
        &format!("{}-z", env.id),
        args.namespaces,
        raw_label,
    )
    .await;
    let observer = Observer::start(
        &env.admin,
        raw_baseline,
        raw_label,
        kind.writes_per_namespace(),
    )
    .await;
    let (raw, control_plane_cpu_s) = raw_with_control_plane_cpu(
        raw_client,
        raw_baseline,
        &names_z,
        args.raw_workers,
        kind.raw_mode(),
        &observer,
    )
    .await;
    observer.stop();
    log(format!(
        "raw after the converge ({}): {} writes in {:.2} s = {:.0} objects/s; API server + etcd {control_plane_cpu_s:.1} CPU s",
        kind.raw_mode().describe(),
        raw.writes,
        raw.seconds,
        raw.rate
    ));
    RawAfter {
        raw,
        control_plane_cpu_s,
    }
}

/// `n` new namespaces labelled `label` for one more raw phase, once the controller manager
/// is done with them (so that its writes do not share the phase).
async fn settled_namespaces(admin: &Client, prefix: &str, n: usize, label: &str) -> Vec<String> {
    let names = names(prefix, n);
    create_namespaces(admin, &names, label, 16).await;
    wait_controllers_done(admin, &names).await;
    names
}

/// An unthrottled raw phase, and the CPU seconds the API server and etcd spent during it.
async fn raw_with_control_plane_cpu(
    client: &Client,
    baseline: &str,
    namespaces: &[String],
    workers: usize,
    mode: RawMode,
    observer: &Observer,
) -> (Raw, f64) {
    let before = control_plane_cpu_seconds();
    let raw = raw_limit(client, baseline, namespaces, workers, mode, None, observer).await;
    (raw, control_plane_cpu_seconds() - before)
}

fn pacing(args: &Args) -> String {
    match args.operator_qps {
        None => "defaults".to_string(),
        Some(qps) => format!(
            "--kube-api-qps {qps} --kube-api-burst {}",
            args.operator_burst
        ),
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// Waits until the kube-controller-manager has done its work for new namespaces (a
/// `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in each): otherwise that
/// backlog (2 writes per namespace at the controller manager's own QPS) runs through the
/// measured phases unevenly. e2e/bench-run raises that QPS so the wait is short.
async fn wait_controllers_done(admin: &Client, namespaces: &[String]) {
    let started = Instant::now();
    let wanted: HashSet<&str> = namespaces.iter().map(String::as_str).collect();
    let timeout = Duration::from_secs(1200);
    loop {
        let accounts = namespaces_having::<k8s_openapi::api::core::v1::ServiceAccount>(
            admin, "default", &wanted,
        )
        .await;
        let config_maps = namespaces_having::<k8s_openapi::api::core::v1::ConfigMap>(
            admin,
            "kube-root-ca.crt",
            &wanted,
        )
        .await;
        if accounts == wanted.len() && config_maps == wanted.len() {
            log(format!(
                "controller manager done with {} namespaces after {:.1} s",
                wanted.len(),
                started.elapsed().as_secs_f64()
            ));
            return;
        }
        if started.elapsed() > timeout {
            log(format!(
                "controller manager not done after {} s ({accounts} ServiceAccounts, {config_maps} ConfigMaps of {}); going on",
                timeout.as_secs(),
                wanted.len()
            ));
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// How many of `namespaces` hold an object of kind K named `name` (metadata list).
async fn namespaces_having<K>(admin: &Client, name: &str, namespaces: &HashSet<&str>) -> usize
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let params = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .limit(5000);
    let api = Api::<K>::all(admin.clone());
    let mut count = 0;
    let mut params = params;
    loop {
        let Ok(page) = api.list_metadata(&params).await else {
            return count;
        };
        count += page
            .items
            .iter()
            .filter(|o| {
                o.metadata
                    .namespace
                    .as_deref()
                    .is_some_and(|ns| namespaces.contains(ns))
            })
            .count();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return count,
        }
    }
}

/// Sleeps until the wall clock is past the next whole second.
async fn wait_for_next_second() {
    let into_second = Timestamp::now().subsec_nanosecond();
    let rest = 1_000_000_000 - i64::from(into_second);
    tokio::time::sleep(Duration::from_nanos(
        u64::try_from(rest).unwrap_or(0) + 50_000_000,
    ))
    .await;
}

async fn create_namespaces(admin: &Client, names: &[String], label: &str, concurrency: usize) {
    let api: Api<Namespace> = Api::all(admin.clone());
    futures::stream::iter(names.iter().cloned())
        .map(|name| {
            let api = api.clone();
            async move {
                let namespace = Namespace {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        labels: Some(BTreeMap::from([(
                            TEST_LABEL.to_string(),
                            label.to_string(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                };
                for attempt in 0..5 {
                    match api.create(&PostParams::default(), &namespace).await {
                        Ok(_) => return,
                        Err(kube::Error::Api(status)) if status.code == 409 => return,
                        Err(error) if attempt < 4 => {
                            log(format!("create namespace {name}: {error}; retrying"));
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Err(error) => panic!("create namespace {name}: {error}"),
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect::<()>()
        .await;
}

// ---------------------------------------------------------------------------------------
// Raw limit

#[derive(Debug)]
struct Raw {
    writes: usize,
    seconds: f64,
    rate: f64,
    errors: usize,
}

/// How the raw client writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawMode {
    /// Forced server-side apply with the operator's field manager, as the operator writes.
    Apply,
    /// Plain creates (POST): the cheapest write of a new object.
    Create,
    /// As `Apply`, with the label apply sent first as a dry run (a Gated rollout's preview).
    ApplyPreviewingLabels,
}

impl RawMode {
    fn describe(self) -> &'static str {
        match self {
            Self::Apply => "server-side apply",
            Self::Create => "plain create",
            Self::ApplyPreviewingLabels => "server-side apply, labels after a dry run",
        }
    }
}

/// Writes what the operator would for each namespace — its `desired_objects`, then the Pod
/// Security labels if the baseline sets any — one namespace at a time per worker,
/// `concurrency` workers: by the operator's server-side apply parameters, or as plain
/// creates (`mode`). No reads, no planning: the API server's limit. Measured
/// like the converge: with `observer` watching, until it has seen every object and label
/// (its watches cost the API server and this process the same in both measurements).
async fn raw_limit(
    client: &Client,
    baseline: &str,
    namespaces: &[String],
    concurrency: usize,
    mode: RawMode,
    bucket: Option<Arc<Bucket>>,
    observer: &Observer,
) -> Raw {
    let sbl = Api::<SecurityBaseline>::all(client.clone())
        .get(baseline)
        .await
        .expect("raw baseline");
    let uid = sbl.uid().expect("uid");
    let labels = merged_labels([&wanted_pod_security(&sbl.spec)]);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let create_params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    let started = Instant::now();
    let results: Vec<(usize, usize)> = futures::stream::iter(namespaces.iter().cloned())
        .map(|namespace| {
            let client = client.clone();
            let spec = &sbl.spec;
            let uid = &uid;
            let labels = &labels;
            let params = &params;
            let create_params = &create_params;
            let bucket = bucket.clone();
            async move {
                let reference = BaselineRef {
                    name: baseline,
                    uid,
                };
                let mut writes = 0;
                let mut errors = 0;
                for desired in desired_objects(spec, reference, &namespace) {
                    let object = desired.object;
                    let resource = api_resource(object.kind());
                    let api: Api<DynamicObject> =
                        Api::namespaced_with(client.clone(), &namespace, &resource);
                    if let Some(bucket) = &bucket {
                        bucket.take().await;
                    }
                    let result = match mode {
                        RawMode::Apply | RawMode::ApplyPreviewingLabels => api
                            .patch(object.name(), params, &Patch::Apply(object.to_json()))
                            .await
                            .map(drop),
                        RawMode::Create => {
                            let body: DynamicObject = serde_json::from_value(object.to_json())
                                .expect("a generated object as a DynamicObject");
                            api.create(create_params, &body).await.map(drop)
                        }
                    };
                    match result {
                        Ok(()) => writes += 1,
                        Err(error) => {
                            errors += 1;
                            log(format!("raw {} in {namespace}: {error}", mode.describe()));
                        }
                    }
                }
                if labels.is_empty() {
                    return (writes, errors);
                }
                let body = json!({
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace, "labels": labels},
                });
                if mode == RawMode::ApplyPreviewingLabels {
                    if let Some(bucket) = &bucket {
                        bucket.take().await;
                    }
                    let preview = Api::<Namespace>::all(client.clone())
                        .patch(&namespace, &params.clone().dry_run(), &Patch::Apply(&body))
                        .await;
                    if let Err(error) = preview {
                        errors += 1;
                        log(format!("raw label dry run of {namespace}: {error}"));
                    }
                }
                if let Some(bucket) = &bucket {
                    bucket.take().await;
                }
                match Api::<Namespace>::all(client)
                    .patch(&namespace, params, &Patch::Apply(body))
                    .await
                {
                    Ok(_) => writes += 1,
                    Err(error) => {
                        errors += 1;
                        log(format!("raw label patch of {namespace}: {error}"));
                    }
                }
                (writes, errors)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    // Done when the observer has seen every object, as for the converge.
    let seen = observer
        .wait_complete(namespaces, Duration::from_secs(60))
        .await
        .unwrap_or_else(Instant::now);
    let seconds = seen.duration_since(started).as_secs_f64();
    let writes: usize = results.iter().map(|r| r.0).sum();
    Raw {
        writes,
        seconds,
        rate: writes as f64 / seconds,
        errors: results.iter().map(|r| r.1).sum(),
    }
}

/// The API resource of a generated kind.
fn api_resource(kind: GeneratedKind) -> ApiResource {
    match kind {
        GeneratedKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
        GeneratedKind::Role => ApiResource::erase::<Role>(&()),
        GeneratedKind::ResourceQuota => {
            ApiResource::erase::<k8s_openapi::api::core::v1::ResourceQuota>(&())
        }
        GeneratedKind::LimitRange => {
            ApiResource::erase::<k8s_openapi::api::core::v1::LimitRange>(&())
        }
    }
}

/// Deletes the raw baseline's objects of every generated kind in the namespaces labelled
/// `raw_label`, 16 namespaces at a time; the count deleted.
async fn delete_raw_objects(admin: &Client, raw_label: &str, raw_baseline: &str) -> usize {
    let namespaces = Api::<Namespace>::all(admin.clone())
        .list_metadata(&ListParams::default().labels(&format!("{TEST_LABEL}={raw_label}")))
        .await
        .expect("the raw namespaces");
    let ours = ListParams::default().labels(&format!("{BASELINE_LABEL}={raw_baseline}"));
    let resources = GeneratedKind::ALL.map(api_resource);
    let counts: Vec<usize> = futures::stream::iter(namespaces.items)
        .map(|namespace| {
            let (ours, resources) = (&ours, &resources);
            async move {
                let name = namespace.name_any();
                let mut deleted = 0;
                for resource in resources {
                    let api = Api::<DynamicObject>::namespaced_with(admin.clone(), &name, resource);
                    let gone = api
                        .delete_collection(&DeleteParams::default(), ours)
                        .await
                        .expect("delete the raw objects");
                    deleted += gone.left().map_or(0, |list| list.items.len());
                }
                deleted
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    counts.into_iter().sum()
}

/// How an extra watch asks for its events.
#[derive(Debug, Clone, Copy)]
enum WatchEncoding {
    Json,
    Protobuf,
}

impl WatchEncoding {
    fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
        }
    }

    fn accept(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Protobuf => "application/vnd.kubernetes.protobuf;stream=watch",
        }
    }
}

/// A watch of every NetworkPolicy whose bytes are read and dropped (what serving it costs
/// the API server, without what decoding it costs a client).
struct PolicyWatch {
    task: tokio::task::JoinHandle<()>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
}

impl PolicyWatch {
    async fn start(admin: &Client, encoding: WatchEncoding) -> Self {
        use futures::AsyncReadExt as _;
        let api = Api::<NetworkPolicy>::all(admin.clone());
        let now = api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .expect("the NetworkPolicies' resourceVersion")
            .metadata
            .resource_version
            .expect("a list's resourceVersion");
        let mut request =
            kube::core::Request::new(<NetworkPolicy as kube::Resource>::url_path(&(), None))
                .watch(&kube::api::WatchParams::default().timeout(290), &now)
                .expect("a watch request");
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(encoding.accept()),
        );
        let stream = admin
            .request_stream(request)
            .await
            .expect("a watch of every NetworkPolicy");
        let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = bytes.clone();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut buffer = vec![0_u8; 64 * 1024];
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                counted.fetch_add(read as u64, std::sync::atomic::Ordering::Relaxed);
            }
        });
        Self { task, bytes }
    }

    /// Stops the watch; the bytes it read.
    fn stop(self) -> u64 {
        self.task.abort();
        self.bytes.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The operator's client-side limit (a token bucket: `qps` a second, `burst` saved up).
#[derive(Debug)]
struct Bucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    async fn take(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap();
                let now = Instant::now();
                let (tokens, last) = &mut *state;
                *tokens =
                    (*tokens + now.duration_since(*last).as_secs_f64() * self.qps).min(self.burst);
                *last = now;
                if *tokens >= 1.0 {
                    *tokens -= 1.0;
                    return;
                }
                Duration::from_secs_f64((1.0 - *tokens) / self.qps)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Watching the operator's work

type Key = (GeneratedKind, String, String);

#[derive(Debug, Default)]
struct NsObs {
    objects: HashSet<(GeneratedKind, String)>,
    labeled: bool,
    complete_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct ObsState {
    namespaces: HashMap<String, NsObs>,
    /// Current uid of each generated object and when that uid was first seen.
    uids: HashMap<Key, (String, Instant)>,
    expected: usize,
}

impl ObsState {
    fn update(&mut self, namespace: &str, now: Instant) {
        let expected = self.expected;
        let ns = self.namespaces.entry(namespace.to_string()).or_default();
        let have = ns.objects.len() + usize::from(ns.labeled);
        if have >= expected {
            ns.complete_at.get_or_insert(now);
        } else {
            ns.complete_at = None;
        }
    }
}

/// Watches (metadata only) of our generated NetworkPolicies and Roles and of the test's
/// namespaces: when each namespace has all its objects and labels, and when each object
/// was (re)created. Timestamps are taken when the watch event arrives.
#[derive(Debug, Clone)]
struct Observer {
    state: Arc<Mutex<ObsState>>,
    changed: tokio::sync::watch::Sender<u64>,
    /// Its watch tasks, to stop them ([`Observer::stop`]).
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Observer {
    async fn start(admin: &Client, baseline: &str, test_label: &str, expected: usize) -> Self {
        let observer = Self {
            state: Arc::new(Mutex::new(ObsState {
                expected,
                ..ObsState::default()
            })),
            changed: tokio::sync::watch::Sender::new(0),
            tasks: Arc::default(),
        };
        let selector = format!("{MANAGED_BY_LABEL}=kube-baseline,{BASELINE_LABEL}={baseline}");
        let synced = Arc::new(tokio::sync::Semaphore::new(0));
        observer.watch_objects::<NetworkPolicy>(
            admin,
            &selector,
            GeneratedKind::NetworkPolicy,
            synced.clone(),
        );
        observer.watch_objects::<Role>(admin, &selector, GeneratedKind::Role, synced.clone());
        {
            let observer = observer.clone();
            let api = Api::<PartialObjectMeta<Namespace>>::all(admin.clone());
            let config = watcher::Config::default().labels(&format!("{TEST_LABEL}={test_label}"));
            let synced = synced.clone();
            let tasks = observer.tasks.clone();
            let task = tokio::spawn(async move {
                let mut events = watcher(api, config).default_backoff().boxed();
                while let Some(event) = events.try_next().await.transpose() {
                    let now = Instant::now();
                    let Ok(event) = event else { continue };
                    match event {
                        watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => {
                            let name = ns.name_any();
                            let labeled = ns
                                .labels()
                                .get("pod-security.kubernetes.io/enforce")
                                .is_some();
                            let mut state = observer.state.lock().unwrap();
                            state.namespaces.entry(name.clone()).or_default().labeled = labeled;
                            state.update(&name, now);
                        }
                        watcher::Event::InitDone => synced.add_permits(1),
                        _ => {}
                    }
                    observer.changed.send_modify(|v| *v += 1);
                }
            });
            tasks.lock().unwrap().push(task.abort_handle());
        }
        let _ = synced.acquire_many(3).await;
        observer
    }

    /// Stops its watches.
    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    fn watch_objects<K>(
        &self,
        admin: &Client,
        selector: &str,
        kind: GeneratedKind,
        synced: Arc<tokio::sync::Semaphore>,
    ) where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        let observer = self.clone();
        let api = Api::<PartialObjectMeta<K>>::all(admin.clone());
        let config = watcher::Config::default().labels(selector);
        let tasks = self.tasks.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, config).default_backoff().boxed();
            while let Some(event) = events.try_next().await.transpose() {
                let now = Instant::now();
                let Ok(event) = event else { continue };
                let (object, present) = match event {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => (o, true),
                    watcher::Event::Delete(o) => (o, false),
                    watcher::Event::InitDone => {
                        synced.add_permits(1);
                        continue;
                    }
                    watcher::Event::Init => continue,
                };
                let (Some(namespace), name) = (object.namespace(), object.name_any()) else {
                    continue;
                };
                let uid = object.uid().unwrap_or_default();
                let mut state = observer.state.lock().unwrap();
                let key = (kind, namespace.clone(), name.clone());
                if present {
                    state
                        .namespaces
                        .entry(namespace.clone())
                        .or_default()
                        .objects
                        .insert((kind, name));
                    let entry = state.uids.entry(key).or_insert_with(|| (uid.clone(), now));
                    if entry.0 != uid {
                        *entry = (uid, now);
                    }
                } else if let Some(ns) = state.namespaces.get_mut(&namespace) {
                    ns.objects.remove(&(kind, name));
                }
                state.update(&namespace, now);
                drop(state);
                observer.changed.send_modify(|v| *v += 1);
            }
        });
        tasks.lock().unwrap().push(task.abort_handle());
    }

    fn set_expected(&self, expected: usize) {
        let mut state = self.state.lock().unwrap();
        state.expected = expected;
        let names: Vec<String> = state.namespaces.keys().cloned().collect();
        let now = Instant::now();
        for name in names {
            state.update(&name, now);
        }
    }

    /// When the first generated object was seen (the first write it saw).
    fn first_seen(&self) -> Option<Instant> {
        self.state
            .lock()
            .unwrap()
            .uids
            .values()
            .map(|(_, seen)| *seen)
            .min()
    }

    fn uid(&self, key: &Key) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .uids
            .get(key)
            .map(|u| u.0.clone())
    }

    /// When the last of `namespaces` became complete (None on timeout).
    async fn wait_complete(&self, namespaces: &[String], timeout: Duration) -> Option<Instant> {
        let mut completion = Completion::new(namespaces);
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if let Some(done) = completion.check(&self.state.lock().unwrap()) {
                    return done;
                }
                let _ = rx.changed().await;
            }
        };
        let result = tokio::time::timeout(timeout, wait).await.ok();
        if result.is_none() {
            log(format!(
                "timed out after {timeout:?} waiting for {} namespaces",
                namespaces.len()
            ));
        }
        result
    }

    /// When `key` was seen again with a uid other than `before`.
    async fn wait_recreated(
        &self,
        key: &Key,
        before: Option<String>,
        timeout: Duration,
    ) -> Option<Instant> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if let Some((uid, seen)) = self.state.lock().unwrap().uids.get(key).cloned()
                    && Some(&uid) != before.as_ref()
                {
                    return seen;
                }
                let _ = rx.changed().await;
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

/// Whether every namespace of a list is complete, asked again after each of the observer's
/// watch events. Each check goes on from the first namespace not complete at the last one
/// instead of starting over: a converge completes namespaces about in list order, and
/// scanning the complete ones again on every event was quadratic. At 10,000 namespaces that
/// scan took up to 0.4 of a core in the benchmark's process during the converge (not during
/// the raw phase, which waits only after its last write), on the cores the API server and
/// the operator share. Once every namespace has looked complete, one full pass confirms it
/// (one may have lost an object since).
struct Completion<'a> {
    namespaces: &'a [String],
    /// Every namespace before this one was complete when last looked at.
    settled: usize,
    /// Namespaces looked up so far (for the test that the checks stay linear).
    looked_up: usize,
}

impl<'a> Completion<'a> {
    fn new(namespaces: &'a [String]) -> Self {
        Self {
            namespaces,
            settled: 0,
            looked_up: 0,
        }
    }

    /// When the last namespace became complete, if all are.
    fn check(&mut self, state: &ObsState) -> Option<Instant> {
        let mut complete_at = |name: &String| {
            self.looked_up += 1;
            state.namespaces.get(name).and_then(|ns| ns.complete_at)
        };
        while let Some(name) = self.namespaces.get(self.settled) {
            complete_at(name)?;
            self.settled += 1;
        }
        let mut last: Option<Instant> = None;
        for (i, name) in self.namespaces.iter().enumerate() {
            let Some(done) = complete_at(name) else {
                self.settled = i;
                return None;
            };
            last = Some(last.map_or(done, |l| l.max(done)));
        }
        last
    }
}

// ---------------------------------------------------------------------------------------
// Latency statistics

#[derive(Debug)]
struct Stats {
    samples: usize,
    expected: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn stats(durations: &[Duration], expected: usize) -> Stats {
    let mut ms: Vec<f64> = durations.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| -> f64 {
        if ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        ms[rank - 1]
    };
    Stats {
        samples: ms.len(),
        expected,
        p50: pick(0.50),
        p95: pick(0.95),
        p99: pick(0.99),
        max: ms.last().copied().unwrap_or(f64::NAN),
    }
}

impl Stats {
    fn to_json(&self) -> Value {
        json!({
            "samples": self.samples,
            "timeouts": self.expected - self.samples,
            "p50": round(self.p50), "p95": round(self.p95), "p99": round(self.p99), "max": round(self.max),
        })
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({} of {} samples)",
            self.p50, self.p95, self.p99, self.max, self.samples, self.expected
        )
    }
}

/// Installs the OpenReports CRDs (`e2e/cluster report-crds`) and waits until established.
fn install_report_crds() {
    let dir = kube_baseline_e2e::report_crds();
    for crd in ["reports", "clusterreports"] {
        let file = dir.join(format!("openreports.io_{crd}.yaml"));
        let (ok, _, stderr) = kubectl_result(
            &["apply", "--server-side", "-f", &file.display().to_string()],
            None,
        );
        assert!(ok, "install {}: {stderr}", file.display());
        let (ok, _, stderr) = kubectl_result(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                &format!("crd/{crd}.openreports.io"),
            ],
            None,
        );
        assert!(ok, "{crd} CRD established: {stderr}");
    }
    log("installed the OpenReports CRDs");
}

/// Waits until `n` Reports of `baseline` exist (listed every 2 s, metadata only).
async fn wait_for_reports(
    admin: &Client,
    baseline: &str,
    n: usize,
    timeout: Duration,
) -> Option<Instant> {
    let resource = ApiResource {
        group: "openreports.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: "openreports.io/v1alpha1".to_owned(),
        kind: "Report".to_owned(),
        plural: "reports".to_owned(),
    };
    let reports: Api<DynamicObject> = Api::all_with(admin.clone(), &resource);
    let params = ListParams::default().labels(&format!("{BASELINE_LABEL}={baseline}"));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(list) = reports.list_metadata(&params).await
            && list.items.len() >= n
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    None
}

// ---------------------------------------------------------------------------------------
// The operator process

#[derive(Debug)]
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn spawn(args: &Args, env: &TestEnv, sa: &str, kubeconfig: &Path, tag: &str) -> Self {
        let log_path =
            kube_baseline_e2e::scratch_dir().join(format!("{}-operator-{tag}.log", env.id));
        let file = std::fs::File::create(&log_path).expect("operator log");
        let selector = env.selector();
        // At the shipped default no --concurrency is passed.
        let concurrency = args
            .concurrency
            .map(|n| vec!["--concurrency".to_string(), n.to_string()])
            .unwrap_or_default();
        // At the shipped defaults no pacing flag is passed.
        let pacing = args
            .operator_qps
            .map(|qps| {
                vec![
                    "--kube-api-qps".to_string(),
                    qps.to_string(),
                    "--kube-api-burst".to_string(),
                    args.operator_burst.to_string(),
                ]
            })
            .unwrap_or_default();
        let child = Command::new(&args.operator)
            .args([
                "run",
                "--namespace",
                OPERATOR_NAMESPACE,
                "--baseline-selector",
                &selector,
                "--namespace-selector",
                &selector,
                "--leader-elect",
                "--log-level",
                &args.operator_log_level,
                "--metrics-address",
                "127.0.0.1:0",
            ])
            .args(&concurrency)
            .args(&pacing)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", format!("{sa}-{tag}"))
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start operator");
        log(format!(
            "operator {tag} started (pid {}, log {})",
            child.id(),
            log_path.display()
        ));
        Self {
            child,
            log: log_path,
        }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    fn status_kib(&self, field: &str) -> f64 {
        self.proc_file("status")
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(f64::NAN)
    }

    /// VmHWM: the peak resident set.
    fn peak_rss_mib(&self) -> f64 {
        self.status_kib("VmHWM:") / 1024.0
    }

    fn rss_mib(&self) -> f64 {
        self.status_kib("VmRSS:") / 1024.0
    }

    /// utime + stime, in seconds.
    fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.child.id())
    }

    fn metrics_url(&self) -> Option<String> {
        let log = strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default());
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let address = line.split("address=").nth(1)?.split_whitespace().next()?;
        Some(format!("http://{address}/metrics"))
    }

    /// Seconds until `baseline`'s status counts as many repairs as the operator's own
    /// `kube_baseline_repairs_total` (first process: the status is not seeded from an older
    /// one); None on timeout.
    async fn wait_status_counts_repairs(
        &self,
        admin: &Client,
        baseline: &str,
        timeout: Duration,
    ) -> Option<f64> {
        let started = Instant::now();
        let api = Api::<SecurityBaseline>::all(admin.clone());
        let series = format!("kube_baseline_repairs_total{{baseline=\"{baseline}\"}}");
        while started.elapsed() < timeout {
            let counted = self.metrics_url().and_then(|url| {
                kube_baseline_e2e::metric_value(&kube_baseline_e2e::http_get(&url).1, &series)
            });
            let shown = api
                .get_status(baseline)
                .await
                .ok()
                .and_then(|sbl| sbl.status)
                .map(|status| status.summary.repairs);
            if let (Some(counted), Some(shown)) = (counted, shown)
                && counted == shown as f64
            {
                return Some(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        None
    }

    /// Namespace reconciles the operator has run so far (its own metrics); None before it
    /// serves them.
    fn namespace_reconciles(&self) -> Option<f64> {
        let (_, body) = kube_baseline_e2e::http_get(&self.metrics_url()?);
        let total = ["success", "error"]
            .iter()
            .filter_map(|result| {
                kube_baseline_e2e::metric_value(
                    &body,
                    &format!(
                        "controller_runtime_reconcile_total{{controller=\"namespace\",result=\"{result}\"}}"
                    ),
                )
            })
            .sum();
        Some(total)
    }

    /// Waits until the operator has reconciled `count` namespaces.
    async fn wait_reconciled(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .namespace_reconciles()
                .is_some_and(|total| total >= count as f64)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// utime + stime of a process, in seconds (NaN if it cannot be read).
fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    // After the comm: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(u), Some(s)) => (u + s) / clock_ticks(),
        _ => f64::NAN,
    }
}

/// CPU seconds used so far by the API server and etcd of the local control plane (from
/// the pid files `e2e/cluster` keeps in its state dir): with the rates, this shows where
/// the machine's time went: a converge costs the API server more than the raw client's
/// writes, by the watch events it sends to the operator.
fn control_plane_cpu_seconds() -> f64 {
    let Ok(dir) = std::env::var("KUBE_BASELINE_CLUSTER_DIR") else {
        return f64::NAN;
    };
    ["kube-apiserver", "etcd"]
        .iter()
        .map(|component| {
            std::fs::read_to_string(format!("{dir}/{component}.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse::<u32>().ok())
                .map_or(f64::NAN, process_cpu_seconds)
        })
        .sum()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------------------------------
// The audit log

#[derive(Debug, Default)]
struct Writes {
    total: usize,
    lease: usize,
    /// Writes other than the Lease, by "verb resource[/subresource]".
    by_kind: BTreeMap<String, usize>,
}

impl Writes {
    fn to_json(&self) -> Value {
        json!({
            "excluding_lease": self.total - self.lease,
            "lease": self.lease,
            "by_kind": self.by_kind,
        })
    }
}

impl std::fmt::Display for Writes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} excluding the Lease ({:?}), {} Lease",
            self.total - self.lease,
            self.by_kind,
            self.lease
        )
    }
}

/// Mutating requests of `user` received in [from, to] (audit log).
fn audit_writes(user: &str, from: Timestamp, to: Timestamp) -> Writes {
    writes_of(&audit_requests(user, from, to))
}

/// The mutating requests among `requests`.
fn writes_of(requests: &[AuditedRequest]) -> Writes {
    let mut writes = Writes::default();
    for request in requests.iter().filter(|r| r.is_write()) {
        writes.total += 1;
        if request.resource == "leases" {
            writes.lease += 1;
            continue;
        }
        let what = if request.subresource.is_empty() {
            format!("{} {}", request.verb, request.resource)
        } else {
            format!(
                "{} {}/{}",
                request.verb, request.resource, request.subresource
            )
        };
        *writes.by_kind.entry(what).or_default() += 1;
    }
    writes
}

/// One request as the audit log has it.
#[derive(Debug, Clone)]
struct AuditedRequest {
    verb: String,
    resource: String,
    subresource: String,
    uri: String,
    received: Timestamp,
    /// When the response completed (for a watch: when it started streaming).
    answered: Timestamp,
    code: i32,
}

impl AuditedRequest {
    /// A mutating request that persists: dry runs (`dryRun=All`, the Pod Security
    /// preview) are not writes.
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !self
            .uri
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|pair| pair == "dryRun=All"))
    }
}

/// The audit line's fields read here (`kube_baseline_e2e::AuditEvent` lacks the audit ID,
/// needed to count a watch once: it is logged when it starts and when it ends).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditLine {
    #[serde(rename = "auditID")]
    audit_id: String,
    stage: String,
    verb: String,
    user: kube_baseline_e2e::AuditUser,
    #[serde(default)]
    object_ref: Option<kube_baseline_e2e::AuditObjectRef>,
    request_received_timestamp: String,
    #[serde(default)]
    stage_timestamp: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    response_status: Option<kube_baseline_e2e::AuditStatus>,
}

/// Every request of `user` received in [from, to], in order of receipt, from the audit log
/// and its rotated backups (the API server rotates at 100 MB). A request counts once: when
/// complete, or for a watch when it started streaming.
fn audit_requests(user: &str, from: Timestamp, to: Timestamp) -> Vec<AuditedRequest> {
    // Let the API server flush what it has.
    std::thread::sleep(Duration::from_millis(500));
    let log = std::env::var("KUBE_BASELINE_AUDIT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| kube_baseline_e2e::cluster_dir().join("audit.log"));
    let dir = log.parent().expect("audit log dir").to_path_buf();
    let stem = log
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let from_system = std::time::SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(from.as_second()).unwrap_or_default());
    let mut seen = HashSet::new();
    let mut requests = Vec::new();
    let quoted_user = format!("\"username\":\"{user}\"");
    for entry in std::fs::read_dir(&dir).expect("cluster dir").flatten() {
        let path = entry.path();
        let file_name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if !file_name.starts_with(&stem) || !file_name.ends_with(".log") {
            continue;
        }
        if entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < from_system)
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains(&quoted_user)) {
            let Ok(event) = serde_json::from_str::<AuditLine>(line) else {
                continue;
            };
            if event.user.username != user
                || !matches!(event.stage.as_str(), "ResponseComplete" | "ResponseStarted")
                || !seen.insert(event.audit_id)
            {
                continue;
            }
            let Ok(received) = event.request_received_timestamp.parse::<Timestamp>() else {
                continue;
            };
            if received < from || received > to {
                continue;
            }
            let object = event.object_ref;
            requests.push(AuditedRequest {
                verb: event.verb,
                resource: object
                    .as_ref()
                    .map(|o| o.resource.clone())
                    .unwrap_or_default(),
                subresource: object.map(|o| o.subresource).unwrap_or_default(),
                uri: event.request_uri,
                received,
                answered: event.stage_timestamp.parse().unwrap_or(received),
                code: event.response_status.map_or(0, |s| s.code),
            });
        }
    }
    requests.sort_by_key(|r| r.received);
    requests
}

// ---------------------------------------------------------------------------------------
// Start-up: from the operator's process start to its first write

/// The initial list of one resource: its pages and when they went out and came back.
#[derive(Debug, Default)]
struct InitialList {
    pages: usize,
    first_sent_s: f64,
    last_answered_s: f64,
    /// Sum of the pages' response times: the rest of the span is waiting between pages.
    serving_s: f64,
    watch_started_s: Option<f64>,
}

/// Where the time before the operator's first write went, from the audit log (seconds
/// after the process was started).
#[derive(Debug, Default)]
struct Startup {
    first_request_s: Option<f64>,
    lease_acquired_s: Option<f64>,
    first_list_s: Option<f64>,
    lists_done_s: Option<f64>,
    lists: BTreeMap<String, InitialList>,
    /// Other reads before the first write (gets of the CRD, the baseline, ...).
    other_reads_before_first_write: usize,
    first_write_s: Option<f64>,
    first_write: Option<String>,
    /// The observer's first sight of a generated object.
    first_seen_s: Option<f64>,
}

impl Startup {
    fn from_audit(
        requests: &[AuditedRequest],
        started: Timestamp,
        first_seen_s: Option<f64>,
    ) -> Self {
        let at = |t: Timestamp| (t.as_nanosecond() - started.as_nanosecond()) as f64 / 1e9;
        let mut startup = Self {
            first_seen_s,
            first_request_s: requests.first().map(|r| at(r.received)),
            ..Self::default()
        };
        let first_write = requests
            .iter()
            .find(|r| r.is_write() && r.resource != "leases");
        startup.first_write_s = first_write.map(|r| at(r.received));
        startup.first_write = first_write.map(|r| format!("{} {}", r.verb, r.uri));
        startup.lease_acquired_s = requests
            .iter()
            .find(|r| r.resource == "leases" && r.is_write() && (200..300).contains(&r.code))
            .map(|r| at(r.answered));
        let before_first_write = requests
            .iter()
            .filter(|r| first_write.is_none_or(|w| r.received <= w.received));
        for request in before_first_write {
            match request.verb.as_str() {
                "list" => {
                    let list = startup.lists.entry(request.resource.clone()).or_default();
                    if list.pages == 0 {
                        list.first_sent_s = at(request.received);
                    }
                    list.pages += 1;
                    list.last_answered_s = list.last_answered_s.max(at(request.answered));
                    list.serving_s += at(request.answered) - at(request.received);
                }
                "watch" => {
                    let list = startup.lists.entry(request.resource.clone()).or_default();
                    list.watch_started_s.get_or_insert(at(request.received));
                }
                verb if !request.is_write() && verb != "watch" => {
                    startup.other_reads_before_first_write += 1;
                }
                _ => {}
            }
        }
        let listed = startup.lists.values().filter(|l| l.pages > 0);
        startup.first_list_s = listed.clone().map(|l| l.first_sent_s).reduce(f64::min);
        startup.lists_done_s = listed.map(|l| l.last_answered_s).reduce(f64::max);
        startup
    }

    fn to_json(&self) -> Value {
        let lists: BTreeMap<&String, Value> = self
            .lists
            .iter()
            .map(|(resource, l)| {
                (
                    resource,
                    json!({
                        "pages": l.pages,
                        "first_sent_s": round(l.first_sent_s),
                        "last_answered_s": round(l.last_answered_s),
                        "serving_s": round(l.serving_s),
                        "watch_started_s": l.watch_started_s.map(round),
                    }),
                )
            })
            .collect();
        json!({
            "first_request_s": self.first_request_s.map(round),
            "lease_acquired_s": self.lease_acquired_s.map(round),
            "first_list_s": self.first_list_s.map(round),
            "lists_done_s": self.lists_done_s.map(round),
            "lists": lists,
            "other_reads_before_first_write": self.other_reads_before_first_write,
            "first_write_s": self.first_write_s.map(round),
            "first_write": self.first_write,
            "first_object_seen_s": self.first_seen_s.map(round),
        })
    }
}

impl std::fmt::Display for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.2} s"));
        write!(
            f,
            "first request {}, lease acquired {}, lists {} to {}, first write {}, first object seen {}",
            s(self.first_request_s),
            s(self.lease_acquired_s),
            s(self.first_list_s),
            s(self.lists_done_s),
            s(self.first_write_s),
            s(self.first_seen_s)
        )?;
        for (resource, l) in self.lists.iter().filter(|(_, l)| l.pages > 0) {
            write!(
                f,
                "; {resource}: {} pages {:.2}-{:.2} s ({:.2} s serving)",
                l.pages, l.first_sent_s, l.last_answered_s, l.serving_s
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Output

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| round(kib / 1024.0 / 1024.0));
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": memory_gib,
        "cpu": cpu,
    })
}

/// A results file written by an earlier run; the benchmark stops if it cannot read it.
fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("parse {}: {error}", path.display()))
}

fn merge(args: &Args) {
    let runs: Vec<Value> = args.merge.iter().map(|path| read_json(path)).collect();
    print_table(&runs);
    let all = json!({
        "date": Timestamp::now().to_string(),
        "command": args.command,
        "commit": args.commit,
        "machine": machine(),
        "runs": runs,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&all).unwrap()).expect("write json");
        eprintln!("wrote {}", path.display());
    }
}

/// A figure as the tables print it.
fn format_figure(v: &Value) -> String {
    match v {
        Value::Number(n) => format_number(n.as_f64().unwrap_or(f64::NAN)),
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn format_number(x: f64) -> String {
    if x.fract() == 0.0 || x.abs() >= 10.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

/// The figure at `path` in one run's JSON.
fn figure<'a>(run: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(run, |v, p| &v[*p])
}

fn print_table(runs: &[Value]) {
    let mut header = format!("{:<50}", "N namespaces");
    for run in runs {
        header.push_str(&format!(" {:>11}", format_figure(&run["namespaces"])));
    }
    println!("{header}");
    for (label, path) in table_rows() {
        let mut line = format!("{label:<50}");
        for run in runs {
            line.push_str(&format!(" {:>11}", format_figure(figure(run, &path))));
        }
        println!("{line}");
    }
}

/// The table's rows: a label and the figure's path in a run's JSON.
fn table_rows() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("baseline", vec!["baseline"]),
        ("writes per namespace", vec!["writes_per_namespace"]),
        ("operator pacing", vec!["operator_pacing"]),
        ("raw writes by", vec!["raw", "method"]),
        (
            "raw limit (unthrottled), objects/s",
            vec!["raw", "objects_per_s"],
        ),
        (
            "raw by server-side apply (--raw-apply-too), objects/s",
            vec!["raw_by_apply", "objects_per_s"],
        ),
        (
            "  API server + etcd CPU s, raw by apply",
            vec!["raw_by_apply", "control_plane_cpu_s"],
        ),
        (
            "raw at the operator's QPS, objects/s",
            vec!["raw_at_operator_qps", "objects_per_s"],
        ),
        ("converge, s", vec!["converge", "seconds"]),
        ("converge, objects/s", vec!["converge", "objects_per_s"]),
        (
            "converge / raw at same QPS (target >= 0.8)",
            vec!["converge", "ratio_to_raw"],
        ),
        (
            "converge / unthrottled raw",
            vec!["converge", "ratio_to_unthrottled_raw"],
        ),
        (
            "converge / raw by server-side apply",
            vec!["converge", "ratio_to_raw_by_apply"],
        ),
        (
            "raw after the converge (--raw-after), objects/s",
            vec!["raw_after", "objects_per_s"],
        ),
        (
            "  API server + etcd CPU s, raw after",
            vec!["raw_after", "control_plane_cpu_s"],
        ),
        (
            "converge / raw after it",
            vec!["converge", "ratio_to_raw_after"],
        ),
        (
            "converge / mean of raw before and after",
            vec!["converge", "ratio_to_raw_bracketed"],
        ),
        (
            "  process start -> lease acquired, s",
            vec!["converge", "startup", "lease_acquired_s"],
        ),
        (
            "  process start -> initial lists done, s",
            vec!["converge", "startup", "lists_done_s"],
        ),
        (
            "  process start -> first write (audit), s",
            vec!["converge", "startup", "first_write_s"],
        ),
        (
            "  process start -> first object seen, s",
            vec!["converge", "startup", "first_object_seen_s"],
        ),
        (
            "converge from the first write, s",
            vec!["converge", "from_first_write", "seconds"],
        ),
        (
            "converge from the first write, objects/s",
            vec!["converge", "from_first_write", "objects_per_s"],
        ),
        (
            "  / raw at same QPS",
            vec!["converge", "from_first_write", "ratio_to_raw"],
        ),
        (
            "operator writes in converge excl. Lease",
            vec!["converge", "operator_writes", "excluding_lease"],
        ),
        ("  (writes needed)", vec!["converge", "writes_needed"]),
        (
            "new ns -> protected idle p50, ms",
            vec!["event_to_action_idle_ms", "p50"],
        ),
        (
            "new ns -> protected idle p95, ms",
            vec!["event_to_action_idle_ms", "p95"],
        ),
        (
            "new ns -> protected idle p99, ms (target <= 200)",
            vec!["event_to_action_idle_ms", "p99"],
        ),
        (
            "new ns -> protected during converge p50, ms",
            vec!["during_converge", "event_to_action_ms", "p50"],
        ),
        (
            "new ns -> protected during converge p95, ms",
            vec!["during_converge", "event_to_action_ms", "p95"],
        ),
        (
            "new ns -> protected during converge p99, ms",
            vec!["during_converge", "event_to_action_ms", "p99"],
        ),
        (
            "  (re-converge it ran during, s)",
            vec!["during_converge", "reconverge_s"],
        ),
        ("repair p50, ms", vec!["repair_ms", "p50"]),
        ("repair p99, ms (target <= 500)", vec!["repair_ms", "p99"]),
        (
            "writes in idle window excl. Lease (target 0)",
            vec!["idle_writes", "writes", "excluding_lease"],
        ),
        (
            "  Lease writes in idle window",
            vec!["idle_writes", "writes", "lease"],
        ),
        (
            "writes across restart excl. Lease (target 0)",
            vec!["restart", "writes", "excluding_lease"],
        ),
        (
            "  Lease writes across restart",
            vec!["restart", "writes", "lease"],
        ),
        (
            "operator peak RSS, MiB (first process)",
            vec!["operator", "first_process", "peak_rss_mib"],
        ),
        (
            "operator CPU s, cold converge",
            vec!["converge", "operator_cpu_s"],
        ),
        (
            "  namespace reconciles in it",
            vec!["converge", "operator_namespace_reconciles"],
        ),
        (
            "API server + etcd CPU s, raw (unthrottled)",
            vec!["raw", "control_plane_cpu_s"],
        ),
        (
            "raw client CPU s (with the observer's watches)",
            vec!["raw", "client_cpu_s"],
        ),
        (
            "API server + etcd CPU s, cold converge",
            vec!["converge", "control_plane_cpu_s"],
        ),
        (
            "operator CPU s, whole first process",
            vec!["operator", "first_process", "cpu_s"],
        ),
        (
            "operator peak RSS, MiB (restarted)",
            vec!["operator", "restarted_process", "peak_rss_mib_end"],
        ),
    ]
}

/// Median, lowest and highest of several runs' values of one figure.
#[derive(Debug, PartialEq)]
struct Spread {
    median: f64,
    low: f64,
    high: f64,
}

impl Spread {
    /// None when no run has the figure.
    fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (low, high) = (*sorted.first()?, *sorted.last()?);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Self { median, low, high })
    }

    fn to_json(&self) -> Value {
        json!({"median": round(self.median), "low": round(self.low), "high": round(self.high)})
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.low == self.high {
            write!(f, "{}", format_number(self.median))
        } else {
            write!(
                f,
                "{} [{}-{}]",
                format_number(self.median),
                format_number(self.low),
                format_number(self.high)
            )
        }
    }
}

/// Runs grouped by what they measured: (baseline, operator pacing, N), in file order.
fn group_runs(runs: Vec<Value>) -> Vec<((String, String, u64), Vec<Value>)> {
    let mut groups: Vec<((String, String, u64), Vec<Value>)> = Vec::new();
    for run in runs {
        let key = (
            format_figure(&run["baseline"]),
            format_figure(&run["operator_pacing"]),
            run["namespaces"].as_u64().unwrap_or(0),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(run),
            None => groups.push((key, vec![run])),
        }
    }
    groups
}

fn summarize(args: &Args) {
    let files: Vec<Value> = args.summarize.iter().map(|path| read_json(path)).collect();
    let commits: Vec<Value> = files.iter().map(|file| file["commit"].clone()).collect();
    let runs: Vec<Value> = files
        .iter()
        .flat_map(|file| file["runs"].as_array().cloned().unwrap_or_default())
        .collect();
    let groups = group_runs(runs);
    let mut header = format!("{:<50}", "median [low-high] of runs");
    for ((baseline, pacing, n), members) in &groups {
        header.push_str(&format!(
            " {:>24}",
            format!("{baseline} {pacing} N={n} x{}", members.len())
        ));
    }
    println!("{header}");
    let mut summaries: Vec<Value> = groups
        .iter()
        .map(|((baseline, pacing, n), members)| {
            json!({"baseline": baseline, "operator_pacing": pacing, "namespaces": n,
                   "runs": members.len(), "figures": {}})
        })
        .collect();
    for (label, path) in table_rows() {
        let mut line = format!("{label:<50}");
        for ((_, members), summary) in groups.iter().zip(summaries.iter_mut()) {
            let values: Vec<f64> = members
                .iter()
                .filter_map(|run| figure(run, &path).as_f64())
                .collect();
            let cell = match Spread::of(&values) {
                Some(spread) => {
                    summary["figures"][path.join(".")] = spread.to_json();
                    spread.to_string()
                }
                None => "-".to_string(),
            };
            line.push_str(&format!(" {cell:>24}"));
        }
        println!("{line}");
    }
    let all = json!({
        "date": Timestamp::now().to_string(),
        "commits": commits,
        "sources": args.summarize.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "groups": summaries,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&all).unwrap()).expect("write json");
        eprintln!("wrote {}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(state: &mut ObsState, name: &str, at: Option<Instant>) {
        state
            .namespaces
            .entry(name.to_string())
            .or_default()
            .complete_at = at;
    }

    #[test]
    fn completion_is_the_last_namespace_to_complete_and_waits_for_one_that_regressed() {
        let names = names("ns", 3);
        let t0 = Instant::now();
        let [a, b, c] = [1, 3, 2].map(|s| t0 + Duration::from_secs(s));
        let mut state = ObsState::default();
        let mut completion = Completion::new(&names);
        assert_eq!(completion.check(&state), None);
        complete(&mut state, &names[0], Some(a));
        complete(&mut state, &names[2], Some(c));
        assert_eq!(completion.check(&state), None, "the middle one is missing");
        complete(&mut state, &names[1], Some(b));
        // The first lost an object after it was looked at: not complete after all.
        complete(&mut state, &names[0], None);
        assert_eq!(completion.check(&state), None, "the first one regressed");
        complete(&mut state, &names[0], Some(a));
        assert_eq!(completion.check(&state), Some(b), "the latest completion");
    }

    #[test]
    fn completion_checks_after_every_event_stay_linear() {
        // Namespaces complete in list order, one check per completion, as in a converge.
        let n = 2_000;
        let names = names("ns", n);
        let now = Instant::now();
        let mut state = ObsState::default();
        let mut completion = Completion::new(&names);
        for name in &names {
            assert_eq!(completion.check(&state), None);
            complete(&mut state, name, Some(now));
        }
        assert_eq!(completion.check(&state), Some(now));
        // Scanning from the start every time would look up about n * n / 2 (2,000,000).
        assert!(
            completion.looked_up <= 3 * n + 1,
            "{} lookups for {n} namespaces",
            completion.looked_up
        );
    }

    #[test]
    fn a_spread_is_the_median_and_the_extremes() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            odd,
            Spread {
                median: 2.0,
                low: 1.0,
                high: 3.0
            }
        );
        assert_eq!(odd.to_string(), "2 [1-3]");
        assert_eq!(
            Spread::of(&[0.71, 0.9, 0.8]).unwrap().to_string(),
            "0.80 [0.71-0.90]"
        );
        let even = Spread::of(&[10.0, 40.0, 20.0, 30.0]).unwrap();
        assert_eq!(even.median, 25.0);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[5.0, 5.0]).unwrap().to_string(), "5");
    }

    #[test]
    fn runs_group_by_baseline_pacing_and_size() {
        let run = |baseline: &str, n: u64| json!({"baseline": baseline, "operator_pacing": "defaults", "namespaces": n});
        let groups = group_runs(vec![
            run("sample", 1000),
            run("sample", 10000),
            run("sample", 1000),
            run("one-policy", 1000),
        ]);
        let sizes: Vec<(String, u64, usize)> = groups
            .iter()
            .map(|((b, _, n), members)| (b.clone(), *n, members.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("sample".to_string(), 1000, 2),
                ("sample".to_string(), 10000, 1),
                ("one-policy".to_string(), 1000, 1)
            ]
        );
    }
}
