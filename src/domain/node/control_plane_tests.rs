//! The kube-controller-manager, kube-scheduler and etcd checks on fixture command lines and
//! config files (kubeadm's defaults where the fixture is named so).

use std::collections::BTreeMap;

use super::control_plane::check_ids::*;
use super::control_plane::*;
use super::evaluate::{evaluate_node, unobserved_control_plane};
use super::flags::ProcessFlags;
use crate::api::{
    ComponentObservation, ControllerManagerSettings, DriftEntry, DriftReason, EtcdObservation,
    EtcdServerSettings, NodeReportSpec, Observation, ObservationState, SchedulerSettings,
    SecurityBaselineSpec,
};
use crate::domain::checks;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            "../../../tests/fixtures/nodes/control-plane/",
            $name
        ))
    };
}

fn flags(cmdline: &str) -> ProcessFlags {
    let args: Vec<&str> = cmdline.lines().skip(1).collect();
    ProcessFlags::parse(&args)
}

fn with_args(cmdline: &str, more: &[&str]) -> ProcessFlags {
    let mut args: Vec<&str> = cmdline.lines().skip(1).collect();
    args.extend_from_slice(more);
    ProcessFlags::parse(&args)
}

fn observed(settings: Vec<crate::api::ComponentSetting>) -> ComponentObservation {
    ComponentObservation {
        header: Observation::observed(String::new()),
        settings,
        ..ComponentObservation::default()
    }
}

fn verdicts(drift: &[DriftEntry]) -> Vec<(&str, DriftReason)> {
    drift.iter().map(|d| (d.check.as_str(), d.reason)).collect()
}

fn cm(flags: &ProcessFlags) -> Vec<DriftEntry> {
    evaluate_controller_manager(
        "cp-1",
        &observed(controller_manager_settings(flags)),
        &ControllerManagerSettings::default(),
    )
}

fn message<'a>(drift: &'a [DriftEntry], check: &str) -> &'a str {
    drift
        .iter()
        .find(|d| d.check == check)
        .map(|d| d.message.as_str())
        .unwrap_or_default()
}

#[test]
fn kubeadm_controller_manager_misses_the_gc_threshold_and_keeps_profiling_on() {
    let drift = cm(&flags(fixture!("kcm-kubeadm-cmdline.txt")));
    assert_eq!(
        verdicts(&drift),
        [
            (CM_TERMINATED_POD_GC, DriftReason::Violation),
            (CM_PROFILING, DriftReason::Violation),
        ]
    );
    assert!(message(&drift, CM_TERMINATED_POD_GC).contains("not set"));
    assert!(
        message(&drift, CM_PROFILING).contains("the default"),
        "{drift:#?}"
    );
    assert_eq!(cm(&flags(fixture!("kcm-hardened-cmdline.txt"))), Vec::new());
}

#[test]
fn controller_manager_flags_last_occurrence_wins() {
    let hardened = fixture!("kcm-hardened-cmdline.txt");
    // A flag repeated later overrides the compliant one, and the other way round.
    assert_eq!(
        verdicts(&cm(&with_args(hardened, &["--profiling=true"]))),
        [(CM_PROFILING, DriftReason::Violation)]
    );
    assert_eq!(
        verdicts(&cm(&with_args(
            hardened,
            &[
                "--bind-address=0.0.0.0",
                "--use-service-account-credentials=false"
            ]
        ))),
        [
            (CM_SERVICE_ACCOUNT_CREDENTIALS, DriftReason::Violation),
            (CM_BIND_ADDRESS, DriftReason::Violation),
        ]
    );
    assert_eq!(
        cm(&with_args(
            hardened,
            &["--bind-address=0.0.0.0", "--bind-address=::1"]
        )),
        Vec::new()
    );
    // A boolean never takes the next argument: `--profiling false` is --profiling=true.
    assert_eq!(
        verdicts(&cm(&with_args(hardened, &["--profiling", "false"]))),
        [(CM_PROFILING, DriftReason::Violation)]
    );
}

#[test]
fn controller_manager_feature_gates_merge_over_occurrences() {
    let hardened = fixture!("kcm-hardened-cmdline.txt");
    let off = with_args(
        hardened,
        &[
            "--feature-gates=RotateKubeletServerCertificate=false",
            "--feature-gates=SomeOtherGate=true",
        ],
    );
    let drift = cm(&off);
    assert_eq!(
        verdicts(&drift),
        [(CM_ROTATE_KUBELET_SERVER_CERT, DriftReason::Violation)]
    );
    let on_again = with_args(
        hardened,
        &[
            "--feature-gates=RotateKubeletServerCertificate=false,A=true",
            "--feature-gates=RotateKubeletServerCertificate=true",
        ],
    );
    assert_eq!(cm(&on_again), Vec::new());
    let invalid = with_args(
        hardened,
        &["--feature-gates=RotateKubeletServerCertificate=maybe"],
    );
    assert_eq!(
        verdicts(&cm(&invalid)),
        [(CM_ROTATE_KUBELET_SERVER_CERT, DriftReason::Unknown)]
    );
}

#[test]
fn terminated_pod_gc_threshold_bounds() {
    let hardened = fixture!("kcm-hardened-cmdline.txt");
    for (value, reason) in [
        ("12501", Some(DriftReason::Violation)),
        ("0", Some(DriftReason::Violation)),
        ("-1", Some(DriftReason::Violation)),
        ("ten", Some(DriftReason::Unknown)),
        ("12500", None),
    ] {
        let flag = format!("--terminated-pod-gc-threshold={value}");
        let drift = cm(&with_args(hardened, &[&flag]));
        assert_eq!(
            verdicts(&drift),
            reason
                .map(|r| vec![(CM_TERMINATED_POD_GC, r)])
                .unwrap_or_default(),
            "{value}"
        );
    }
    // A lower limit of the baseline's own.
    let strict: ControllerManagerSettings =
        serde_saphyr::from_str("maxTerminatedPodGCThreshold: 5\n").unwrap();
    let drift = evaluate_controller_manager(
        "cp-1",
        &observed(controller_manager_settings(&flags(hardened))),
        &strict,
    );
    assert_eq!(
        verdicts(&drift),
        [(CM_TERMINATED_POD_GC, DriftReason::Violation)]
    );
    assert!(message(&drift, CM_TERMINATED_POD_GC).contains("is 10; the baseline wants at most 5"));
}

#[test]
fn scheduler_profiling_comes_from_its_config_file_when_it_has_one() {
    let kubeadm = flags(fixture!("scheduler-kubeadm-cmdline.txt"));
    let defaults = SchedulerSettings::default();
    let drift = evaluate_scheduler(
        "cp-1",
        &observed(scheduler_settings(&kubeadm, None).unwrap()),
        &defaults,
    );
    assert_eq!(
        verdicts(&drift),
        [(SCHEDULER_PROFILING, DriftReason::Violation)]
    );

    // With --config the deprecated --profiling flag is ignored: enableProfiling decides.
    let config = (
        "/etc/kubernetes/scheduler.yaml",
        fixture!("scheduler-config.yaml"),
    );
    let with_flag = with_args(
        fixture!("scheduler-kubeadm-cmdline.txt"),
        &["--profiling=true"],
    );
    let settings = scheduler_settings(&with_flag, Some(config)).unwrap();
    assert_eq!(
        evaluate_scheduler("cp-1", &observed(settings.clone()), &defaults),
        Vec::new()
    );
    // ... and while that file changed after the start, its passing value is not trusted.
    let pending = ComponentObservation {
        pending_restart: true,
        ..observed(settings)
    };
    assert_eq!(
        verdicts(&evaluate_scheduler("cp-1", &pending, &defaults)),
        [(SCHEDULER_PROFILING, DriftReason::Unknown)]
    );
    // A config file without enableProfiling: the v1 default, true, even with --profiling=false.
    let no_key = (
        "/etc/kubernetes/scheduler.yaml",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\n",
    );
    let off_flag = with_args(
        fixture!("scheduler-kubeadm-cmdline.txt"),
        &["--profiling=false"],
    );
    let drift = evaluate_scheduler(
        "cp-1",
        &observed(scheduler_settings(&off_flag, Some(no_key)).unwrap()),
        &defaults,
    );
    assert_eq!(
        verdicts(&drift),
        [(SCHEDULER_PROFILING, DriftReason::Violation)]
    );
    // Without --config, the flag decides.
    let drift = evaluate_scheduler(
        "cp-1",
        &observed(scheduler_settings(&off_flag, None).unwrap()),
        &defaults,
    );
    assert_eq!(drift, Vec::new());
    // A file the scheduler would not start with is an error, not a default.
    for bad in [
        "apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n",
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nenableProfiling: \"false\"\n",
        "- not a mapping\n",
    ] {
        assert!(
            scheduler_settings(&off_flag, Some(("/s.yaml", bad))).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn scheduler_bind_address_defaults_to_every_address() {
    let drift = evaluate_scheduler(
        "cp-1",
        &observed(scheduler_settings(&ProcessFlags::parse(&["--profiling=false"]), None).unwrap()),
        &SchedulerSettings::default(),
    );
    assert_eq!(
        verdicts(&drift),
        [(SCHEDULER_BIND_ADDRESS, DriftReason::Violation)]
    );
    assert!(message(&drift, SCHEDULER_BIND_ADDRESS).contains("0.0.0.0"));
}

fn etcd_observed(
    settings: Vec<crate::api::ComponentSetting>,
    shared: Option<bool>,
) -> EtcdObservation {
    EtcdObservation {
        header: Observation::observed(String::new()),
        settings,
        trusted_ca_is_kubernetes_ca: shared,
        trusted_ca_message: if shared.is_none() {
            "kube-apiserver --client-ca-file: permission denied".to_owned()
        } else {
            String::new()
        },
        ..EtcdObservation::default()
    }
}

#[test]
fn kubeadm_etcd_is_compliant_with_its_own_ca() {
    let settings = etcd_settings(&flags(fixture!("etcd-kubeadm-cmdline.txt")), None).unwrap();
    let defaults = EtcdServerSettings::default();
    assert_eq!(
        evaluate_etcd(
            "cp-1",
            &etcd_observed(settings.clone(), Some(false)),
            &defaults
        ),
        Vec::new()
    );
    let drift = evaluate_etcd(
        "cp-1",
        &etcd_observed(settings.clone(), Some(true)),
        &defaults,
    );
    assert_eq!(
        verdicts(&drift),
        [(ETCD_DISTINCT_CA, DriftReason::Violation)]
    );
    assert!(message(&drift, ETCD_DISTINCT_CA).contains("/etc/kubernetes/pki/etcd/ca.crt"));
    // Not comparable: Unknown, never a pass.
    assert_eq!(
        verdicts(&evaluate_etcd(
            "cp-1",
            &etcd_observed(settings, None),
            &defaults
        )),
        [(ETCD_DISTINCT_CA, DriftReason::Unknown)]
    );
}

#[test]
fn etcd_flags_one_at_a_time() {
    let kubeadm = fixture!("etcd-kubeadm-cmdline.txt");
    let defaults = EtcdServerSettings::default();
    for (extra, want) in [
        // etcd asks for client certificates with a trusted CA even when
        // --client-cert-auth is false: only without both are they not required.
        (vec!["--client-cert-auth=false"], vec![]),
        (
            vec!["--client-cert-auth=false", "--trusted-ca-file="],
            vec![ETCD_CLIENT_CERT_AUTH, ETCD_DISTINCT_CA],
        ),
        (vec!["--peer-client-cert-auth=false"], vec![]),
        (
            vec!["--peer-client-cert-auth=false", "--peer-trusted-ca-file="],
            vec![ETCD_PEER_CLIENT_CERT_AUTH],
        ),
        // --auto-tls is ignored while a certificate and key are given.
        (vec!["--auto-tls"], vec![]),
        (
            vec!["--auto-tls", "--cert-file=", "--key-file="],
            vec![ETCD_CLIENT_CERT, ETCD_AUTO_TLS],
        ),
        (
            vec![
                "--peer-auto-tls=true",
                "--peer-cert-file=",
                "--peer-key-file=",
            ],
            vec![ETCD_PEER_CERT, ETCD_PEER_AUTO_TLS],
        ),
        (vec!["--cert-file="], vec![ETCD_CLIENT_CERT]),
        (vec!["--peer-key-file="], vec![ETCD_PEER_CERT]),
        (vec!["--trusted-ca-file="], vec![ETCD_DISTINCT_CA]),
        (vec!["--client-cert-auth=yes"], vec![ETCD_CLIENT_CERT_AUTH]),
    ] {
        let settings = etcd_settings(&with_args(kubeadm, &extra), None).unwrap();
        let drift = evaluate_etcd("cp-1", &etcd_observed(settings, Some(false)), &defaults);
        let got: Vec<&str> = drift.iter().map(|d| d.check.as_str()).collect();
        assert_eq!(got, want, "{extra:?}");
    }
    // A value etcd would not have parsed is Unknown, not a violation.
    let settings = etcd_settings(&with_args(kubeadm, &["--client-cert-auth=yes"]), None).unwrap();
    assert_eq!(
        verdicts(&evaluate_etcd(
            "cp-1",
            &etcd_observed(settings, Some(false)),
            &defaults
        )),
        [(ETCD_CLIENT_CERT_AUTH, DriftReason::Unknown)]
    );
    // etcd's boolean TLS flags default to false: without them (and without a peer CA)
    // peers are not asked for certificates.
    let bare = ProcessFlags::parse(&[
        "--cert-file=/s.crt",
        "--key-file=/s.key",
        "--peer-cert-file=/p.crt",
        "--peer-key-file=/p.key",
        "--trusted-ca-file=/ca.crt",
    ]);
    let drift = evaluate_etcd(
        "cp-1",
        &etcd_observed(etcd_settings(&bare, None).unwrap(), Some(false)),
        &defaults,
    );
    assert_eq!(
        verdicts(&drift),
        [(ETCD_PEER_CLIENT_CERT_AUTH, DriftReason::Violation)]
    );
    assert!(
        drift[0].message.contains("not set (default false)"),
        "{drift:#?}"
    );
}

#[test]
fn etcd_config_file_replaces_its_flags() {
    // Compliant flags, but --config-file wins: its peer section has no certificate, no CA
    // and turns auto TLS on.
    let args = flags(fixture!("etcd-kubeadm-cmdline.txt"));
    let config = ("/etc/etcd/etcd.yaml", fixture!("etcd-config.yaml"));
    let settings = etcd_settings(&args, Some(config)).unwrap();
    let peer_auth = settings
        .iter()
        .find(|s| s.name == "peer-client-cert-auth")
        .unwrap();
    assert_eq!(peer_auth.value, "false");
    assert_eq!(
        peer_auth.origin,
        "peer-transport-security.client-cert-auth in --config-file /etc/etcd/etcd.yaml"
    );
    let drift = evaluate_etcd(
        "cp-1",
        &etcd_observed(settings, Some(false)),
        &EtcdServerSettings::default(),
    );
    assert_eq!(
        verdicts(&drift),
        [
            (ETCD_PEER_CERT, DriftReason::Violation),
            (ETCD_PEER_CLIENT_CERT_AUTH, DriftReason::Violation),
            (ETCD_PEER_AUTO_TLS, DriftReason::Violation),
        ]
    );
    assert!(
        message(&drift, ETCD_PEER_AUTO_TLS)
            .contains("peer-transport-security.auto-tls in --config-file"),
        "{drift:#?}"
    );
    // A file without TLS sections: nothing set, the flags still ignored.
    let empty = etcd_settings(&args, Some(("/etc/etcd/etcd.yaml", "name: x\n"))).unwrap();
    assert_eq!(empty, Vec::new());
    assert!(
        etcd_settings(
            &args,
            Some((
                "/e.yaml",
                "client-transport-security:\n  client-cert-auth: [true]\n"
            ))
        )
        .is_err()
    );
}

#[test]
fn an_unobserved_component_is_unknown_for_each_requested_check() {
    let not_found = ComponentObservation {
        header: Observation::not_found("no kube-scheduler process of this cluster".to_owned()),
        ..ComponentObservation::default()
    };
    let drift = evaluate_scheduler("cp-1", &not_found, &SchedulerSettings::default());
    assert_eq!(
        verdicts(&drift),
        [
            (SCHEDULER_PROFILING, DriftReason::Unknown),
            (SCHEDULER_BIND_ADDRESS, DriftReason::Unknown),
        ]
    );
    assert!(
        drift[0]
            .message
            .contains("no kube-scheduler of this cluster found")
    );
    let error = EtcdObservation {
        header: Observation::error("/etc/etcd/etcd.yaml: not a YAML mapping".to_owned()),
        ..EtcdObservation::default()
    };
    let drift = evaluate_etcd("cp-1", &error, &EtcdServerSettings::default());
    assert_eq!(drift.len(), 7);
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));
    // A check turned off is not reported at all.
    let only_bind: SchedulerSettings =
        serde_saphyr::from_str("profilingDisabled: false\n").unwrap();
    assert_eq!(
        verdicts(&evaluate_scheduler("cp-1", &not_found, &only_bind)),
        [(SCHEDULER_BIND_ADDRESS, DriftReason::Unknown)]
    );
}

const COMPONENTS_BASELINE: &str =
    "controlPlane:\n  controllerManager: {}\n  scheduler: {}\n  etcd:\n    server: {}\n";

fn baseline(yaml: &str) -> SecurityBaselineSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn an_empty_section_asks_for_every_cis_check() {
    let spec = baseline(COMPONENTS_BASELINE);
    let requested = super::api_server::control_plane_checks(&spec);
    let registered: Vec<&str> = CHECKS
        .iter()
        .map(|c| c.id)
        .filter(|id| !id.starts_with("apiserver."))
        .collect();
    assert_eq!(requested, registered);
    for id in requested {
        assert!(checks::find(id).is_some(), "{id}");
    }
    // The existing etcd section alone does not ask for etcd's own flags.
    let client_only = baseline("controlPlane:\n  etcd: {clientTLS: true}\n");
    assert_eq!(
        super::api_server::control_plane_checks(&client_only),
        ["etcd.client-tls"]
    );
}

#[test]
fn components_are_checked_on_nodes_running_a_kube_apiserver() {
    let spec = baseline(COMPONENTS_BASELINE);
    let mut report = NodeReportSpec {
        node_name: "cp-1".to_owned(),
        ..NodeReportSpec::default()
    };
    // A worker: nothing of the control plane, and the control plane unobserved once.
    assert_eq!(evaluate_node(&report, &spec, &BTreeMap::new()), Vec::new());
    assert_eq!(unobserved_control_plane(&spec, [&report]).len(), 16);

    report.api_server.header = Observation::observed(String::new());
    report.controller_manager = observed(controller_manager_settings(&flags(fixture!(
        "kcm-hardened-cmdline.txt"
    ))));
    report.scheduler = observed(
        scheduler_settings(
            &flags(fixture!("scheduler-kubeadm-cmdline.txt")),
            Some((
                "/etc/kubernetes/scheduler.yaml",
                fixture!("scheduler-config.yaml"),
            )),
        )
        .unwrap(),
    );
    report.etcd = etcd_observed(
        etcd_settings(&flags(fixture!("etcd-kubeadm-cmdline.txt")), None).unwrap(),
        Some(false),
    );
    assert_eq!(evaluate_node(&report, &spec, &BTreeMap::new()), Vec::new());
    // etcd elsewhere (external etcd): its checks are Unknown on this node.
    report.etcd = EtcdObservation::default();
    let drift = evaluate_node(&report, &spec, &BTreeMap::new());
    assert_eq!(drift.len(), 7);
    assert!(
        drift
            .iter()
            .all(|d| d.check.starts_with("etcd.") && d.reason == DriftReason::Unknown)
    );
    assert_eq!(report.etcd.header.state, ObservationState::NotFound);
}

fn api_server(cmdline: &str, more: &[&str]) -> crate::api::ApiServerObservation {
    let flags = with_args(cmdline, more);
    crate::api::ApiServerObservation {
        header: Observation::observed(String::new()),
        flags: flags
            .select(super::api_server::API_SERVER_FLAGS)
            .into_iter()
            .map(|(name, value)| crate::api::ObservedFlag { name, value })
            .collect(),
        ..crate::api::ApiServerObservation::default()
    }
}

fn api_flag_checks(more: &[&str]) -> Vec<(String, DriftReason)> {
    evaluate_api_server_flags(
        "cp-1",
        &api_server(
            include_str!("../../../tests/fixtures/nodes/apiserver/kubeadm-cmdline.txt"),
            more,
        ),
        &crate::api::ApiServerFlagSettings::default(),
    )
    .into_iter()
    .map(|d| (d.check, d.reason))
    .collect()
}

const KUBEADM_HARDENING: &[&str] = &[
    "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt",
    "--profiling=false",
    "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "--service-account-extend-token-expiration=false",
];

#[test]
fn kubeadm_api_server_against_the_other_cis_1_2_flags() {
    let v = DriftReason::Violation;
    assert_eq!(
        api_flag_checks(&[]),
        [
            (API_KUBELET_CA.to_owned(), v),
            (API_PROFILING.to_owned(), v),
            (API_CIPHER_SUITES.to_owned(), v),
            (API_EXTEND_TOKEN_EXPIRATION.to_owned(), v),
        ],
        "kubeadm's defaults: no kubelet CA, profiling, Go's cipher suites, extended tokens"
    );
    assert_eq!(api_flag_checks(KUBEADM_HARDENING), Vec::new());
    // One setting at a time, given after the compliant one (the last occurrence wins).
    for (extra, check) in [
        (
            "--token-auth-file=/etc/kubernetes/tokens.csv",
            API_TOKEN_AUTH_FILE,
        ),
        ("--profiling=true", API_PROFILING),
        ("--service-account-lookup=false", API_SERVICE_ACCOUNT_LOOKUP),
        ("--service-account-key-file=", API_SERVICE_ACCOUNT_KEY),
        ("--kubelet-client-key=", API_KUBELET_CLIENT_CERT),
        ("--tls-cert-file=", API_TLS_CERT),
        ("--client-ca-file=", API_CLIENT_CA),
        (
            "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
            API_CIPHER_SUITES,
        ),
        (
            "--service-account-extend-token-expiration=true",
            API_EXTEND_TOKEN_EXPIRATION,
        ),
    ] {
        let mut flags = KUBEADM_HARDENING.to_vec();
        flags.push(extra);
        assert_eq!(api_flag_checks(&flags), [(check.to_owned(), v)], "{extra}");
    }
    // --tls-cipher-suites accumulates over occurrences, as pflag's string slices do.
    let mut flags = KUBEADM_HARDENING.to_vec();
    flags.push("--tls-cipher-suites=TLS_RSA_WITH_AES_128_GCM_SHA256");
    let drift = evaluate_api_server_flags(
        "cp-1",
        &api_server(
            include_str!("../../../tests/fixtures/nodes/apiserver/kubeadm-cmdline.txt"),
            &flags,
        ),
        &crate::api::ApiServerFlagSettings::default(),
    );
    assert_eq!(drift.len(), 1);
    assert!(
        drift[0]
            .message
            .ends_with(": TLS_RSA_WITH_AES_128_GCM_SHA256"),
        "{drift:#?}"
    );
}

#[test]
fn api_server_flag_checks_are_requested_through_the_baseline() {
    let spec = baseline("controlPlane:\n  apiServer:\n    flags: {profilingDisabled: false}\n");
    let requested = super::api_server::control_plane_checks(&spec);
    assert!(requested.contains(&API_TOKEN_AUTH_FILE));
    assert!(!requested.contains(&API_PROFILING));
    assert_eq!(
        requested
            .iter()
            .filter(|id| CHECKS.iter().any(|c| c.id == **id))
            .count(),
        9
    );
    // A kube-apiserver that could not be observed: each of them Unknown, never passing.
    let report = NodeReportSpec {
        node_name: "cp-1".to_owned(),
        api_server: crate::api::ApiServerObservation {
            header: Observation::error("cannot read /proc".to_owned()),
            ..Default::default()
        },
        ..NodeReportSpec::default()
    };
    let drift = evaluate_node(&report, &spec, &BTreeMap::new());
    assert!(drift.iter().any(|d| d.check == API_TOKEN_AUTH_FILE));
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));
}

mod files {
    use super::*;
    use crate::api::{FileClass, FileModeObservation, FileSettings};
    use crate::domain::node::files::check_ids::*;
    use crate::domain::node::files::{evaluate_files, named_files_of_flags};

    fn file(role: &str, class: FileClass, mode: &str, owner: (u32, u32)) -> FileModeObservation {
        FileModeObservation {
            header: Observation::observed(String::new()),
            role: role.to_owned(),
            class,
            path: format!("/etc/kubernetes/{}", role.replace(' ', "")),
            mode: mode.to_owned(),
            uid: Some(owner.0),
            gid: Some(owner.1),
        }
    }

    /// A control-plane node whose processes all run, with kubeadm's modes and owners.
    fn kubeadm_node() -> NodeReportSpec {
        let observed = Observation::observed(String::new());
        let mut report = NodeReportSpec {
            node_name: "cp-1".to_owned(),
            ..NodeReportSpec::default()
        };
        report.api_server.header = observed.clone();
        report.controller_manager.header = observed.clone();
        report.scheduler.header = observed.clone();
        report.etcd.header = observed;
        // kubeadm runs etcd as root.
        report.etcd.run_as_uid = Some(0);
        report.etcd.run_as_gid = Some(0);
        report.files = vec![
            file(
                "kube-controller-manager --kubeconfig",
                FileClass::Kubeconfig,
                "0600",
                (0, 0),
            ),
            file(
                "kube-scheduler --kubeconfig",
                FileClass::Kubeconfig,
                "0600",
                (0, 0),
            ),
            file(
                "kube-apiserver --client-ca-file",
                FileClass::Certificate,
                "0644",
                (0, 0),
            ),
            file(
                "kube-apiserver --tls-private-key-file",
                FileClass::PrivateKey,
                "0600",
                (0, 0),
            ),
            file("etcd --data-dir", FileClass::EtcdDataDir, "0700", (0, 0)),
        ];
        report
    }

    fn checks(report: &NodeReportSpec) -> Vec<(String, DriftReason)> {
        evaluate_files("cp-1", report, &FileSettings::default())
            .into_iter()
            .map(|d| (d.check, d.reason))
            .collect()
    }

    #[test]
    fn kubeadm_modes_and_owners_pass() {
        assert_eq!(checks(&kubeadm_node()), Vec::new());
    }

    #[test]
    fn one_file_too_open_or_owned_by_someone_else_at_a_time() {
        let v = DriftReason::Violation;
        for (index, mode, owner, want) in [
            (0, "0644", (0, 0), KUBECONFIG_PERMISSIONS),
            (1, "0600", (1000, 0), KUBECONFIG_OWNERSHIP),
            (2, "0664", (0, 0), CERTIFICATE_PERMISSIONS),
            (2, "0644", (0, 1000), PKI_OWNERSHIP),
            (3, "0640", (0, 0), PRIVATE_KEY_PERMISSIONS),
            (4, "0750", (0, 0), ETCD_DATA_DIR_PERMISSIONS),
            // setuid counts as more permissive.
            (3, "4600", (0, 0), PRIVATE_KEY_PERMISSIONS),
        ] {
            let mut report = kubeadm_node();
            report.files[index].mode = mode.to_owned();
            report.files[index].uid = Some(owner.0);
            report.files[index].gid = Some(owner.1);
            assert_eq!(checks(&report), [(want.to_owned(), v)], "{mode} {owner:?}");
        }
        // etcd's data directory belongs to the user etcd runs as, whoever that is.
        let mut report = kubeadm_node();
        report.etcd.run_as_uid = Some(999);
        report.etcd.run_as_gid = Some(999);
        assert_eq!(
            checks(&report),
            [(ETCD_DATA_DIR_OWNERSHIP.to_owned(), v)],
            "root-owned, etcd runs as 999"
        );
        report.files[4].uid = Some(999);
        report.files[4].gid = Some(999);
        assert_eq!(checks(&report), Vec::new());
        report.etcd.run_as_uid = None;
        assert_eq!(
            checks(&report),
            [(ETCD_DATA_DIR_OWNERSHIP.to_owned(), DriftReason::Unknown)]
        );
        // Stricter than the limit passes.
        let mut report = kubeadm_node();
        report.files[2].mode = "0400".to_owned();
        report.files[4].mode = "0500".to_owned();
        assert_eq!(checks(&report), Vec::new());
    }

    #[test]
    fn static_pod_manifests_where_the_kubelet_runs_them() {
        let v = DriftReason::Violation;
        let u = DriftReason::Unknown;
        let manifest = |component: &str| {
            file(
                &format!("static pod {component}"),
                FileClass::StaticPodManifest,
                "0600",
                (0, 0),
            )
        };
        // No kubelet on the node (kubeadm_node observes none): no static Pods to check.
        let mut report = kubeadm_node();
        assert_eq!(checks(&report), Vec::new());
        // A kubelet without control-plane manifests: the components are not static Pods.
        report.kubelet.header = Observation::observed(String::new());
        assert_eq!(checks(&report), Vec::new());
        report.files.push(manifest("kube-apiserver"));
        report.files.push(manifest("etcd"));
        assert_eq!(checks(&report), Vec::new());
        report.files[5].mode = "0644".to_owned();
        assert_eq!(
            checks(&report),
            [(STATIC_POD_MANIFEST_PERMISSIONS.to_owned(), v)]
        );
        report.files[5].mode = "0600".to_owned();
        report.files[6].uid = Some(1000);
        assert_eq!(
            checks(&report),
            [(STATIC_POD_MANIFEST_OWNERSHIP.to_owned(), v)]
        );
        // A staticPodPath that cannot be listed, or a kubelet whose configuration cannot be
        // read: Unknown, never a pass.
        let mut report = kubeadm_node();
        report.kubelet.header = Observation::observed(String::new());
        let mut unlisted = manifest("x");
        unlisted.role = crate::domain::node::files::STATIC_POD_PATH_ROLE.to_owned();
        unlisted.header = Observation::error("permission denied".to_owned());
        unlisted.mode.clear();
        unlisted.uid = None;
        unlisted.gid = None;
        report.files.push(unlisted);
        let unknown = [
            (STATIC_POD_MANIFEST_PERMISSIONS.to_owned(), u),
            (STATIC_POD_MANIFEST_OWNERSHIP.to_owned(), u),
        ];
        assert_eq!(checks(&report), unknown);
        let mut report = kubeadm_node();
        report.kubelet.header = Observation::error("a drop-in without kind".to_owned());
        assert_eq!(checks(&report), unknown);
    }

    #[test]
    fn manifests_are_named_by_the_component_they_run() {
        use crate::domain::node::files::manifest_component;
        let pod = |command: &str, image: &str| {
            format!(
                "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: c\n    image: {image}\n    command: [{command}]\n"
            )
        };
        let found = |path: &str, text: &str| manifest_component(path, text);
        assert_eq!(
            found("/m/a.yaml", &pod("kube-apiserver", "x")),
            Some("kube-apiserver")
        );
        assert_eq!(
            found(
                "/m/a.yaml",
                &pod("/usr/local/bin/kube-controller-manager", "x")
            ),
            Some("kube-controller-manager")
        );
        assert_eq!(
            found("/m/a.yaml", &pod("sh", "registry.k8s.io:5000/etcd:3.6.5-0")),
            Some("etcd")
        );
        assert_eq!(
            found(
                "/m/a.yaml",
                &pod("sh", "example.com/kube-scheduler@sha256:00")
            ),
            Some("kube-scheduler")
        );
        // The containers decide; the file name only when they cannot be read.
        assert_eq!(found("/m/haproxy.yaml", &pod("haproxy", "haproxy:3")), None);
        assert_eq!(found("/m/etcd.yaml", &pod("haproxy", "haproxy:3")), None);
        assert_eq!(found("/m/etcd.yaml", "not: [yaml"), Some("etcd"));
        assert_eq!(
            found("/m/kube-scheduler.manifest", ""),
            Some("kube-scheduler")
        );
        assert_eq!(found("/m/kubelet.yaml", ""), None);
    }

    #[test]
    fn what_cannot_be_seen_is_unknown() {
        let mut report = kubeadm_node();
        report.files[3].header = Observation::not_found("no such file".to_owned());
        report.files[3].mode.clear();
        assert_eq!(
            checks(&report),
            [
                (PRIVATE_KEY_PERMISSIONS.to_owned(), DriftReason::Unknown),
                (PKI_OWNERSHIP.to_owned(), DriftReason::Unknown),
            ]
        );
        // No kube-scheduler observed: its kubeconfig is unknown, even if the
        // kube-controller-manager's passes.
        let mut report = kubeadm_node();
        report.scheduler.header = Observation::not_found(String::new());
        report.files.remove(1);
        assert_eq!(
            checks(&report),
            [
                (KUBECONFIG_PERMISSIONS.to_owned(), DriftReason::Unknown),
                (KUBECONFIG_OWNERSHIP.to_owned(), DriftReason::Unknown),
            ]
        );
        // A violation is reported as such even when another file is unknown.
        report.files[0].mode = "0666".to_owned();
        assert_eq!(
            checks(&report)[0],
            (KUBECONFIG_PERMISSIONS.to_owned(), DriftReason::Violation)
        );
    }

    #[test]
    fn the_files_come_from_the_flags() {
        let named = named_files_of_flags(
            "kube-controller-manager",
            &flags(fixture!("kcm-kubeadm-cmdline.txt")),
        );
        let roles: Vec<(&str, FileClass, &str)> = named
            .iter()
            .map(|f| (f.role.as_str(), f.class, f.path.as_str()))
            .collect();
        assert_eq!(
            roles,
            [
                (
                    "kube-controller-manager --kubeconfig",
                    FileClass::Kubeconfig,
                    "/etc/kubernetes/controller-manager.conf"
                ),
                (
                    "kube-controller-manager --root-ca-file",
                    FileClass::Certificate,
                    "/etc/kubernetes/pki/ca.crt"
                ),
                (
                    "kube-controller-manager --service-account-private-key-file",
                    FileClass::PrivateKey,
                    "/etc/kubernetes/pki/sa.key"
                ),
                (
                    "kube-controller-manager --cluster-signing-cert-file",
                    FileClass::Certificate,
                    "/etc/kubernetes/pki/ca.crt"
                ),
                (
                    "kube-controller-manager --cluster-signing-key-file",
                    FileClass::PrivateKey,
                    "/etc/kubernetes/pki/ca.key"
                ),
            ]
        );
        let spec = baseline("controlPlane:\n  files: {ownership: false}\n");
        assert_eq!(
            super::super::api_server::control_plane_checks(&spec),
            [
                KUBECONFIG_PERMISSIONS,
                CERTIFICATE_PERMISSIONS,
                PRIVATE_KEY_PERMISSIONS,
                ETCD_DATA_DIR_PERMISSIONS,
                STATIC_POD_MANIFEST_PERMISSIONS,
            ]
        );
    }
}

mod kubelet_files {
    use super::*;
    use crate::api::{FileClass, FileModeObservation, KubeletObservation};
    use crate::domain::node::files::check_ids::*;
    use crate::domain::node::files::*;

    fn worker(files: Vec<FileModeObservation>) -> NodeReportSpec {
        NodeReportSpec {
            node_name: "worker-1".to_owned(),
            kubelet: KubeletObservation {
                header: Observation::observed(String::new()),
                ..KubeletObservation::default()
            },
            files,
            ..NodeReportSpec::default()
        }
    }

    fn file(role: &str, class: FileClass, mode: &str, uid: u32) -> FileModeObservation {
        FileModeObservation {
            header: Observation::observed(String::new()),
            role: role.to_owned(),
            class,
            path: format!("/var/lib/kubelet/{}", role.len()),
            mode: mode.to_owned(),
            uid: Some(uid),
            gid: Some(0),
        }
    }

    fn kubeadm_files() -> Vec<FileModeObservation> {
        vec![
            file(KUBELET_KUBECONFIG_ROLE, FileClass::Kubeconfig, "0600", 0),
            file(KUBELET_CONFIG_ROLE, FileClass::KubeletConfig, "0600", 0),
            file(KUBELET_CLIENT_CA_ROLE, FileClass::Certificate, "0644", 0),
        ]
    }

    fn found(report: &NodeReportSpec) -> Vec<(String, DriftReason)> {
        let spec = baseline("kubelet:\n  files: {}\n");
        evaluate_node(report, &spec, &BTreeMap::new())
            .into_iter()
            .map(|d| (d.check, d.reason))
            .collect()
    }

    #[test]
    fn kubelet_files_one_at_a_time() {
        assert_eq!(found(&worker(kubeadm_files())), Vec::new());
        let v = DriftReason::Violation;
        for (index, mode, uid, want) in [
            (0, "0644", 0, KUBELET_KUBECONFIG_PERMISSIONS),
            (0, "0600", 1000, KUBELET_KUBECONFIG_OWNERSHIP),
            (1, "0640", 0, KUBELET_CONFIG_PERMISSIONS),
            (1, "0600", 1000, KUBELET_CONFIG_OWNERSHIP),
            (2, "0666", 0, KUBELET_CLIENT_CA_PERMISSIONS),
            (2, "0644", 1000, KUBELET_CLIENT_CA_OWNERSHIP),
        ] {
            let mut files = kubeadm_files();
            files[index].mode = mode.to_owned();
            files[index].uid = Some(uid);
            assert_eq!(
                found(&worker(files)),
                [(want.to_owned(), v)],
                "{index} {mode} {uid}"
            );
        }
        // No --config: nothing to check for it. A kubelet kubeconfig never counts as a
        // control-plane kubeconfig.
        let mut files = kubeadm_files();
        files.remove(1);
        assert_eq!(found(&worker(files)), Vec::new());
    }

    #[test]
    fn an_unobserved_kubelet_or_node_is_unknown_for_its_files() {
        let mut report = worker(Vec::new());
        report.kubelet.header = Observation::not_found("no kubelet process found".to_owned());
        let drift = found(&report);
        assert_eq!(drift.len(), 6);
        assert!(drift.iter().all(|(_, r)| *r == DriftReason::Unknown));
        let spec = baseline("kubelet:\n  files: {ownership: false}\n");
        assert_eq!(
            crate::domain::node::evaluate::unknown_node("worker-9", &spec).len(),
            3
        );
    }
}
