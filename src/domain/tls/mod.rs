//! TLS of the selected namespaces' Ingresses (`spec.tls`), pure: the shells reduce each
//! Ingress to [`IngressFacts`]; [`evaluate_namespace`] judges them and applies the
//! baseline's exemptions. Report only: every finding is a Violation or Unknown, never
//! repaired. Layered: `hosts` (names and coverage) at the bottom, `ingress` on it, this
//! module on top.

pub mod hosts;
pub mod ingress;

use crate::api::{DriftEntry, DriftReason, TlsExemption, TlsSettings};
use crate::domain::checks::CheckInfo;
use crate::domain::node::findings::truncate;

pub use ingress::IngressFacts;

/// Check IDs of the TLS checks.
pub mod check_ids {
    pub const INGRESS_TLS_MISSING: &str = "ingress.tls-missing";
    pub const INGRESS_TLS_HOST_COVERAGE: &str = "ingress.tls-host-coverage";
}

/// The TLS checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::INGRESS_TLS_MISSING,
        description: "Every Ingress of a selected namespace has spec.tls",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::INGRESS_TLS_HOST_COVERAGE,
        description: "Every host an Ingress routes is covered by a spec.tls[].hosts entry (a wildcard covers one label)",
        cis: &[],
    },
];

/// Longest message a DriftEntry may carry (its schema's maxLength).
const MESSAGE_MAX: usize = 1024;

/// One finding about one object, before it becomes a [`DriftEntry`]: the host it is
/// about (for host exemptions), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub check: &'static str,
    pub reason: DriftReason,
    pub host: Option<String>,
    pub message: String,
}

impl Finding {
    fn new(
        check: &'static str,
        reason: DriftReason,
        host: Option<String>,
        message: String,
    ) -> Self {
        Self {
            check,
            reason,
            host,
            message,
        }
    }
}

/// The TLS findings of the Ingresses of `namespace` (a selected one), exemptions applied.
pub fn evaluate_namespace<'a>(
    settings: &TlsSettings,
    namespace: &str,
    ingresses: impl IntoIterator<Item = &'a IngressFacts>,
) -> Vec<DriftEntry> {
    if !settings.ingress {
        return Vec::new();
    }
    let mut entries: Vec<DriftEntry> = ingresses
        .into_iter()
        .flat_map(|ingress| {
            ingress::evaluate_ingress(namespace, ingress)
                .into_iter()
                .filter(|finding| {
                    !settings
                        .exemptions
                        .iter()
                        .any(|e| exempts(e, namespace, ingress, finding))
                })
                .map(|finding| DriftEntry {
                    namespace: namespace.to_owned(),
                    kind: "Ingress".to_owned(),
                    name: ingress.name.clone(),
                    check: finding.check.to_owned(),
                    reason: finding.reason,
                    message: truncate(finding.message, MESSAGE_MAX),
                })
        })
        .collect();
    entries.sort();
    entries.dedup();
    entries
}

/// Whether `exemption` covers `finding` about `ingress`: every field it sets must match.
fn exempts(
    exemption: &TlsExemption,
    namespace: &str,
    ingress: &IngressFacts,
    finding: &Finding,
) -> bool {
    exemption
        .namespace
        .as_deref()
        .is_none_or(|n| n == namespace)
        && exemption.name.as_deref().is_none_or(|n| n == ingress.name)
        && exemption
            .match_labels
            .iter()
            .all(|(k, v)| ingress.labels.get(k) == Some(v))
        && exemption
            .host
            .as_deref()
            .is_none_or(|h| finding.host.as_deref() == Some(h))
        && (exemption.checks.is_empty() || exemption.checks.iter().any(|c| c == finding.check))
}

#[cfg(test)]
mod tests;
