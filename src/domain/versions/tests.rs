//! [`evaluate`] as the shells call it: which checks run, sorting, the end of life and when
//! to look again.

use jiff::civil::date;

use super::*;
use crate::api::EndOfLifeOverride;
use crate::domain::checks;

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn api(versions: &[(&str, Result<&str, &str>)]) -> Vec<(String, Result<String, String>)> {
    versions
        .iter()
        .map(|(at, v)| {
            (
                (*at).to_owned(),
                v.map(str::to_owned).map_err(str::to_owned),
            )
        })
        .collect()
}

fn nodes(kubelets: &[(&str, &str)]) -> Vec<(String, String)> {
    kubelets
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// (kind, name, check, reason) of every finding, in order.
fn summary(verdict: &VersionVerdict) -> Vec<(&str, &str, &str, DriftReason)> {
    verdict
        .findings
        .iter()
        .map(|f| (f.kind.as_str(), f.name.as_str(), f.check.as_str(), f.reason))
        .collect()
}

const DEPRECATED_1_37: &str = "apiserver_requested_deprecated_apis{group=\"networking.k8s.io\",removed_release=\"1.37\",resource=\"servicecidrs\",subresource=\"\",version=\"v1beta1\"} 1\n";

const TEST_NODES: &[(&str, &str)] = &[
    ("n-current", "v1.36.3"),
    ("n-three-behind", "v1.33.0"),
    ("n-too-old", "v1.32.5"),
    ("n-newer", "v1.37.0"),
    ("n-garbage", "garbage"),
];

#[test]
fn a_supported_single_apiserver_cluster() {
    let api_servers = api(&[("/version", Ok("v1.36.3"))]);
    let kubelets = nodes(TEST_NODES);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        kubelets: &kubelets,
        deprecated_metrics: None,
    };
    let verdict = evaluate(
        &KubernetesVersionSettings::default(),
        &inputs,
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(
        summary(&verdict),
        [
            (
                "Node",
                "n-garbage",
                "version.kubelet-skew",
                DriftReason::Unknown
            ),
            (
                "Node",
                "n-newer",
                "version.kubelet-skew",
                DriftReason::Violation
            ),
            (
                "Node",
                "n-too-old",
                "version.kubelet-skew",
                DriftReason::Violation
            ),
        ]
    );
    assert_eq!(
        verdict.end_of_life,
        Some(EndOfLife {
            minor: KubeVersion::minor_release(1, 36),
            last_day: date(2027, 6, 28),
            source: EolSource::UpstreamScheduled,
        })
    );
    assert_eq!(verdict.next_change, Some(at("2027-06-29T00:00:00Z")));
}

#[test]
fn a_skewed_ha_control_plane_past_its_end_of_life() {
    let api_servers = api(&[
        ("/version", Ok("v1.36.3")),
        ("cp-1", Ok("v1.36.3")),
        ("cp-2", Ok("v1.34.1")),
    ]);
    let kubelets = nodes(&[("n-current", "v1.36.3"), ("n-old", "v1.33.0")]);
    let metrics = format!("# TYPE apiserver_requested_deprecated_apis gauge\n{DEPRECATED_1_37}");
    let inputs = VersionInputs {
        api_servers: &api_servers,
        kubelets: &kubelets,
        deprecated_metrics: Some(Ok(&metrics)),
    };
    let settings = KubernetesVersionSettings {
        deprecated_apis: true,
        ..Default::default()
    };
    let verdict = evaluate(&settings, &inputs, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        summary(&verdict),
        [
            (
                "ControlPlane",
                "kube-apiserver",
                "version.apiserver-skew",
                DriftReason::Violation
            ),
            (
                "ControlPlane",
                "kube-apiserver",
                "version.control-plane-eol",
                DriftReason::Violation
            ),
            // The current minor is the oldest (1.34): 1.37 is not next, so not reported.
            (
                "Node",
                "n-current",
                "version.kubelet-skew",
                DriftReason::Violation
            ),
        ]
    );
    assert_eq!(
        verdict.findings[1].message,
        "1.34 reached end of life on 2026-10-27 (upstream, scheduled; release table of 2026-12-01)"
    );
    assert_eq!(
        verdict
            .end_of_life
            .as_ref()
            .map(EndOfLife::first_unsupported_instant),
        Some(at("2026-10-28T00:00:00Z"))
    );
    // Already past: time alone changes nothing more.
    assert_eq!(verdict.next_change, None);
}

#[test]
fn deprecated_apis_are_read_only_when_enabled() {
    let api_servers = api(&[("/version", Ok("v1.36.3"))]);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        kubelets: &[],
        deprecated_metrics: Some(Ok(DEPRECATED_1_37)),
    };
    let now = at("2026-12-01T00:00:00Z");
    assert_eq!(
        summary(&evaluate(
            &KubernetesVersionSettings::default(),
            &inputs,
            now
        )),
        []
    );
    let settings = KubernetesVersionSettings {
        deprecated_apis: true,
        ..Default::default()
    };
    assert_eq!(
        summary(&evaluate(&settings, &inputs, now)),
        [(
            "DeprecatedAPI",
            "servicecidrs.v1beta1.networking.k8s.io",
            "version.deprecated-api",
            DriftReason::Violation
        )]
    );
    let forbidden = VersionInputs {
        deprecated_metrics: Some(Err("403 Forbidden".to_owned())),
        ..inputs
    };
    let verdict = evaluate(&settings, &forbidden, now);
    assert_eq!(
        summary(&verdict),
        [(
            "ControlPlane",
            "kube-apiserver",
            "version.deprecated-api",
            DriftReason::Unknown
        )]
    );
    assert!(
        verdict.findings[0]
            .message
            .contains("config/rbac/apiserver-metrics")
    );
}

#[test]
fn disabled_checks_say_nothing() {
    let api_servers = api(&[("/version", Ok("v1.27.0")), ("cp-2", Err("timeout"))]);
    let kubelets = nodes(TEST_NODES);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        kubelets: &kubelets,
        deprecated_metrics: Some(Err("forbidden".to_owned())),
    };
    let settings = KubernetesVersionSettings {
        support_window: false,
        end_of_life_overrides: Vec::new(),
        skew: false,
        deprecated_apis: false,
    };
    let verdict = evaluate(&settings, &inputs, at("2026-12-01T00:00:00Z"));
    assert_eq!(verdict, VersionVerdict::default());

    let only_skew = KubernetesVersionSettings {
        skew: true,
        ..settings.clone()
    };
    let verdict = evaluate(&only_skew, &inputs, at("2026-12-01T00:00:00Z"));
    assert!(
        verdict.findings.iter().all(|f| f.check.ends_with("-skew")),
        "{verdict:?}"
    );
    assert_eq!(verdict.end_of_life, None);

    let only_support = KubernetesVersionSettings {
        support_window: true,
        ..settings
    };
    let verdict = evaluate(&only_support, &inputs, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        summary(&verdict),
        [(
            "ControlPlane",
            "kube-apiserver",
            "version.control-plane-eol",
            DriftReason::Violation
        )]
    );
}

#[test]
fn an_override_moves_the_end_of_life_and_the_next_change() {
    let api_servers = api(&[("/version", Ok("v1.33.4-eks-1a2b3c"))]);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        ..Default::default()
    };
    let settings = KubernetesVersionSettings {
        end_of_life_overrides: vec![EndOfLifeOverride {
            minor: "1.33".to_owned(),
            end_of_life: "2027-06-28".to_owned(),
            reason: "EKS extended support".to_owned(),
        }],
        ..Default::default()
    };
    let before = evaluate(&settings, &inputs, at("2027-06-28T23:59:59Z"));
    assert_eq!(before.findings, []);
    assert_eq!(before.next_change, Some(at("2027-06-29T00:00:00Z")));
    assert_eq!(
        before.end_of_life.as_ref().map(|e| e.source.to_string()),
        Some("override: EKS extended support".to_owned())
    );
    let after = evaluate(&settings, &inputs, at("2027-06-29T00:00:00Z"));
    assert_eq!(
        summary(&after),
        [(
            "ControlPlane",
            "kube-apiserver",
            "version.control-plane-eol",
            DriftReason::Violation
        )]
    );
    assert_eq!(after.next_change, None);
    assert_eq!(after.end_of_life, before.end_of_life);
}

#[test]
fn findings_are_sorted_and_deduplicated() {
    let api_servers = api(&[("/version", Ok("v1.36.3"))]);
    let kubelets = nodes(&[
        ("b", "v1.30.0"),
        ("a", "v1.30.0"),
        ("b", "v1.30.0"),
        ("c", ""),
    ]);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        kubelets: &kubelets,
        deprecated_metrics: None,
    };
    let verdict = evaluate(
        &KubernetesVersionSettings::default(),
        &inputs,
        at("2026-12-01T00:00:00Z"),
    );
    let names: Vec<&str> = verdict.findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn long_errors_are_cut_to_the_message_limit() {
    let error = "x".repeat(5_000);
    let api_servers = api(&[("/version", Err(&error))]);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        ..Default::default()
    };
    let verdict = evaluate(
        &KubernetesVersionSettings::default(),
        &inputs,
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(verdict.findings.len(), 2, "{:?}", summary(&verdict));
    for finding in &verdict.findings {
        assert_eq!(finding.message.chars().count(), MESSAGE_MAX);
        assert!(finding.message.ends_with('…'));
    }
}

#[test]
fn every_check_id_is_registered() {
    let registered: Vec<&str> = checks::all().iter().map(|c| c.id).collect();
    for id in [
        check_ids::CONTROL_PLANE_EOL,
        check_ids::KUBELET_SKEW,
        check_ids::APISERVER_SKEW,
        check_ids::DEPRECATED_API,
    ] {
        assert!(registered.contains(&id), "{id}");
    }
    assert_eq!(CHECKS.len(), 4);
    assert!(CHECKS.iter().all(|c| c.cis.is_empty()));
}

#[test]
fn the_status_block_names_the_version_the_end_of_life_and_the_table() {
    let api_servers = api(&[("/version", Ok("v1.34.2-gke.100"))]);
    let inputs = VersionInputs {
        api_servers: &api_servers,
        ..Default::default()
    };
    let verdict = evaluate(
        &KubernetesVersionSettings::default(),
        &inputs,
        at("2026-12-01T00:00:00Z"),
    );
    let status = verdict.status("v1.34.2-gke.100");
    assert_eq!(status.api_server, "v1.34.2-gke.100");
    assert_eq!(status.end_of_life, "2026-10-27");
    assert_eq!(status.end_of_life_source, "upstream (scheduled)");
    assert_eq!(status.release_table, TABLE_DATE);
    // Nothing judged (no version readable): only the table's date.
    let unread = api(&[("/version", Err("connection refused"))]);
    let verdict = evaluate(
        &KubernetesVersionSettings::default(),
        &VersionInputs {
            api_servers: &unread,
            ..Default::default()
        },
        at("2026-12-01T00:00:00Z"),
    );
    let status = verdict.status("");
    assert_eq!(
        (status.api_server.as_str(), status.end_of_life.as_str()),
        ("", "")
    );
    assert_eq!(status.release_table, TABLE_DATE);
}

#[test]
fn reports_showing_a_kube_apiserver_are_observations_named_after_their_nodes() {
    use crate::api::Observation;
    let report = |state: Observation, version: &str, message: &str| {
        let mut report = NodeReportSpec {
            agent_version: "0.1.0".to_owned(),
            ..NodeReportSpec::default()
        };
        report.api_server.header = state;
        report.api_server.version = version.to_owned();
        report.api_server.version_message = message.to_owned();
        report
    };
    let observed = || Observation::observed(String::new());
    let reports = [
        ("cp-1", report(observed(), "v1.36.3", "")),
        (
            "cp-2",
            report(
                observed(),
                "",
                "GET https://10.0.0.11:6443/version failed: refused",
            ),
        ),
        ("cp-3", report(observed(), "", "")),
        ("w-1", report(Observation::default(), "", "")),
        (
            "w-2",
            report(Observation::error("/proc unreadable".to_owned()), "", ""),
        ),
    ];
    let observations = reported_api_servers(reports.iter().map(|(n, r)| (*n, r)));
    assert_eq!(
        observations,
        api(&[
            ("cp-1", Ok("v1.36.3")),
            (
                "cp-2",
                Err("GET https://10.0.0.11:6443/version failed: refused")
            ),
            (
                "cp-3",
                Err(
                    "the NodeReport (agent 0.1.0) has no apiServer.version: an agent older than this check?"
                )
            ),
        ])
    );

    // Two reported minors apart, beside /version: the skew is a Violation naming both nodes.
    let mut all = api(&[("/version", Ok("v1.36.3"))]);
    all.extend(reported_api_servers([
        ("cp-1", &reports[0].1),
        ("cp-2", &report(observed(), "v1.34.1", "")),
    ]));
    let settings = KubernetesVersionSettings {
        support_window: false,
        ..KubernetesVersionSettings::default()
    };
    let inputs = VersionInputs {
        api_servers: &all,
        ..VersionInputs::default()
    };
    let verdict = evaluate(&settings, &inputs, at("2026-12-01T00:00:00Z"));
    assert_eq!(
        summary(&verdict),
        [(
            "ControlPlane",
            "kube-apiserver",
            check_ids::APISERVER_SKEW,
            DriftReason::Violation
        )]
    );
    assert!(
        verdict.findings[0]
            .message
            .contains("(v1.34.1 at cp-2, v1.36.3 at /version, v1.36.3 at cp-1)"),
        "{}",
        verdict.findings[0].message
    );
}
