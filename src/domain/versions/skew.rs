//! `version.kubelet-skew` and `version.apiserver-skew`: the upstream version skew policy
//! (kubernetes.io/releases/version-skew-policy).
//!
//! "In highly-available (HA) clusters, the newest and oldest kube-apiserver instances must be
//! within one minor version." "kubelet must not be newer than kube-apiserver. kubelet may be
//! up to three minor versions older than kube-apiserver (kubelet < 1.25 may only be up to two
//! minor versions older)." With several kube-apiservers a kubelet must fit all of them, so
//! its allowed range is [newest − 3, oldest].

use crate::api::{DriftEntry, DriftReason};
use crate::domain::node::findings::node_drift;
use crate::domain::versions::check_ids::{APISERVER_SKEW, KUBELET_SKEW};
use crate::domain::versions::control_plane_drift;
use crate::domain::versions::observed::{ApiServerVersion, ApiServers};
use crate::domain::versions::version::KubeVersion;

/// How many minors a kubelet of this version may lag behind kube-apiserver.
fn allowed_lag(kubelet: KubeVersion) -> u32 {
    if kubelet.major == 1 && kubelet.minor < 25 {
        2
    } else {
        3
    }
}

/// One finding per Node whose kubelet is outside the policy or cannot be judged.
/// `kubelets` are (node name, `status.nodeInfo.kubeletVersion`).
pub(crate) fn kubelet_skew(
    kubelets: &[(String, String)],
    servers: &ApiServers<'_>,
) -> Vec<DriftEntry> {
    kubelets
        .iter()
        .filter_map(|(node, version)| {
            let (reason, message) = judge_kubelet(version, servers)?;
            Some(node_drift(node, KUBELET_SKEW, reason, message))
        })
        .collect()
}

fn judge_kubelet(version: &str, servers: &ApiServers<'_>) -> Option<(DriftReason, String)> {
    if version.is_empty() {
        return Some((
            DriftReason::Unknown,
            "status.nodeInfo.kubeletVersion is empty: the kubelet version is unknown".to_owned(),
        ));
    }
    let kubelet = match KubeVersion::parse(version) {
        Ok(kubelet) => kubelet.minor_of(),
        Err(why) => {
            return Some((
                DriftReason::Unknown,
                format!("kubelet version unknown: {why}"),
            ));
        }
    };
    let (Some(oldest), Some(newest)) = (servers.oldest(), servers.newest()) else {
        return Some((
            DriftReason::Unknown,
            format!("no kube-apiserver version is known to compare kubelet {version} with"),
        ));
    };
    if kubelet > oldest.version.minor_of() {
        return Some((DriftReason::Violation, newer_message(version, oldest)));
    }
    let lag = allowed_lag(kubelet);
    let within = kubelet
        .minors_behind(newest.version)
        .is_some_and(|behind| behind <= lag);
    (!within).then(|| (DriftReason::Violation, older_message(version, lag, newest)))
}

fn newer_message(kubelet: &str, oldest: &ApiServerVersion<'_>) -> String {
    format!(
        "kubelet {kubelet} is newer than the oldest kube-apiserver ({}); a kubelet must not be \
         newer than kube-apiserver",
        oldest.describe()
    )
}

fn older_message(kubelet: &str, lag: u32, newest: &ApiServerVersion<'_>) -> String {
    let note = if lag == 2 {
        " (2 for kubelets older than 1.25)"
    } else {
        ""
    };
    format!(
        "kubelet {kubelet} is more than {lag} minors older than the newest kube-apiserver ({}); \
         a kubelet may lag at most {lag} minors{note}",
        newest.describe()
    )
}

/// At most one Unknown (versions that could not be read) and one Violation (read versions
/// more than one minor apart), both on the control plane.
pub(crate) fn apiserver_skew(servers: &ApiServers<'_>) -> Vec<DriftEntry> {
    let mut findings = Vec::new();
    if !servers.unreadable.is_empty() {
        findings.push(control_plane_drift(
            APISERVER_SKEW,
            DriftReason::Unknown,
            format!(
                "kube-apiserver version unreadable, so its skew is unknown: {}",
                servers.describe_unreadable()
            ),
        ));
    }
    if let (Some(oldest), Some(newest)) = (servers.oldest(), servers.newest()) {
        let apart = oldest
            .version
            .minors_behind(newest.version)
            .is_none_or(|behind| behind > 1);
        if apart {
            findings.push(control_plane_drift(
                APISERVER_SKEW,
                DriftReason::Violation,
                apart_message(servers),
            ));
        }
    }
    findings
}

fn apart_message(servers: &ApiServers<'_>) -> String {
    let observed: Vec<String> = servers
        .read
        .iter()
        .map(ApiServerVersion::describe)
        .collect();
    format!(
        "kube-apiservers more than one minor apart ({}); the newest and oldest must be within \
         one minor",
        observed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// (node, reason, message) of every kubelet finding.
    fn kubelet_findings(
        apiservers: &[(&str, Result<&str, &str>)],
        kubelets: &[(&str, &str)],
    ) -> Vec<(String, DriftReason, String)> {
        let observations = api(apiservers);
        kubelet_skew(&nodes(kubelets), &ApiServers::read(&observations))
            .into_iter()
            .map(|f| {
                assert_eq!(
                    (f.kind.as_str(), f.check.as_str()),
                    ("Node", "version.kubelet-skew")
                );
                (f.name, f.reason, f.message)
            })
            .collect()
    }

    #[test]
    fn kubelets_up_to_three_minors_older_and_not_newer_pass() {
        let findings = kubelet_findings(
            &[("/version", Ok("v1.36.3"))],
            &[
                ("same", "v1.36.3"),
                ("older-patch-newer", "v1.36.9"),
                ("one-behind", "v1.35.0-eks-1"),
                ("three-behind", "v1.33.0+k3s1"),
                ("no-patch", "1.34"),
            ],
        );
        assert_eq!(findings, []);
    }

    #[test]
    fn a_kubelet_too_old_or_too_new_is_a_violation_naming_both_versions() {
        let findings = kubelet_findings(
            &[("/version", Ok("v1.36.3"))],
            &[("old", "v1.32.5"), ("new", "v1.37.0")],
        );
        assert_eq!(
            findings,
            [
                (
                    "old".to_owned(),
                    DriftReason::Violation,
                    "kubelet v1.32.5 is more than 3 minors older than the newest kube-apiserver \
                     (v1.36.3 at /version); a kubelet may lag at most 3 minors"
                        .to_owned()
                ),
                (
                    "new".to_owned(),
                    DriftReason::Violation,
                    "kubelet v1.37.0 is newer than the oldest kube-apiserver (v1.36.3 at /version); \
                     a kubelet must not be newer than kube-apiserver"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn kubelets_older_than_1_25_may_lag_two_minors_only() {
        let apiservers = [("/version", Ok("v1.26.15"))];
        assert_eq!(kubelet_findings(&apiservers, &[("n", "v1.24.17")]), []);
        assert_eq!(
            kubelet_findings(&[("/version", Ok("v1.28.0"))], &[("n", "v1.25.0")]),
            []
        );
        let findings = kubelet_findings(&[("/version", Ok("v1.27.16"))], &[("n", "v1.24.17")]);
        assert_eq!(
            findings,
            [(
                "n".to_owned(),
                DriftReason::Violation,
                "kubelet v1.24.17 is more than 2 minors older than the newest kube-apiserver \
                 (v1.27.16 at /version); a kubelet may lag at most 2 minors (2 for kubelets older than 1.25)"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn with_several_apiservers_the_range_is_newest_minus_three_to_oldest() {
        let apiservers = [("/version", Ok("v1.35.2")), ("cp-2", Ok("v1.34.1"))];
        let findings = kubelet_findings(
            &apiservers,
            &[
                ("k35", "v1.35.0"),
                ("k34", "v1.34.0"),
                ("k32", "v1.32.0"),
                ("k31", "v1.31.0"),
            ],
        );
        let judged: Vec<(&str, DriftReason)> =
            findings.iter().map(|(n, r, _)| (n.as_str(), *r)).collect();
        assert_eq!(
            judged,
            [
                ("k35", DriftReason::Violation),
                ("k31", DriftReason::Violation)
            ]
        );
        assert!(
            findings[0]
                .2
                .contains("newer than the oldest kube-apiserver (v1.34.1 at cp-2)")
        );
        assert!(
            findings[1]
                .2
                .contains("than the newest kube-apiserver (v1.35.2 at /version)")
        );
    }

    #[test]
    fn unreadable_kubelet_versions_are_unknown_naming_the_node() {
        let findings = kubelet_findings(
            &[("/version", Ok("v1.36.3"))],
            &[("empty", ""), ("garbage", "garbage"), ("major-only", "v1")],
        );
        assert_eq!(
            findings,
            [
                (
                    "empty".to_owned(),
                    DriftReason::Unknown,
                    "status.nodeInfo.kubeletVersion is empty: the kubelet version is unknown".to_owned()
                ),
                (
                    "garbage".to_owned(),
                    DriftReason::Unknown,
                    "kubelet version unknown: \"garbage\" is not a Kubernetes version (expected e.g. v1.36.3)"
                        .to_owned()
                ),
                (
                    "major-only".to_owned(),
                    DriftReason::Unknown,
                    "kubelet version unknown: \"v1\" is not a Kubernetes version (expected e.g. v1.36.3)"
                        .to_owned()
                ),
            ]
        );
    }

    #[test]
    fn without_an_apiserver_version_every_kubelet_is_unknown() {
        for apiservers in [vec![], vec![("/version", Err("forbidden"))]] {
            let findings = kubelet_findings(&apiservers, &[("n1", "v1.36.3")]);
            assert_eq!(
                findings,
                [(
                    "n1".to_owned(),
                    DriftReason::Unknown,
                    "no kube-apiserver version is known to compare kubelet v1.36.3 with".to_owned()
                )]
            );
        }
    }

    #[test]
    fn across_majors_a_kubelet_is_outside_the_range() {
        let findings = kubelet_findings(
            &[("/version", Ok("v1.36.3"))],
            &[("two", "v2.0.0"), ("zero", "v0.36.0")],
        );
        let reasons: Vec<_> = findings.iter().map(|(n, r, _)| (n.as_str(), *r)).collect();
        assert_eq!(
            reasons,
            [
                ("two", DriftReason::Violation),
                ("zero", DriftReason::Violation)
            ]
        );
    }

    /// (reason, message) of every apiserver-skew finding.
    fn apiserver_findings(apiservers: &[(&str, Result<&str, &str>)]) -> Vec<(DriftReason, String)> {
        let observations = api(apiservers);
        apiserver_skew(&ApiServers::read(&observations))
            .into_iter()
            .map(|f| {
                assert_eq!(
                    (f.kind.as_str(), f.name.as_str(), f.check.as_str()),
                    ("ControlPlane", "kube-apiserver", "version.apiserver-skew")
                );
                (f.reason, f.message)
            })
            .collect()
    }

    #[test]
    fn apiservers_within_one_minor_pass() {
        assert_eq!(apiserver_findings(&[]), []);
        assert_eq!(apiserver_findings(&[("/version", Ok("v1.36.3"))]), []);
        assert_eq!(
            apiserver_findings(&[
                ("/version", Ok("v1.36.3")),
                ("cp-1", Ok("v1.35.0")),
                ("cp-2", Ok("v1.36.0"))
            ]),
            []
        );
    }

    #[test]
    fn apiservers_two_minors_apart_are_one_violation_listing_each() {
        assert_eq!(
            apiserver_findings(&[
                ("/version", Ok("v1.36.3")),
                ("cp-1", Ok("v1.34.1")),
                ("cp-2", Ok("v1.35.0-eks-1")),
            ]),
            [(
                DriftReason::Violation,
                "kube-apiservers more than one minor apart (v1.34.1 at cp-1, v1.35.0-eks-1 at cp-2, \
                 v1.36.3 at /version); the newest and oldest must be within one minor"
                    .to_owned()
            )]
        );
        let across_majors = apiserver_findings(&[("a", Ok("v1.36.0")), ("b", Ok("v2.0.0"))]);
        assert_eq!(across_majors.len(), 1);
        assert_eq!(across_majors[0].0, DriftReason::Violation);
    }

    #[test]
    fn an_unreadable_apiserver_version_is_unknown() {
        assert_eq!(
            apiserver_findings(&[
                ("/version", Ok("v1.36.3")),
                ("cp-2", Err("connection refused")),
                ("cp-3", Ok("")),
            ]),
            [(
                DriftReason::Unknown,
                "kube-apiserver version unreadable, so its skew is unknown: cp-2: connection refused; \
                 cp-3: \"\" is not a Kubernetes version (expected e.g. v1.36.3)"
                    .to_owned()
            )]
        );
    }
}
