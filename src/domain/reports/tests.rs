use super::*;
use crate::api::SecurityBaseline;

fn finding(check: &str, reason: DriftReason, name: &str) -> DriftEntry {
    DriftEntry {
        namespace: "team-a".to_owned(),
        kind: "NetworkPolicy".to_owned(),
        name: name.to_owned(),
        check: check.to_owned(),
        reason,
        message: format!("{name} is {}", reason.as_str()),
    }
}

fn waived(check: &str, waiver: &str) -> WaivedEntry {
    WaivedEntry {
        namespace: "team-a".to_owned(),
        kind: "Namespace".to_owned(),
        name: "team-a".to_owned(),
        check: check.to_owned(),
        reason: DriftReason::Modified,
        message: "label differs".to_owned(),
        waiver: waiver.to_owned(),
    }
}

fn restricted() -> SecurityBaselineSpec {
    let text = include_str!("../../../config/samples/restricted.yaml");
    let baseline: SecurityBaseline = serde_saphyr::from_str(text).expect("restricted sample");
    baseline.spec
}

fn outcomes(body: &ReportBody) -> Vec<(&str, &str)> {
    body.results
        .iter()
        .map(|r| (r.outcome.as_str(), r.check.as_str()))
        .collect()
}

#[test]
fn drift_fails_unknown_errors_waived_skips_and_a_clean_evaluated_check_passes() {
    let body = build(
        &[
            finding("network.default-deny", DriftReason::Missing, "deny"),
            finding("network.allow-dns", DriftReason::Unknown, "dns"),
        ],
        &[waived("pod-security.labels", "legacy-app")],
        &[
            "network.default-deny",
            "network.allow-dns",
            "pod-security.labels",
            "rbac.wildcard",
        ],
        usize::from(DEFAULT_MAX_RESULTS),
    );
    assert_eq!(
        outcomes(&body),
        [
            ("fail", "network.default-deny"),
            ("error", "network.allow-dns"),
            ("skip", "pod-security.labels"),
            // A check with a waived finding is not a pass; one with nothing is.
            ("pass", "rbac.wildcard"),
        ]
    );
    assert_eq!(
        body.summary,
        Summary {
            pass: 1,
            fail: 1,
            error: 1,
            skip: 1
        }
    );
    let skip = &body.results[2];
    assert_eq!(skip.properties["waiver"], "legacy-app");
    assert_eq!(skip.properties["reason"], "Modified");
    assert_eq!(body.results[0].properties["reason"], "Missing");
}

#[test]
fn every_drift_reason_but_unknown_is_a_failure() {
    for reason in [
        DriftReason::Missing,
        DriftReason::Modified,
        DriftReason::Unexpected,
        DriftReason::Violation,
        DriftReason::Conflict,
    ] {
        assert_eq!(Outcome::of(reason), Outcome::Fail, "{reason:?}");
    }
    assert_eq!(Outcome::of(DriftReason::Unknown), Outcome::Error);
}

#[test]
fn the_limit_cuts_the_list_not_the_summary_and_keeps_failures_first() {
    let findings: Vec<DriftEntry> = (0..5)
        .map(|i| {
            finding(
                "rbac.wildcard",
                DriftReason::Violation,
                &format!("role-{i}"),
            )
        })
        .collect();
    let body = build(
        &findings,
        &[],
        &["network.default-deny", "rbac.wildcard"],
        3,
    );
    assert_eq!(body.results.len(), 3);
    assert!(body.results.iter().all(|r| r.outcome == Outcome::Fail));
    assert_eq!(body.summary.fail, 5);
    assert_eq!(body.summary.pass, 1);
    assert_eq!(body.omitted(), 3);
}

#[test]
fn the_cis_ids_of_a_check_are_a_property() {
    let body = build(&[], &[], &["kubelet.anonymous-auth"], 10);
    assert_eq!(body.results[0].properties["cis"], "4.2.1");
}

#[test]
fn the_content_hash_ignores_the_timestamp_and_follows_the_results() {
    let reference = BaselineRef {
        name: "restricted",
        uid: "uid-1",
    };
    let one = build(
        &[finding(
            "network.default-deny",
            DriftReason::Missing,
            "deny",
        )],
        &[],
        &["network.default-deny"],
        10,
    );
    let same = one.clone();
    let other = build(&[], &[], &["network.default-deny"], 10);
    assert_eq!(content_hash(&one), content_hash(&same));
    assert_ne!(content_hash(&one), content_hash(&other));
    let scope = ReportScope::Namespace("team-a");
    let early = report_object(ReportApi::OpenReports, scope, reference, &one, 1);
    let late = report_object(ReportApi::OpenReports, scope, reference, &one, 2);
    assert_ne!(early, late, "the timestamp is in the object");
    assert_eq!(
        early["metadata"]["annotations"][CONTENT_HASH_ANNOTATION],
        late["metadata"]["annotations"][CONTENT_HASH_ANNOTATION]
    );
}

#[test]
fn a_namespace_report_names_its_scope_owner_and_source() {
    let reference = BaselineRef {
        name: "restricted",
        uid: "uid-1",
    };
    let body = build(
        &[finding(
            "network.default-deny",
            DriftReason::Missing,
            "deny",
        )],
        &[],
        &[],
        10,
    );
    let object = report_object(
        ReportApi::OpenReports,
        ReportScope::Namespace("team-a"),
        reference,
        &body,
        1_700_000_000,
    );
    assert_eq!(object["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(object["kind"], "Report");
    assert_eq!(object["source"], SOURCE);
    assert_eq!(object["metadata"]["namespace"], "team-a");
    assert_eq!(object["metadata"]["name"], "baseline-restricted-report");
    assert_eq!(object["metadata"]["labels"][BASELINE_LABEL], "restricted");
    assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(object["scope"]["kind"], "Namespace");
    assert_eq!(object["scope"]["name"], "team-a");
    let result = &object["results"][0];
    assert_eq!(result["policy"], "restricted");
    assert_eq!(result["rule"], "network.default-deny");
    assert_eq!(result["result"], "fail");
    assert_eq!(result["severity"], "high");
    assert_eq!(result["category"], "Network policies");
    assert_eq!(result["timestamp"]["seconds"], 1_700_000_000);
    assert_eq!(result["resources"][0]["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(result["resources"][0]["namespace"], "team-a");
    assert_eq!(object["summary"]["fail"], 1);
}

#[test]
fn a_policy_report_has_no_report_level_source_and_a_cluster_report_no_scope() {
    let reference = BaselineRef {
        name: "restricted",
        uid: "uid-1",
    };
    let body = build(&[], &[], &["kubelet.anonymous-auth"], 10);
    let object = report_object(
        ReportApi::PolicyReport,
        ReportScope::Cluster,
        reference,
        &body,
        1,
    );
    assert_eq!(object["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(object["kind"], "ClusterPolicyReport");
    // The wgpolicyk8s schema has neither field: a strict apply would refuse them.
    assert!(object.get("source").is_none());
    assert!(object.get("configuration").is_none());
    assert!(object.get("scope").is_none());
    assert!(object["metadata"].get("namespace").is_none());
    assert_eq!(object["results"][0]["result"], "pass");
    assert!(object["results"][0].get("resources").is_none());
}

#[test]
fn the_restricted_sample_evaluates_its_objects_pod_security_and_the_rbac_audit() {
    let checks = namespace_checks(&restricted());
    for expected in [
        "network.default-deny",
        "network.allow-dns",
        "pod-security.labels",
        "rbac.wildcard",
        "rbac.admin-binding",
    ] {
        assert!(checks.contains(&expected), "{expected} in {checks:?}");
    }
    // Not turned on by the sample: never claimed as passing.
    assert!(!checks.contains(&"pod-security.preview"), "{checks:?}");
    assert!(
        !checks.iter().any(|c| c.starts_with("kubelet.")),
        "{checks:?}"
    );
}

#[test]
fn a_baseline_without_rbac_audit_or_network_policy_claims_neither() {
    let spec: SecurityBaselineSpec = serde_json::from_value(serde_json::json!({
        "networkPolicy": {"defaultDeny": {"ingress": false, "egress": false}, "allowDNS": false},
        "rbac": {"audit": {"enabled": false}},
        "podSecurity": {"enforce": "baseline", "rollout": "Gated"},
    }))
    .expect("spec");
    assert_eq!(
        namespace_checks(&spec),
        ["pod-security.labels", "pod-security.preview"]
    );
}

#[test]
fn kubelet_checks_pass_only_when_a_node_was_checked_and_versions_once_read() {
    let spec: SecurityBaselineSpec = serde_json::from_value(serde_json::json!({
        "kubelet": {"settings": {"anonymousAuth": false}},
        "kubernetesVersion": {},
    }))
    .expect("spec");
    assert!(has_cluster_checks(&spec));
    assert_eq!(
        cluster_checks(&spec, ClusterScope::default()),
        Vec::<&str>::new()
    );
    let checked = cluster_checks(
        &spec,
        ClusterScope {
            nodes_selected: 1,
            versions_read: true,
        },
    );
    assert_eq!(
        checked,
        [
            "kubelet.anonymous-auth",
            "version.apiserver-skew",
            "version.control-plane-eol",
            "version.kubelet-skew"
        ]
    );
}

#[test]
fn every_check_has_a_category_and_a_severity_of_the_reports_scale() {
    for check in crate::domain::checks::all() {
        assert_ne!(category(check.id), "Other", "{}", check.id);
        assert!(
            ["critical", "high", "medium", "low"].contains(&severity(check.id)),
            "{}",
            check.id
        );
    }
    // The lists name real checks (a renamed check would silently drop to medium).
    for named in CRITICAL_CHECKS.iter().chain(HIGH_CHECKS).chain(LOW_CHECKS) {
        assert!(crate::domain::checks::find(named).is_some(), "{named}");
    }
}
