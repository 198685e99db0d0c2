//! CIS 1.2 (the kube-apiserver's other flags), 1.3 (kube-controller-manager), 1.4
//! (kube-scheduler) and 2 (etcd) end to end: the node
//! agent (`agent --print --once`, host root /) finds the real processes of e2e/cluster in
//! /proc, and the checks (`evaluate_node`, which the controller and `check` share) judge its
//! report. The harness is compliant; each scenario restarts one component with one
//! non-compliant setting given after the compliant one (the last occurrence wins), asserts
//! the exact finding, and restarts it compliant again (also when the scenario fails). The
//! agent also sends its live probes (`--live-probes`): a request without credentials to the
//! kube-apiserver and a TLS client without a certificate to etcd.
//!
//! The scenarios restart control-plane components of the shared cluster, so they run one
//! after another inside a single test.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use kube_baseline::api::{
    DriftReason, FileClass, NodeReport, ObservationState, ProbeOutcome, SecurityBaselineSpec,
};
use kube_baseline::domain::node::evaluate::evaluate_node;
use kube_baseline_e2e::faults::{cluster, cluster_with_env};
use kube_baseline_e2e::*;

const BASELINE: &str = "controlPlane:\n  apiServer:\n    flags: {}\n  controllerManager: {}\n  scheduler: {}\n  etcd:\n    server: {}\n  files: {ownership: OWNERSHIP}\n  liveProbes: {}\n";

/// The node agent's report of this machine, as the cluster's admin kubeconfig (its CA tells
/// this cluster's processes from any other control plane running here).
fn observe() -> NodeReport {
    observe_with(&[])
}

/// [`observe`] with more agent flags.
fn observe_with(extra: &[&str]) -> NodeReport {
    let output = Command::new(operator_binary())
        .args([
            "agent",
            "--once",
            "--print",
            "--host-root",
            "/",
            "--node-name",
            "cis-node",
            // --print contacts no cluster: the live probes only with this flag.
            "--live-probes",
        ])
        .args(extra)
        .env("KUBECONFIG", cluster_dir().join("kubeconfig"))
        .output()
        .expect("agent runs");
    assert!(
        output.status.success(),
        "agent failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    serde_saphyr::from_str(stdout.trim_start_matches("---\n")).expect("a NodeReport")
}

/// Every finding of the CIS baseline on this machine: (check, reason, message). File owners
/// are checked when the harness's files are root's (CIS wants root:root): when it runs as
/// root.
fn findings(report: &NodeReport) -> Vec<(String, DriftReason, String)> {
    use std::os::unix::fs::MetadataExt;
    let as_root = std::fs::metadata(cluster_dir()).expect("cluster dir").uid() == 0;
    let baseline = BASELINE.replace("OWNERSHIP", &as_root.to_string());
    let spec: SecurityBaselineSpec = serde_saphyr::from_str(&baseline).expect("baseline");
    evaluate_node(&report.spec, &spec, &BTreeMap::new())
        .into_iter()
        .map(|d| (d.check, d.reason, d.message))
        .collect()
}

/// The checks found, with their reasons.
fn verdicts(found: &[(String, DriftReason, String)]) -> Vec<(&str, DriftReason)> {
    found.iter().map(|(c, r, _)| (c.as_str(), *r)).collect()
}

/// A component restarted with more flags; dropped, it is restarted with the harness's own.
struct Restarted {
    component: &'static str,
}

impl Restarted {
    fn with(component: &'static str, extra_flags_var: &str, flags: &str) -> Self {
        // The kube-scheduler may not run yet: "not running" is no failure here.
        stop_if_running(component);
        let guard = Self { component };
        cluster_with_env(&["start", component], &[(extra_flags_var, flags)]);
        guard
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        // No panic while a failed scenario unwinds: a restart that fails is printed.
        stop_if_running(self.component);
        let started = Command::new(repo_root().join("e2e").join("cluster"))
            .args(["start", self.component])
            .status();
        if !started.is_ok_and(|s| s.success()) {
            eprintln!("could not restart {} compliant", self.component);
        }
    }
}

fn stop_if_running(component: &str) {
    let _ = Command::new(repo_root().join("e2e").join("cluster"))
        .args(["stop", component])
        .output();
}

/// A variable of the running cluster's state (e.g. ETCD_PORT).
fn cluster_var(name: &str) -> String {
    let env = std::fs::read_to_string(cluster_dir().join("cluster.env")).expect("cluster.env");
    env.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} in cluster.env"))
        .to_owned()
}

fn pki(file: &str) -> PathBuf {
    cluster_dir().join("pki").join(file)
}

/// Whether etcd answers /health over TLS to a client without a certificate.
fn etcd_answers_without_client_cert() -> bool {
    let url = format!("https://127.0.0.1:{}/health", cluster_var("ETCD_PORT"));
    Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "5", "--cacert"])
        .arg(pki("etcd-ca.crt"))
        .arg(url)
        .output()
        .expect("curl runs")
        .status
        .success()
}

#[tokio::test]
async fn controller_manager_scheduler_and_etcd_one_setting_at_a_time() {
    // The harness starts no kube-scheduler (e2e/node runs its own): start a compliant one.
    let _scheduler = Restarted::with("kube-scheduler", "KB_SCHEDULER_EXTRA_FLAGS", "");

    // Compliant: every component observed, nothing found.
    let report = observe();
    for (name, state) in [
        (
            "kube-controller-manager",
            report.spec.controller_manager.header.state,
        ),
        ("kube-scheduler", report.spec.scheduler.header.state),
        ("etcd", report.spec.etcd.header.state),
    ] {
        assert_eq!(
            state,
            ObservationState::Observed,
            "{name}: {:#?}",
            report.spec
        );
    }
    assert_eq!(report.spec.etcd.trusted_ca_is_kubernetes_ca, Some(false));
    // The live probes: anonymous rejected (401), etcd refusing the client without a
    // certificate, at the addresses the flags give.
    let anonymous = &report.spec.api_server.anonymous_probe;
    assert_eq!(
        (anonymous.outcome, anonymous.status),
        (ProbeOutcome::Answered, Some(401)),
        "{anonymous:?}"
    );
    assert_eq!(
        anonymous.url,
        format!(
            "https://127.0.0.1:{}/api/v1/namespaces",
            cluster_var("APISERVER_PORT")
        )
    );
    let etcd = &report.spec.api_server.etcd_probe;
    assert_eq!(etcd.outcome, ProbeOutcome::Refused, "{etcd:?}");
    assert_eq!(
        etcd.url,
        format!("https://127.0.0.1:{}/version", cluster_var("ETCD_PORT"))
    );
    assert_eq!(findings(&report), Vec::new(), "{:#?}", report.spec);
    assert!(
        !etcd_answers_without_client_cert(),
        "etcd with --client-cert-auth refuses a client without a certificate"
    );

    // File modes (CIS 1.1), as the running processes' flags name the files: one file made
    // too open at a time, then restored.
    use std::os::unix::fs::PermissionsExt;
    let kubeconfig = cluster_dir().join("kube-controller-manager.kubeconfig");
    let data_dir = cluster_dir().join("etcd");
    let key = pki("apiserver.key");
    for (path, open, restore, check) in [
        (&kubeconfig, 0o644, 0o600, "files.kubeconfig-permissions"),
        (&data_dir, 0o750, 0o700, "files.etcd-data-dir-permissions"),
        (&key, 0o640, 0o600, "files.private-key-permissions"),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(open)).expect("chmod");
        let found = findings(&observe());
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(restore))
            .expect("chmod back");
        assert_eq!(verdicts(&found), [(check, DriftReason::Violation)]);
        assert!(
            found[0].2.contains(&path.display().to_string()),
            "{found:?}"
        );
    }

    // Static Pod manifests (CIS 1.1.1-1.1.8): no kubelet runs this control plane, so a
    // kubelet configuration given by path (--kubelet-config) names a staticPodPath holding
    // one manifest per component (the files e2e/kube-bench-compare shows kube-bench).
    {
        let dir = cluster_dir().join("cis-static-pods");
        let manifests = dir.join("manifests");
        std::fs::create_dir_all(&manifests).expect("mkdir");
        for component in [
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "etcd",
        ] {
            let path = manifests.join(format!("{component}.yaml"));
            std::fs::write(
                &path,
                format!(
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {component}\n  namespace: kube-system\nspec:\n  containers:\n  - name: {component}\n    image: registry.k8s.io/{component}:v1.36.3\n    command: [{component}]\n"
                ),
            )
            .expect("write manifest");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let kubelet_config = dir.join("kubelet-config.yaml");
        std::fs::write(
            &kubelet_config,
            format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: {}\n",
                manifests.display()
            ),
        )
        .expect("write kubelet config");
        let flag = kubelet_config.display().to_string();
        let observe_pods = || observe_with(&["--kubelet-config", &flag]);
        let report = observe_pods();
        let seen: Vec<&str> = report
            .spec
            .files
            .iter()
            .filter(|f| f.class == FileClass::StaticPodManifest)
            .map(|f| f.role.as_str())
            .collect();
        assert_eq!(
            seen.len(),
            4,
            "every manifest found by its container: {seen:?} {:#?}",
            report.spec.kubelet
        );
        assert_eq!(findings(&report), Vec::new());
        // kube-apiserver's manifest 644.
        let apiserver = manifests.join("kube-apiserver.yaml");
        std::fs::set_permissions(&apiserver, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let found = findings(&observe_pods());
        std::fs::set_permissions(&apiserver, std::fs::Permissions::from_mode(0o600))
            .expect("chmod back");
        assert_eq!(
            verdicts(&found),
            [(
                "files.static-pod-manifest-permissions",
                DriftReason::Violation
            )]
        );
        assert!(
            found[0].2.contains(&apiserver.display().to_string()),
            "{found:?}"
        );
        // etcd's manifest owned by another user (root only can chown).
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(cluster_dir()).expect("cluster dir").uid() == 0 {
            let etcd = manifests.join("etcd.yaml");
            std::os::unix::fs::chown(&etcd, Some(1000), Some(1000)).expect("chown");
            let found = findings(&observe_pods());
            std::os::unix::fs::chown(&etcd, Some(0), Some(0)).expect("chown back");
            assert_eq!(
                verdicts(&found),
                [(
                    "files.static-pod-manifest-ownership",
                    DriftReason::Violation
                )]
            );
            assert!(
                found[0].2.contains(&etcd.display().to_string()),
                "{found:?}"
            );
        }
    }

    // kube-apiserver: a second --tls-cipher-suites adds a CBC suite (pflag appends it).
    {
        let _api = Restarted::with(
            "kube-apiserver",
            "KB_APISERVER_EXTRA_FLAGS",
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        );
        let found = findings(&observe());
        assert_eq!(
            verdicts(&found),
            [("apiserver.tls-cipher-suites", DriftReason::Violation)]
        );
        assert!(
            found[0].2.ends_with(": TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"),
            "{found:?}"
        );
    }
    // ... --anonymous-auth=true after the harness's false: the flag-only check is not in
    // this baseline, the live probe finds it (RBAC denies system:anonymous: 403, not 401).
    {
        let _api = Restarted::with(
            "kube-apiserver",
            "KB_APISERVER_EXTRA_FLAGS",
            "--anonymous-auth=true",
        );
        let report = observe();
        let found = findings(&report);
        assert_eq!(
            verdicts(&found),
            [("apiserver.anonymous-request-live", DriftReason::Violation)],
            "{:#?}",
            report.spec.api_server.anonymous_probe
        );
        assert!(
            found[0]
                .2
                .starts_with("anonymous requests are authenticated as system:anonymous"),
            "{found:?}"
        );
    }
    // ... and --service-account-extend-token-expiration back to its default, true.
    {
        let _api = Restarted::with(
            "kube-apiserver",
            "KB_APISERVER_EXTRA_FLAGS",
            "--service-account-extend-token-expiration=true",
        );
        assert_eq!(
            verdicts(&findings(&observe())),
            [(
                "apiserver.service-account-extend-token-expiration",
                DriftReason::Violation
            )]
        );
    }

    // kube-controller-manager: --profiling=true after the harness's --profiling=false.
    {
        let _kcm = Restarted::with(
            "kube-controller-manager",
            "KB_KCM_EXTRA_FLAGS",
            "--profiling=true",
        );
        let found = findings(&observe());
        assert_eq!(
            verdicts(&found),
            [("controller-manager.profiling", DriftReason::Violation)]
        );
        assert!(found[0].2.contains("flag --profiling"), "{found:?}");
    }
    // ... --bind-address on every address, and a GC threshold above the CIS default.
    {
        let _kcm = Restarted::with(
            "kube-controller-manager",
            "KB_KCM_EXTRA_FLAGS",
            "--bind-address=0.0.0.0",
        );
        assert_eq!(
            verdicts(&findings(&observe())),
            [("controller-manager.bind-address", DriftReason::Violation)]
        );
    }
    {
        let _kcm = Restarted::with(
            "kube-controller-manager",
            "KB_KCM_EXTRA_FLAGS",
            "--terminated-pod-gc-threshold=20000",
        );
        let found = findings(&observe());
        assert_eq!(
            verdicts(&found),
            [(
                "controller-manager.terminated-pod-gc-threshold",
                DriftReason::Violation
            )]
        );
        assert!(found[0].2.contains("20000"), "{found:?}");
    }

    // kube-scheduler: --profiling=true after --profiling=false.
    drop(_scheduler);
    {
        let _scheduler = Restarted::with(
            "kube-scheduler",
            "KB_SCHEDULER_EXTRA_FLAGS",
            "--profiling=true",
        );
        assert_eq!(
            verdicts(&findings(&observe())),
            [("scheduler.profiling", DriftReason::Violation)]
        );
    }
    // With --config the scheduler ignores --profiling: enableProfiling decides, both ways.
    let config = cluster_dir().join("cis-scheduler.yaml");
    for (enable, want) in [
        (false, vec![]),
        (true, vec![("scheduler.profiling", DriftReason::Violation)]),
    ] {
        std::fs::write(
            &config,
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: {}\nleaderElection:\n  leaderElect: false\nenableProfiling: {enable}\n",
                cluster_dir().join("kubeconfig").display()
            ),
        )
        .expect("write scheduler config");
        let flags = format!("--config={} --profiling={}", config.display(), !enable);
        let _scheduler = Restarted::with("kube-scheduler", "KB_SCHEDULER_EXTRA_FLAGS", &flags);
        let report = observe();
        assert_eq!(
            report.spec.scheduler.config_file,
            config.display().to_string()
        );
        let found = findings(&report);
        assert_eq!(verdicts(&found), want, "enableProfiling: {enable}");
    }

    // etcd: --client-cert-auth=false beside its --trusted-ca-file. kube-bench fails CIS 2.2
    // on the flag; etcd still asks for and verifies client certificates, so no finding.
    {
        let _etcd = Restarted::with("etcd", "KB_ETCD_EXTRA_FLAGS", "--client-cert-auth=false");
        let report = observe();
        assert_eq!(findings(&report), Vec::new());
        // The live probe agrees: refused.
        assert_eq!(
            report.spec.api_server.etcd_probe.outcome,
            ProbeOutcome::Refused,
            "{:?}",
            report.spec.api_server.etcd_probe
        );
        assert!(
            !etcd_answers_without_client_cert(),
            "etcd still refuses a client without a certificate"
        );
    }
    // ... and without a trusted CA too: client certificates are not required any more (and
    // etcd has no CA of its own).
    {
        let _etcd = Restarted::with(
            "etcd",
            "KB_ETCD_EXTRA_FLAGS",
            "--client-cert-auth=false --trusted-ca-file=",
        );
        let found = findings(&observe());
        assert_eq!(
            verdicts(&found),
            [
                ("etcd.client-cert-auth", DriftReason::Violation),
                ("etcd.client-cert-required-live", DriftReason::Violation),
                ("etcd.distinct-ca", DriftReason::Violation),
            ]
        );
        assert!(
            found[1]
                .2
                .starts_with("etcd answered a client without a certificate"),
            "{found:?}"
        );
        assert!(
            etcd_answers_without_client_cert(),
            "the finding is real: etcd answers a client without a certificate"
        );
    }
    // etcd trusting the Kubernetes CA beside its own (CIS 2.7).
    {
        let bundle = cluster_dir().join("cis-etcd-and-kubernetes-ca.crt");
        let pem = [
            std::fs::read_to_string(pki("etcd-ca.crt")).expect("etcd CA"),
            std::fs::read_to_string(pki("ca.crt")).expect("Kubernetes CA"),
        ]
        .concat();
        std::fs::write(&bundle, pem).expect("write bundle");
        let flag = format!("--trusted-ca-file={}", bundle.display());
        let _etcd = Restarted::with("etcd", "KB_ETCD_EXTRA_FLAGS", &flag);
        let report = observe();
        assert_eq!(report.spec.etcd.trusted_ca_is_kubernetes_ca, Some(true));
        let found = findings(&report);
        assert_eq!(
            verdicts(&found),
            [("etcd.distinct-ca", DriftReason::Violation)]
        );
    }
    // Restored: compliant again (the scheduler is stopped by its guard's drop, then
    // started compliant; stop it for good afterwards).
    assert_eq!(findings(&observe()), Vec::new());
    cluster(&["stop", "kube-scheduler"]);
}
