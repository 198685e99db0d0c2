use k8s_openapi::api::networking::v1::Ingress;

use super::*;
use crate::domain::checks;

fn ingress(yaml: &str) -> IngressFacts {
    let ingress: Ingress = serde_saphyr::from_str(yaml).expect("Ingress fixture");
    IngressFacts::from_ingress(&ingress)
}

fn settings(yaml: &str) -> TlsSettings {
    serde_saphyr::from_str(yaml).expect("settings fixture")
}

/// The Ingress checks alone (certificates off), as the first tests are about them.
fn ingress_checks<'a>(
    settings: &TlsSettings,
    namespace: &str,
    ingresses: impl IntoIterator<Item = &'a IngressFacts>,
) -> Vec<DriftEntry> {
    let settings = TlsSettings {
        certificates: false,
        ..settings.clone()
    };
    let ingresses: Vec<&IngressFacts> = ingresses.into_iter().collect();
    let inputs = NamespaceTls {
        ingresses: &ingresses,
        gateways: &[],
        secrets: SecretsView::NotRead("not read in this test"),
        now: Timestamp::UNIX_EPOCH,
    };
    evaluate_namespace(&settings, namespace, &inputs).entries
}

/// (name, check, reason) of each finding.
fn found(entries: &[DriftEntry]) -> Vec<(&str, &str, DriftReason)> {
    entries
        .iter()
        .map(|e| (e.name.as_str(), e.check.as_str(), e.reason))
        .collect()
}

const PLAIN: &str = "metadata: {name: plain}\nspec: {rules: [{host: shop.example.com}]}";
const WILDCARD_ONE_LABEL: &str = "metadata: {name: deep}\nspec:\n  tls: [{hosts: ['*.example.com'], secretName: s}]\n  rules: [{host: a.b.example.com}, {host: a.example.com}]";
const COVERED: &str = "metadata: {name: ok}\nspec:\n  tls: [{hosts: ['*.b.example.com', a.example.com], secretName: s}]\n  rules: [{host: a.b.example.com}, {host: a.example.com}]";

#[test]
fn an_ingress_without_tls_is_one_violation() {
    let entries = ingress_checks(&TlsSettings::default(), "shop", [&ingress(PLAIN)]);
    assert_eq!(
        found(&entries),
        vec![("plain", "ingress.tls-missing", DriftReason::Violation)]
    );
    assert_eq!(entries[0].namespace, "shop");
    assert_eq!(entries[0].kind, "Ingress");
    assert!(
        entries[0]
            .message
            .contains("Ingress shop/plain has no spec.tls")
    );
}

#[test]
fn a_wildcard_tls_host_covers_one_label_of_the_rule_hosts() {
    let entries = ingress_checks(
        &TlsSettings::default(),
        "shop",
        [&ingress(WILDCARD_ONE_LABEL), &ingress(COVERED)],
    );
    assert_eq!(
        found(&entries),
        vec![("deep", "ingress.tls-host-coverage", DriftReason::Violation)]
    );
    assert!(
        entries[0].message.contains("rule host a.b.example.com"),
        "{}",
        entries[0].message
    );
}

#[test]
fn what_the_api_does_not_show_is_unknown_never_a_pass() {
    let hostless_tls = "metadata: {name: default-cert}\nspec:\n  tls: [{secretName: s}]\n  rules: [{host: a.example.com}, {http: {paths: []}}]";
    let uppercase = "metadata: {name: upper}\nspec:\n  tls: [{hosts: [shop.example.com]}]\n  rules: [{host: Shop.example.com}]";
    let entries = ingress_checks(
        &TlsSettings::default(),
        "shop",
        [&ingress(hostless_tls), &ingress(uppercase)],
    );
    assert_eq!(
        found(&entries),
        vec![
            (
                "default-cert",
                "ingress.tls-host-coverage",
                DriftReason::Unknown
            ),
            (
                "default-cert",
                "ingress.tls-host-coverage",
                DriftReason::Unknown
            ),
            ("upper", "ingress.tls-host-coverage", DriftReason::Unknown),
        ]
    );
    assert!(
        entries[2].message.contains("would reject"),
        "{}",
        entries[2].message
    );
}

#[test]
fn a_catch_all_with_only_named_tls_hosts_is_a_violation() {
    let default_backend = "metadata: {name: fallback}\nspec:\n  tls: [{hosts: [a.example.com]}]\n  defaultBackend: {service: {name: web, port: {number: 80}}}";
    let hostless_rule = "metadata: {name: any}\nspec:\n  tls: [{hosts: [a.example.com]}]\n  rules: [{host: a.example.com}, {http: {paths: []}}]";
    let entries = ingress_checks(
        &TlsSettings::default(),
        "shop",
        [&ingress(default_backend), &ingress(hostless_rule)],
    );
    assert_eq!(
        found(&entries),
        vec![
            ("any", "ingress.tls-host-coverage", DriftReason::Violation),
            (
                "fallback",
                "ingress.tls-host-coverage",
                DriftReason::Violation
            ),
        ]
    );
}

#[test]
fn exemptions_need_every_field_they_set_to_match() {
    let solver = "metadata: {name: cm-acme-http-solver-x, labels: {acme.cert-manager.io/http01-solver: 'true'}}\nspec: {rules: [{host: shop.example.com}]}";
    let all = [ingress(PLAIN), ingress(solver), ingress(WILDCARD_ONE_LABEL)];
    let evaluate = |yaml: &str, namespace: &str| {
        let entries = ingress_checks(&settings(yaml), namespace, all.iter());
        found(&entries)
            .into_iter()
            .map(|(name, check, _)| format!("{name} {check}"))
            .collect::<Vec<_>>()
    };
    let everything = vec![
        "cm-acme-http-solver-x ingress.tls-missing",
        "deep ingress.tls-host-coverage",
        "plain ingress.tls-missing",
    ];
    assert_eq!(evaluate("exemptions: []", "shop"), everything);
    let by_label = "exemptions: [{matchLabels: {acme.cert-manager.io/http01-solver: 'true'}, reason: ACME HTTP-01 solver}]";
    assert_eq!(evaluate(by_label, "shop"), everything[1..].to_vec());
    let other_namespace = "exemptions: [{namespace: web, name: plain, reason: r}]";
    assert_eq!(evaluate(other_namespace, "shop"), everything);
    let by_name_and_check =
        "exemptions: [{name: plain, checks: [ingress.tls-host-coverage], reason: r}]";
    assert_eq!(evaluate(by_name_and_check, "shop"), everything);
    let by_name = "exemptions: [{name: plain, checks: [ingress.tls-missing], reason: r}]";
    assert_eq!(
        evaluate(by_name, "shop"),
        vec![everything[0], everything[1]]
    );
    // A host exemption covers findings about that host, not the whole object's tls-missing.
    let by_host =
        "exemptions: [{host: a.b.example.com, reason: r}, {host: shop.example.com, reason: r}]";
    assert_eq!(
        evaluate(by_host, "shop"),
        vec![everything[0], everything[2]]
    );
    assert!(evaluate("ingress: false", "shop").is_empty());
}

#[test]
fn the_checks_are_registered_and_the_crd_admits_exactly_their_ids() {
    let registered: Vec<&str> = checks::all().iter().map(|c| c.id).collect();
    let exemption = |checks: Vec<&str>| {
        serde_json::json!({
            "apiVersion": "kube-baseline.dev/v1alpha1",
            "kind": "SecurityBaseline",
            "metadata": {"name": "t"},
            "spec": {"tls": {"exemptions": [{"name": "x", "checks": checks, "reason": "r"}]}},
        })
    };
    for check in CHECKS {
        assert!(registered.contains(&check.id), "{}", check.id);
        assert!(
            crate::api::validate_baseline_cel(&exemption(vec![check.id])).is_ok(),
            "{} is admitted in exemptions",
            check.id
        );
    }
    assert!(crate::api::validate_baseline_cel(&exemption(vec!["ingress.tls-typo"])).is_err());
    let without_target = serde_json::json!({
        "apiVersion": "kube-baseline.dev/v1alpha1",
        "kind": "SecurityBaseline",
        "metadata": {"name": "t"},
        "spec": {"tls": {"exemptions": [{"checks": ["ingress.tls-missing"], "reason": "r"}]}},
    });
    let errors = crate::api::validate_baseline_cel(&without_target)
        .expect_err("an exemption of everything is refused");
    assert!(
        errors
            .to_string()
            .contains("name, matchLabels or host is required"),
        "{errors}"
    );
}

// ---- The certificate checks (tls.secret, tls.certificate-*) ----

mod certificates {
    use rustls_pki_types::{CertificateDer, ServerName};

    use super::*;

    /// A self-signed certificate for `names`, valid until `not_after` (midnight UTC of that
    /// date), in PEM.
    fn certificate(names: &[&str], not_after: (i32, u8, u8)) -> String {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .expect("params");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").pem()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    const WEB: &str = "metadata: {name: web}\nspec:\n  tls: [{hosts: [a.example.com, b.example.com], secretName: web-tls}]\n  rules: [{host: a.example.com}, {host: b.example.com}]";

    fn evaluate(
        settings: &TlsSettings,
        ingresses: &[&IngressFacts],
        secrets: SecretsView<'_>,
        now: Timestamp,
    ) -> TlsVerdict {
        let inputs = NamespaceTls {
            ingresses,
            gateways: &[],
            secrets,
            now,
        };
        evaluate_namespace(settings, "shop", &inputs)
    }

    fn read<'a>(secrets: &'a [(&'a str, SecretFacts)], only_tls_type: bool) -> SecretsView<'a> {
        SecretsView::Read {
            secrets: secrets.iter().map(|(name, facts)| (*name, facts)).collect(),
            only_tls_type,
        }
    }

    fn tls(pem: &str) -> SecretFacts {
        SecretFacts::from_parts(Some("kubernetes.io/tls"), Some(pem.as_bytes()))
    }

    #[test]
    fn the_leaf_certificate_gives_expiry_and_dns_names_and_bad_input_is_named() {
        let leaf = certificate(&["a.example.com", "*.example.org"], (2027, 3, 1));
        let chain = format!("{leaf}{}", certificate(&["ca.example"], (2030, 1, 1)));
        let facts = CertificateFacts::from_pem(chain.as_bytes()).expect("parses");
        assert_eq!(facts.not_after, at("2027-03-01T00:00:00Z"));
        assert_eq!(facts.dns_names, vec!["a.example.com", "*.example.org"]);
        for (input, why) in [
            ("not PEM at all", "no PEM CERTIFICATE block"),
            (
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no PEM CERTIFICATE block",
            ),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "does not parse",
            ),
        ] {
            let error = CertificateFacts::from_pem(input.as_bytes()).expect_err(input);
            assert!(error.contains(why), "{input}: {error}");
        }
        assert_eq!(
            SecretFacts::from_parts(Some("kubernetes.io/tls"), None),
            SecretFacts::Tls(Err("has no tls.crt".to_owned()))
        );
        assert_eq!(
            SecretFacts::from_parts(None, Some(leaf.as_bytes())),
            SecretFacts::OtherType("Opaque".to_owned())
        );
    }

    /// Our host matching against webpki's own name validation (what rustls clients do), on
    /// the same certificates.
    #[test]
    fn host_matching_agrees_with_webpki() {
        let san_sets: [&[&str]; 4] = [
            &["a.example.com"],
            &["*.example.com"],
            &["*.b.example.com", "EXAMPLE.org"],
            &["xn--bcher-kva.example", "*.xn--bcher-kva.example"],
        ];
        let hosts = [
            "a.example.com",
            "A.Example.com",
            "example.com",
            "x.b.example.com",
            "b.example.com",
            "a.x.b.example.com",
            "example.org",
            "www.example.org",
            "xn--bcher-kva.example",
            "shop.xn--bcher-kva.example",
        ];
        for sans in san_sets {
            let pem = certificate(sans, (2030, 1, 1));
            let facts = CertificateFacts::from_pem(pem.as_bytes()).expect("parses");
            let der = pem::parse(&pem).expect("pem");
            let der = CertificateDer::from(der.contents().to_vec());
            let webpki_cert = webpki::EndEntityCert::try_from(&der).expect("webpki parses");
            for host in hosts {
                let name = ServerName::try_from(host).expect("a DNS name");
                let by_webpki = webpki_cert.verify_is_valid_for_subject_name(&name).is_ok();
                assert_eq!(facts.valid_for(host), by_webpki, "{sans:?} for {host}");
            }
        }
    }

    /// (what, the Secrets, only TLS Secrets listed, the findings: check, reason, message part)
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, SecretFacts)>,
        bool,
        Vec<(&'a str, DriftReason, &'a str)>,
    );

    #[test]
    fn each_secret_problem_is_one_finding_on_the_ingress() {
        let web = ingress(WEB);
        let now = at("2026-12-01T12:00:00Z");
        let settings = TlsSettings::default();
        let wrong_host = certificate(&["a.example.com"], (2027, 6, 1));
        let cases: Vec<Case> = vec![
            (
                "missing",
                vec![],
                false,
                vec![(
                    "tls.secret",
                    DriftReason::Violation,
                    "Secret shop/web-tls (spec.tls) does not exist",
                )],
            ),
            (
                "missing, only TLS Secrets known",
                vec![],
                true,
                vec![(
                    "tls.secret",
                    DriftReason::Violation,
                    "does not exist or is of another type",
                )],
            ),
            (
                "wrong type",
                vec![("web-tls", SecretFacts::OtherType("Opaque".to_owned()))],
                false,
                vec![(
                    "tls.secret",
                    DriftReason::Violation,
                    "is of type Opaque, not kubernetes.io/tls",
                )],
            ),
            (
                "malformed",
                vec![("web-tls", tls("garbage"))],
                false,
                vec![(
                    "tls.certificate-malformed",
                    DriftReason::Violation,
                    "no PEM CERTIFICATE block",
                )],
            ),
            (
                "expired",
                vec![(
                    "web-tls",
                    tls(&certificate(&["*.example.com"], (2026, 11, 30))),
                )],
                false,
                vec![(
                    "tls.certificate-expired",
                    DriftReason::Violation,
                    "expired at 2026-11-30T00:00:00Z",
                )],
            ),
            (
                "expiring",
                vec![(
                    "web-tls",
                    tls(&certificate(&["*.example.com"], (2026, 12, 15))),
                )],
                false,
                vec![(
                    "tls.certificate-expiring",
                    DriftReason::Violation,
                    "expires at 2026-12-15T00:00:00Z, within the 21 days",
                )],
            ),
            (
                "not valid for one host",
                vec![("web-tls", tls(&wrong_host))],
                false,
                vec![(
                    "tls.certificate-host",
                    DriftReason::Violation,
                    "not valid for host b.example.com (its subjectAltName DNS names: a.example.com)",
                )],
            ),
            (
                "valid",
                vec![(
                    "web-tls",
                    tls(&certificate(&["*.example.com"], (2027, 6, 1))),
                )],
                false,
                vec![],
            ),
        ];
        for (case, secrets, only_tls_type, expected) in cases {
            let verdict = evaluate(&settings, &[&web], read(&secrets, only_tls_type), now);
            let got: Vec<(&str, DriftReason)> = verdict
                .entries
                .iter()
                .map(|e| (e.check.as_str(), e.reason))
                .collect();
            let wanted: Vec<(&str, DriftReason)> =
                expected.iter().map(|(c, r, _)| (*c, *r)).collect();
            assert_eq!(got, wanted, "{case}");
            for (entry, (_, _, text)) in verdict.entries.iter().zip(&expected) {
                assert_eq!(
                    (entry.kind.as_str(), entry.name.as_str()),
                    ("Ingress", "web")
                );
                assert!(entry.message.contains(text), "{case}: {}", entry.message);
            }
        }
    }

    #[test]
    fn what_cannot_be_read_is_unknown_and_certificates_can_be_turned_off() {
        let web = ingress(WEB);
        let default_cert = ingress(
            "metadata: {name: dflt}\nspec:\n  tls: [{hosts: [a.example.com]}]\n  rules: [{host: a.example.com}]",
        );
        let verdict = evaluate(
            &TlsSettings::default(),
            &[&web, &default_cert],
            SecretsView::NotRead("apply the overlay"),
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(
            found(&verdict.entries),
            vec![
                ("dflt", "tls.secret", DriftReason::Unknown),
                ("web", "tls.secret", DriftReason::Unknown),
            ]
        );
        assert!(verdict.entries[0].message.contains("names no secretName"));
        assert!(
            verdict.entries[1]
                .message
                .contains("was not read: apply the overlay")
        );
        let off = settings("certificates: false");
        let verdict = evaluate(
            &off,
            &[&web],
            SecretsView::NotRead("x"),
            Timestamp::UNIX_EPOCH,
        );
        assert!(verdict.entries.is_empty(), "{:?}", verdict.entries);
    }

    #[test]
    fn the_next_change_is_the_warning_window_then_the_expiry() {
        let web = ingress(WEB);
        let secrets = vec![(
            "web-tls",
            tls(&certificate(&["*.example.com"], (2027, 1, 22))),
        )];
        let not_after = at("2027-01-22T00:00:00Z");
        let warn_from = at("2027-01-01T00:00:00Z");
        let settings = TlsSettings::default();
        let second = SignedDuration::from_secs(1);
        let before = evaluate(&settings, &[&web], read(&secrets, true), warn_from - second);
        assert!(before.entries.is_empty(), "{:?}", before.entries);
        assert_eq!(before.next_change, Some(warn_from));
        let warned = evaluate(&settings, &[&web], read(&secrets, true), warn_from);
        assert_eq!(
            found(&warned.entries),
            vec![("web", "tls.certificate-expiring", DriftReason::Violation)]
        );
        assert_eq!(warned.next_change, Some(not_after + second));
        let last = evaluate(&settings, &[&web], read(&secrets, true), not_after);
        assert_eq!(
            found(&last.entries),
            vec![("web", "tls.certificate-expiring", DriftReason::Violation)]
        );
        let expired = evaluate(&settings, &[&web], read(&secrets, true), not_after + second);
        assert_eq!(
            found(&expired.entries),
            vec![("web", "tls.certificate-expired", DriftReason::Violation)]
        );
        assert_eq!(expired.next_change, None);
        let week = settings_with_warning(7);
        let early = evaluate(&week, &[&web], read(&secrets, true), warn_from);
        assert!(early.entries.is_empty());
        assert_eq!(early.next_change, Some(at("2027-01-15T00:00:00Z")));
    }

    fn settings_with_warning(days: u16) -> TlsSettings {
        TlsSettings {
            expiry_warning_days: days,
            ..TlsSettings::default()
        }
    }

    #[test]
    fn exemptions_apply_to_certificate_findings_by_check_and_host() {
        let web = ingress(WEB);
        let wrong = [(
            "web-tls",
            tls(&certificate(&["c.example.com"], (2026, 12, 10))),
        )];
        let now = at("2026-12-01T00:00:00Z");
        let checks = |yaml: &str| {
            let verdict = evaluate(&settings(yaml), &[&web], read(&wrong, false), now);
            verdict
                .entries
                .iter()
                .map(|e| e.check.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            checks("{}"),
            vec![
                "tls.certificate-expiring",
                "tls.certificate-host",
                "tls.certificate-host"
            ]
        );
        assert_eq!(
            checks("exemptions: [{host: a.example.com, reason: r}]"),
            vec!["tls.certificate-expiring", "tls.certificate-host"]
        );
        assert_eq!(
            checks("exemptions: [{name: web, checks: [tls.certificate-expiring], reason: r}]"),
            vec!["tls.certificate-host", "tls.certificate-host"]
        );
    }
}

fn gateway(yaml: &str) -> GatewayFacts {
    let object: serde_json::Value = serde_saphyr::from_str(yaml).expect("Gateway fixture");
    GatewayFacts::from_json(&object)
}

/// A v1 Gateway named `name` with these listeners (flow YAML) and no status.
fn gateway_with(name: &str, listeners: &str) -> GatewayFacts {
    gateway(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, generation: 1}}\nspec: {{gatewayClassName: c, listeners: {listeners}}}"
    ))
}

/// The `gateway.http-without-https` findings of one Gateway: (reason, message).
fn http_findings(gateway: &GatewayFacts) -> Vec<(DriftReason, String)> {
    evaluate_gateways(&TlsSettings::default(), "web", [gateway])
        .into_iter()
        .filter(|e| e.check == "gateway.http-without-https")
        .map(|e| (e.reason, e.message))
        .collect()
}

#[test]
fn an_http_listener_needs_an_https_listener_serving_its_hostnames() {
    let http_only = gateway_with(
        "plain",
        "[{name: http, protocol: HTTP, port: 80, hostname: shop.example.com}]",
    );
    let found = http_findings(&http_only);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, DriftReason::Violation);
    assert!(
        found[0]
            .1
            .contains("Gateway web/plain: HTTP listener http serves hostname shop.example.com")
            && found[0].1.contains("no HTTPS listener"),
        "{}",
        found[0].1
    );
    let redirected = gateway_with(
        "ok",
        "[{name: http, protocol: HTTP, port: 80, hostname: shop.example.com}, {name: https, protocol: HTTPS, port: 443, hostname: '*.example.com'}]",
    );
    assert_eq!(http_findings(&redirected), vec![]);
    // One finding per uncovered listener, naming it; the covered one is not reported.
    let partly = gateway_with(
        "partly",
        "[{name: a, protocol: HTTP, port: 80, hostname: a.example.com}, {name: any, protocol: HTTP, port: 8080}, {name: wild, protocol: HTTP, port: 80, hostname: '*.example.com'}, {name: tls, protocol: HTTPS, port: 443, hostname: a.example.com}]",
    );
    let found = http_findings(&partly);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|(_, m)| m.contains("listener any serves every hostname"))
    );
    assert!(found.iter().any(
        |(_, m)| m.contains("listener wild serves hostname *.example.com")
            && m.contains("serve only a.example.com")
    ));
    // TLS passthrough is not HTTPS: it does not terminate, so it cannot redirect.
    let passthrough = gateway_with(
        "pass",
        "[{name: http, protocol: HTTP, port: 80}, {name: tls, protocol: TLS, port: 443}]",
    );
    assert_eq!(http_findings(&passthrough).len(), 1);
}

#[test]
fn a_gateway_wildcard_matches_any_number_of_labels() {
    use gateway::https_serves;
    let cases = [
        (None, None, true),
        (None, Some("a.example.com"), true),
        (Some("a.example.com"), None, false),
        (Some("a.example.com"), Some("a.example.com"), true),
        (Some("A.example.com"), Some("a.example.com"), true),
        (Some("*.example.com"), Some("a.example.com"), true),
        (Some("*.example.com"), Some("foo.test.example.com"), true),
        (Some("*.example.com"), Some("example.com"), false),
        (Some("*.example.com"), Some("aexample.com"), false),
        (Some("*.example.com"), Some("*.example.com"), true),
        (Some("*.example.com"), Some("*.a.example.com"), true),
        (Some("*.a.example.com"), Some("*.example.com"), false),
        (Some("a.example.com"), Some("*.example.com"), false),
        (Some("*.example.com"), Some("a.example.org"), false),
    ];
    for (https, http, expected) in cases {
        assert_eq!(
            https_serves(https, http),
            expected,
            "{https:?} serves {http:?}"
        );
    }
}

/// A Gateway with one HTTPS listener `websecure` and this `status.listeners[0].conditions`.
fn gateway_status(generation: i64, conditions: &str) -> GatewayFacts {
    gateway(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, generation: {generation}}}\nspec: {{listeners: [{{name: websecure, protocol: HTTPS, port: 443, hostname: a.example.com}}]}}\nstatus: {{listeners: [{{name: websecure, attachedRoutes: 0, conditions: {conditions}}}]}}"
    ))
}

fn refs_findings(gateway: &GatewayFacts) -> Vec<(DriftReason, String)> {
    evaluate_gateways(&TlsSettings::default(), "web", [gateway])
        .into_iter()
        .filter(|e| e.check == "gateway.listener-refs")
        .map(|e| (e.reason, e.message))
        .collect()
}

#[test]
fn unresolved_listener_refs_are_violations_with_the_controllers_message() {
    let invalid = gateway_status(
        2,
        "[{type: ResolvedRefs, status: 'False', reason: InvalidCertificateRef, message: 'secret web/missing not found', observedGeneration: 2, lastTransitionTime: '2026-12-01T00:00:00Z'}]",
    );
    let found = refs_findings(&invalid);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, DriftReason::Violation);
    assert!(
        found[0].1.contains("listener websecure")
            && found[0].1.contains("InvalidCertificateRef")
            && found[0].1.contains("secret web/missing not found"),
        "{}",
        found[0].1
    );
    let resolved = gateway_status(
        2,
        "[{type: Accepted, status: 'True', reason: Accepted, message: '', observedGeneration: 2}, {type: ResolvedRefs, status: 'True', reason: ResolvedRefs, message: '', observedGeneration: 2}]",
    );
    assert_eq!(refs_findings(&resolved), vec![]);
}

#[test]
fn listener_status_not_of_the_current_generation_is_unknown() {
    let stale = gateway_status(
        3,
        "[{type: ResolvedRefs, status: 'True', reason: ResolvedRefs, message: '', observedGeneration: 2}]",
    );
    let no_condition = gateway_status(
        1,
        "[{type: Accepted, status: 'True', reason: Accepted, message: '', observedGeneration: 1}]",
    );
    let no_status = gateway_with(
        "gw",
        "[{name: websecure, protocol: HTTPS, port: 443, hostname: a.example.com}]",
    );
    for (gateway, says) in [
        (&stale, "generation 2, not the current 3"),
        (&no_condition, "no ResolvedRefs condition"),
        (&no_status, "has no status"),
    ] {
        let found = refs_findings(gateway);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, DriftReason::Unknown, "{}", found[0].1);
        assert!(found[0].1.contains(says), "{}", found[0].1);
    }
}

#[test]
fn a_gateway_that_cannot_be_read_is_unknown_for_both_checks_naming_it() {
    let cases = [
        (
            "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: [{name: h, protocol: HTTP, port: 80}]}",
            "v1alpha2",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: []}",
            "spec.listeners is missing or empty",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: [{name: h, port: 80}]}",
            "protocol is missing",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: [{name: h, protocol: HTTP, hostname: 7}]}",
            "hostname is not a string",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: {name: h}}",
            "spec.listeners is not a list",
        ),
        (
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: old}\nspec: {listeners: [{name: h, protocol: HTTPS}]}\nstatus: {listeners: [{conditions: []}]}",
            "status.listeners[0].name is missing",
        ),
    ];
    for (yaml, why) in cases {
        let entries = evaluate_gateways(&TlsSettings::default(), "web", [&gateway(yaml)]);
        let checks: Vec<_> = entries
            .iter()
            .map(|e| (e.check.as_str(), e.reason))
            .collect();
        assert_eq!(
            checks,
            vec![
                ("gateway.http-without-https", DriftReason::Unknown),
                ("gateway.listener-refs", DriftReason::Unknown)
            ],
            "{why}"
        );
        for entry in &entries {
            assert_eq!(entry.kind, "Gateway");
            assert!(
                entry.message.contains("Gateway web/old cannot be read")
                    && entry.message.contains(why),
                "{}",
                entry.message
            );
        }
    }
    // v1beta1 is read like v1.
    let beta = gateway(
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: Gateway\nmetadata: {name: b}\nspec: {listeners: [{name: h, protocol: HTTP, port: 80}]}",
    );
    assert!(beta.content.is_ok(), "{:?}", beta.content);
}

#[test]
fn gateway_exemptions_match_kind_host_and_labels() {
    let gateways = [
        gateway_with(
            "plain",
            "[{name: http, protocol: HTTP, port: 80, hostname: a.example.com}]",
        ),
        gateway(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: solver, generation: 1, labels: {team: acme}}\nspec: {listeners: [{name: http, protocol: HTTP, port: 80, hostname: b.example.com}]}",
        ),
    ];
    let evaluate = |yaml: &str| {
        evaluate_gateways(&settings(yaml), "web", gateways.iter())
            .into_iter()
            .map(|e| format!("{} {}", e.name, e.check))
            .collect::<Vec<_>>()
    };
    let everything = vec![
        "plain gateway.http-without-https",
        "plain gateway.listener-refs",
        "solver gateway.http-without-https",
        "solver gateway.listener-refs",
    ];
    assert_eq!(evaluate("exemptions: []"), everything);
    assert_eq!(
        evaluate("exemptions: [{kind: Ingress, name: plain, reason: r}]"),
        everything
    );
    assert_eq!(
        evaluate("exemptions: [{kind: Gateway, name: plain, reason: r}]"),
        everything[2..].to_vec()
    );
    assert_eq!(
        evaluate(
            "exemptions: [{host: b.example.com, checks: [gateway.http-without-https], reason: r}]"
        ),
        vec![everything[0], everything[1], everything[3]]
    );
    assert_eq!(
        evaluate("exemptions: [{matchLabels: {team: acme}, reason: r}]"),
        everything[..2].to_vec()
    );
    assert!(evaluate("gateway: false").is_empty());
    // A Gateway exemption leaves Ingresses alone.
    let ingresses = [ingress(PLAIN)];
    let gateway_only = settings("exemptions: [{kind: Gateway, name: plain, reason: r}]");
    assert_eq!(
        ingress_checks(&gateway_only, "shop", ingresses.iter()).len(),
        1
    );
}

#[test]
fn the_gateway_checks_are_registered_and_admitted_in_exemptions() {
    let registered: Vec<&str> = checks::all().iter().map(|c| c.id).collect();
    for check in gateway::CHECKS {
        assert!(registered.contains(&check.id), "{}", check.id);
        let baseline = serde_json::json!({
            "apiVersion": "kube-baseline.dev/v1alpha1",
            "kind": "SecurityBaseline",
            "metadata": {"name": "t"},
            "spec": {"tls": {"exemptions": [{"kind": "Gateway", "name": "x", "checks": [check.id], "reason": "r"}]}},
        });
        assert!(
            crate::api::validate_baseline_cel(&baseline).is_ok(),
            "{} is admitted in exemptions",
            check.id
        );
    }
}
