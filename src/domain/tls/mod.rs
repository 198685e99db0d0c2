//! TLS of the selected namespaces' Ingresses and Gateways (`spec.tls`), pure: the shells
//! reduce each Ingress to [`IngressFacts`] and each Gateway to [`GatewayFacts`];
//! [`evaluate_namespace`] and [`evaluate_gateways`] judge them and apply the baseline's
//! exemptions. Report only: every finding is a Violation or Unknown, never
//! repaired. Layered: `hosts` (names and coverage) at the bottom, `ingress` and
//! `gateway` on it, this module on top.

pub mod certificate;
pub mod gateway;
pub mod hosts;
pub mod ingress;
pub mod secrets;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use std::collections::BTreeMap;

use crate::api::{DriftEntry, DriftReason, TlsExemption, TlsObjectKind, TlsSettings};
use crate::domain::checks::CheckInfo;
use crate::domain::node::findings::truncate;

pub use certificate::{CertificateFacts, SecretFacts};
pub use gateway::GatewayFacts;
pub use ingress::IngressFacts;
pub use secrets::SecretsView;

/// Check IDs of the TLS checks.
pub mod check_ids {
    pub const INGRESS_TLS_MISSING: &str = "ingress.tls-missing";
    pub const INGRESS_TLS_HOST_COVERAGE: &str = "ingress.tls-host-coverage";
    pub const TLS_SECRET: &str = "tls.secret";
    pub const TLS_CERTIFICATE_MALFORMED: &str = "tls.certificate-malformed";
    pub const TLS_CERTIFICATE_EXPIRED: &str = "tls.certificate-expired";
    pub const TLS_CERTIFICATE_EXPIRING: &str = "tls.certificate-expiring";
    pub const TLS_CERTIFICATE_HOST: &str = "tls.certificate-host";
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
    CheckInfo {
        id: check_ids::TLS_SECRET,
        description: "The Secret an Ingress's spec.tls entry names exists and is of type kubernetes.io/tls",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::TLS_CERTIFICATE_MALFORMED,
        description: "That Secret's tls.crt holds a certificate that parses",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::TLS_CERTIFICATE_EXPIRED,
        description: "That certificate has not expired",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::TLS_CERTIFICATE_EXPIRING,
        description: "That certificate does not expire within spec.tls.expiryWarningDays",
        cis: &[],
    },
    CheckInfo {
        id: check_ids::TLS_CERTIFICATE_HOST,
        description: "That certificate's subjectAltName DNS names cover every host of the spec.tls entry",
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

/// What the TLS checks read of one namespace, observed at `now`.
#[derive(Debug, Clone)]
pub struct NamespaceTls<'a> {
    pub ingresses: &'a [&'a IngressFacts],
    pub gateways: &'a [&'a GatewayFacts],
    pub secrets: SecretsView<'a>,
    pub now: Timestamp,
}

/// The TLS findings of one namespace, and the next instant they change by time alone (when
/// the controller evaluates the namespace again).
#[derive(Debug, Default)]
pub struct TlsVerdict {
    pub entries: Vec<DriftEntry>,
    pub next_change: Option<Timestamp>,
}

/// The TLS findings of the Ingresses of `namespace` (a selected one), exemptions applied.
pub fn evaluate_namespace(
    settings: &TlsSettings,
    namespace: &str,
    inputs: &NamespaceTls<'_>,
) -> TlsVerdict {
    let mut verdict = TlsVerdict::default();
    if !settings.ingress {
        return verdict;
    }
    let warning = SignedDuration::from_hours(i64::from(settings.expiry_warning_days) * 24);
    for ingress in inputs.ingresses.iter().copied() {
        let mut findings = ingress::evaluate_ingress(namespace, ingress);
        // Without spec.tls there is no certificate to look at.
        if settings.certificates && !ingress.tls.is_empty() {
            let certificates =
                secrets::evaluate_secrets(namespace, ingress, &inputs.secrets, warning, inputs.now);
            findings.extend(certificates.findings);
            verdict.next_change = secrets::earliest(verdict.next_change, certificates.next_change);
        }
        verdict.entries.extend(
            findings
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
                }),
        );
    }
    verdict.entries.sort();
    verdict.entries.dedup();
    verdict
}

/// The TLS findings of the Gateways of `namespace` (a selected one), exemptions applied.
pub fn evaluate_gateways<'a>(
    settings: &TlsSettings,
    namespace: &str,
    gateways: impl IntoIterator<Item = &'a GatewayFacts>,
) -> Vec<DriftEntry> {
    if !settings.gateway {
        return Vec::new();
    }
    let mut entries: Vec<DriftEntry> = gateways
        .into_iter()
        .flat_map(|gateway| {
            let subject = Subject {
                kind: TlsObjectKind::Gateway,
                namespace,
                name: &gateway.name,
                labels: &gateway.labels,
            };
            gateway::evaluate_gateway(namespace, gateway)
                .into_iter()
                .filter(move |finding| {
                    !settings
                        .exemptions
                        .iter()
                        .any(|e| subject.exempted_by(e, finding))
                })
                .map(|finding| DriftEntry {
                    namespace: namespace.to_owned(),
                    kind: "Gateway".to_owned(),
                    name: gateway.name.clone(),
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

/// The object a finding is about, as exemptions match it.
#[derive(Clone, Copy)]
struct Subject<'a> {
    kind: TlsObjectKind,
    namespace: &'a str,
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
}

impl Subject<'_> {
    /// Whether `exemption` covers `finding` about this object: every field it sets must
    /// match.
    fn exempted_by(&self, exemption: &TlsExemption, finding: &Finding) -> bool {
        exemption.kind.is_none_or(|k| k == self.kind)
            && exemption
                .namespace
                .as_deref()
                .is_none_or(|n| n == self.namespace)
            && exemption.name.as_deref().is_none_or(|n| n == self.name)
            && exemption
                .match_labels
                .iter()
                .all(|(k, v)| self.labels.get(k) == Some(v))
            && exemption
                .host
                .as_deref()
                .is_none_or(|h| finding.host.as_deref() == Some(h))
            && (exemption.checks.is_empty() || exemption.checks.iter().any(|c| c == finding.check))
    }
}

/// Whether `exemption` covers `finding` about `ingress`: every field it sets must match.
fn exempts(
    exemption: &TlsExemption,
    namespace: &str,
    ingress: &IngressFacts,
    finding: &Finding,
) -> bool {
    Subject {
        kind: TlsObjectKind::Ingress,
        namespace,
        name: &ingress.name,
        labels: &ingress.labels,
    }
    .exempted_by(exemption, finding)
}

#[cfg(test)]
mod tests;
