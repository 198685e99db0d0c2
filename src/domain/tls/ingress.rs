//! The Ingress checks: `ingress.tls-missing` (no `spec.tls` at all) and
//! `ingress.tls-host-coverage` (a host the Ingress routes that no `spec.tls[].hosts` covers).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::Ingress;

use crate::api::DriftReason;
use crate::domain::tls::hosts::{covers, invalid_host};
use crate::domain::tls::{Finding, check_ids};

/// An Ingress, as far as the checks need it (the controller's cache holds this, not the
/// object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressFacts {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// `spec.tls`, one per entry.
    pub tls: Vec<TlsEntry>,
    /// The distinct rule hosts, as written.
    pub rule_hosts: BTreeSet<String>,
    /// A rule without a host, or a default backend: every host reaching the controller.
    pub catch_all: bool,
}

/// One `spec.tls` entry of an Ingress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsEntry {
    /// Its hosts (none: the Ingress controller's default TLS host setting).
    pub hosts: Vec<String>,
    /// The Secret holding its certificate (none: the controller's default certificate).
    pub secret_name: Option<String>,
}

impl IngressFacts {
    fn tls_hosts(&self) -> impl Iterator<Item = &String> {
        self.tls.iter().flat_map(|entry| &entry.hosts)
    }

    fn has_tls_entry_without_hosts(&self) -> bool {
        self.tls.iter().any(|entry| entry.hosts.is_empty())
    }
}

impl IngressFacts {
    pub fn from_ingress(ingress: &Ingress) -> Self {
        let spec = ingress.spec.as_ref();
        let rules = spec.and_then(|s| s.rules.as_deref()).unwrap_or_default();
        let rule_hosts = rules.iter().filter_map(|rule| rule.host.clone()).collect();
        let catch_all = rules.iter().any(|rule| rule.host.is_none())
            || spec.is_some_and(|s| s.default_backend.is_some());
        Self {
            name: ingress.metadata.name.clone().unwrap_or_default(),
            labels: ingress.metadata.labels.clone().unwrap_or_default(),
            tls: spec
                .and_then(|s| s.tls.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|entry| TlsEntry {
                    hosts: entry.hosts.clone().unwrap_or_default(),
                    secret_name: entry.secret_name.clone().filter(|name| !name.is_empty()),
                })
                .collect(),
            rule_hosts,
            catch_all,
        }
    }
}

/// The findings of one Ingress (before exemptions).
pub fn evaluate_ingress(namespace: &str, ingress: &IngressFacts) -> Vec<Finding> {
    let object = format!("Ingress {namespace}/{}", ingress.name);
    if ingress.tls.is_empty() {
        return vec![Finding::new(
            check_ids::INGRESS_TLS_MISSING,
            DriftReason::Violation,
            None,
            format!("{object} has no spec.tls: every host it routes is served over plain HTTP"),
        )];
    }
    let mut findings: Vec<Finding> = ingress
        .rule_hosts
        .iter()
        .filter_map(|host| rule_host_finding(&object, ingress, host))
        .collect();
    if ingress.catch_all {
        findings.extend(catch_all_finding(&object, ingress));
    }
    findings
}

fn rule_host_finding(object: &str, ingress: &IngressFacts, host: &str) -> Option<Finding> {
    let finding = |reason, message| {
        Some(Finding::new(
            check_ids::INGRESS_TLS_HOST_COVERAGE,
            reason,
            Some(host.to_owned()),
            message,
        ))
    };
    if let Some(why) = invalid_host(host) {
        return finding(
            DriftReason::Unknown,
            format!("{object}: rule host {why}, so the API server would reject it"),
        );
    }
    if ingress.tls_hosts().any(|tls| covers(tls, host)) {
        return None;
    }
    if ingress.has_tls_entry_without_hosts() {
        return finding(
            DriftReason::Unknown,
            format!(
                "{object}: rule host {host} is named by no spec.tls[].hosts; a spec.tls entry without hosts uses the Ingress controller's default TLS host setting, which the API does not show"
            ),
        );
    }
    finding(
        DriftReason::Violation,
        format!(
            "{object}: rule host {host} is not covered by any spec.tls[].hosts ({}); a wildcard covers exactly one label",
            ingress.tls_hosts().cloned().collect::<Vec<_>>().join(", ")
        ),
    )
}

/// A catch-all (rule without host, default backend) answers every host: only a TLS entry
/// without hosts (the controller's default) could cover it, and what that covers is not in
/// the API.
fn catch_all_finding(object: &str, ingress: &IngressFacts) -> Option<Finding> {
    let (reason, message) = if ingress.has_tls_entry_without_hosts() {
        (
            DriftReason::Unknown,
            format!(
                "{object}: a rule without host or the default backend serves every host; only the Ingress controller's default TLS host setting (a spec.tls entry without hosts) could cover it, which the API does not show"
            ),
        )
    } else {
        (
            DriftReason::Violation,
            format!(
                "{object}: a rule without host or the default backend serves every host, but every spec.tls entry names hosts: requests for other hosts get no matching certificate"
            ),
        )
    };
    Some(Finding::new(
        check_ids::INGRESS_TLS_HOST_COVERAGE,
        reason,
        None,
        message,
    ))
}
