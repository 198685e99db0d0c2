use super::*;
use crate::api::{AuditLogSettings, Observation, ObservedFlag};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/fixtures/nodes/", $name))
    };
}

fn settings(profile: AuditProfile) -> AuditPolicySettings {
    AuditPolicySettings {
        profile,
        ..AuditPolicySettings::default()
    }
}

fn coverage(text: &str) -> Vec<String> {
    coverage_failures(&parse_policy(text).unwrap())
}

#[test]
fn every_profile_but_none_passes_its_own_coverage_check() {
    for profile in [
        AuditProfile::Minimal,
        AuditProfile::Baseline,
        AuditProfile::Strict,
    ] {
        let policy = render_policy(&settings(profile));
        assert_eq!(
            coverage_failures(&policy),
            Vec::<String>::new(),
            "{profile:?}"
        );
    }
}

#[test]
fn the_none_profile_fails_coverage_by_design() {
    let failures = coverage_failures(&render_policy(&settings(AuditProfile::None)));
    // Every probe family and the catch-all: None logs nothing at all.
    assert_eq!(failures.len(), 8, "{failures:#?}");
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("secrets: get secrets in default by"))
    );
    assert!(
        failures
            .iter()
            .any(|f| f.contains("the catch-all rule 1 logs nothing"))
    );
}

#[test]
fn rendering_is_deterministic_and_round_trips() {
    for profile in [
        AuditProfile::None,
        AuditProfile::Minimal,
        AuditProfile::Baseline,
        AuditProfile::Strict,
    ] {
        let settings = settings(profile);
        let yaml = render_policy_yaml(&settings).unwrap();
        assert_eq!(yaml, render_policy_yaml(&settings).unwrap());
        assert!(is_managed(&yaml));
        let parsed = parse_policy(&yaml).unwrap();
        assert_eq!(parsed, render_policy(&settings), "{profile:?}");
        assert_eq!(first_difference(&parsed, &render_policy(&settings)), None);
    }
    let data = config_map_data(&settings(AuditProfile::Baseline)).unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), [AUDIT_POLICY_KEY]);
}

#[test]
fn profiles_differ_where_documented() {
    let level_of = |profile, verb, group, resource| {
        let policy = render_policy(&settings(profile));
        decide(
            &policy,
            &Request {
                user: "alice",
                groups: &["system:authenticated"],
                verb,
                resource: Some(ResourceRequest {
                    group,
                    resource,
                    subresource: "",
                    namespace: "shop",
                    name: "x",
                }),
                path: "",
            },
        )
        .level
    };
    // Reads of ordinary resources: dropped by Minimal, Metadata otherwise.
    assert_eq!(
        level_of(AuditProfile::Minimal, "get", "apps", "deployments"),
        AuditLevel::None
    );
    assert_eq!(
        level_of(AuditProfile::Baseline, "get", "apps", "deployments"),
        AuditLevel::Metadata
    );
    // Writes: Metadata, Request for pods/deployments, RequestResponse for everything.
    assert_eq!(
        level_of(AuditProfile::Minimal, "update", "apps", "deployments"),
        AuditLevel::Metadata
    );
    assert_eq!(
        level_of(AuditProfile::Baseline, "update", "apps", "deployments"),
        AuditLevel::Request
    );
    assert_eq!(
        level_of(AuditProfile::Baseline, "update", "", "services"),
        AuditLevel::Metadata
    );
    assert_eq!(
        level_of(AuditProfile::Strict, "update", "", "services"),
        AuditLevel::RequestResponse
    );
    // RBAC with bodies from Baseline up; secrets never with bodies.
    assert_eq!(
        level_of(
            AuditProfile::Baseline,
            "create",
            "rbac.authorization.k8s.io",
            "roles"
        ),
        AuditLevel::RequestResponse
    );
    assert_eq!(
        level_of(AuditProfile::Strict, "update", "", "secrets"),
        AuditLevel::Metadata
    );
}

#[test]
fn noisy_system_traffic_is_dropped() {
    let policy = render_policy(&settings(AuditProfile::Baseline));
    let proxy_watch = Request {
        user: "system:kube-proxy",
        groups: &["system:authenticated"],
        verb: "watch",
        resource: Some(ResourceRequest {
            group: "discovery.k8s.io",
            resource: "endpointslices",
            subresource: "",
            namespace: "",
            name: "",
        }),
        path: "",
    };
    assert_eq!(decide(&policy, &proxy_watch).level, AuditLevel::None);
    let node_get = Request {
        user: "system:node:worker-1",
        groups: &["system:nodes", "system:authenticated"],
        verb: "get",
        resource: Some(ResourceRequest {
            group: "",
            resource: "nodes",
            subresource: "",
            namespace: "",
            name: "worker-1",
        }),
        path: "",
    };
    assert_eq!(decide(&policy, &node_get).level, AuditLevel::None);
    for path in ["/healthz", "/readyz?verbose", "/livez/etcd", "/version"] {
        let probe = Request {
            user: "system:anonymous",
            groups: &["system:unauthenticated"],
            verb: "get",
            resource: None,
            path,
        };
        assert_eq!(decide(&policy, &probe).level, AuditLevel::None, "{path}");
    }
    let metrics = Request {
        user: "prometheus",
        groups: &["system:authenticated"],
        verb: "get",
        resource: None,
        path: "/metrics",
    };
    assert_eq!(decide(&policy, &metrics).level, AuditLevel::Metadata);
}

#[test]
fn additional_rules_come_first_and_can_break_coverage() {
    let mut settings = settings(AuditProfile::Baseline);
    settings.additional_rules = vec![AuditPolicyRule {
        level: AuditLevel::RequestResponse,
        resources: vec![AuditGroupResources {
            group: String::new(),
            resources: vec!["secrets".to_owned()],
            resource_names: Vec::new(),
        }],
        ..AuditPolicyRule::default()
    }];
    let policy = render_policy(&settings);
    assert_eq!(policy.rules[0], settings.additional_rules[0]);
    assert_eq!(
        policy.rules.len(),
        profile_rules(AuditProfile::Baseline).len() + 1
    );
    let failures = coverage_failures(&policy);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("secrets: get secrets in default by kube-baseline:coverage-probe is logged at RequestResponse (rule 1)"), "{}", failures[0]);
}

#[test]
fn strong_fixture_policies_pass_coverage() {
    assert_eq!(
        coverage(fixture!("audit/strong-policy.yaml")),
        Vec::<String>::new()
    );
    assert_eq!(
        coverage(fixture!("audit/metadata-only.yaml")),
        Vec::<String>::new()
    );
}

#[test]
fn weak_fixture_policies_fail_coverage_with_the_reason() {
    let failures = coverage(fixture!("audit/weak-everything-requestresponse.yaml"));
    let families: Vec<&str> = failures
        .iter()
        .map(|f| f.split(':').next().unwrap())
        .collect();
    assert_eq!(
        families,
        [
            "secrets",
            "configmaps",
            "tokenreviews",
            "serviceaccount token requests"
        ]
    );

    let failures = coverage(fixture!("audit/weak-no-catch-all.yaml"));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("no catch-all rule"));

    // "pods/*" matches every pod subresource and, in the kube-apiserver's checker, pods
    // itself: exec and pod changes both go unlogged.
    let failures = coverage(fixture!("audit/weak-drops-exec.yaml"));
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(failures[1].starts_with("pod changes: create pods in default"));
    assert!(
        failures[0].starts_with("exec, attach, port-forward and proxy: create pods/exec in default by kube-baseline:coverage-probe is not logged (rule 1)"),
        "{}",
        failures[0]
    );

    let failures = coverage(fixture!("audit/weak-drops-serviceaccounts.yaml"));
    assert!(
        failures
            .iter()
            .all(|f| f.contains("by system:serviceaccount:default:default")),
        "{failures:?}"
    );
    assert_eq!(failures.len(), 7, "{failures:?}");

    // The Kubernetes documentation's example logs configmap bodies in kube-system.
    let failures = coverage(fixture!("audit/k8s-docs-example.yaml"));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("configmaps: get configmaps in kube-system"),
        "{}",
        failures[0]
    );
}

#[test]
fn a_catch_all_behind_a_drop_everything_rule_is_unreachable() {
    let policy = parse_policy(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n- level: Metadata\n",
    )
    .unwrap();
    let failures = coverage_failures(&policy);
    assert!(
        failures
            .last()
            .unwrap()
            .contains("the catch-all rule 1 logs nothing")
    );
}

#[test]
fn omitted_stages_can_silence_a_rule() {
    let policy = parse_policy(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n  omitStages: [ResponseStarted, ResponseComplete]\n",
    )
    .unwrap();
    assert!(!coverage_failures(&policy).is_empty());
}

#[test]
fn matching_follows_the_apiserver_checker() {
    let rule = |yaml: &str| -> AuditPolicyRule { serde_saphyr::from_str(yaml).unwrap() };
    let request = |verb, group, resource, subresource, namespace, name| Request {
        user: "alice",
        groups: &["devs", "system:authenticated"],
        verb,
        resource: Some(ResourceRequest {
            group,
            resource,
            subresource,
            namespace,
            name,
        }),
        path: "",
    };
    let exec = request("create", "", "pods", "exec", "shop", "web");
    assert!(rule_matches(
        &rule("{level: None, resources: [{group: '', resources: ['*/exec']}]}"),
        &exec
    ));
    assert!(rule_matches(
        &rule("{level: None, resources: [{group: '', resources: ['pods/*']}]}"),
        &exec
    ));
    assert!(rule_matches(
        &rule("{level: None, resources: [{group: '', resources: ['*']}]}"),
        &exec
    ));
    assert!(!rule_matches(
        &rule("{level: None, resources: [{group: '', resources: [pods]}]}"),
        &exec
    ));
    assert!(!rule_matches(
        &rule("{level: None, resources: [{group: apps}]}"),
        &exec
    ));
    assert!(rule_matches(
        &rule("{level: None, userGroups: [devs]}"),
        &exec
    ));
    assert!(!rule_matches(&rule("{level: None, users: [bob]}"), &exec));
    assert!(!rule_matches(&rule("{level: None, verbs: [get]}"), &exec));
    assert!(!rule_matches(
        &rule("{level: None, namespaces: [other]}"),
        &exec
    ));
    assert!(!rule_matches(
        &rule(
            "{level: None, resources: [{group: '', resources: ['pods/exec'], resourceNames: [db]}]}"
        ),
        &exec
    ));
    // Cluster-scoped resources have the empty namespace.
    let node = request("get", "", "nodes", "", "", "n1");
    assert!(rule_matches(
        &rule("{level: None, namespaces: ['']}"),
        &node
    ));
    // Non-resource URL rules never match resource requests, and the reverse.
    assert!(!rule_matches(
        &rule("{level: None, nonResourceURLs: ['*']}"),
        &node
    ));
    let healthz = Request {
        resource: None,
        path: "/healthz/etcd",
        ..node
    };
    assert!(rule_matches(
        &rule("{level: None, nonResourceURLs: ['/healthz*']}"),
        &healthz
    ));
    assert!(!rule_matches(
        &rule("{level: None, resources: [{group: ''}]}"),
        &healthz
    ));
}

#[test]
fn semantic_equality_ignores_order_within_sets_not_rule_order() {
    let strong = parse_policy(fixture!("audit/strong-policy.yaml")).unwrap();
    let mut shuffled = strong.clone();
    shuffled.rules[2].resources.reverse();
    shuffled.rules[3].resources[0].resources.reverse();
    shuffled.rules[4].verbs.reverse();
    assert_eq!(first_difference(&shuffled, &strong), None);

    let mut reordered = strong.clone();
    reordered.rules.swap(2, 3);
    let difference = first_difference(&reordered, &strong).unwrap();
    assert!(difference.starts_with("rule 3 is "), "{difference}");

    let mut longer = strong.clone();
    longer.rules.push(AuditPolicyRule::default());
    assert_eq!(
        first_difference(&longer, &strong).unwrap(),
        "the live policy has 8 rules, the rendered one 7"
    );
    let rendered = render_policy(&settings(AuditProfile::Baseline));
    assert!(first_difference(&strong, &rendered).is_some());
}

#[test]
fn parse_rejects_what_is_not_an_audit_policy() {
    assert!(matches!(
        parse_policy(fixture!("audit/not-a-policy.yaml")),
        Err(AuditPolicyError::WrongKind { .. })
    ));
    assert!(matches!(
        parse_policy("rules: [{level: Loud}]"),
        Err(AuditPolicyError::Yaml(_))
    ));
}

fn api_with(flags: &[(&str, &str)], policy: Option<&str>) -> ApiServerObservation {
    let mut api = ApiServerObservation {
        header: Observation::observed(String::new()),
        flags: flags
            .iter()
            .map(|(name, value)| ObservedFlag {
                name: (*name).to_owned(),
                value: (*value).to_owned(),
            })
            .collect(),
        ..ApiServerObservation::default()
    };
    if let Some(text) = policy {
        let parsed = parse_policy(text).unwrap();
        api.audit_policy = AuditPolicyObservation {
            header: Observation::observed(String::new()),
            path: "/etc/kubernetes/audit/policy.yaml".to_owned(),
            managed: is_managed(text),
            omit_stages: parsed.omit_stages,
            omit_managed_fields: parsed.omit_managed_fields,
            rules: parsed.rules,
            ..AuditPolicyObservation::default()
        };
    }
    api
}

const GOOD_FLAGS: &[(&str, &str)] = &[
    ("audit-policy-file", "/etc/kubernetes/audit/policy.yaml"),
    ("audit-log-path", "/var/log/kubernetes/audit/audit.log"),
    ("audit-log-maxage", "30"),
    ("audit-log-maxbackup", "10"),
    ("audit-log-maxsize", "100"),
];

fn checks(drift: &[DriftEntry]) -> Vec<(&str, DriftReason)> {
    drift.iter().map(|d| (d.check.as_str(), d.reason)).collect()
}

#[test]
fn rendered_policy_and_cis_flags_have_no_drift() {
    let settings = settings(AuditProfile::Baseline);
    let rendered = render_policy_yaml(&settings).unwrap();
    let api = api_with(GOOD_FLAGS, Some(&rendered));
    assert_eq!(evaluate_audit("cp-1", &api, &settings), Vec::new());
}

#[test]
fn kubeadm_defaults_fail_every_audit_check() {
    let drift = evaluate_audit(
        "cp-1",
        &api_with(&[], None),
        &settings(AuditProfile::Baseline),
    );
    assert_eq!(
        checks(&drift),
        [
            (check_ids::POLICY_FILE, DriftReason::Violation),
            (check_ids::LOG_PATH, DriftReason::Violation),
            (check_ids::LOG_MAXAGE, DriftReason::Violation),
            (check_ids::LOG_MAXBACKUP, DriftReason::Violation),
            (check_ids::LOG_MAXSIZE, DriftReason::Violation),
            (check_ids::POLICY_COVERAGE, DriftReason::Violation),
            (check_ids::POLICY_MATCHES, DriftReason::Violation),
        ]
    );
}

#[test]
fn weak_retention_and_foreign_policies_fail_the_right_checks() {
    let strict_retention = AuditPolicySettings {
        log: AuditLogSettings {
            max_age: 90,
            ..AuditLogSettings::default()
        },
        ..settings(AuditProfile::Baseline)
    };
    let flags: Vec<(&str, &str)> = GOOD_FLAGS
        .iter()
        .copied()
        .map(|(n, v)| {
            if n == "audit-log-maxsize" {
                (n, "ten")
            } else {
                (n, v)
            }
        })
        .collect();
    let drift = evaluate_audit(
        "cp-1",
        &api_with(
            &flags,
            Some(fixture!("audit/weak-everything-requestresponse.yaml")),
        ),
        &strict_retention,
    );
    assert_eq!(
        checks(&drift),
        [
            (check_ids::LOG_MAXAGE, DriftReason::Violation),
            (check_ids::LOG_MAXSIZE, DriftReason::Violation),
            (check_ids::POLICY_COVERAGE, DriftReason::Violation),
            (check_ids::POLICY_MATCHES, DriftReason::Violation),
        ]
    );
    assert_eq!(
        drift[0].message,
        "--audit-log-maxage=30; want at least 90 days"
    );
    assert!(
        drift[3].message.contains("(not written by kube-baseline)"),
        "{}",
        drift[3].message
    );

    // A strong hand-written policy covers CIS 3.2.2 but is not the rendered one.
    let drift = evaluate_audit(
        "cp-1",
        &api_with(GOOD_FLAGS, Some(fixture!("audit/strong-policy.yaml"))),
        &settings(AuditProfile::Baseline),
    );
    assert_eq!(
        checks(&drift),
        [(check_ids::POLICY_MATCHES, DriftReason::Violation)]
    );
}

#[test]
fn unreadable_or_pending_policies_are_unknown() {
    let mut api = api_with(GOOD_FLAGS, None);
    api.audit_policy = AuditPolicyObservation {
        header: Observation::error("permission denied".to_owned()),
        path: "/etc/kubernetes/audit/policy.yaml".to_owned(),
        ..AuditPolicyObservation::default()
    };
    let drift = evaluate_audit("cp-1", &api, &settings(AuditProfile::Baseline));
    assert_eq!(
        checks(&drift),
        [
            (check_ids::POLICY_COVERAGE, DriftReason::Unknown),
            (check_ids::POLICY_MATCHES, DriftReason::Unknown),
        ]
    );

    let settings = settings(AuditProfile::Strict);
    let rendered = render_policy_yaml(&settings).unwrap();
    let mut api = api_with(GOOD_FLAGS, Some(&rendered));
    api.audit_policy.pending_restart = true;
    let drift = evaluate_audit("cp-1", &api, &settings);
    assert_eq!(
        checks(&drift),
        [
            (check_ids::POLICY_COVERAGE, DriftReason::Unknown),
            (check_ids::POLICY_MATCHES, DriftReason::Unknown),
        ]
    );
    assert!(drift[0].message.contains("after a restart"));
}
