//! The live probes of the control plane: what the kube-apiserver and etcd really do with a
//! client that brings no credentials, as the node agent observed it by sending one request
//! (`agent::live` does the I/O and fills a [`LiveProbe`]; the verdicts are here, pure).
//!
//! - `apiserver.anonymous-request-live` (CIS 1.2.1 observed): GET /api/v1/namespaces
//!   without credentials. 401: anonymous requests are rejected (Met). 403: the request was
//!   authenticated as `system:anonymous` and only RBAC stopped it; 200: anonymous can list
//!   namespaces (both Violations). `/version` is not asked: with anonymous authentication
//!   on, `system:public-info-viewer` lets everyone read it by design, so a 200 there says
//!   nothing the 403 does not; with it off, it is 401 like any other path.
//! - `etcd.client-cert-required-live` (CIS 2.2 observed): a TLS connection without a client
//!   certificate, then GET /version (with TLS 1.3 the client finishes its handshake before
//!   the server checks the certificate, so only a request tells). A TLS alert or a closed
//!   connection: Met. An HTTP answer: Violation. A plain http:// endpoint that answers:
//!   Violation (no TLS at all, CIS 2.1 too).
//!
//! A probe that did not happen or could not tell is `Unknown`, never a pass.

use crate::api::{
    ApiServerObservation, DriftEntry, DriftReason, LiveProbe, LiveProbeSettings, ProbeOutcome,
};
use crate::domain::checks::CheckInfo;
use crate::domain::node::findings::node_drift;

/// Check IDs of the live probes.
pub mod check_ids {
    pub const ANONYMOUS_REQUEST: &str = "apiserver.anonymous-request-live";
    pub const ETCD_CLIENT_CERT_REQUIRED: &str = "etcd.client-cert-required-live";
}

/// The live probe checks, for the registry.
pub const CHECKS: &[CheckInfo] = &[
    CheckInfo {
        id: check_ids::ANONYMOUS_REQUEST,
        description: "The kube-apiserver answers a request without credentials (GET /api/v1/namespaces) with 401: anonymous requests are rejected, as observed by the node agent",
        cis: &["1.2.1"],
    },
    CheckInfo {
        id: check_ids::ETCD_CLIENT_CERT_REQUIRED,
        description: "etcd refuses a TLS client without a certificate (it answers no request from it), as observed by the node agent",
        cis: &["2.2"],
    },
];

/// IDs of the live checks `settings` asks for.
pub fn requested_checks(settings: &LiveProbeSettings) -> Vec<&'static str> {
    [
        (settings.anonymous_request, check_ids::ANONYMOUS_REQUEST),
        (
            settings.etcd_client_certificate,
            check_ids::ETCD_CLIENT_CERT_REQUIRED,
        ),
    ]
    .into_iter()
    .filter_map(|(wanted, id)| wanted.then_some(id))
    .collect()
}

/// What one probe says about the check: None when it passes.
type Verdict = Option<(DriftReason, String)>;

/// The requested live checks of an observed kube-apiserver's node.
pub fn evaluate_live(
    node: &str,
    api: &ApiServerObservation,
    settings: &LiveProbeSettings,
) -> Vec<DriftEntry> {
    let mut drift = Vec::new();
    let mut push = |id: &str, verdict: Verdict| {
        if let Some((reason, message)) = verdict {
            drift.push(node_drift(node, id, reason, message));
        }
    };
    if settings.anonymous_request {
        push(
            check_ids::ANONYMOUS_REQUEST,
            anonymous_request(&api.anonymous_probe),
        );
    }
    if settings.etcd_client_certificate {
        push(
            check_ids::ETCD_CLIENT_CERT_REQUIRED,
            etcd_client_certificate(&api.etcd_probe),
        );
    }
    drift
}

fn unknown(message: String) -> Verdict {
    Some((DriftReason::Unknown, message))
}

fn violation(message: String) -> Verdict {
    Some((DriftReason::Violation, message))
}

/// Why a probe that did not happen or could not tell says nothing.
fn not_told(what: &str, probe: &LiveProbe) -> String {
    match probe.outcome {
        ProbeOutcome::NotProbed => format!(
            "the node agent did not probe {what} (it probes while a baseline has controlPlane.liveProbes; not with --print unless --live-probes)"
        ),
        _ => format!(
            "cannot probe {what}{}: {}",
            at(probe),
            if probe.message.is_empty() {
                "no reason given"
            } else {
                probe.message.as_str()
            }
        ),
    }
}

fn at(probe: &LiveProbe) -> String {
    if probe.url.is_empty() {
        String::new()
    } else {
        format!(" at {}", probe.url)
    }
}

fn anonymous_request(probe: &LiveProbe) -> Verdict {
    let what = "the kube-apiserver with a request without credentials";
    match (probe.outcome, probe.status) {
        (ProbeOutcome::Answered, Some(401)) => None,
        // Refused before any answer: no anonymous request is served either.
        (ProbeOutcome::Refused, _) => None,
        (ProbeOutcome::Answered | ProbeOutcome::Plaintext, Some(200)) => violation(format!(
            "anonymous can list namespaces: GET {} without credentials was answered 200; CIS wants anonymous requests rejected (401)",
            probe.url
        )),
        (ProbeOutcome::Answered | ProbeOutcome::Plaintext, Some(403)) => violation(format!(
            "anonymous requests are authenticated as system:anonymous: GET {} without credentials was answered 403 (denied by authorization, not rejected by authentication); CIS wants 401 (--anonymous-auth=false)",
            probe.url
        )),
        (ProbeOutcome::Answered | ProbeOutcome::Plaintext, Some(status)) => unknown(format!(
            "GET {} without credentials was answered {status}, which tells neither 401 (anonymous rejected) nor 403/200 (anonymous authenticated)",
            probe.url
        )),
        _ => unknown(not_told(what, probe)),
    }
}

fn etcd_client_certificate(probe: &LiveProbe) -> Verdict {
    let what = "etcd with a client without a certificate";
    let status = probe
        .status
        .map_or_else(String::new, |s| format!(" (HTTP {s})"));
    match probe.outcome {
        ProbeOutcome::Refused => None,
        ProbeOutcome::Answered => violation(format!(
            "etcd answered a client without a certificate: GET {} over TLS without a client certificate got an answer{status}; CIS wants client certificates required (--client-cert-auth=true with --trusted-ca-file)",
            probe.url
        )),
        ProbeOutcome::Plaintext => violation(format!(
            "etcd answered a client without a certificate over plain http: GET {} got an answer{status} without TLS at all (CIS 2.1 and 2.2)",
            probe.url
        )),
        ProbeOutcome::NotProbed | ProbeOutcome::Failed => unknown(not_told(what, probe)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(outcome: ProbeOutcome, status: Option<u16>, message: &str) -> LiveProbe {
        LiveProbe {
            outcome,
            url: "https://127.0.0.1:6443/api/v1/namespaces".to_owned(),
            status,
            message: message.to_owned(),
        }
    }

    fn verdicts(api: &ApiServerObservation) -> Vec<(String, DriftReason, String)> {
        evaluate_live("cp", api, &LiveProbeSettings::default())
            .into_iter()
            .map(|d| (d.check, d.reason, d.message))
            .collect()
    }

    fn api(anonymous: LiveProbe, etcd: LiveProbe) -> ApiServerObservation {
        ApiServerObservation {
            anonymous_probe: anonymous,
            etcd_probe: etcd,
            ..ApiServerObservation::default()
        }
    }

    #[test]
    fn a_401_and_a_refused_etcd_client_pass() {
        let found = verdicts(&api(
            probe(ProbeOutcome::Answered, Some(401), ""),
            probe(
                ProbeOutcome::Refused,
                None,
                "received fatal alert: CertificateRequired",
            ),
        ));
        assert_eq!(found, Vec::new());
    }

    #[test]
    fn anonymous_403_and_200_are_violations_that_say_which() {
        for (status, words) in [
            (403, "authenticated as system:anonymous"),
            (200, "anonymous can list namespaces"),
        ] {
            let found = verdicts(&api(
                probe(ProbeOutcome::Answered, Some(status), ""),
                probe(ProbeOutcome::Refused, None, ""),
            ));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, check_ids::ANONYMOUS_REQUEST);
            assert_eq!(found[0].1, DriftReason::Violation);
            assert!(found[0].2.contains(words), "{found:?}");
        }
    }

    #[test]
    fn another_status_is_unknown_never_a_pass() {
        let found = verdicts(&api(
            probe(ProbeOutcome::Answered, Some(500), ""),
            probe(ProbeOutcome::Refused, None, ""),
        ));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, DriftReason::Unknown);
        assert!(found[0].2.contains("answered 500"), "{found:?}");
    }

    #[test]
    fn etcd_answering_without_a_certificate_is_a_violation_over_tls_and_plain_http() {
        for (outcome, words) in [
            (
                ProbeOutcome::Answered,
                "over TLS without a client certificate",
            ),
            (ProbeOutcome::Plaintext, "plain http"),
        ] {
            let found = verdicts(&api(
                probe(ProbeOutcome::Answered, Some(401), ""),
                probe(outcome, Some(200), ""),
            ));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, check_ids::ETCD_CLIENT_CERT_REQUIRED);
            assert_eq!(found[0].1, DriftReason::Violation);
            assert!(
                found[0]
                    .2
                    .starts_with("etcd answered a client without a certificate"),
                "{found:?}"
            );
            assert!(found[0].2.contains(words), "{found:?}");
        }
    }

    #[test]
    fn not_probed_or_failed_is_unknown_with_the_reason() {
        let found = verdicts(&api(
            LiveProbe::default(),
            probe(
                ProbeOutcome::Failed,
                None,
                "connection refused (os error 111)",
            ),
        ));
        assert_eq!(
            found
                .iter()
                .map(|f| (f.0.as_str(), f.1))
                .collect::<Vec<_>>(),
            [
                (check_ids::ANONYMOUS_REQUEST, DriftReason::Unknown),
                (check_ids::ETCD_CLIENT_CERT_REQUIRED, DriftReason::Unknown),
            ]
        );
        assert!(found[0].2.contains("did not probe"), "{found:?}");
        assert!(found[1].2.contains("connection refused"), "{found:?}");
    }

    #[test]
    fn a_check_turned_off_is_not_evaluated() {
        let settings = LiveProbeSettings {
            anonymous_request: false,
            etcd_client_certificate: true,
        };
        assert_eq!(
            requested_checks(&settings),
            [check_ids::ETCD_CLIENT_CERT_REQUIRED]
        );
        let found = evaluate_live("cp", &ApiServerObservation::default(), &settings);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].check, check_ids::ETCD_CLIENT_CERT_REQUIRED);
    }
}
