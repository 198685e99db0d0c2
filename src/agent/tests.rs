//! The agent against a fake host built in a temporary directory: fake /proc entries for
//! the kubelet and kube-apiserver, and the files their flags point at.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::api::{
    AuditPolicySettings, AuditProfile, DriftReason, EnforcementState, EnforcementTarget,
    KubeletAuthorizationMode, ObservationState, SecurityBaselineSpec,
};
use crate::domain::node::{audit_policy, evaluate};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/nodes/", $name))
    };
}

const KUBELET_PID: u32 = 812;
const APISERVER_PID: u32 = 1404;
const POLICY_PATH: &str = "/etc/kubernetes/audit/policy.yaml";
/// 2020-01-01: mtime of every file the tests write.
const FILES_2020: u64 = 1_577_836_800;
/// 2021-01-01: boot time of the fake host.
const BOOT_2021: u64 = 1_609_459_200;

/// A fake host root; removed when dropped.
struct FakeHost {
    root: PathBuf,
}

impl FakeHost {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let root = std::env::temp_dir().join(format!(
            "kube-baseline-agent-{name}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(root.join("proc")).unwrap();
        let host = Self { root };
        // Booted in 2021: the fake processes started after the fixture files (2020) and
        // before anything the agent writes (now).
        host.boot_time(BOOT_2021);
        host
    }

    fn host(&self) -> Host {
        Host::new(&self.root)
    }

    fn path(&self, host_path: &str) -> PathBuf {
        self.root.join(host_path.trim_start_matches('/'))
    }

    /// Writes a host file dated 2020-01-01 (older than the fake processes), and dates the
    /// directories it is in the same way (adding an entry moves a directory's time).
    fn file(&self, host_path: &str, content: &str) -> &Self {
        let path = self.path(host_path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, content).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(UNIX_EPOCH + Duration::from_secs(FILES_2020))
            .unwrap();
        for dir in path.ancestors().skip(1) {
            if !dir.starts_with(&self.root) {
                break;
            }
            self.date_dir(dir, UNIX_EPOCH + Duration::from_secs(FILES_2020));
        }
        self
    }

    /// Sets a directory's modification time.
    fn date_dir(&self, dir: &Path, at: SystemTime) {
        fs::File::open(dir).unwrap().set_modified(at).unwrap();
    }

    /// Sets a host file's modification time.
    fn touch(&self, host_path: &str, at: SystemTime) -> &Self {
        fs::File::options()
            .write(true)
            .open(self.path(host_path))
            .unwrap()
            .set_modified(at)
            .unwrap();
        self
    }

    /// /proc/uptime saying the host booted at `boot`, read against the real clock.
    fn uptime_since(&self, boot: SystemTime) {
        let up = SystemTime::now().duration_since(boot).unwrap();
        self.file(
            "/proc/uptime",
            &format!("{}.{:02} 1.00\n", up.as_secs(), up.subsec_millis() / 10),
        );
    }

    fn read(&self, host_path: &str) -> String {
        fs::read_to_string(self.path(host_path)).unwrap()
    }

    fn boot_time(&self, btime: u64) {
        self.file(
            "/proc/stat",
            &format!("cpu  1 2 3 4\nbtime {btime}\nprocesses 99\n"),
        );
    }

    /// A process: /proc/<pid>/cmdline from one argument per line, /proc/<pid>/stat
    /// saying it started 100 s after boot.
    fn process(&self, pid: u32, cmdline: &str) -> &Self {
        let raw: String = cmdline.lines().map(|arg| format!("{arg}\0")).collect();
        self.file(&format!("/proc/{pid}/cmdline"), &raw);
        self.file(
            &format!("/proc/{pid}/stat"),
            &format!(
                "{pid} (proc) S 1 {pid} {pid} 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 12 0 10000 1000 200"
            ),
        );
        self
    }

    /// A kubeadm control-plane node: kubelet with config and drop-ins, kube-apiserver with
    /// hardened flags, its audit policy and encryption config.
    fn control_plane(name: &str) -> Self {
        let host = Self::new(name);
        host.process(KUBELET_PID, fixture!("kubelet/kubeadm-cmdline.txt"))
            .process(APISERVER_PID, fixture!("apiserver/hardened-cmdline.txt"))
            .process(1, "/sbin/init\n")
            .file(
                "/var/lib/kubelet/config.yaml",
                fixture!("kubelet/kubeadm-config.yaml"),
            )
            .file(
                "/etc/kubernetes/kubelet.conf.d/10-hardening.conf",
                fixture!("kubelet/kubelet.conf.d/10-hardening.conf"),
            )
            .file(
                "/etc/kubernetes/kubelet.conf.d/20-debug.conf",
                fixture!("kubelet/kubelet.conf.d/20-debug.conf"),
            )
            .file(
                "/etc/kubernetes/kubelet.conf.d/nested/30-late.conf",
                fixture!("kubelet/kubelet.conf.d/nested/30-late.conf"),
            )
            .file("/etc/kubernetes/kubelet.conf.d/README", "not a drop-in\n")
            .file(
                "/etc/kubernetes/kubelet.conf.d/15-disabled.conf.bak",
                fixture!("kubelet/kubelet.conf.d/15-disabled.conf.bak"),
            )
            .file(POLICY_PATH, fixture!("audit/strong-policy.yaml"))
            .file(
                "/etc/kubernetes/enc/encryption.yaml",
                fixture!("encryption/aescbc.yaml"),
            );
        // /proc entries that are not processes, or vanish, are skipped.
        host.file("/proc/self/cmdline", "");
        fs::create_dir_all(host.path("/proc/77")).unwrap();
        host
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn run(host: &FakeHost, desired: &Desired, enforce: bool) -> PassOutcome {
    pass(
        &host.host(),
        &HostOptions::default(),
        "cp-1",
        desired,
        enforce,
    )
}

fn baseline_policy(profile: AuditProfile) -> String {
    audit_policy::render_policy_yaml(&AuditPolicySettings {
        profile,
        ..AuditPolicySettings::default()
    })
    .unwrap()
}

fn hardened_drop_in() -> String {
    kubelet::render_drop_in(&KubeletSettings {
        anonymous_auth: Some(false),
        read_only_port: Some(0),
        seccomp_default: Some(true),
        authorization_mode: Some(KubeletAuthorizationMode::Webhook),
        ..KubeletSettings::default()
    })
    .unwrap()
    .unwrap()
}

#[test]
fn discovers_kubelet_and_apiserver_from_proc_and_reads_their_files() {
    let host = FakeHost::control_plane("discover");
    let report = run(&host, &Desired::default(), false).report;

    assert_eq!(report.node_name, "cp-1");
    let kubelet = &report.kubelet;
    assert_eq!(
        kubelet.header.state,
        ObservationState::Observed,
        "{}",
        kubelet.header.message
    );
    assert_eq!(kubelet.config_file, "/var/lib/kubelet/config.yaml");
    assert_eq!(kubelet.config_dir, "/etc/kubernetes/kubelet.conf.d");
    assert_eq!(
        kubelet.drop_ins,
        ["10-hardening.conf", "20-debug.conf", "nested/30-late.conf"]
    );
    assert_eq!(
        kubelet.settings.anonymous_auth,
        Some(true),
        "20-debug.conf reopened it"
    );
    assert_eq!(kubelet.settings.protect_kernel_defaults, Some(true));
    assert_eq!(
        kubelet.settings.rotate_certificates,
        Some(true),
        "the .bak file is ignored"
    );
    assert!(
        !kubelet.pending_restart,
        "the kubelet started after its files were written"
    );

    let api = &report.api_server;
    assert_eq!(api.header.state, ObservationState::Observed);
    assert_eq!(api.flag("authorization-mode"), Some("Node,RBAC"));
    assert_eq!(api.flag("audit-log-maxage"), Some("30"));
    // Only the flags the checks read are reported (paths, never a file's content).
    assert_eq!(api.flag("advertise-address"), None);
    assert_eq!(
        api.flag("tls-private-key-file"),
        Some("/etc/kubernetes/pki/apiserver.key")
    );
    assert_eq!(api.audit_policy.header.state, ObservationState::Observed);
    assert_eq!(api.audit_policy.rules.len(), 7);
    assert!(!api.audit_policy.managed);
    assert_eq!(api.encryption.secrets_providers, ["aescbc", "identity"]);
    assert!(observe::schema_violations(&report).is_empty());

    // The report is what the domain evaluates.
    let spec: SecurityBaselineSpec = serde_saphyr::from_str(
        "auditPolicy: {profile: Baseline}\nkubelet:\n  settings: {anonymousAuth: false, seccompDefault: true}\ncontrolPlane:\n  apiServer: {anonymousAuth: false, requireAuthorizationModes: [Node, RBAC], requireAdmissionPlugins: [NodeRestriction], encryptionAtRest: true}\n  etcd: {clientTLS: true}\n",
    )
    .unwrap();
    let drift = evaluate::evaluate_node(&report, &spec, &BTreeMap::new());
    let checks: Vec<(&str, DriftReason)> =
        drift.iter().map(|d| (d.check.as_str(), d.reason)).collect();
    assert_eq!(
        checks,
        [
            (
                audit_policy::check_ids::POLICY_MATCHES,
                DriftReason::Violation
            ),
            (kubelet::check_ids::ANONYMOUS_AUTH, DriftReason::Violation),
            (kubelet::check_ids::SECCOMP_DEFAULT, DriftReason::Violation),
        ]
    );
}

#[test]
fn a_worker_without_processes_reports_not_found_and_the_checks_are_unknown() {
    let host = FakeHost::new("empty");
    host.process(1, "/sbin/init\n");
    let report = run(&host, &Desired::default(), false).report;
    assert_eq!(report.kubelet.header.state, ObservationState::NotFound);
    assert_eq!(report.api_server.header.state, ObservationState::NotFound);
    let spec: SecurityBaselineSpec =
        serde_saphyr::from_str("kubelet:\n  settings: {anonymousAuth: false}\n").unwrap();
    let drift = evaluate::evaluate_node(&report, &spec, &BTreeMap::new());
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0].reason, DriftReason::Unknown);
    assert_eq!(drift[0].message, "no kubelet process found on the node");
}

#[test]
fn unreadable_proc_is_an_error_not_a_pass() {
    let host = FakeHost::new("noproc");
    fs::remove_dir_all(host.path("/proc")).unwrap();
    let report = run(&host, &Desired::default(), false).report;
    assert_eq!(report.kubelet.header.state, ObservationState::Error);
    assert_eq!(report.api_server.header.state, ObservationState::Error);
    assert!(
        report.kubelet.header.message.contains("cannot list"),
        "{}",
        report.kubelet.header.message
    );
}

#[test]
fn explicit_paths_override_discovery() {
    let host = FakeHost::new("overrides");
    host.file("/srv/kubelet.yaml", fixture!("kubelet/weak-config.yaml"))
        .file("/srv/drop-ins/50-fix.conf", &hardened_drop_in())
        .file(
            "/etc/kubernetes/manifests/kube-apiserver.yaml",
            fixture!("apiserver/kube-apiserver.yaml"),
        )
        .file("/srv/policy.yaml", &baseline_policy(AuditProfile::Baseline));
    let options = HostOptions {
        kubelet_config: Some("/srv/kubelet.yaml".to_owned()),
        kubelet_config_dir: Some("/srv/drop-ins".to_owned()),
        apiserver_flags_file: Some("/etc/kubernetes/manifests/kube-apiserver.yaml".to_owned()),
        audit_policy_file: Some("/srv/policy.yaml".to_owned()),
        ..HostOptions::default()
    };
    let report = pass(&host.host(), &options, "n", &Desired::default(), false).report;
    assert_eq!(
        report.kubelet.header.state,
        ObservationState::Observed,
        "{}",
        report.kubelet.header.message
    );
    assert_eq!(report.kubelet.settings.anonymous_auth, Some(false));
    assert_eq!(report.kubelet.settings.read_only_port, Some(0));
    assert_eq!(
        report.kubelet.settings.make_iptables_util_chains,
        Some(false),
        "from the weak config"
    );
    assert_eq!(report.api_server.header.state, ObservationState::Observed);
    assert_eq!(report.api_server.flag("anonymous-auth"), Some("false"));
    // The audit policy comes from the override, not from the manifest's flag.
    assert_eq!(report.api_server.audit_policy.path, "/srv/policy.yaml");
    assert!(report.api_server.audit_policy.managed);
}

#[test]
fn unreadable_files_become_unknown_checks() {
    let host = FakeHost::control_plane("unreadable");
    fs::remove_file(host.path(POLICY_PATH)).unwrap();
    fs::remove_file(host.path("/var/lib/kubelet/config.yaml")).unwrap();
    let report = run(&host, &Desired::default(), false).report;
    assert_eq!(report.kubelet.header.state, ObservationState::Error);
    assert!(
        report
            .kubelet
            .header
            .message
            .contains("/var/lib/kubelet/config.yaml"),
        "{}",
        report.kubelet.header.message
    );
    assert_eq!(
        report.api_server.audit_policy.header.state,
        ObservationState::Error
    );
    assert!(
        report
            .api_server
            .audit_policy
            .header
            .message
            .contains(POLICY_PATH)
    );
    let spec: SecurityBaselineSpec =
        serde_saphyr::from_str("auditPolicy: {}\nkubelet:\n  settings: {readOnlyPort: 0}\n")
            .unwrap();
    let drift = evaluate::evaluate_node(&report, &spec, &BTreeMap::new());
    let unknown: Vec<&str> = drift
        .iter()
        .filter(|d| d.reason == DriftReason::Unknown)
        .map(|d| d.check.as_str())
        .collect();
    assert_eq!(
        unknown,
        [
            audit_policy::check_ids::POLICY_COVERAGE,
            audit_policy::check_ids::POLICY_MATCHES,
            kubelet::check_ids::READ_ONLY_PORT,
        ]
    );
}

#[test]
fn enforce_writes_once_then_reports_pending_restart_until_restart() {
    let host = FakeHost::control_plane("enforce");
    let policy = baseline_policy(AuditProfile::Strict);
    let drop_in = hardened_drop_in();
    let desired = Desired {
        audit_policy: Want::Content(policy.clone()),
        kubelet_drop_in: Want::Content(drop_in.clone()),
        kubelet_notes: Vec::new(),
    };

    let first = run(&host, &desired, true);
    assert_eq!(
        first.written,
        [
            POLICY_PATH,
            "/etc/kubernetes/kubelet.conf.d/90-kube-baseline.conf"
        ]
    );
    assert_eq!(host.read(POLICY_PATH), policy);
    assert_eq!(
        host.read("/etc/kubernetes/kubelet.conf.d/90-kube-baseline.conf"),
        drop_in
    );
    // No temporary files are left behind.
    let leftovers: Vec<_> = fs::read_dir(host.path("/etc/kubernetes/audit"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let report = &first.report;
    assert!(report.enforce);
    assert!(
        report
            .enforcement
            .iter()
            .all(|e| e.state == EnforcementState::InSync)
    );
    assert_eq!(report.enforcement.len(), 2);
    // The files are newer than the running processes: written, not yet in effect.
    assert!(report.kubelet.pending_restart);
    assert!(report.api_server.audit_policy.pending_restart);
    assert!(report.api_server.pending_restart);
    assert!(report.api_server.audit_policy.managed);
    // The drop-in wins over 20-debug.conf on disk.
    assert_eq!(report.kubelet.settings.anonymous_auth, Some(false));
    assert_eq!(
        report.kubelet.drop_ins.last().map(String::as_str),
        Some("nested/30-late.conf")
    );

    // Second pass: nothing to write, same observations.
    let second = run(&host, &desired, true);
    assert!(second.written.is_empty());
    assert_eq!(second.report, first.report);

    // The admin restarts both (they now started after the files were written).
    let later = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    host.boot_time(later);
    let third = run(&host, &desired, true);
    assert!(third.written.is_empty());
    assert!(!third.report.kubelet.pending_restart);
    assert!(!third.report.api_server.pending_restart);

    let spec: SecurityBaselineSpec = serde_saphyr::from_str(
        "auditPolicy: {profile: Strict}\nkubelet:\n  settings: {anonymousAuth: false, readOnlyPort: 0, seccompDefault: true, authorizationMode: Webhook}\n",
    )
    .unwrap();
    // nested/30-late.conf sorts after 90-kube-baseline.conf in the kubelet's walk and
    // deletes seccompDefault again (back to its default, false): the agent does not hide
    // that, it names the file.
    let drift = evaluate::evaluate_node(&third.report, &spec, &BTreeMap::new());
    assert_eq!(drift.len(), 1, "{drift:#?}");
    assert_eq!(drift[0].check, kubelet::check_ids::SECCOMP_DEFAULT);
    assert_eq!(drift[0].reason, DriftReason::Violation);
    assert!(
        drift[0]
            .message
            .contains("from default (drop-in nested/30-late.conf set it to null)")
    );
    // Before the restart the passing checks were Unknown, not passing.
    let pending = evaluate::evaluate_node(&first.report, &spec, &BTreeMap::new());
    let unknown: Vec<&str> = pending
        .iter()
        .filter(|d| d.reason == DriftReason::Unknown)
        .map(|d| d.check.as_str())
        .collect();
    assert_eq!(
        unknown,
        [
            audit_policy::check_ids::POLICY_COVERAGE,
            audit_policy::check_ids::POLICY_MATCHES,
            kubelet::check_ids::ANONYMOUS_AUTH,
            kubelet::check_ids::AUTHORIZATION_MODE,
            kubelet::check_ids::READ_ONLY_PORT,
        ]
    );
}

#[test]
fn without_enforce_a_foreign_policy_is_reported_not_replaced() {
    let host = FakeHost::control_plane("foreign");
    let foreign = host.read(POLICY_PATH);
    let desired = Desired {
        audit_policy: Want::Content(baseline_policy(AuditProfile::Baseline)),
        kubelet_drop_in: Want::Content(hardened_drop_in()),
        kubelet_notes: vec![
            "readOnlyPort: baseline a wants 0, baseline b wants 10255; not written".to_owned(),
        ],
    };
    let outcome = run(&host, &desired, false);
    assert!(outcome.written.is_empty());
    assert_eq!(host.read(POLICY_PATH), foreign, "untouched");
    assert!(
        !host
            .path("/etc/kubernetes/kubelet.conf.d/90-kube-baseline.conf")
            .exists()
    );

    let report = &outcome.report;
    assert!(!report.enforce);
    let policy = report
        .enforcement
        .iter()
        .find(|e| e.target == EnforcementTarget::AuditPolicy)
        .unwrap();
    assert_eq!(policy.state, EnforcementState::Drifted);
    assert_eq!(policy.path, POLICY_PATH);
    assert!(
        policy.message.contains("not written by kube-baseline"),
        "{}",
        policy.message
    );
    let drop_in = report
        .enforcement
        .iter()
        .find(|e| e.target == EnforcementTarget::KubeletDropIn)
        .unwrap();
    assert_eq!(drop_in.state, EnforcementState::Drifted);
    assert!(
        drop_in.message.contains("missing") && drop_in.message.contains("baseline b wants 10255")
    );

    // The controller reports the difference as drift on the node.
    let spec: SecurityBaselineSpec =
        serde_saphyr::from_str("auditPolicy: {profile: Baseline}\n").unwrap();
    let drift = evaluate::evaluate_node(report, &spec, &BTreeMap::new());
    let matches = drift
        .iter()
        .find(|d| d.check == audit_policy::check_ids::POLICY_MATCHES)
        .unwrap();
    assert_eq!(matches.reason, DriftReason::Violation);
    assert!(matches.message.contains("(not written by kube-baseline)"));
}

#[test]
fn enforce_is_skipped_where_nothing_can_be_written() {
    let host = FakeHost::new("skipped");
    host.process(
        KUBELET_PID,
        "/usr/bin/kubelet\n--config=/var/lib/kubelet/config.yaml\n",
    )
    .process(APISERVER_PID, fixture!("apiserver/kubeadm-cmdline.txt"))
    .file(
        "/var/lib/kubelet/config.yaml",
        fixture!("kubelet/kubeadm-config.yaml"),
    );
    let desired = Desired {
        audit_policy: Want::Content(baseline_policy(AuditProfile::Baseline)),
        kubelet_drop_in: Want::Content(hardened_drop_in()),
        kubelet_notes: Vec::new(),
    };
    let outcome = run(&host, &desired, true);
    assert!(outcome.written.is_empty());
    let states: Vec<(EnforcementTarget, EnforcementState)> = outcome
        .report
        .enforcement
        .iter()
        .map(|e| (e.target, e.state))
        .collect();
    assert_eq!(
        states,
        [
            (EnforcementTarget::AuditPolicy, EnforcementState::Skipped),
            (EnforcementTarget::KubeletDropIn, EnforcementState::Skipped),
        ]
    );
    assert!(
        outcome.report.enforcement[1]
            .message
            .contains("--config-dir")
    );
}

#[test]
fn unknown_desired_state_touches_nothing_and_a_stale_drop_in_is_removed() {
    let host = FakeHost::control_plane("stale");
    let drop_in_path = "/etc/kubernetes/kubelet.conf.d/90-kube-baseline.conf";
    host.file(drop_in_path, &hardened_drop_in());

    // Cluster unreachable: no entries, no writes, no removal.
    let outcome = run(&host, &Desired::default(), true);
    assert!(outcome.report.enforcement.is_empty());
    assert!(host.path(drop_in_path).exists());

    // No baseline wants kubelet settings any more: reported without --enforce...
    let desired = Desired {
        kubelet_drop_in: Want::Absent,
        ..Desired::default()
    };
    let outcome = run(&host, &desired, false);
    assert_eq!(
        outcome.report.enforcement[0].state,
        EnforcementState::Drifted
    );
    assert!(host.path(drop_in_path).exists());
    // ...and removed with it.
    let outcome = run(&host, &desired, true);
    assert_eq!(outcome.removed, [drop_in_path]);
    assert!(!host.path(drop_in_path).exists());
    assert!(
        !outcome
            .report
            .kubelet
            .drop_ins
            .contains(&"90-kube-baseline.conf".to_owned())
    );

    // A drop-in someone else wrote under that name is never removed.
    host.file(
        drop_in_path,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
    );
    let outcome = run(&host, &desired, true);
    assert!(outcome.removed.is_empty());
    assert!(host.path(drop_in_path).exists());
}

#[test]
fn a_policy_too_large_for_the_schema_is_reported_as_an_error() {
    let host = FakeHost::control_plane("large");
    let mut text = String::from("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n");
    for i in 0..300 {
        text.push_str(&format!("- level: None\n  users: [user-{i}]\n"));
    }
    text.push_str("- level: Metadata\n");
    host.file(POLICY_PATH, &text);
    let report = run(&host, &Desired::default(), false).report;
    let policy = &report.api_server.audit_policy;
    assert_eq!(policy.header.state, ObservationState::Error);
    assert!(
        policy.header.message.contains("too large to report"),
        "{}",
        policy.header.message
    );
    assert!(policy.rules.is_empty());
    assert_eq!(policy.path, POLICY_PATH);
    assert!(observe::schema_violations(&report).is_empty());
}

#[test]
fn observations_from_texts_for_check() {
    // What `kube-baseline check` does with files a user gives it: no host, no /proc.
    let sources = NodeSources {
        node_name: "offline".to_owned(),
        kubelet: observe::Found::Found(observe::KubeletSources {
            args: Vec::new(),
            config: Some(SourceFile::text(
                "kubelet.yaml",
                fixture!("kubelet/kubeadm-config.yaml"),
            )),
            config_dir: Some("kubelet.conf.d".to_owned()),
            drop_ins: Ok(vec![SourceFile::text(
                "10-hardening.conf",
                fixture!("kubelet/kubelet.conf.d/10-hardening.conf"),
            )]),
            config_dir_changed_after_start: false,
            note: String::new(),
        }),
        api_server: observe::Found::Found(observe::ApiServerSources {
            args: fixture!("apiserver/hardened-cmdline.txt")
                .lines()
                .skip(1)
                .map(str::to_owned)
                .collect(),
            audit_policy: Some(SourceFile::text(
                "policy.yaml",
                baseline_policy(AuditProfile::Baseline),
            )),
            encryption_config: Some(SourceFile::text(
                "encryption.yaml",
                fixture!("encryption/wildcard-kms.yaml"),
            )),
            ..observe::ApiServerSources::default()
        }),
        ..NodeSources::default()
    };
    let report = observe(&sources);
    let spec: SecurityBaselineSpec = serde_saphyr::from_str(
        "auditPolicy: {profile: Baseline}\nkubelet:\n  settings: {anonymousAuth: false, seccompDefault: true, protectKernelDefaults: true}\ncontrolPlane:\n  apiServer: {anonymousAuth: false, requireAuthorizationModes: [Node, RBAC], requireAdmissionPlugins: [NodeRestriction], encryptionAtRest: true}\n  etcd: {clientTLS: true}\n",
    )
    .unwrap();
    assert_eq!(
        evaluate::evaluate_node(&report, &spec, &BTreeMap::new()),
        Vec::new()
    );
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
    assert!(parse_duration("0s").is_err());
    assert!(parse_duration("1d").is_err());
    assert!(parse_duration("soon").is_err());
}

#[test]
fn report_object_is_owned_by_the_node_and_labelled() {
    let node = Node {
        metadata: ObjectMeta {
            name: Some("cp-1".to_owned()),
            uid: Some("1234".to_owned()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    let object = report_object(
        NodeReportSpec {
            node_name: "cp-1".to_owned(),
            ..NodeReportSpec::default()
        },
        Some(&node),
    );
    assert_eq!(object.metadata.name.as_deref(), Some("cp-1"));
    let owner = &object.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Node", "1234"));
    assert_eq!(
        object
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(MANAGED_BY_LABEL)
            .map(String::as_str),
        Some(MANAGED_BY_VALUE)
    );
    let value = serde_json::to_value(&object).unwrap();
    assert_eq!(value["apiVersion"], "kube-baseline.dev/v1alpha1");
    assert_eq!(value["kind"], "NodeReport");
}

/// `ms` milliseconds after the fake boot (btime).
fn after_boot(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(BOOT_2021 * 1000 + ms)
}

const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

#[test]
fn a_file_written_in_the_second_its_process_started_is_not_pending_restart() {
    // The fake processes started 100 s after boot (10,000 ticks). btime is whole seconds:
    // the real boot was in [btime, btime + 1 s), so the start in [+100 s, +101.01 s). A
    // config tool that writes a file and restarts the component within one second (kubeadm,
    // e2e/cluster) leaves a file dated inside that window: it may predate the start.
    let host = FakeHost::control_plane("same-second");
    for at in [
        after_boot(100_000),
        after_boot(100_600),
        after_boot(101_010),
    ] {
        host.touch(KUBELET_CONFIG, at).touch(POLICY_PATH, at);
        let report = run(&host, &Desired::default(), false).report;
        assert!(!report.kubelet.pending_restart, "{at:?}");
        assert!(!report.api_server.audit_policy.pending_restart, "{at:?}");
    }
}

#[test]
fn a_file_written_after_the_latest_possible_start_is_pending_restart() {
    let host = FakeHost::control_plane("after-start");
    host.touch(KUBELET_CONFIG, after_boot(101_011))
        .touch(POLICY_PATH, after_boot(101_011));
    let report = run(&host, &Desired::default(), false).report;
    assert!(report.kubelet.pending_restart);
    assert!(report.api_server.audit_policy.pending_restart);
}

/// The kubelet's --config-dir in `FakeHost::control_plane`.
const DROP_IN_DIR: &str = "/etc/kubernetes/kubelet.conf.d";

#[test]
fn a_drop_in_removed_after_the_start_is_pending_restart() {
    // The kubelet merged the drop-in at its start and still runs with it; the file is gone.
    let host = FakeHost::control_plane("removed-drop-in");
    let drop_in = format!("{DROP_IN_DIR}/50-fix.conf");
    host.file(&drop_in, &hardened_drop_in());
    assert!(
        !run(&host, &Desired::default(), false)
            .report
            .kubelet
            .pending_restart
    );
    fs::remove_file(host.path(&drop_in)).unwrap();
    host.date_dir(&host.path(DROP_IN_DIR), after_boot(200_000));
    let report = run(&host, &Desired::default(), false).report;
    assert!(!report.kubelet.drop_ins.contains(&"50-fix.conf".to_owned()));
    assert!(
        report.kubelet.pending_restart,
        "the running kubelet still uses the removed drop-in"
    );
}

#[test]
fn a_drop_in_moved_in_with_an_old_modification_time_is_pending_restart() {
    // mv (or rsync -t, cp -p) keeps the file's old mtime; the directory's time moves.
    let host = FakeHost::control_plane("moved-drop-in");
    host.file("/staging/50-fix.conf", &hardened_drop_in());
    fs::create_dir_all(host.path(DROP_IN_DIR)).unwrap();
    fs::rename(
        host.path("/staging/50-fix.conf"),
        host.path(&format!("{DROP_IN_DIR}/50-fix.conf")),
    )
    .unwrap();
    host.date_dir(&host.path(DROP_IN_DIR), after_boot(200_000));
    let report = run(&host, &Desired::default(), false).report;
    assert!(report.kubelet.drop_ins.contains(&"50-fix.conf".to_owned()));
    assert!(
        report.kubelet.pending_restart,
        "the kubelet has never read the drop-in moved in after its start"
    );
}

#[test]
fn a_drop_in_dir_unchanged_since_the_start_is_not_pending_restart() {
    let host = FakeHost::control_plane("dir-before-start");
    host.file(&format!("{DROP_IN_DIR}/50-fix.conf"), &hardened_drop_in());
    host.date_dir(&host.path(DROP_IN_DIR), after_boot(100_500));
    assert!(
        !run(&host, &Desired::default(), false)
            .report
            .kubelet
            .pending_restart
    );
}

#[test]
fn with_proc_uptime_the_start_is_known_to_ten_milliseconds() {
    // /proc/uptime against the clock puts the boot at btime + 0.5 s (to 10 ms): the
    // processes started in [+100.5 s, +100.52 s] (plus the few ms this test takes).
    let host = FakeHost::control_plane("uptime");
    host.uptime_since(after_boot(500));
    host.touch(KUBELET_CONFIG, after_boot(100_450));
    let report = run(&host, &Desired::default(), false).report;
    assert!(!report.kubelet.pending_restart, "written before the start");
    host.touch(KUBELET_CONFIG, after_boot(100_700));
    let report = run(&host, &Desired::default(), false).report;
    assert!(
        report.kubelet.pending_restart,
        "written 0.2 s after the start, in the second btime cannot split"
    );
}

macro_rules! cert {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/nodes/certs/", $name))
    };
}

/// A host running the kube-apiserver and kubelet of another cluster (lower PIDs, older) and
/// of ours.
fn two_clusters(name: &str) -> FakeHost {
    let host = FakeHost::new(name);
    host.file("/other/apiserver.crt", cert!("apiserver-theirs.crt"))
        .file("/ours/apiserver.crt", cert!("apiserver-ours.crt"))
        .file(
            "/other/kubelet.conf",
            &kubeconfig_with_ca_file("/other/ca.crt"),
        )
        .file("/other/ca.crt", cert!("theirs-ca.crt"))
        .file("/ours/ca.crt", cert!("ours-ca.crt"))
        .file(
            "/ours/kubelet.conf",
            &kubeconfig_with_ca_file("/ours/ca.crt"),
        )
        .process(
            50,
            "/usr/bin/kube-apiserver\n--tls-cert-file=/other/apiserver.crt\n--anonymous-auth=true",
        )
        .process(60, "/usr/bin/kubelet\n--kubeconfig=/other/kubelet.conf")
        .process(
            500,
            "/usr/bin/kube-apiserver\n--tls-cert-file=/ours/apiserver.crt\n--anonymous-auth=false",
        )
        .process(600, "/usr/bin/kubelet\n--kubeconfig=/ours/kubelet.conf");
    host
}

fn kubeconfig_with_ca_file(path: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: {path}\n"
    )
}

/// The report an agent of the cluster with this CA makes of `host`.
fn observed_by(host: &FakeHost, ca_pem: &str) -> NodeReportSpec {
    let options = HostOptions {
        cluster_ca: membership::ClusterCa::from_pem(ca_pem).expect("CA"),
        ..HostOptions::default()
    };
    pass(&host.host(), &options, "n", &Desired::default(), false).report
}

#[test]
fn only_processes_of_the_agents_cluster_are_observed() {
    let host = two_clusters("two-clusters");
    let report = observed_by(&host, cert!("ours-ca.crt"));
    assert_eq!(report.api_server.header.state, ObservationState::Observed);
    assert_eq!(
        report.api_server.flag("anonymous-auth"),
        Some("false"),
        "our kube-apiserver (PID 500), not the other cluster's older one (PID 50)"
    );
    assert_eq!(report.kubelet.header.state, ObservationState::Observed);
    assert_eq!(report.api_server.header.message, "");

    // Seen from the other cluster's agent, the same host shows the other processes.
    let theirs = observed_by(&host, cert!("theirs-ca.crt"));
    assert_eq!(theirs.api_server.flag("anonymous-auth"), Some("true"));
}

#[test]
fn no_process_of_the_agents_cluster_is_not_found_whatever_else_runs() {
    let host = FakeHost::new("decoys");
    host.file("/other/apiserver.crt", cert!("apiserver-theirs.crt"))
        .process(
            50,
            "/usr/bin/kube-apiserver\n--tls-cert-file=/other/apiserver.crt",
        )
        // A kubelet-named process without a kubeconfig (a decoy, a standalone kubelet).
        .process(60, "/usr/bin/kubelet\n100000");
    let report = observed_by(&host, cert!("ours-ca.crt"));
    assert_eq!(report.api_server.header.state, ObservationState::NotFound);
    assert_eq!(report.kubelet.header.state, ObservationState::NotFound);
}

#[test]
fn several_kube_apiservers_of_the_cluster_are_named_in_the_report() {
    let host = two_clusters("upgrade");
    host.process(
        700,
        "/usr/bin/kube-apiserver\n--tls-cert-file=/ours/apiserver.crt\n--anonymous-auth=false",
    );
    let report = observed_by(&host, cert!("ours-ca.crt"));
    assert_eq!(
        report.api_server.header.message,
        "2 kube-apiserver processes of this cluster run on this node; observed PID 500 (the oldest), not PID 700"
    );
}

#[test]
fn the_clusters_kube_apiserver_is_asked_for_its_version_at_its_address_with_its_certificate() {
    let host = two_clusters("version-probe");
    host.process(
        500,
        "/usr/bin/kube-apiserver\n--tls-cert-file=/ours/apiserver.crt\n--bind-address=0.0.0.0\n--secure-port=16443",
    );
    let options = HostOptions {
        cluster_ca: membership::ClusterCa::from_pem(cert!("ours-ca.crt")).expect("CA"),
        host_ip: Some("10.0.0.5".to_owned()),
        ..HostOptions::default()
    };
    let outcome = pass(&host.host(), &options, "n", &Desired::default(), false);
    assert_eq!(
        outcome.version_probe,
        Some(Ok(version::VersionProbe {
            // Listening on every address: asked at the node's IP, not the other cluster's.
            address: "10.0.0.5:16443".parse().expect("address"),
            cert_path: "/ours/apiserver.crt".to_owned(),
            leaf: version::leaf_certificate(cert!("apiserver-ours.crt")).expect("leaf"),
        }))
    );
    let api = &outcome.report.api_server;
    assert_eq!(api.flag("bind-address"), Some("0.0.0.0"));
    assert_eq!(api.flag("secure-port"), Some("16443"));
    assert_eq!(
        (api.version.as_str(), api.version_message.as_str()),
        ("", ""),
        "the synchronous pass reads files only; the agent's loop asks"
    );

    // Without its serving certificate there is nothing to trust: it is not asked.
    let host = FakeHost::control_plane("version-no-cert");
    let outcome = run(&host, &Desired::default(), false);
    let why = outcome
        .version_probe
        .expect("a kube-apiserver was observed")
        .expect_err("no certificate");
    assert!(
        why.starts_with("cannot read the serving certificate to trust: "),
        "{why}"
    );
    assert!(why.contains("/etc/kubernetes/pki/apiserver.crt"), "{why}");

    // No kube-apiserver, nothing to ask.
    let host = FakeHost::new("version-worker");
    host.process(1, "/sbin/init\n");
    assert_eq!(run(&host, &Desired::default(), false).version_probe, None);
}

/// A control-plane node running our kube-apiserver, etcd, kube-controller-manager and
/// kube-scheduler, with older processes of the same names that are not ours. Our etcd has
/// a CA of its own (`trusted_ca`: its client --trusted-ca-file).
fn control_plane_components(name: &str, trusted_ca: &str) -> FakeHost {
    let host = FakeHost::new(name);
    host.file("/ours/apiserver.crt", cert!("apiserver-ours.crt"))
        .file("/ours/ca.crt", cert!("ours-ca.crt"))
        .file("/other/ca.crt", cert!("theirs-ca.crt"))
        // etcd's own CA issued its serving certificate.
        .file("/etcd/ca.crt", cert!("theirs-ca.crt"))
        .file("/etcd/server.crt", cert!("apiserver-theirs.crt"))
        .file("/ours/cm.conf", &kubeconfig_with_ca_file("/ours/ca.crt"))
        .file("/other/cm.conf", &kubeconfig_with_ca_file("/other/ca.crt"))
        .file(
            "/ours/scheduler.yaml",
            "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: /ours/cm.conf\nenableProfiling: false\n",
        )
        // Not ours: an etcd whose certificate our kube-apiserver's --etcd-cafile did not
        // issue, and components talking to another cluster.
        .process(
            40,
            "/usr/local/bin/etcd\n--cert-file=/ours/apiserver.crt\n--client-cert-auth=false",
        )
        .process(
            45,
            "kube-controller-manager\n--kubeconfig=/other/cm.conf\n--profiling=true",
        )
        .process(46, "kube-scheduler\n--kubeconfig=/other/cm.conf")
        .process(
            500,
            "/usr/bin/kube-apiserver\n--tls-cert-file=/ours/apiserver.crt\n--etcd-cafile=/etcd/ca.crt\n--client-ca-file=/ours/ca.crt",
        )
        .process(
            510,
            &format!(
                "etcd\n--cert-file=/etcd/server.crt\n--key-file=/etcd/server.key\n--client-cert-auth=true\n--trusted-ca-file={trusted_ca}\n--data-dir=/var/lib/etcd"
            ),
        )
        .process(
            520,
            "kube-controller-manager\n--kubeconfig=/ours/cm.conf\n--profiling=false\n--root-ca-file=/ours/ca.crt",
        )
        .process(
            530,
            "kube-scheduler\n--config=/ours/scheduler.yaml\n--profiling=true",
        );
    host
}

#[test]
fn the_clusters_controller_manager_scheduler_and_etcd_are_observed() {
    let host = control_plane_components("components", "/etcd/ca.crt");
    let report = observed_by(&host, cert!("ours-ca.crt"));
    let setting = |component: &crate::api::ComponentObservation, name: &str| {
        component.setting(name).map(|s| s.value.clone())
    };
    assert_eq!(
        report.controller_manager.header.state,
        ObservationState::Observed
    );
    assert_eq!(
        setting(&report.controller_manager, "profiling").as_deref(),
        Some("false"),
        "PID 520, not the other cluster's 45"
    );
    // Only checked flags are reported.
    assert_eq!(report.controller_manager.settings.len(), 2);
    let profiling = report.scheduler.setting("profiling").expect("profiling");
    assert_eq!(
        (profiling.value.as_str(), profiling.origin.as_str()),
        ("false", "enableProfiling in --config /ours/scheduler.yaml"),
        "--config wins over the ignored --profiling flag; membership through clientConnection.kubeconfig"
    );
    assert_eq!(report.scheduler.config_file, "/ours/scheduler.yaml");
    assert_eq!(report.etcd.header.state, ObservationState::Observed);
    assert_eq!(
        report
            .etcd
            .setting("client-cert-auth")
            .map(|s| s.value.as_str()),
        Some("true"),
        "PID 510, whose certificate chains to the kube-apiserver's --etcd-cafile"
    );
    assert!(report.etcd.setting("data-dir").is_none());
    assert_eq!(report.etcd.trusted_ca_is_kubernetes_ca, Some(false));

    // etcd trusting the Kubernetes CA (the kube-apiserver's --client-ca-file): CIS 2.7.
    let shared = control_plane_components("components-shared-ca", "/ours/ca.crt");
    let report = observed_by(&shared, cert!("ours-ca.crt"));
    assert_eq!(report.etcd.trusted_ca_is_kubernetes_ca, Some(true));
    // An unreadable CA file: not comparable, said why.
    let missing = control_plane_components("components-missing-ca", "/etcd/missing.crt");
    let report = observed_by(&missing, cert!("ours-ca.crt"));
    assert_eq!(report.etcd.trusted_ca_is_kubernetes_ca, None);
    assert!(
        report.etcd.trusted_ca_message.contains("--trusted-ca-file"),
        "{}",
        report.etcd.trusted_ca_message
    );
    assert!(observe::schema_violations(&report).is_empty());

    // Seen from the other cluster: its own kube-controller-manager; no etcd (no kube-apiserver
    // of that cluster here to say which etcd is its).
    let theirs = observed_by(&host, cert!("theirs-ca.crt"));
    assert_eq!(
        setting(&theirs.controller_manager, "profiling").as_deref(),
        Some("true")
    );
    assert_eq!(theirs.etcd.header.state, ObservationState::NotFound);
}

#[test]
fn an_invalid_scheduler_config_is_an_error_not_a_default() {
    let host = control_plane_components("components-bad-config", "/etcd/ca.crt");
    host.file(
        "/ours/scheduler.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nclientConnection:\n  kubeconfig: /ours/cm.conf\nenableProfiling: \"no\"\n",
    );
    let report = observed_by(&host, cert!("ours-ca.crt"));
    assert_eq!(report.scheduler.header.state, ObservationState::Error);
    assert!(
        report.scheduler.header.message.contains("enableProfiling"),
        "{}",
        report.scheduler.header.message
    );
}

#[test]
fn modes_and_owners_of_the_files_the_flags_name_are_reported() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let host = control_plane_components("components-files", "/etcd/ca.crt");
    std::fs::set_permissions(
        host.path("/ours/cm.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    host.file(
        "/proc/510/status",
        "Name:\tetcd\nUid:\t1000\t0\t0\t0\nGid:\t995\t996\t996\t996\n",
    );
    let report = observed_by(&host, cert!("ours-ca.crt"));
    let find = |role: &str| {
        report
            .files
            .iter()
            .find(|f| f.role == role)
            .unwrap_or_else(|| panic!("{role} in {:#?}", report.files))
    };
    let kubeconfig = find("kube-controller-manager --kubeconfig");
    assert_eq!(kubeconfig.path, "/ours/cm.conf");
    assert_eq!(kubeconfig.mode, "0640");
    let owner = std::fs::metadata(host.path("/ours/cm.conf")).expect("stat");
    assert_eq!(
        (kubeconfig.uid, kubeconfig.gid),
        (Some(owner.uid()), Some(owner.gid()))
    );
    // The scheduler's kubeconfig comes from its --config, and etcd's files from its flags.
    assert_eq!(find("kube-scheduler --kubeconfig").path, "/ours/cm.conf");
    let key = find("etcd --key-file");
    assert_eq!(key.header.state, ObservationState::NotFound);
    assert_eq!(find("etcd --data-dir").path, "/var/lib/etcd");
    assert_eq!(
        (report.etcd.run_as_uid, report.etcd.run_as_gid),
        (Some(0), Some(996)),
        "the effective IDs of /proc/510/status"
    );
    assert_eq!(find("kube-apiserver --client-ca-file").mode.len(), 4);
    // Not a file the flags of the other cluster's processes name.
    assert!(report.files.iter().all(|f| f.path != "/other/cm.conf"));
    assert!(observe::schema_violations(&report).is_empty());
}

#[test]
fn the_kubelets_files_are_stat_ed_where_its_flags_and_config_name_them() {
    use std::os::unix::fs::PermissionsExt;
    let host = two_clusters("kubelet-files");
    host.file(
        "/ours/kubelet-config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  x509:\n    clientCAFile: /ours/ca.crt\n",
    )
    .process(
        700,
        "/usr/bin/kubelet\n--kubeconfig=/ours/kubelet.conf\n--config=/ours/kubelet-config.yaml",
    );
    std::fs::set_permissions(
        host.path("/ours/kubelet-config.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let options = HostOptions {
        cluster_ca: membership::ClusterCa::from_pem(cert!("ours-ca.crt")).expect("CA"),
        ..HostOptions::default()
    };
    // The oldest kubelet of ours is PID 600 (no --config): point at PID 700's files instead.
    let report = pass(&host.host(), &options, "n", &Desired::default(), false).report;
    let roles: Vec<(&str, &str)> = report
        .files
        .iter()
        .filter(|f| f.role.starts_with("kubelet "))
        .map(|f| (f.role.as_str(), f.path.as_str()))
        .collect();
    assert_eq!(roles, [("kubelet --kubeconfig", "/ours/kubelet.conf")]);

    let host = FakeHost::new("kubelet-files-config");
    host.file("/ours/ca.crt", cert!("ours-ca.crt"))
        .file("/ours/kubelet.conf", &kubeconfig_with_ca_file("/ours/ca.crt"))
        .file(
            "/ours/kubelet-config.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  x509:\n    clientCAFile: /ours/ca.crt\n",
        )
        .process(
            700,
            "/usr/bin/kubelet\n--kubeconfig=/ours/kubelet.conf\n--config=/ours/kubelet-config.yaml",
        );
    std::fs::set_permissions(
        host.path("/ours/kubelet-config.yaml"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let report = pass(&host.host(), &options, "n", &Desired::default(), false).report;
    let files: Vec<(&str, &str, &str)> = report
        .files
        .iter()
        .map(|f| (f.role.as_str(), f.path.as_str(), f.mode.as_str()))
        .collect();
    assert!(
        files.contains(&("kubelet --config", "/ours/kubelet-config.yaml", "0644")),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .any(|(role, path, _)| *role == "kubelet clientCAFile" && *path == "/ours/ca.crt"),
        "clientCAFile from the merged configuration: {files:?}"
    );
}

#[test]
fn static_pod_manifests_in_the_kubelets_static_pod_path_are_stat_ed() {
    use crate::api::{DriftEntry, FileClass, FileSettings};
    use crate::domain::node::files;
    use std::os::unix::fs::PermissionsExt;
    // kubeadm's kubelet config says staticPodPath: /etc/kubernetes/manifests.
    let host = FakeHost::control_plane("static-pods");
    let manifest = |command: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: x, namespace: kube-system}}\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [{command}, --v=2]\n"
        )
    };
    host.file(
        "/etc/kubernetes/manifests/kube-apiserver.yaml",
        &manifest("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.36.3"),
    )
    // Named by its container's command, whatever the file's name.
    .file(
        "/etc/kubernetes/manifests/sched.yaml",
        &manifest("/usr/local/bin/kube-scheduler", "example.com/sched:1"),
    )
    // By its image when the command is not the program.
    .file(
        "/etc/kubernetes/manifests/etcd.json",
        r#"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"etcd","image":"registry.k8s.io/etcd:3.6.5-0@sha256:00","command":["/bin/sh","-c","exec etcd"]}]}}"#,
    )
    // Other workloads, hidden files and subdirectories are not control-plane manifests.
    .file(
        "/etc/kubernetes/manifests/haproxy.yaml",
        &manifest("haproxy", "haproxy:3"),
    )
    .file(
        "/etc/kubernetes/manifests/.kube-controller-manager.yaml.swp",
        &manifest("kube-controller-manager", "k"),
    )
    .file(
        "/etc/kubernetes/manifests/old/kube-controller-manager.yaml",
        &manifest("kube-controller-manager", "k"),
    );
    for (path, mode) in [
        ("/etc/kubernetes/manifests/kube-apiserver.yaml", 0o644),
        ("/etc/kubernetes/manifests/sched.yaml", 0o600),
        ("/etc/kubernetes/manifests/etcd.json", 0o600),
    ] {
        fs::set_permissions(host.path(path), fs::Permissions::from_mode(mode)).unwrap();
    }
    let report = run(&host, &Desired::default(), false).report;
    let manifests: Vec<(&str, &str, &str)> = report
        .files
        .iter()
        .filter(|f| f.class == FileClass::StaticPodManifest)
        .map(|f| (f.role.as_str(), f.path.as_str(), f.mode.as_str()))
        .collect();
    assert_eq!(
        manifests,
        [
            (
                "static pod etcd",
                "/etc/kubernetes/manifests/etcd.json",
                "0600"
            ),
            (
                "static pod kube-apiserver",
                "/etc/kubernetes/manifests/kube-apiserver.yaml",
                "0644"
            ),
            (
                "static pod kube-scheduler",
                "/etc/kubernetes/manifests/sched.yaml",
                "0600"
            ),
        ]
    );
    let settings = FileSettings {
        permissions: true,
        ownership: false,
    };
    let drift = files::evaluate_files("cp-1", &report, &settings);
    let manifest_findings: Vec<&DriftEntry> = drift
        .iter()
        .filter(|d| d.check == files::check_ids::STATIC_POD_MANIFEST_PERMISSIONS)
        .collect();
    assert_eq!(manifest_findings.len(), 1, "{drift:#?}");
    assert_eq!(manifest_findings[0].reason, DriftReason::Violation);
    assert!(
        manifest_findings[0].message.contains(
            "/etc/kubernetes/manifests/kube-apiserver.yaml (static pod kube-apiserver) is 0644"
        ),
        "{}",
        manifest_findings[0].message
    );
}
