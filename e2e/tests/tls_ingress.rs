//! The TLS checks of Ingresses against the real API server: the controller's status and
//! `check --live` report the same findings, a fixed Ingress stops being reported (the watch
//! re-plans its namespace), and an exempted ACME solver Ingress is never reported.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Api;
use kube_baseline::api::{DriftEntry, DriftReason, SecurityBaseline};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);

/// (namespace, name, check, reason) of an Ingress finding.
type Key = (String, String, String, DriftReason);

fn ingress_keys<'a>(drift: impl IntoIterator<Item = &'a DriftEntry>) -> BTreeSet<Key> {
    drift
        .into_iter()
        .filter(|d| d.kind == "Ingress")
        .map(|d| {
            (
                d.namespace.clone(),
                d.name.clone(),
                d.check.clone(),
                d.reason,
            )
        })
        .collect()
}

async fn status_keys(env: &TestEnv, baseline: &str) -> Option<BTreeSet<Key>> {
    let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .ok()?;
    let status = baseline.status?;
    (status.observed_generation == baseline.metadata.generation)
        .then(|| ingress_keys(&status.drift))
}

fn check_live_keys(baseline: &str) -> BTreeSet<Key> {
    ingress_keys(&drift_in_report(&check_live_report(&[]), baseline))
}

fn apply(manifest: &str) {
    let (ok, _, stderr) = kubectl_result(&["apply", "-f", "-"], Some(manifest));
    assert!(ok, "{stderr}");
}

fn ingress(namespace: &str, name: &str, labels: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, namespace: {namespace}, labels: {{{labels}}}}}\nspec:\n{spec}\n"
    )
}

#[tokio::test]
async fn ingress_tls_findings_follow_the_ingresses() {
    let env = TestEnv::new("tls").await;
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    let lab = env.create_namespace("lab", &[]).await;
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\ntls:\n  exemptions:\n  - {{matchLabels: {{acme.cert-manager.io/http01-solver: 'true'}}, reason: ACME HTTP-01 solver}}\n",
            env.id
        ),
    );
    let rule = |host: &str| {
        format!(
            "  - host: {host}\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    apply(&ingress(
        &shop,
        "plain",
        "",
        &format!("  rules:\n{}", rule("shop.example.com")),
    ));
    let deep_spec = |tls_hosts: &str| {
        format!(
            "  tls: [{{hosts: [{tls_hosts}], secretName: wildcard}}]\n  rules:\n{}{}",
            rule("a.b.example.com"),
            rule("a.example.com")
        )
    };
    apply(&ingress(&shop, "deep", "", &deep_spec("'*.example.com'")));
    apply(&ingress(
        &shop,
        "cm-acme-http-solver-x1",
        "acme.cert-manager.io/http01-solver: 'true'",
        &format!("  rules:\n{}", rule("shop.example.com")),
    ));
    apply(&ingress(
        &lab,
        "plain",
        "",
        &format!("  rules:\n{}", rule("lab.example.com")),
    ));

    let _operator = Operator::start(&env, &[]).await;
    let violation = |name: &str, check: &str| {
        (
            shop.clone(),
            name.to_owned(),
            check.to_owned(),
            DriftReason::Violation,
        )
    };
    let expected = BTreeSet::from([
        violation("plain", "ingress.tls-missing"),
        violation("deep", "ingress.tls-host-coverage"),
    ]);
    let found = eventually(SETTLE, "the Ingress findings in status", || async {
        status_keys(&env, &baseline)
            .await
            .filter(|found| *found == expected)
    })
    .await;
    assert_eq!(check_live_keys(&baseline), found, "check --live agrees");

    // Covering the second label fixes it; the watch re-plans the namespace.
    apply(&ingress(
        &shop,
        "deep",
        "",
        &deep_spec("'*.example.com', '*.b.example.com'"),
    ));
    let fixed = BTreeSet::from([violation("plain", "ingress.tls-missing")]);
    eventually(SETTLE, "the fixed Ingress gone from status", || async {
        status_keys(&env, &baseline)
            .await
            .filter(|found| *found == fixed)
    })
    .await;
    assert_eq!(check_live_keys(&baseline), fixed);
    env.cleanup().await;
}
