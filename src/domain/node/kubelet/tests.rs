use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::{KubeletAuthorizationMode, Observation, SecurityBaselineSpec};

const KUBEADM_CONFIG: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/kubeadm-config.yaml");
const WEAK_CONFIG: &str = include_str!("../../../../tests/fixtures/nodes/kubelet/weak-config.yaml");
const HARDENING: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/kubelet.conf.d/10-hardening.conf");
const DEBUG: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/kubelet.conf.d/20-debug.conf");
const LATE: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/kubelet.conf.d/nested/30-late.conf");
const KUBEADM_CMDLINE: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/kubeadm-cmdline.txt");
const LEGACY_CMDLINE: &str =
    include_str!("../../../../tests/fixtures/nodes/kubelet/legacy-flags-cmdline.txt");

fn flags(cmdline: &str) -> ProcessFlags {
    let args: Vec<&str> = cmdline.lines().skip(1).collect();
    ProcessFlags::parse(&args)
}

fn no_flags() -> ProcessFlags {
    ProcessFlags::default()
}

fn drop_ins(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect()
}

fn hardened() -> KubeletSettings {
    KubeletSettings {
        anonymous_auth: Some(false),
        webhook_authentication: Some(true),
        authorization_mode: Some(KubeletAuthorizationMode::Webhook),
        read_only_port: Some(0),
        protect_kernel_defaults: Some(true),
        rotate_certificates: Some(true),
        seccomp_default: Some(true),
        make_iptables_util_chains: Some(true),
        ..KubeletSettings::default()
    }
}

/// Every requirement check (CIS 4.2.3, 4.2.5, 4.2.7, 4.2.9, 4.2.11-4.2.13).
fn requirements() -> KubeletSettings {
    KubeletSettings {
        require_client_ca_file: Some(true),
        require_streaming_connection_idle_timeout: Some(true),
        forbid_hostname_override: Some(true),
        require_tls_cert_file: Some(true),
        require_server_certificate_rotation: Some(true),
        require_strong_tls_cipher_suites: Some(true),
        require_pod_pids_limit: Some(true),
        ..KubeletSettings::default()
    }
}

fn observed(effective: &EffectiveConfig) -> KubeletObservation {
    KubeletObservation {
        header: Observation::observed(String::new()),
        settings: settings_of(&effective.config),
        origins: origins_list(&effective.origins),
        ..KubeletObservation::default()
    }
}

fn checks_of(drift: &[DriftEntry]) -> Vec<(&str, DriftReason)> {
    drift.iter().map(|d| (d.check.as_str(), d.reason)).collect()
}

#[test]
fn kubeadm_config_gets_v1beta1_defaults() {
    let effective = effective_config(Some(KUBEADM_CONFIG), &[], &flags(KUBEADM_CMDLINE)).unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(
        settings,
        KubeletSettings {
            anonymous_auth: Some(false),
            webhook_authentication: Some(true),
            authorization_mode: Some(KubeletAuthorizationMode::Webhook),
            // Not defaulted in v1beta1: the Go zero value.
            read_only_port: Some(0),
            protect_kernel_defaults: Some(false),
            rotate_certificates: Some(true),
            // Defaulted: seccompDefault false, makeIPTablesUtilChains true.
            seccomp_default: Some(false),
            make_iptables_util_chains: Some(true),
            ..KubeletSettings::default()
        }
    );
    assert_eq!(effective.origins["anonymousAuth"], "config file");
    assert_eq!(effective.origins["makeIPTablesUtilChains"], "default");
    // Unrelated fields survive untouched.
    assert_eq!(effective.config["clusterDNS"], json!(["10.96.0.10"]));
}

#[test]
fn drop_ins_merge_in_walk_order_later_wins_lists_replaced_null_deletes() {
    // Given out of order on purpose: the merge sorts them like the kubelet's WalkDir.
    let effective = effective_config(
        Some(KUBEADM_CONFIG),
        &drop_ins(&[
            ("nested/30-late.conf", LATE),
            ("20-debug.conf", DEBUG),
            ("10-hardening.conf", HARDENING),
        ]),
        &no_flags(),
    )
    .unwrap();
    let settings = settings_of(&effective.config);
    // 10-hardening sets protectKernelDefaults; 20-debug reopens anonymous and the port.
    assert_eq!(settings.protect_kernel_defaults, Some(true));
    assert_eq!(settings.anonymous_auth, Some(true));
    assert_eq!(settings.read_only_port, Some(10255));
    // Deep merge: the sibling webhook.enabled of the config file is kept.
    assert_eq!(settings.webhook_authentication, Some(true));
    assert_eq!(
        effective.config["authentication"]["x509"]["clientCAFile"],
        "/etc/kubernetes/pki/ca.crt"
    );
    // Lists are replaced, not appended.
    assert_eq!(
        effective.config["clusterDNS"],
        json!(["10.96.0.53", "10.96.0.54"])
    );
    // nested/30-late.conf comes last and deletes seccompDefault with null: the kubelet
    // defaults the merged configuration again, so it is back to its default (false).
    assert_eq!(settings.seccomp_default, Some(false));
    assert_eq!(
        effective.origins["seccompDefault"],
        "default (drop-in nested/30-late.conf set it to null)"
    );
    assert_eq!(effective.origins["anonymousAuth"], "drop-in 20-debug.conf");
    assert_eq!(
        effective.origins["protectKernelDefaults"],
        "drop-in 10-hardening.conf"
    );
}

#[test]
fn flags_override_config_and_drop_ins() {
    let flags = ProcessFlags::parse(&[
        "--anonymous-auth=false",
        "--read-only-port",
        "0",
        "--seccomp-default",
    ]);
    let effective = effective_config(
        Some(WEAK_CONFIG),
        &drop_ins(&[("20-debug.conf", DEBUG)]),
        &flags,
    )
    .unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.anonymous_auth, Some(false));
    assert_eq!(settings.read_only_port, Some(0));
    assert_eq!(settings.seccomp_default, Some(true));
    assert_eq!(
        settings.authorization_mode,
        Some(KubeletAuthorizationMode::AlwaysAllow)
    );
    assert_eq!(settings.make_iptables_util_chains, Some(false));
    assert_eq!(effective.origins["anonymousAuth"], "flag --anonymous-auth");
    assert_eq!(effective.origins["authorizationMode"], "config file");
}

#[test]
fn without_config_the_legacy_command_line_defaults_apply() {
    let effective = effective_config(None, &[], &no_flags()).unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.anonymous_auth, Some(true));
    assert_eq!(settings.webhook_authentication, Some(false));
    assert_eq!(
        settings.authorization_mode,
        Some(KubeletAuthorizationMode::AlwaysAllow)
    );
    assert_eq!(settings.read_only_port, Some(10255));
    assert_eq!(settings.make_iptables_util_chains, Some(true));
    assert_eq!(
        effective.origins["anonymousAuth"],
        "legacy default (no --config)"
    );

    // Flags only (the pre-config-file way), both `--flag value` and bare booleans.
    let effective = effective_config(None, &[], &flags(LEGACY_CMDLINE)).unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.anonymous_auth, Some(false));
    assert_eq!(
        settings.authorization_mode,
        Some(KubeletAuthorizationMode::Webhook)
    );
    assert_eq!(settings.read_only_port, Some(0));
    assert_eq!(settings.rotate_certificates, Some(true));
    assert_eq!(settings.protect_kernel_defaults, Some(true));

    // --config-dir without --config: drop-ins merge onto the legacy defaults.
    let effective = effective_config(
        None,
        &drop_ins(&[("10-hardening.conf", HARDENING)]),
        &no_flags(),
    )
    .unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.anonymous_auth, Some(true));
    assert_eq!(settings.seccomp_default, Some(true));
}

#[test]
fn unreadable_configs_are_errors_naming_the_file() {
    let err = effective_config(Some("kind: [unclosed"), &[], &no_flags()).unwrap_err();
    assert!(err.to_string().contains("config file"), "{err}");
    let err =
        effective_config(Some("apiVersion: v1\nkind: ConfigMap\n"), &[], &no_flags()).unwrap_err();
    assert!(
        err.to_string().contains("not a KubeletConfiguration"),
        "{err}"
    );
    let err = effective_config(
        Some(KUBEADM_CONFIG),
        &drop_ins(&[("50-bad.conf", "readOnlyPort: [")]),
        &no_flags(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("drop-in 50-bad.conf"), "{err}");
    let err = effective_config(
        Some(KUBEADM_CONFIG),
        &[],
        &ProcessFlags::parse(&["--anonymous-auth=maybe"]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--anonymous-auth"), "{err}");
}

const V1BETA1: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

fn with_header(body: &str) -> String {
    format!("{V1BETA1}{body}")
}

#[test]
fn a_drop_in_null_gets_the_default_back_not_the_zero_value() {
    // The kubelet merges the drop-ins and then applies the v1beta1 defaults again
    // (mergeKubeletConfigurations): webhook.enabled deleted with null is true, not false.
    let config = with_header("authentication:\n  webhook:\n    enabled: false\n");
    let null = with_header("authentication:\n  webhook:\n    enabled: null\n");
    let effective =
        effective_config(Some(&config), &drop_ins(&[("10.conf", &null)]), &no_flags()).unwrap();
    assert_eq!(
        settings_of(&effective.config).webhook_authentication,
        Some(true)
    );
    assert_eq!(
        effective.origins["webhookAuthentication"],
        "default (drop-in 10.conf set it to null)"
    );
    // A whole subtree, and without --config (legacy base): v1beta1 defaults, not legacy ones.
    let null =
        with_header("authentication: null\nauthorization:\n  mode: null\nreadOnlyPort: null\n");
    let effective = effective_config(None, &drop_ins(&[("10.conf", &null)]), &no_flags()).unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.anonymous_auth, Some(false));
    assert_eq!(settings.webhook_authentication, Some(true));
    assert_eq!(
        settings.authorization_mode,
        Some(KubeletAuthorizationMode::Webhook)
    );
    // Not defaulted in v1beta1: the zero value.
    assert_eq!(settings.read_only_port, Some(0));
}

#[test]
fn an_empty_authorization_mode_is_defaulted() {
    let effective = effective_config(
        Some(&with_header("authorization:\n  mode: \"\"\n")),
        &[],
        &no_flags(),
    )
    .unwrap();
    assert_eq!(
        settings_of(&effective.config).authorization_mode,
        Some(KubeletAuthorizationMode::Webhook)
    );
}

#[test]
fn drop_ins_without_apiversion_and_kind_stop_the_kubelet() {
    for (text, why) in [
        (
            "authentication:\n  anonymous:\n    enabled: false\n",
            "kind-less",
        ),
        ("", "empty"),
        ("# nothing yet\n", "comment only"),
        ("apiVersion: v1\nkind: ConfigMap\n", "another kind"),
        (
            "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n",
            "another version",
        ),
    ] {
        let err = effective_config(
            Some(KUBEADM_CONFIG),
            &drop_ins(&[("10-x.conf", text)]),
            &no_flags(),
        )
        .expect_err(why);
        assert!(
            err.to_string().contains("drop-in 10-x.conf"),
            "{why}: {err}"
        );
    }
    // The config file too.
    assert!(effective_config(Some("readOnlyPort: 0\n"), &[], &no_flags()).is_err());
}

#[test]
fn values_the_kubelet_cannot_decode_or_validate_stop_it() {
    for (text, why) in [
        (
            "authentication:\n  anonymous:\n    enabled: \"true\"\n",
            "quoted boolean",
        ),
        ("readOnlyPort: \"10255\"\n", "quoted port"),
        ("readOnlyPort: 10255.5\n", "fractional port"),
        ("readOnlyPort: 4294967296\n", "port beyond int32"),
        ("readOnlyPort: 70000\n", "port out of range"),
        ("authorization:\n  mode: [Webhook]\n", "mode not a string"),
    ] {
        let text = with_header(text);
        assert!(
            effective_config(Some(&text), &[], &no_flags()).is_err(),
            "config file, {why}"
        );
        assert!(
            effective_config(
                Some(KUBEADM_CONFIG),
                &drop_ins(&[("10.conf", &text)]),
                &no_flags()
            )
            .is_err(),
            "drop-in, {why}"
        );
    }
    let flags = ProcessFlags::parse(&["--read-only-port=70000"]);
    assert!(effective_config(Some(KUBEADM_CONFIG), &[], &flags).is_err());
    let flags = ProcessFlags::parse(&["--read-only-port=4294967296"]);
    assert!(effective_config(Some(KUBEADM_CONFIG), &[], &flags).is_err());
}

#[test]
fn drop_in_keys_match_fields_case_insensitively_the_last_in_key_order_wins() {
    // encoding/json decodes the merged drop-ins: ReadOnlyPort sets readOnlyPort.
    let drop_in =
        with_header("ReadOnlyPort: 10255\nAuthentication:\n  Anonymous:\n    Enabled: true\n");
    let effective = effective_config(
        Some(KUBEADM_CONFIG),
        &drop_ins(&[("10.conf", &drop_in)]),
        &no_flags(),
    )
    .unwrap();
    let settings = settings_of(&effective.config);
    assert_eq!(settings.read_only_port, Some(10255));
    assert_eq!(effective.origins["readOnlyPort"], "drop-in 10.conf");
    // "Authentication" sorts before "authentication" (the config file's, anonymous false),
    // which is decoded last and wins.
    assert_eq!(settings.anonymous_auth, Some(false));
    // A later spelling in key order wins over the exact one.
    let drop_in = with_header("readOnlyPort: 0\nreadOnlyport: 10255\n");
    let effective = effective_config(
        Some(KUBEADM_CONFIG),
        &drop_ins(&[("10.conf", &drop_in)]),
        &no_flags(),
    )
    .unwrap();
    assert_eq!(settings_of(&effective.config).read_only_port, Some(10255));
    // The config file is decoded case-sensitively: there it is an unknown field.
    let config = with_header("ReadOnlyPort: 10255\n");
    for drop_ins in [vec![], drop_ins(&[("10.conf", V1BETA1)])] {
        let effective = effective_config(Some(&config), &drop_ins, &no_flags()).unwrap();
        assert_eq!(settings_of(&effective.config).read_only_port, Some(0));
    }
}

#[test]
fn seccomp_default_flag_is_ored_with_the_configuration() {
    let config = with_header("seccompDefault: true\n");
    let flags = ProcessFlags::parse(&["--seccomp-default=false"]);
    let effective = effective_config(Some(&config), &[], &flags).unwrap();
    assert_eq!(settings_of(&effective.config).seccomp_default, Some(true));
    assert_eq!(effective.origins["seccompDefault"], "config file");
    let flags = ProcessFlags::parse(&["--seccomp-default"]);
    let effective = effective_config(Some(V1BETA1), &[], &flags).unwrap();
    assert_eq!(settings_of(&effective.config).seccomp_default, Some(true));
    // Other flags override the files both ways.
    let flags = ProcessFlags::parse(&["--protect-kernel-defaults=false"]);
    let config = with_header("protectKernelDefaults: true\n");
    let effective = effective_config(Some(&config), &[], &flags).unwrap();
    assert_eq!(
        settings_of(&effective.config).protect_kernel_defaults,
        Some(false)
    );
}

#[test]
fn a_repeated_key_the_last_one_wins() {
    let config = with_header("readOnlyPort: 10255\nreadOnlyPort: 0\n");
    let effective = effective_config(Some(&config), &[], &no_flags()).unwrap();
    assert_eq!(settings_of(&effective.config).read_only_port, Some(0));
}

#[test]
fn drop_in_order_is_the_kubelet_walk_order() {
    let mut names = vec![
        "b.conf",
        "a.conf",
        "a/z.conf",
        "10-x.conf",
        "nested/01.conf",
        "README.conf",
    ];
    names.sort_by(|a, b| drop_in_order(a, b));
    assert_eq!(
        names,
        [
            "10-x.conf",
            "README.conf",
            "a/z.conf",
            "a.conf",
            "b.conf",
            "nested/01.conf"
        ]
    );
}

#[test]
fn merge_patch_is_rfc_7386() {
    let mut target = json!({"a": {"b": 1, "c": [1, 2]}, "d": 1});
    merge_patch(
        &mut target,
        &json!({"a": {"c": [3], "e": null}, "d": null, "f": {"g": 1}}),
    );
    assert_eq!(target, json!({"a": {"b": 1, "c": [3]}, "f": {"g": 1}}));
}

#[test]
fn kubeadm_node_against_a_hardened_baseline() {
    let effective = effective_config(Some(KUBEADM_CONFIG), &[], &flags(KUBEADM_CMDLINE)).unwrap();
    let drift = evaluate_kubelet("node-1", &observed(&effective), &hardened());
    assert_eq!(
        checks_of(&drift),
        [
            (check_ids::PROTECT_KERNEL_DEFAULTS, DriftReason::Violation),
            (check_ids::SECCOMP_DEFAULT, DriftReason::Violation),
        ]
    );
    assert_eq!(drift[1].kind, "Node");
    assert_eq!(drift[1].name, "node-1");
    assert!(drift[1].namespace.is_empty());
    assert!(
        drift[1]
            .message
            .contains("seccompDefault is false (from default); the baseline wants true"),
        "{}",
        drift[1].message
    );
}

#[test]
fn violation_names_the_drop_in_that_set_the_value() {
    let effective = effective_config(
        Some(KUBEADM_CONFIG),
        &drop_ins(&[("10-hardening.conf", HARDENING), ("20-debug.conf", DEBUG)]),
        &no_flags(),
    )
    .unwrap();
    let drift = evaluate_kubelet("node-1", &observed(&effective), &hardened());
    let anonymous = drift
        .iter()
        .find(|d| d.check == check_ids::ANONYMOUS_AUTH)
        .unwrap();
    assert_eq!(anonymous.reason, DriftReason::Violation);
    assert!(
        anonymous.message.contains("from drop-in 20-debug.conf"),
        "{}",
        anonymous.message
    );
    assert!(drift.iter().any(|d| d.check == check_ids::READ_ONLY_PORT));
}

#[test]
fn weak_config_fails_the_cis_checks() {
    let effective = effective_config(Some(WEAK_CONFIG), &[], &no_flags()).unwrap();
    let drift = evaluate_kubelet("node-1", &observed(&effective), &hardened());
    let checks: Vec<&str> = drift.iter().map(|d| d.check.as_str()).collect();
    assert_eq!(
        checks,
        [
            check_ids::ANONYMOUS_AUTH,
            check_ids::WEBHOOK_AUTHENTICATION,
            check_ids::AUTHORIZATION_MODE,
            check_ids::READ_ONLY_PORT,
            check_ids::PROTECT_KERNEL_DEFAULTS,
            check_ids::ROTATE_CERTIFICATES,
            check_ids::SECCOMP_DEFAULT,
            check_ids::MAKE_IPTABLES_UTIL_CHAINS,
        ]
    );
    assert!(drift.iter().all(|d| d.reason == DriftReason::Violation));
}

#[test]
fn unset_baseline_fields_are_not_checked() {
    let effective = effective_config(Some(WEAK_CONFIG), &[], &no_flags()).unwrap();
    let want = KubeletSettings {
        authorization_mode: Some(KubeletAuthorizationMode::AlwaysAllow),
        ..KubeletSettings::default()
    };
    assert!(evaluate_kubelet("n", &observed(&effective), &want).is_empty());
    assert!(evaluate_kubelet("n", &observed(&effective), &KubeletSettings::default()).is_empty());
}

#[test]
fn missing_kubelet_or_unreadable_config_is_unknown_never_passing() {
    let not_found = KubeletObservation::default();
    let drift = evaluate_kubelet("n", &not_found, &hardened());
    assert_eq!(drift.len(), 8);
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));

    let error = KubeletObservation {
        header: Observation::error(
            "cannot read /var/lib/kubelet/config.yaml: permission denied".to_owned(),
        ),
        ..KubeletObservation::default()
    };
    let drift = evaluate_kubelet("n", &error, &hardened());
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));
    assert!(drift[0].message.contains("permission denied"));
}

#[test]
fn pending_restart_makes_passing_file_values_unknown_but_not_flag_values() {
    let flags = ProcessFlags::parse(&["--anonymous-auth=false"]);
    let effective = effective_config(Some(KUBEADM_CONFIG), &[], &flags).unwrap();
    let mut observation = observed(&effective);
    observation.pending_restart = true;
    let want = KubeletSettings {
        anonymous_auth: Some(false),
        rotate_certificates: Some(true),
        seccomp_default: Some(true),
        ..KubeletSettings::default()
    };
    let drift = evaluate_kubelet("n", &observation, &want);
    assert_eq!(
        checks_of(&drift),
        [
            // From the config file: on disk only until the kubelet restarts.
            (check_ids::ROTATE_CERTIFICATES, DriftReason::Unknown),
            // Failing values stay violations.
            (check_ids::SECCOMP_DEFAULT, DriftReason::Violation),
        ]
    );
}

#[test]
fn rendered_drop_in_makes_a_weak_kubelet_compliant() {
    let rendered = render_drop_in(&hardened()).unwrap().unwrap();
    assert!(rendered.starts_with(DROP_IN_HEADER));
    assert_eq!(
        render_drop_in(&hardened()).unwrap().unwrap(),
        rendered,
        "deterministic"
    );
    let effective = effective_config(
        Some(WEAK_CONFIG),
        &drop_ins(&[("20-debug.conf", DEBUG), (DROP_IN_NAME, &rendered)]),
        &no_flags(),
    )
    .unwrap();
    assert_eq!(settings_of(&effective.config), hardened());
    assert!(evaluate_kubelet("n", &observed(&effective), &hardened()).is_empty());
    assert_eq!(
        effective.origins["readOnlyPort"],
        format!("drop-in {DROP_IN_NAME}")
    );
}

#[test]
fn rendered_drop_in_sets_only_what_the_baseline_sets() {
    assert_eq!(render_drop_in(&KubeletSettings::default()).unwrap(), None);
    let rendered = render_drop_in(&KubeletSettings {
        read_only_port: Some(0),
        ..KubeletSettings::default()
    })
    .unwrap()
    .unwrap();
    let value: serde_json::Value = serde_saphyr::from_str(&rendered).unwrap();
    assert_eq!(
        value,
        json!({"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration", "readOnlyPort": 0})
    );
}

fn baseline(yaml: &str) -> SecurityBaselineSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

#[test]
fn desired_drop_in_unites_enforce_baselines_selecting_the_node() {
    let a = baseline("kubelet:\n  settings: {anonymousAuth: false, readOnlyPort: 0}\n");
    let b = baseline("kubelet:\n  settings: {readOnlyPort: 0, seccompDefault: true}\n");
    let audit = baseline("mode: Audit\nkubelet:\n  settings: {rotateCertificates: true}\n");
    let other_nodes = baseline(
        "kubelet:\n  nodeSelector: {pool: gpu}\n  settings: {protectKernelDefaults: true}\n",
    );
    let conflicting = baseline("kubelet:\n  settings: {anonymousAuth: true}\n");
    let labels = BTreeMap::from([("pool".to_owned(), "web".to_owned())]);

    let desired = desired_kubelet(
        [
            ("a", &a),
            ("b", &b),
            ("audit", &audit),
            ("gpu", &other_nodes),
        ],
        &labels,
    );
    assert_eq!(
        desired.settings,
        KubeletSettings {
            anonymous_auth: Some(false),
            read_only_port: Some(0),
            seccomp_default: Some(true),
            ..KubeletSettings::default()
        }
    );
    assert!(desired.conflicts.is_empty());

    let desired = desired_kubelet([("z", &conflicting), ("a", &a)], &labels);
    assert_eq!(
        desired.settings.anonymous_auth, None,
        "conflicting field is not written"
    );
    assert_eq!(desired.settings.read_only_port, Some(0));
    assert_eq!(desired.conflicts.len(), 1);
    assert!(
        desired.conflicts[0]
            .starts_with("anonymousAuth: baseline a wants false, baseline z wants true")
    );
}

#[test]
fn every_setting_has_a_field_and_a_registered_check() {
    // A KubeletSettings field added without a FIELDS or REQUIREMENTS entry would never be
    // checked.
    let mut all = settings_object(&hardened());
    all.extend(settings_object(&requirements()));
    assert_eq!(
        all.len(),
        settings_object(&hardened()).len() + REQUIREMENTS.len()
    );
    for key in all.keys() {
        assert!(
            FIELDS.iter().any(|f| f.setting == key)
                || REQUIREMENTS.iter().any(|r| r.setting == key),
            "{key} has no FIELDS or REQUIREMENTS entry"
        );
    }
    let everything: KubeletSettings = serde_json::from_value(Value::Object(all)).unwrap();
    assert_eq!(requested_checks(&everything).len(), CHECKS.len());
    for field in FIELDS {
        assert!(
            CHECKS
                .iter()
                .chain(crate::domain::node::files::CHECKS)
                .any(|c| c.id == field.check)
        );
    }
    for requirement in REQUIREMENTS {
        assert!(CHECKS.iter().any(|c| c.id == requirement.check));
        assert!(
            requirement
                .fields
                .iter()
                .all(|f| FIELDS.iter().any(|field| field.setting == *f)),
            "{} reads a field FIELDS does not model",
            requirement.setting
        );
    }
    // `false` leaves a requirement out.
    let off = KubeletSettings {
        require_pod_pids_limit: Some(false),
        ..KubeletSettings::default()
    };
    assert!(requested_checks(&off).is_empty());
}

#[test]
fn kubelet_selector_matches_labels() {
    let labels = BTreeMap::from([("pool".to_owned(), "web".to_owned())]);
    let mut kubelet = KubeletBaseline::default();
    assert!(kubelet_selects(&kubelet, &labels));
    kubelet
        .node_selector
        .insert("pool".to_owned(), "web".to_owned());
    assert!(kubelet_selects(&kubelet, &labels));
    kubelet
        .node_selector
        .insert("zone".to_owned(), "a".to_owned());
    assert!(!kubelet_selects(&kubelet, &labels));
}

fn values(effective: &EffectiveConfig, flags: &ProcessFlags) -> KubeletValues {
    values_of(&effective.config, flags)
}

fn observed_with_values(effective: &EffectiveConfig, flags: &ProcessFlags) -> KubeletObservation {
    KubeletObservation {
        values: Some(values(effective, flags)),
        ..observed(effective)
    }
}

#[test]
fn go_durations_parse_and_print_as_go_does() {
    let parsed = |s: &str| parse_go_duration(s);
    const S: i64 = 1_000_000_000;
    assert_eq!(parsed("0"), Some(0));
    assert_eq!(parsed("+0"), Some(0));
    assert_eq!(parsed("0s"), Some(0));
    assert_eq!(parsed("4h"), Some(4 * 3600 * S));
    assert_eq!(parsed("1.5h"), Some(5400 * S));
    assert_eq!(parsed("1h2m3s"), Some(3723 * S));
    assert_eq!(parsed("300ms"), Some(S * 3 / 10));
    assert_eq!(parsed(".5s"), Some(S / 2));
    assert_eq!(parsed("5.s"), Some(5 * S));
    assert_eq!(parsed("-1m"), Some(-60 * S));
    assert_eq!(parsed("1us"), Some(1_000));
    assert_eq!(parsed("1\u{b5}s"), Some(1_000));
    assert_eq!(parsed("1\u{3bc}s"), Some(1_000));
    assert_eq!(parsed("9223372036854775807ns"), Some(i64::MAX));
    assert_eq!(parsed("-9223372036854775808ns"), Some(i64::MIN));
    for invalid in [
        "",
        "5",
        "1d",
        ".",
        ".s",
        "-",
        "4 h",
        "9223372036854775808ns",
        "3000000h",
    ] {
        assert_eq!(parsed(invalid), None, "{invalid:?}");
    }
    let printed = |ns: i64| format_go_duration(ns);
    assert_eq!(printed(0), "0s");
    assert_eq!(printed(4 * 3600 * S), "4h0m0s");
    assert_eq!(printed(90 * S), "1m30s");
    assert_eq!(printed(3601 * S), "1h0m1s");
    assert_eq!(printed(3 * S / 2), "1.5s");
    assert_eq!(printed(3600 * S + S / 2), "1h0m0.5s");
    assert_eq!(printed(S * 3 / 10), "300ms");
    assert_eq!(printed(1_500), "1.5\u{b5}s");
    assert_eq!(printed(100), "100ns");
    assert_eq!(printed(-60 * S), "-1m0s");
}

#[test]
fn requirement_fields_get_the_kubelets_defaults() {
    // kubeadm writes streamingConnectionIdleTimeout: 0s, which the kubelet defaults to 4h
    // like an absent one (`== zeroDuration`).
    let flags = flags(KUBEADM_CMDLINE);
    let effective = effective_config(Some(KUBEADM_CONFIG), &[], &flags).unwrap();
    assert_eq!(
        values(&effective, &flags),
        KubeletValues {
            client_ca_file: "/etc/kubernetes/pki/ca.crt".to_owned(),
            streaming_connection_idle_timeout: "4h0m0s".to_owned(),
            rotate_kubelet_server_certificate: true,
            pod_pids_limit: -1,
            static_pod_path: "/etc/kubernetes/manifests".to_owned(),
            ..KubeletValues::default()
        }
    );
    assert_eq!(
        effective.origins["streamingConnectionIdleTimeout"],
        "default"
    );
    assert_eq!(effective.origins["clientCAFile"], "config file");
    let drift = evaluate_kubelet(
        "n",
        &observed_with_values(&effective, &flags),
        &requirements(),
    );
    assert_eq!(
        checks_of(&drift),
        [
            (check_ids::TLS_CERT_FILE, DriftReason::Violation),
            (check_ids::TLS_CIPHER_SUITES, DriftReason::Violation),
            (check_ids::POD_PIDS_LIMIT, DriftReason::Violation),
        ]
    );
    assert!(
        drift[0].message.contains("self-signed"),
        "{}",
        drift[0].message
    );
    assert!(
        drift[2].message.contains("podPidsLimit is -1")
            && drift[2].message.contains("from default"),
        "{}",
        drift[2].message
    );

    // Without --config: the same v1beta1 defaults.
    let effective = effective_config(None, &[], &no_flags()).unwrap();
    let v = values(&effective, &no_flags());
    assert_eq!(v.streaming_connection_idle_timeout, "4h0m0s");
    assert_eq!(v.pod_pids_limit, -1);
    assert!(v.rotate_kubelet_server_certificate);
}

const COMPLIANT_REQUIREMENTS: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
streamingConnectionIdleTimeout: 5m
tlsCertFile: /var/lib/kubelet/pki/kubelet.crt
tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key
tlsCipherSuites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_256_GCM_SHA384]
podPidsLimit: 4096
featureGates:
  RotateKubeletServerCertificate: true
";

#[test]
fn a_compliant_config_passes_every_requirement() {
    let effective = effective_config(Some(COMPLIANT_REQUIREMENTS), &[], &no_flags()).unwrap();
    let v = values(&effective, &no_flags());
    assert_eq!(v.streaming_connection_idle_timeout, "5m0s");
    assert_eq!(v.pod_pids_limit, 4096);
    let drift = evaluate_kubelet(
        "n",
        &observed_with_values(&effective, &no_flags()),
        &requirements(),
    );
    assert!(drift.is_empty(), "{drift:?}");

    // serverTLSBootstrap instead of files.
    let bootstrap = COMPLIANT_REQUIREMENTS
        .replace(
            "tlsCertFile: /var/lib/kubelet/pki/kubelet.crt\n",
            "serverTLSBootstrap: true\n",
        )
        .replace("tlsPrivateKeyFile: /var/lib/kubelet/pki/kubelet.key\n", "");
    let effective = effective_config(Some(&bootstrap), &[], &no_flags()).unwrap();
    let drift = evaluate_kubelet(
        "n",
        &observed_with_values(&effective, &no_flags()),
        &requirements(),
    );
    assert!(drift.is_empty(), "{drift:?}");
}

#[test]
fn flags_override_the_requirement_fields() {
    let args = [
        "--config=/c",
        "--streaming-connection-idle-timeout=0",
        "--hostname-override=node-a",
        "--tls-private-key-file=",
        "--pod-max-pids",
        "-1",
        // A string slice: the first occurrence replaces the file's list, the next append.
        "--tls-cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "--tls-cipher-suites=TLS_RSA_WITH_AES_128_CBC_SHA",
        // A map: pairs override the file's gates one by one.
        "--feature-gates=RotateKubeletServerCertificate=false,StrictIPCIDRValidation=true",
    ];
    let flags = ProcessFlags::parse(&args);
    let effective = effective_config(Some(COMPLIANT_REQUIREMENTS), &[], &flags).unwrap();
    let v = values(&effective, &flags);
    assert_eq!(v.streaming_connection_idle_timeout, "0s");
    assert_eq!(v.hostname_override, "node-a");
    assert_eq!(v.tls_private_key_file, "");
    assert_eq!(v.pod_pids_limit, -1);
    assert_eq!(
        v.tls_cipher_suites,
        [
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            "TLS_RSA_WITH_AES_128_CBC_SHA"
        ]
    );
    assert!(!v.rotate_kubelet_server_certificate);
    assert_eq!(
        effective.origins["streamingConnectionIdleTimeout"],
        "flag --streaming-connection-idle-timeout"
    );
    let drift = evaluate_kubelet(
        "n",
        &observed_with_values(&effective, &flags),
        &requirements(),
    );
    assert_eq!(
        checks_of(&drift),
        [
            (
                check_ids::STREAMING_CONNECTION_IDLE_TIMEOUT,
                DriftReason::Violation
            ),
            (check_ids::HOSTNAME_OVERRIDE, DriftReason::Violation),
            (check_ids::TLS_CERT_FILE, DriftReason::Violation),
            (
                check_ids::ROTATE_SERVER_CERTIFICATES,
                DriftReason::Violation
            ),
            (check_ids::TLS_CIPHER_SUITES, DriftReason::Violation),
            (check_ids::POD_PIDS_LIMIT, DriftReason::Violation),
        ]
    );
    assert!(
        drift[4].message.contains("TLS_RSA_WITH_AES_128_CBC_SHA"),
        "{}",
        drift[4].message
    );
    assert!(!drift[4].message.contains("GCM"), "{}", drift[4].message);

    // The gate a flag does not name keeps the file's value; an empty slice flag empties.
    let flags = ProcessFlags::parse(&[
        "--feature-gates=StrictIPCIDRValidation=false",
        "--tls-cipher-suites=",
    ]);
    let config = COMPLIANT_REQUIREMENTS.replace(
        "RotateKubeletServerCertificate: true",
        "RotateKubeletServerCertificate: false",
    );
    let effective = effective_config(Some(&config), &[], &flags).unwrap();
    let v = values(&effective, &flags);
    assert!(!v.rotate_kubelet_server_certificate);
    assert!(v.tls_cipher_suites.is_empty());
}

#[test]
fn drop_ins_merge_and_redefault_the_requirement_fields() {
    let config = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
podPidsLimit: 100
featureGates:
  RotateKubeletServerCertificate: false
  StrictIPCIDRValidation: true
";
    let effective = effective_config(
        Some(config),
        &drop_ins(&[
            // A negative limit is defaulted to -1; a zero duration to 4h; the gate map
            // merges.
            (
                "50-a.conf",
                &with_header(
                    "podPidsLimit: -7\nstreamingConnectionIdleTimeout: 0s\nfeatureGates:\n  StrictIPCIDRValidation: false\n",
                ),
            ),
            // The field name matches case-insensitively; the gate names (map keys) do not.
            ("60-b.conf", &with_header("FeatureGates:\n  StrictIPCIDRValidation: true\n")),
        ]),
        &no_flags(),
    )
    .unwrap();
    let v = values(&effective, &no_flags());
    assert_eq!(v.pod_pids_limit, -1);
    assert_eq!(v.streaming_connection_idle_timeout, "4h0m0s");
    assert!(!v.rotate_kubelet_server_certificate);
    assert_eq!(
        effective.origins["podPidsLimit"],
        "default (drop-in 50-a.conf set it to -7)"
    );

    let effective = effective_config(
        Some(config),
        &drop_ins(&[(
            "50-a.conf",
            &with_header("featureGates:\n  RotateKubeletServerCertificate: true\nstreamingConnectionIdleTimeout: 90s\n"),
        )]),
        &no_flags(),
    )
    .unwrap();
    let v = values(&effective, &no_flags());
    assert!(v.rotate_kubelet_server_certificate);
    assert_eq!(v.streaming_connection_idle_timeout, "1m30s");
    assert_eq!(v.pod_pids_limit, 100);
    assert_eq!(
        effective.origins["rotateKubeletServerCertificate"],
        "drop-in 50-a.conf"
    );
}

#[test]
fn requirement_values_the_kubelet_cannot_decode_or_validate_stop_it() {
    let config = |body: &str| with_header(body);
    for body in [
        "streamingConnectionIdleTimeout: 5\n",
        "streamingConnectionIdleTimeout: 5 minutes\n",
        "podPidsLimit: \"100\"\n",
        "podPidsLimit: 1.5\n",
        "tlsCipherSuites: TLS_RSA_WITH_AES_128_GCM_SHA256\n",
        "featureGates:\n  RotateKubeletServerCertificate: \"false\"\n",
        // Validation: serverTLSBootstrap needs the gate.
        "serverTLSBootstrap: true\nfeatureGates:\n  RotateKubeletServerCertificate: false\n",
    ] {
        assert!(
            effective_config(Some(&config(body)), &[], &no_flags()).is_err(),
            "{body}"
        );
    }
    for args in [
        &["--streaming-connection-idle-timeout=5x"][..],
        &["--pod-max-pids=many"],
        &["--feature-gates=RotateKubeletServerCertificate"],
        &["--feature-gates=RotateKubeletServerCertificate=maybe"],
        &[
            "--rotate-server-certificates",
            "--feature-gates=RotateKubeletServerCertificate=false",
        ],
    ] {
        assert!(
            effective_config(None, &[], &ProcessFlags::parse(args)).is_err(),
            "{args:?}"
        );
    }
}

#[test]
fn requirements_unknown_when_unobserved_or_pending_restart() {
    let not_found = KubeletObservation::default();
    let drift = evaluate_kubelet("n", &not_found, &requirements());
    assert_eq!(drift.len(), REQUIREMENTS.len());
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));

    let flags = ProcessFlags::parse(&["--config=/c", "--pod-max-pids=10"]);
    let effective = effective_config(Some(COMPLIANT_REQUIREMENTS), &[], &flags).unwrap();
    let mut observation = observed_with_values(&effective, &flags);
    observation.pending_restart = true;
    let drift = evaluate_kubelet("n", &observation, &requirements());
    // Values from the config file are on disk only; --pod-max-pids and the absence of
    // --hostname-override are the running kubelet's.
    assert_eq!(
        checks_of(&drift),
        [
            (check_ids::CLIENT_CA_FILE, DriftReason::Unknown),
            (
                check_ids::STREAMING_CONNECTION_IDLE_TIMEOUT,
                DriftReason::Unknown
            ),
            (check_ids::TLS_CERT_FILE, DriftReason::Unknown),
            (check_ids::ROTATE_SERVER_CERTIFICATES, DriftReason::Unknown),
            (check_ids::TLS_CIPHER_SUITES, DriftReason::Unknown),
        ]
    );

    // A report of an older agent, without values.
    let old = KubeletObservation {
        values: None,
        ..observed_with_values(&effective, &flags)
    };
    let drift = evaluate_kubelet("n", &old, &requirements());
    assert!(drift.iter().all(|d| d.reason == DriftReason::Unknown));
    assert_eq!(drift.len(), REQUIREMENTS.len());
}

#[test]
fn requirements_are_never_written_into_the_drop_in() {
    let spec = baseline(
        "mode: Enforce
kubelet:
  settings:
    readOnlyPort: 0
    requirePodPidsLimit: true
    requireClientCAFile: true
",
    );
    let other = baseline(
        "mode: Enforce
kubelet:
  settings:
    requirePodPidsLimit: false
",
    );
    let desired = desired_kubelet([("a", &spec), ("b", &other)], &BTreeMap::new());
    assert!(desired.conflicts.is_empty(), "{:?}", desired.conflicts);
    assert_eq!(
        desired.settings,
        KubeletSettings {
            read_only_port: Some(0),
            ..KubeletSettings::default()
        }
    );
    let only_requirements = baseline(
        "mode: Enforce
kubelet:
  settings:
    requirePodPidsLimit: true
",
    );
    let desired = desired_kubelet([("a", &only_requirements)], &BTreeMap::new());
    assert_eq!(render_drop_in(&desired.settings).unwrap(), None);
}
