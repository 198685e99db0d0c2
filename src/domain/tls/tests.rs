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
    let entries = evaluate_namespace(&TlsSettings::default(), "shop", [&ingress(PLAIN)]);
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
    let entries = evaluate_namespace(
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
    let entries = evaluate_namespace(
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
    let entries = evaluate_namespace(
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
        let entries = evaluate_namespace(&settings(yaml), namespace, all.iter());
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
