//! The certificate checks of an Ingress's `spec.tls` entries, from the Secrets they name:
//! `tls.secret` (missing, wrong type, not read), `tls.certificate-malformed`,
//! `tls.certificate-expired`, `tls.certificate-expiring` and `tls.certificate-host`.
//! Findings are about the Ingress (the object a user fixes or exempts); a Secret two
//! Ingresses share shows on both.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::api::DriftReason;
use crate::domain::tls::certificate::{CertificateFacts, SecretFacts};
use crate::domain::tls::hosts::invalid_host;
use crate::domain::tls::ingress::IngressFacts;
use crate::domain::tls::{Finding, check_ids};

/// What is known of one namespace's Secrets.
#[derive(Debug, Clone)]
pub enum SecretsView<'a> {
    /// Secrets are not read; why (the opt-in to turn on).
    NotRead(&'a str),
    /// The namespace's Secrets by name. `only_tls_type`: only `kubernetes.io/tls` Secrets are
    /// listed (the controller's watch), so an absent name may also be a Secret of another
    /// type.
    Read {
        secrets: BTreeMap<&'a str, &'a SecretFacts>,
        only_tls_type: bool,
    },
}

/// The certificate findings of one Ingress and the next instant one of them changes by
/// time alone (a certificate entering its warning window or expiring).
#[derive(Debug, Default)]
pub struct SecretVerdict {
    pub findings: Vec<Finding>,
    pub next_change: Option<Timestamp>,
}

/// Judges the Secrets `ingress` names at `now`, warning `warning` before expiry.
pub fn evaluate_secrets(
    namespace: &str,
    ingress: &IngressFacts,
    view: &SecretsView<'_>,
    warning: SignedDuration,
    now: Timestamp,
) -> SecretVerdict {
    let object = format!("Ingress {namespace}/{}", ingress.name);
    let mut verdict = SecretVerdict::default();
    for (index, entry) in ingress.tls.iter().enumerate() {
        if entry.secret_name.is_none() {
            verdict.findings.push(Finding::new(
                check_ids::TLS_SECRET,
                DriftReason::Unknown,
                None,
                format!(
                    "{object}: spec.tls[{index}] names no secretName, so the Ingress controller's default certificate serves it, which the API does not show"
                ),
            ));
        }
    }
    for (secret, hosts) in hosts_by_secret(ingress) {
        let about = Subject {
            object: &object,
            secret: format!("Secret {namespace}/{secret}"),
            hosts: &hosts,
        };
        match view {
            SecretsView::NotRead(why) => verdict.findings.push(about.finding(
                check_ids::TLS_SECRET,
                DriftReason::Unknown,
                format!("was not read: {why}"),
            )),
            SecretsView::Read {
                secrets,
                only_tls_type,
            } => about.judge(
                secrets.get(secret).copied(),
                *only_tls_type,
                warning,
                now,
                &mut verdict,
            ),
        }
    }
    verdict
}

/// Each named Secret with the hosts of every entry naming it.
fn hosts_by_secret(ingress: &IngressFacts) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut by_secret: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for entry in &ingress.tls {
        if let Some(secret) = &entry.secret_name {
            by_secret
                .entry(secret.as_str())
                .or_default()
                .extend(entry.hosts.iter().map(String::as_str));
        }
    }
    by_secret
}

/// One Secret as an Ingress uses it.
struct Subject<'a> {
    object: &'a str,
    secret: String,
    hosts: &'a BTreeSet<&'a str>,
}

impl Subject<'_> {
    fn finding(&self, check: &'static str, reason: DriftReason, what: String) -> Finding {
        Finding::new(
            check,
            reason,
            None,
            format!("{}: {} (spec.tls) {what}", self.object, self.secret),
        )
    }

    fn judge(
        &self,
        secret: Option<&SecretFacts>,
        only_tls_type: bool,
        warning: SignedDuration,
        now: Timestamp,
        verdict: &mut SecretVerdict,
    ) {
        let certificate = match secret {
            None if only_tls_type => {
                return verdict.findings.push(self.finding(
                    check_ids::TLS_SECRET,
                    DriftReason::Violation,
                    "is not a kubernetes.io/tls Secret: it does not exist or is of another type"
                        .to_owned(),
                ));
            }
            None => {
                return verdict.findings.push(self.finding(
                    check_ids::TLS_SECRET,
                    DriftReason::Violation,
                    "does not exist".to_owned(),
                ));
            }
            Some(SecretFacts::OtherType(type_)) => {
                return verdict.findings.push(self.finding(
                    check_ids::TLS_SECRET,
                    DriftReason::Violation,
                    format!("is of type {type_}, not kubernetes.io/tls"),
                ));
            }
            Some(SecretFacts::Tls(Err(why))) => {
                return verdict.findings.push(self.finding(
                    check_ids::TLS_CERTIFICATE_MALFORMED,
                    DriftReason::Violation,
                    format!("is unusable: {why}"),
                ));
            }
            Some(SecretFacts::Tls(Ok(certificate))) => certificate,
        };
        self.judge_validity(certificate, warning, now, verdict);
        self.judge_hosts(certificate, verdict);
    }

    fn judge_validity(
        &self,
        certificate: &CertificateFacts,
        warning: SignedDuration,
        now: Timestamp,
        verdict: &mut SecretVerdict,
    ) {
        let not_after = certificate.not_after;
        let warn_from = not_after.checked_sub(warning).unwrap_or(Timestamp::MIN);
        if now > not_after {
            verdict.findings.push(self.finding(
                check_ids::TLS_CERTIFICATE_EXPIRED,
                DriftReason::Violation,
                format!("holds a certificate that expired at {not_after}"),
            ));
            return;
        }
        if now >= warn_from {
            verdict.findings.push(self.finding(
                check_ids::TLS_CERTIFICATE_EXPIRING,
                DriftReason::Violation,
                format!(
                    "holds a certificate that expires at {not_after}, within the {} days of spec.tls.expiryWarningDays",
                    warning.as_hours() / 24
                ),
            ));
        }
        // The first instant past notAfter, or the start of the warning window.
        let next = if now >= warn_from {
            not_after.checked_add(SignedDuration::from_secs(1)).ok()
        } else {
            Some(warn_from)
        };
        verdict.next_change = earliest(verdict.next_change, next);
    }

    fn judge_hosts(&self, certificate: &CertificateFacts, verdict: &mut SecretVerdict) {
        for host in self.hosts {
            // A host the API server would reject is reported by the coverage check.
            if invalid_host(host).is_some() || certificate.valid_for(host) {
                continue;
            }
            let names = if certificate.dns_names.is_empty() {
                "none".to_owned()
            } else {
                certificate.dns_names.join(", ")
            };
            verdict.findings.push(Finding::new(
                check_ids::TLS_CERTIFICATE_HOST,
                DriftReason::Violation,
                Some((*host).to_owned()),
                format!(
                    "{}: {} (spec.tls) holds a certificate not valid for host {host} (its subjectAltName DNS names: {names})",
                    self.object, self.secret
                ),
            ));
        }
    }
}

/// The earlier of two optional instants.
pub fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
