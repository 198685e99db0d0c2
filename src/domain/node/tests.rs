use std::collections::BTreeMap;

use super::api_server::*;
use super::config_files::*;
use super::evaluate::*;
use super::findings::node_drift;
use super::flags::*;
use crate::api::{
    ApiServerObservation, AuthenticationConfigObservation, AuthorizationConfigObservation,
    ControlPlaneSettings, DriftEntry, DriftReason, EncryptionObservation, KubeletObservation,
    KubeletSettings, NodeReportSpec, Observation, ObservationState, ObservedFlag,
    SecurityBaselineSpec,
};
use crate::domain::checks;
use crate::domain::node::{audit_policy, kubelet};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/nodes/", $name))
    };
}

fn args(cmdline: &str) -> Vec<&str> {
    cmdline.lines().skip(1).collect()
}

/// An observed kube-apiserver with the flags of a fixture command line.
fn api_from(cmdline: &str) -> ApiServerObservation {
    ApiServerObservation {
        header: Observation::observed(String::new()),
        flags: ProcessFlags::parse(&args(cmdline))
            .select(API_SERVER_FLAGS)
            .into_iter()
            .map(|(name, value)| ObservedFlag { name, value })
            .collect(),
        ..ApiServerObservation::default()
    }
}

fn encryption(text: &str) -> EncryptionObservation {
    EncryptionObservation {
        header: Observation::observed(String::new()),
        path: "/etc/kubernetes/enc/encryption.yaml".to_owned(),
        secrets_providers: secrets_providers(text).unwrap(),
        ..EncryptionObservation::default()
    }
}

fn cis_control_plane() -> ControlPlaneSettings {
    serde_saphyr::from_str(
        "apiServer:\n  anonymousAuth: false\n  requireAuthorizationModes: [Node, RBAC]\n  requireAdmissionPlugins: [NodeRestriction]\n  encryptionAtRest: true\netcd:\n  clientTLS: true\n",
    )
    .unwrap()
}

fn checks_of(drift: &[DriftEntry]) -> Vec<(&str, DriftReason)> {
    drift.iter().map(|d| (d.check.as_str(), d.reason)).collect()
}

#[test]
fn flags_parse_like_pflag() {
    let flags = ProcessFlags::parse(&[
        "--a=1",
        "--b",
        "2",
        "--anonymous-auth",
        "false",
        "--oom-score-adj",
        "-999",
        "--enable_admission_plugins=NodeRestriction",
        "--enable-admission-plugins",
        "EventRateLimit",
        "--a=3",
        "-v=2",
        "--flag-at-end",
        "--",
        "--after=ignored",
    ]);
    assert_eq!(flags.get("a"), Some("3"), "the last occurrence wins");
    assert_eq!(flags.get("b"), Some("2"));
    // A boolean never takes the next argument as its value.
    assert_eq!(flags.bool("anonymous-auth").unwrap(), Some(true));
    assert_eq!(flags.int("oom-score-adj").unwrap(), Some(-999));
    assert_eq!(
        flags.list("enable-admission-plugins"),
        ["NodeRestriction", "EventRateLimit"]
    );
    assert_eq!(flags.get("v"), Some("2"));
    assert_eq!(flags.get("flag-at-end"), Some("true"));
    assert_eq!(flags.get("after"), None);
    assert!(flags.bool("b").is_err());
    assert_eq!(
        flags.select(&["enable-admission-plugins", "b", "missing"]),
        [
            ("b".to_owned(), "2".to_owned()),
            (
                "enable-admission-plugins".to_owned(),
                "NodeRestriction,EventRateLimit".to_owned()
            ),
        ]
    );
}

#[test]
fn go_booleans() {
    for yes in ["1", "t", "T", "TRUE", "true", "True"] {
        assert_eq!(parse_go_bool(yes), Some(true));
    }
    for no in ["0", "f", "F", "FALSE", "false", "False"] {
        assert_eq!(parse_go_bool(no), Some(false));
    }
    assert_eq!(parse_go_bool("yes"), None);
}

#[test]
fn encryption_providers_for_secrets() {
    assert_eq!(
        secrets_providers(fixture!("encryption/aescbc.yaml")).unwrap(),
        ["aescbc", "identity"]
    );
    assert_eq!(
        secrets_providers(fixture!("encryption/identity-first.yaml")).unwrap(),
        ["identity", "aescbc"]
    );
    assert_eq!(
        secrets_providers(fixture!("encryption/identity-only.yaml")).unwrap(),
        ["identity"]
    );
    assert!(
        secrets_providers(fixture!("encryption/configmaps-only.yaml"))
            .unwrap()
            .is_empty()
    );
    // The first entry covering secrets wins; "events" does not cover them, "*.*" does.
    assert_eq!(
        secrets_providers(fixture!("encryption/wildcard-kms.yaml")).unwrap(),
        ["kms", "identity"]
    );
    assert!(matches!(
        secrets_providers("kind: Policy\n"),
        Err(ControlPlaneError::Invalid { .. })
    ));
    assert!(matches!(
        secrets_providers("resources: ["),
        Err(ControlPlaneError::Yaml { .. })
    ));
}

#[test]
fn each_config_file_must_declare_its_own_kind() {
    let wrong = "kind: Policy\n";
    let messages = [
        secrets_providers(wrong).map(|_| ()),
        authorization_config_authorizers(wrong).map(|_| ()),
        authentication_config_anonymous(wrong).map(|_| ()),
    ]
    .map(|result| result.map_err(|e| e.to_string()));
    assert_eq!(
        messages,
        [
            Err(
                "EncryptionConfiguration: kind is \"Policy\", want EncryptionConfiguration"
                    .to_owned()
            ),
            Err(
                "AuthorizationConfiguration: kind is \"Policy\", want AuthorizationConfiguration"
                    .to_owned()
            ),
            Err(
                "AuthenticationConfiguration: kind is \"Policy\", want AuthenticationConfiguration"
                    .to_owned()
            ),
        ]
    );
    assert!(
        authorization_config_authorizers(
            "kind: AuthorizationConfiguration\nauthorizers: [{type: Node}, {type: RBAC}]\n"
        )
        .is_ok_and(|a| a == ["Node", "RBAC"])
    );
}

#[test]
fn encryption_keys_never_leave_the_parser() {
    let providers = secrets_providers(fixture!("encryption/aescbc.yaml")).unwrap();
    assert!(providers.iter().all(|p| !p.contains("c2VjcmV0")));
}

#[test]
fn kubeadm_apiserver_against_cis() {
    let mut api = api_from(fixture!("apiserver/kubeadm-cmdline.txt"));
    api.encryption = EncryptionObservation::default();
    let drift = evaluate_api_server("cp-1", &api, &cis_control_plane());
    assert_eq!(
        checks_of(&drift),
        [
            // kubeadm does not set --anonymous-auth: the default (true) applies.
            (check_ids::ANONYMOUS_AUTH, DriftReason::Violation),
            (check_ids::ENCRYPTION_AT_REST, DriftReason::Violation),
        ]
    );
    assert!(
        drift[0]
            .message
            .contains("the default (--anonymous-auth not set)"),
        "{}",
        drift[0].message
    );
}

#[test]
fn hardened_apiserver_has_no_drift() {
    let mut api = api_from(fixture!("apiserver/hardened-cmdline.txt"));
    api.encryption = encryption(fixture!("encryption/aescbc.yaml"));
    assert_eq!(
        evaluate_api_server("cp-1", &api, &cis_control_plane()),
        Vec::new()
    );
}

#[test]
fn weak_apiserver_fails_every_check() {
    let mut api = api_from(fixture!("apiserver/weak-cmdline.txt"));
    api.encryption = encryption(fixture!("encryption/identity-first.yaml"));
    let mut settings = cis_control_plane();
    if let Some(api_settings) = settings.api_server.as_mut() {
        api_settings
            .require_admission_plugins
            .push("ServiceAccount".to_owned());
    }
    let drift = evaluate_api_server("cp-1", &api, &settings);
    assert_eq!(
        checks_of(&drift),
        [
            (check_ids::ANONYMOUS_AUTH, DriftReason::Violation),
            (check_ids::AUTHORIZATION_MODE, DriftReason::Violation),
            (check_ids::ADMISSION_PLUGINS, DriftReason::Violation),
            (check_ids::ENCRYPTION_AT_REST, DriftReason::Violation),
            (check_ids::ETCD_CLIENT_TLS, DriftReason::Violation),
        ]
    );
    let message = |check: &str| &drift.iter().find(|d| d.check == check).unwrap().message;
    assert!(
        message(check_ids::AUTHORIZATION_MODE).contains("AlwaysAllow authorizes every request")
    );
    assert!(message(check_ids::AUTHORIZATION_MODE).contains("missing required mode(s) Node, RBAC"));
    let admission = message(check_ids::ADMISSION_PLUGINS);
    assert!(admission.contains("AlwaysAdmit is enabled"), "{admission}");
    assert!(
        admission.contains("NodeRestriction, ServiceAccount"),
        "{admission}"
    );
    assert!(message(check_ids::ENCRYPTION_AT_REST).contains("identity is the first provider"));
    let etcd = message(check_ids::ETCD_CLIENT_TLS);
    assert!(
        etcd.contains("--etcd-certfile is not set") && etcd.contains("http://127.0.0.1:2379"),
        "{etcd}"
    );
}

#[test]
fn encryption_verdicts() {
    let settings = cis_control_plane();
    let verdict = |enc: EncryptionObservation| {
        let mut api = api_from(fixture!("apiserver/hardened-cmdline.txt"));
        api.encryption = enc;
        evaluate_api_server("cp-1", &api, &settings)
            .into_iter()
            .find(|d| d.check == check_ids::ENCRYPTION_AT_REST)
    };
    assert_eq!(
        verdict(encryption(fixture!("encryption/wildcard-kms.yaml"))),
        None
    );
    let only = verdict(encryption(fixture!("encryption/identity-only.yaml"))).unwrap();
    assert!(only.message.contains("only the identity provider"));
    let none = verdict(encryption(fixture!("encryption/configmaps-only.yaml"))).unwrap();
    assert!(none.message.contains("no resources entry covers secrets"));
    let unreadable = verdict(EncryptionObservation {
        header: Observation::error("permission denied".to_owned()),
        ..EncryptionObservation::default()
    })
    .unwrap();
    assert_eq!(unreadable.reason, DriftReason::Unknown);
    let pending = verdict(EncryptionObservation {
        pending_restart: true,
        ..encryption(fixture!("encryption/aescbc.yaml"))
    })
    .unwrap();
    assert_eq!(pending.reason, DriftReason::Unknown);
}

#[test]
fn structured_authorization_and_authentication_configs() {
    let mut api = api_from(
        "kube-apiserver\n--authorization-config=/etc/kubernetes/authz.yaml\n--authentication-config=/etc/kubernetes/authn.yaml\n",
    );
    api.authorization_config = AuthorizationConfigObservation {
        header: Observation::observed(String::new()),
        path: "/etc/kubernetes/authz.yaml".to_owned(),
        authorizers: authorization_config_authorizers(fixture!(
            "apiserver/authorization-config.yaml"
        ))
        .unwrap(),
    };
    let (enabled, conditions) =
        authentication_config_anonymous(fixture!("apiserver/authentication-config.yaml"))
            .unwrap()
            .unwrap();
    api.authentication_config = AuthenticationConfigObservation {
        header: Observation::observed(String::new()),
        path: "/etc/kubernetes/authn.yaml".to_owned(),
        anonymous_enabled: Some(enabled),
        anonymous_conditions: i32::try_from(conditions).unwrap(),
    };
    let settings: ControlPlaneSettings = serde_saphyr::from_str(
        "apiServer:\n  anonymousAuth: false\n  requireAuthorizationModes: [Node, RBAC]\n",
    )
    .unwrap();
    // Node, RBAC, Webhook from the file; anonymous only for health paths counts as off.
    assert_eq!(evaluate_api_server("cp-1", &api, &settings), Vec::new());

    api.authorization_config.header.state = ObservationState::Error;
    let drift = evaluate_api_server("cp-1", &api, &settings);
    assert_eq!(
        checks_of(&drift),
        [(check_ids::AUTHORIZATION_MODE, DriftReason::Unknown)]
    );
}

#[test]
fn missing_authorization_mode_defaults_to_always_allow() {
    let api = api_from("kube-apiserver\n--etcd-servers=https://e:2379\n");
    let settings: ControlPlaneSettings = serde_saphyr::from_str("apiServer: {}\n").unwrap();
    let drift = evaluate_api_server("cp-1", &api, &settings);
    assert_eq!(
        checks_of(&drift),
        [(check_ids::AUTHORIZATION_MODE, DriftReason::Violation)]
    );
    assert!(
        drift[0].message.contains("[AlwaysAllow] (the default"),
        "{}",
        drift[0].message
    );
}

fn baseline(yaml: &str) -> SecurityBaselineSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

const FULL_BASELINE: &str = "auditPolicy: {profile: Baseline}\nkubelet:\n  nodeSelector: {pool: web}\n  settings: {anonymousAuth: false, readOnlyPort: 0}\ncontrolPlane:\n  apiServer: {anonymousAuth: false, requireAuthorizationModes: [Node, RBAC], encryptionAtRest: true}\n  etcd: {clientTLS: true}\n";

fn worker_report() -> NodeReportSpec {
    let effective = kubelet::effective_config(
        Some(fixture!("kubelet/kubeadm-config.yaml")),
        &[],
        &ProcessFlags::default(),
    )
    .unwrap();
    NodeReportSpec {
        node_name: "worker-1".to_owned(),
        kubelet: KubeletObservation {
            header: Observation::observed(String::new()),
            settings: kubelet::settings_of(&effective.config),
            origins: kubelet::origins_list(&effective.origins),
            ..KubeletObservation::default()
        },
        ..NodeReportSpec::default()
    }
}

fn web() -> BTreeMap<String, String> {
    BTreeMap::from([("pool".to_owned(), "web".to_owned())])
}

#[test]
fn worker_node_is_checked_for_its_kubelet_only() {
    let report = worker_report();
    assert_eq!(
        evaluate_node(&report, &baseline(FULL_BASELINE), &web()),
        Vec::new()
    );

    let weak = KubeletSettings {
        anonymous_auth: Some(true),
        ..report.kubelet.settings.clone()
    };
    let report = NodeReportSpec {
        kubelet: KubeletObservation {
            settings: weak,
            ..report.kubelet
        },
        ..report
    };
    let drift = evaluate_node(&report, &baseline(FULL_BASELINE), &web());
    assert_eq!(
        checks_of(&drift),
        [(kubelet::check_ids::ANONYMOUS_AUTH, DriftReason::Violation)]
    );
    // The kubelet nodeSelector does not select unlabelled nodes.
    assert_eq!(
        evaluate_node(&report, &baseline(FULL_BASELINE), &BTreeMap::new()),
        Vec::new()
    );
}

#[test]
fn control_plane_node_gets_audit_and_apiserver_checks() {
    let mut report = worker_report();
    report.node_name = "cp-1".to_owned();
    report.api_server = api_from(fixture!("apiserver/kubeadm-cmdline.txt"));
    let drift = evaluate_node(&report, &baseline(FULL_BASELINE), &web());
    let ids: Vec<&str> = drift.iter().map(|d| d.check.as_str()).collect();
    assert_eq!(
        ids,
        [
            check_ids::ANONYMOUS_AUTH,
            check_ids::ENCRYPTION_AT_REST,
            audit_policy::check_ids::LOG_MAXAGE,
            audit_policy::check_ids::LOG_MAXBACKUP,
            audit_policy::check_ids::LOG_MAXSIZE,
            audit_policy::check_ids::LOG_PATH,
            audit_policy::check_ids::POLICY_COVERAGE,
            audit_policy::check_ids::POLICY_FILE,
            audit_policy::check_ids::POLICY_MATCHES,
        ],
        "sorted by check ID"
    );
    assert!(drift.iter().all(|d| d.kind == "Node" && d.name == "cp-1"));

    report.api_server = ApiServerObservation {
        header: Observation::error("cannot list /host/proc: permission denied".to_owned()),
        ..ApiServerObservation::default()
    };
    let drift = evaluate_node(&report, &baseline(FULL_BASELINE), &web());
    assert_eq!(drift.len(), 7 + 5);
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));
}

#[test]
fn a_node_without_report_is_unknown_for_each_kubelet_check() {
    let drift = unknown_node("worker-9", &baseline(FULL_BASELINE));
    assert_eq!(
        checks_of(&drift),
        [
            (kubelet::check_ids::ANONYMOUS_AUTH, DriftReason::Unknown),
            (kubelet::check_ids::READ_ONLY_PORT, DriftReason::Unknown),
        ]
    );
    assert!(
        drift
            .iter()
            .all(|d| d.name == "worker-9" && d.kind == "Node")
    );
    assert!(unknown_node("worker-9", &baseline("auditPolicy: {}\n")).is_empty());
}

#[test]
fn an_unobserved_control_plane_is_unknown_once() {
    let worker = worker_report();
    let drift = unobserved_control_plane(&baseline(FULL_BASELINE), [&worker]);
    assert_eq!(drift.len(), 7 + 5);
    assert!(drift.iter().all(|d| d.kind == CONTROL_PLANE_KIND
        && d.name == CONTROL_PLANE_NAME
        && d.reason == DriftReason::Unknown));
    let mut cp = worker_report();
    cp.api_server = api_from(fixture!("apiserver/kubeadm-cmdline.txt"));
    assert!(unobserved_control_plane(&baseline(FULL_BASELINE), [&worker, &cp]).is_empty());
    assert!(unobserved_control_plane(&baseline("kubelet: {}\n"), [&worker]).is_empty());
}

#[test]
fn every_check_id_emitted_is_registered() {
    let registered: Vec<&str> = checks::all().iter().map(|c| c.id).collect();
    let mut report = worker_report();
    report.kubelet = KubeletObservation::default();
    report.api_server = ApiServerObservation {
        header: Observation::error(String::new()),
        ..ApiServerObservation::default()
    };
    let mut spec = baseline(FULL_BASELINE);
    if let Some(kubelet) = spec.kubelet.as_mut() {
        kubelet.node_selector.clear();
        kubelet.settings = serde_saphyr::from_str(
            "{anonymousAuth: false, webhookAuthentication: true, authorizationMode: Webhook, readOnlyPort: 0, protectKernelDefaults: true, rotateCertificates: true, seccompDefault: true, makeIPTablesUtilChains: true}",
        )
        .unwrap();
    }
    let drift = evaluate_node(&report, &spec, &BTreeMap::new());
    assert_eq!(drift.len(), 8 + 7 + 5);
    for entry in &drift {
        assert!(
            registered.contains(&entry.check.as_str()),
            "{} is not registered",
            entry.check
        );
        assert!(checks::find(&entry.check).is_some());
    }
}

#[test]
fn messages_fit_the_status_schema() {
    let long = "x".repeat(5000);
    let entry = node_drift("n", "c.d", DriftReason::Violation, long);
    assert_eq!(entry.message.chars().count(), 1024);
    assert!(entry.message.ends_with('…'));
}
