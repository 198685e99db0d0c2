//! The SecurityBaseline status, built from what the reconcilers found: conditions (kstatus),
//! summary counts and the bounded, sorted drift list.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{
    BaselineSummary, DriftEntry, KubernetesVersionStatus, SecurityBaselineStatus, WaivedEntry,
    WaiverStatus,
};

/// At most this many drift entries are listed; `driftTotal` counts all of them.
pub const MAX_DRIFT_ENTRIES: usize = 50;

/// A baseline's selected namespaces by state: the one count that status, the
/// `kube_baseline_namespaces` metric and `check` report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NamespaceCounts {
    pub selected: usize,
    /// With outstanding drift.
    pub drifted: usize,
    /// Not yet evaluated at the current generation (`check` evaluates all at once: 0).
    pub pending: usize,
}

impl NamespaceCounts {
    /// Selected, evaluated and without drift. A namespace not yet evaluated is not known to
    /// be compliant, so pending never counts as compliant.
    pub fn compliant(&self) -> usize {
        self.selected.saturating_sub(self.drifted + self.pending)
    }
}

/// Whether a baseline holds everywhere it applies. One rule for the Compliant condition, the
/// `kube_baseline_compliant` metric and `check`'s verdict, so they never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compliance {
    /// Every selected namespace was evaluated at the current generation, and nothing there
    /// or on a node has drift.
    Compliant,
    /// Drift was found. Namespaces still pending cannot undo that, so this is known even
    /// before they are evaluated.
    Drifted,
    /// No drift so far, but some selected namespaces are not yet evaluated at the current
    /// generation: nothing is known about them (`kubectl wait --for=condition=Compliant`
    /// must not return yet).
    Pending,
}

impl Compliance {
    /// The rule. Nodes have no pending state: their reports are evaluated against the
    /// current spec whenever the status is built, and a selected node without a report is
    /// drift (Unknown), not compliant.
    pub fn of(drift_total: usize, namespaces_pending: usize) -> Self {
        if drift_total > 0 {
            Self::Drifted
        } else if namespaces_pending > 0 {
            Self::Pending
        } else {
            Self::Compliant
        }
    }

    /// The status of the Compliant condition.
    pub fn condition_status(self) -> &'static str {
        match self {
            Self::Compliant => "True",
            Self::Drifted => "False",
            Self::Pending => "Unknown",
        }
    }
}

/// Why reconciling failed, as it shows in conditions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The operator lacks a permission: a human must grant it (Stalled).
    Forbidden(String),
    /// Anything else; retried with backoff.
    Error(String),
}

/// Everything the status is computed from.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs {
    pub generation: i64,
    pub namespaces_selected: usize,
    /// Selected namespaces not yet reconciled at this generation.
    pub namespaces_pending: usize,
    /// Selected namespaces with outstanding drift.
    pub namespaces_drifted: usize,
    pub nodes_selected: usize,
    pub nodes_compliant: usize,
    /// Selected namespaces whose enforce level a Gated rollout holds back.
    pub namespaces_gated: usize,
    pub repairs: i64,
    /// Outstanding drift in namespaces and on nodes.
    pub drift: Vec<DriftEntry>,
    pub failures: Vec<Failure>,
    /// Other baselines sharing Pod Security labels with this one (strictest level applied).
    pub shared_pod_security_with: BTreeSet<String>,
    /// What the version checks judged with (baselines with kubernetesVersion).
    pub kubernetes_version: Option<KubernetesVersionStatus>,
    /// Findings an active waiver accepts (not drift).
    pub waived: Vec<WaivedEntry>,
    /// Each waiver's state (`waivers::Waivers::report`).
    pub waivers: Vec<WaiverStatus>,
}

impl StatusInputs {
    /// The namespace counts these inputs stand for.
    pub fn namespace_counts(&self) -> NamespaceCounts {
        NamespaceCounts {
            selected: self.namespaces_selected,
            drifted: self.namespaces_drifted,
            pending: self.namespaces_pending,
        }
    }
}

/// Builds the status. Conditions keep their lastTransitionTime from `previous` when their
/// status did not change, so an unchanged cluster yields an identical status (no write).
pub fn build_status(
    inputs: StatusInputs,
    previous: Option<&SecurityBaselineStatus>,
    now: &Time,
) -> SecurityBaselineStatus {
    let namespace_counts = inputs.namespace_counts();
    let StatusInputs {
        generation,
        namespaces_selected,
        namespaces_pending,
        namespaces_drifted,
        nodes_selected,
        nodes_compliant,
        namespaces_gated,
        repairs,
        mut drift,
        mut failures,
        shared_pod_security_with,
        kubernetes_version,
        mut waived,
        waivers,
    } = inputs;
    drift.sort();
    drift.dedup();
    waived.sort();
    waived.dedup();
    let waived_total = waived.len();
    waived.truncate(MAX_DRIFT_ENTRIES);
    failures.sort();
    failures.dedup();
    let drift_total = drift.len();
    let drifted_places: BTreeSet<(&str, &str)> = drift
        .iter()
        .map(|d| {
            if d.namespace.is_empty() {
                ("node", d.name.as_str())
            } else {
                ("ns", d.namespace.as_str())
            }
        })
        .collect();
    let forbidden: Vec<&String> = failures
        .iter()
        .filter_map(|f| match f {
            Failure::Forbidden(m) => Some(m),
            Failure::Error(_) => None,
        })
        .collect();
    let first_failure = failures.first().map(|f| match f {
        Failure::Forbidden(m) | Failure::Error(m) => m.clone(),
    });

    let shared = if shared_pod_security_with.is_empty() {
        String::new()
    } else {
        let names: Vec<_> = shared_pod_security_with.into_iter().collect();
        format!(
            "; Pod Security labels shared with baseline(s) {} (strictest level applied)",
            names.join(", ")
        )
    };

    let ready = match (&first_failure, namespaces_pending) {
        (Some(message), _) => (
            "False",
            if forbidden.is_empty() {
                "ReconcileError"
            } else {
                "Forbidden"
            },
            truncate(message),
        ),
        (None, 0) => (
            "True",
            "Reconciled",
            format!("{namespaces_selected} namespaces reconciled at generation {generation}"),
        ),
        (None, pending) => (
            "False",
            "Progressing",
            format!("{pending} of {namespaces_selected} namespaces not yet reconciled"),
        ),
    };
    let compliance = Compliance::of(drift_total, namespaces_pending);
    let compliant = match compliance {
        Compliance::Compliant => (
            compliance.condition_status(),
            "NoDrift",
            format!(
                "no drift in {namespaces_selected} namespaces and {nodes_selected} nodes{shared}"
            ),
        ),
        Compliance::Drifted => {
            let places = drifted_places.len();
            let pending = if namespaces_pending > 0 {
                format!("; {namespaces_pending} namespaces not yet evaluated")
            } else {
                String::new()
            };
            (
                compliance.condition_status(),
                "DriftDetected",
                format!(
                    "{drift_total} drift findings in {places} namespaces or nodes{pending}{shared}"
                ),
            )
        }
        Compliance::Pending => (
            compliance.condition_status(),
            "NamespacesPending",
            format!(
                "{namespaces_pending} of {namespaces_selected} namespaces not yet evaluated at generation {generation}; no drift in the others{shared}"
            ),
        ),
    };
    let reconciling = if namespaces_pending > 0 {
        (
            "True",
            "Progressing",
            format!("{namespaces_pending} namespaces to reconcile"),
        )
    } else {
        ("False", "Idle", String::new())
    };
    let stalled = match forbidden.first() {
        Some(message) => ("True", "Forbidden", truncate(message)),
        None => ("False", "Idle", String::new()),
    };

    let previous_conditions = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        ("Ready", ready),
        ("Compliant", compliant),
        ("Reconciling", reconciling),
        ("Stalled", stalled),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            observed_generation: Some(generation),
            last_transition_time,
        }
    })
    .collect();

    drift.truncate(MAX_DRIFT_ENTRIES);
    SecurityBaselineStatus {
        observed_generation: Some(generation),
        conditions,
        summary: BaselineSummary {
            namespaces_selected: count(namespaces_selected),
            namespaces_compliant: count(namespace_counts.compliant()),
            namespaces_drifted: count(namespaces_drifted),
            namespaces_pending: count(namespaces_pending),
            nodes_selected: count(nodes_selected),
            nodes_compliant: count(nodes_compliant),
            repairs,
            namespaces_gated: count(namespaces_gated),
            waived: count(waived_total),
        },
        drift_total: count(drift_total),
        drift,
        kubernetes_version,
        waived,
        waivers,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn truncate(message: &str) -> String {
    message.chars().take(1024).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::DriftReason;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("time"))
    }

    fn entry(namespace: &str, name: &str) -> DriftEntry {
        DriftEntry {
            namespace: namespace.to_string(),
            kind: "NetworkPolicy".to_string(),
            name: name.to_string(),
            check: "network.default-deny".to_string(),
            reason: DriftReason::Missing,
            message: String::new(),
        }
    }

    fn condition<'a>(status: &'a SecurityBaselineStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .expect("condition present")
    }

    #[test]
    fn pending_and_drifted_namespaces_are_not_compliant() {
        let counts = NamespaceCounts {
            selected: 10,
            drifted: 3,
            pending: 4,
        };
        assert_eq!(counts.compliant(), 3);
        let all_evaluated = NamespaceCounts {
            pending: 0,
            ..counts
        };
        assert_eq!(all_evaluated.compliant(), 7);
        // Drift found in namespaces no longer counted as selected never underflows.
        let over = NamespaceCounts {
            selected: 1,
            drifted: 2,
            pending: 0,
        };
        assert_eq!(over.compliant(), 0);
    }

    #[test]
    fn compliant_and_ready_when_nothing_is_pending_or_drifted() {
        let status = build_status(
            StatusInputs {
                generation: 3,
                namespaces_selected: 4,
                ..Default::default()
            },
            None,
            &now(),
        );
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Compliant").status, "True");
        assert_eq!(condition(&status, "Reconciling").status, "False");
        assert_eq!(condition(&status, "Stalled").status, "False");
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
        assert_eq!(status.summary.namespaces_compliant, 4);
    }

    #[test]
    fn waived_findings_are_counted_listed_and_not_drift() {
        let waived: Vec<WaivedEntry> = (0..60)
            .rev()
            .map(|i| WaivedEntry::new(entry(&format!("ns-{i:02}"), "x"), "w"))
            .collect();
        let waivers = vec![WaiverStatus {
            name: "w".into(),
            state: crate::api::WaiverState::Active,
            matched: 60,
            expires: "2026-12-31T00:00:00Z".into(),
            message: String::new(),
        }];
        let status = build_status(
            StatusInputs {
                generation: 1,
                namespaces_selected: 60,
                waived,
                waivers: waivers.clone(),
                ..Default::default()
            },
            None,
            &now(),
        );
        assert_eq!(condition(&status, "Compliant").status, "True");
        assert_eq!(status.drift_total, 0);
        assert_eq!(status.summary.waived, 60);
        assert_eq!(status.waived.len(), MAX_DRIFT_ENTRIES);
        assert_eq!(status.waived[0].namespace, "ns-00");
        assert_eq!(status.waivers, waivers);
        // Nothing waived: the fields are left out, so a status written before waivers existed
        // reads back equal (no write after an upgrade).
        let plain = build_status(StatusInputs::default(), None, &now());
        let json = serde_json::to_value(&plain).expect("json");
        assert!(json.get("waived").is_none() && json.get("waivers").is_none());
        assert!(json["summary"].get("waived").is_none());
    }

    #[test]
    fn drift_is_sorted_bounded_and_counted() {
        let drift: Vec<_> = (0..60)
            .rev()
            .map(|i| entry(&format!("ns-{i:02}"), "x"))
            .collect();
        let status = build_status(
            StatusInputs {
                generation: 1,
                namespaces_selected: 60,
                namespaces_drifted: 60,
                drift,
                ..Default::default()
            },
            None,
            &now(),
        );
        assert_eq!(status.drift_total, 60);
        assert_eq!(status.drift.len(), MAX_DRIFT_ENTRIES);
        assert_eq!(status.drift[0].namespace, "ns-00");
        assert_eq!(condition(&status, "Compliant").reason, "DriftDetected");
        assert!(
            condition(&status, "Compliant")
                .message
                .starts_with("60 drift findings in 60")
        );
    }

    #[test]
    fn pending_namespaces_mean_reconciling_and_not_ready() {
        let status = build_status(
            StatusInputs {
                generation: 2,
                namespaces_selected: 10,
                namespaces_pending: 3,
                ..Default::default()
            },
            None,
            &now(),
        );
        assert_eq!(condition(&status, "Ready").reason, "Progressing");
        assert_eq!(condition(&status, "Reconciling").status, "True");
        let compliant = condition(&status, "Compliant");
        assert_eq!(
            (compliant.status.as_str(), compliant.reason.as_str()),
            ("Unknown", "NamespacesPending"),
            "no drift yet is not compliant while namespaces are unevaluated"
        );
        assert!(
            compliant
                .message
                .starts_with("3 of 10 namespaces not yet evaluated at generation 2"),
            "{}",
            compliant.message
        );
        assert_eq!(status.summary.namespaces_compliant, 7);
        assert_eq!(status.summary.namespaces_pending, 3);
    }

    #[test]
    fn drift_found_is_reported_while_other_namespaces_are_pending() {
        let status = build_status(
            StatusInputs {
                generation: 2,
                namespaces_selected: 10,
                namespaces_pending: 3,
                namespaces_drifted: 1,
                drift: vec![entry("a", "b")],
                ..Default::default()
            },
            None,
            &now(),
        );
        let compliant = condition(&status, "Compliant");
        assert_eq!(compliant.status, "False");
        assert!(
            compliant
                .message
                .ends_with("; 3 namespaces not yet evaluated"),
            "{}",
            compliant.message
        );
        assert_eq!(status.summary.namespaces_compliant, 6);
    }

    #[test]
    fn compliance_rule() {
        assert_eq!(Compliance::of(0, 0), Compliance::Compliant);
        assert_eq!(Compliance::of(0, 1), Compliance::Pending);
        assert_eq!(Compliance::of(1, 0), Compliance::Drifted);
        assert_eq!(Compliance::of(1, 5), Compliance::Drifted);
        assert_eq!(Compliance::Pending.condition_status(), "Unknown");
    }

    #[test]
    fn forbidden_stalls() {
        let status = build_status(
            StatusInputs {
                generation: 2,
                failures: vec![Failure::Forbidden(
                    "cannot patch networkpolicies in shop".into(),
                )],
                ..Default::default()
            },
            None,
            &now(),
        );
        assert_eq!(condition(&status, "Stalled").status, "True");
        assert_eq!(condition(&status, "Ready").reason, "Forbidden");
    }

    #[test]
    fn unchanged_inputs_give_an_identical_status() {
        let inputs = StatusInputs {
            generation: 5,
            namespaces_selected: 2,
            drift: vec![entry("a", "b")],
            namespaces_drifted: 1,
            ..Default::default()
        };
        let first = build_status(inputs.clone(), None, &now());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"));
        let second = build_status(inputs, Some(&first), &later);
        assert_eq!(
            first, second,
            "lastTransitionTime is kept, so no write is needed"
        );
    }
}
