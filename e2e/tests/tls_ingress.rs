//! The TLS checks of Ingresses against the real API server: the controller's status and
//! `check --live` report the same findings, a fixed Ingress stops being reported (the watch
//! re-plans its namespace), and an exempted ACME solver Ingress is never reported. The
//! certificate checks read real Secrets through the opt-in RBAC of config/rbac/tls-secrets,
//! follow a renewed Secret, and report a certificate entering its warning window with no
//! change to any object (the controller plans the namespace again at that instant).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
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
    // The operator does not read Secrets here (no --tls-secrets): the certificate of the
    // Secret "deep" names is Unknown, never passed.
    let not_read = (
        shop.clone(),
        "deep".to_owned(),
        "tls.secret".to_owned(),
        DriftReason::Unknown,
    );
    let expected = BTreeSet::from([
        violation("plain", "ingress.tls-missing"),
        violation("deep", "ingress.tls-host-coverage"),
        not_read.clone(),
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
    let fixed = BTreeSet::from([violation("plain", "ingress.tls-missing"), not_read]);
    eventually(SETTLE, "the fixed Ingress gone from status", || async {
        status_keys(&env, &baseline)
            .await
            .filter(|found| *found == fixed)
    })
    .await;
    assert_eq!(check_live_keys(&baseline), fixed);
    env.cleanup().await;
}

/// A self-signed certificate for `names`, valid until `not_after`, in PEM.
fn certificate(names: &[&str], not_after: time::OffsetDateTime) -> String {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = not_after;
    let key = rcgen::KeyPair::generate().expect("key");
    params.self_signed(&key).expect("certificate").pem()
}

async fn put_secret(env: &TestEnv, namespace: &str, name: &str, type_: &str, pem: &str) {
    let secrets: Api<Secret> = Api::namespaced(env.admin.clone(), namespace);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(pem.as_bytes().to_vec())),
                ("tls.key".to_owned(), ByteString(b"not read".to_vec())),
            ]
            .into(),
        ),
        ..Secret::default()
    };
    let _ = secrets
        .delete(name, &kube::api::DeleteParams::default())
        .await;
    eventually(SETTLE, "the Secret written", || async {
        secrets.create(&PostParams::default(), &secret).await.ok()
    })
    .await;
}

#[tokio::test]
async fn certificate_findings_follow_the_secrets_and_the_clock() {
    let env = TestEnv::new("tlscert").await;
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\ntls: {{expiryWarningDays: 1}}\n",
            env.id
        ),
    );
    let now = time::OffsetDateTime::now_utc();
    let year = now + time::Duration::days(365);
    put_secret(
        &env,
        &shop,
        "expired",
        "kubernetes.io/tls",
        &certificate(&["*.example.com"], now - time::Duration::days(1)),
    )
    .await;
    put_secret(
        &env,
        &shop,
        "wrong-host",
        "kubernetes.io/tls",
        &certificate(&["other.example.org"], year),
    )
    .await;
    put_secret(
        &env,
        &shop,
        "good",
        "kubernetes.io/tls",
        &certificate(&["*.example.com"], year),
    )
    .await;
    put_secret(
        &env,
        &shop,
        "opaque",
        "Opaque",
        &certificate(&["*.example.com"], year),
    )
    .await;
    // The API server checks that tls.crt and tls.key exist, not what they hold.
    put_secret(
        &env,
        &shop,
        "malformed",
        "kubernetes.io/tls",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .await;
    // Enters its one-day warning window 90 s after `now`, with no change to any object
    // (notAfter is whole seconds: up to a second earlier).
    let warn_from = std::time::SystemTime::from(now + time::Duration::seconds(89));
    put_secret(
        &env,
        &shop,
        "soon",
        "kubernetes.io/tls",
        &certificate(
            &["*.example.com"],
            now + time::Duration::days(1) + time::Duration::seconds(90),
        ),
    )
    .await;
    for (name, secret) in [
        ("uses-missing", "absent"),
        ("uses-opaque", "opaque"),
        ("uses-malformed", "malformed"),
        ("uses-expired", "expired"),
        ("uses-wrong-host", "wrong-host"),
        ("uses-good", "good"),
        ("uses-soon", "soon"),
    ] {
        apply(&ingress(
            &shop,
            name,
            "",
            &format!(
                "  tls: [{{hosts: [a.example.com], secretName: {secret}}}]\n  rules:\n  - host: a.example.com\n    http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n"
            ),
        ));
    }

    // The opt-in as users apply it: its ClusterRole, bound to this test's ServiceAccount.
    let sa = format!("op-{}", env.id);
    let kubeconfig = env
        .service_account_kubeconfig(&sa, Some("kube-baseline-manager"))
        .await;
    kubectl(&["apply", "-f", "config/rbac/tls-secrets/cluster_role.yaml"]);
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {sa}-tls-secrets, labels: {{{TEST_LABEL}: {}}}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kube-baseline-tls-secrets}}\nsubjects: [{{kind: ServiceAccount, name: {sa}, namespace: {OPERATOR_NAMESPACE}}}]\n",
        env.id
    );
    apply(&binding);
    let _operator = Operator::start_with(&env, &sa, &kubeconfig, &["--tls-secrets"]);

    let violation = |name: &str, check: &str| {
        (
            shop.clone(),
            name.to_owned(),
            check.to_owned(),
            DriftReason::Violation,
        )
    };
    let expected = BTreeSet::from([
        violation("uses-missing", "tls.secret"),
        violation("uses-opaque", "tls.secret"),
        violation("uses-malformed", "tls.certificate-malformed"),
        violation("uses-expired", "tls.certificate-expired"),
        violation("uses-wrong-host", "tls.certificate-host"),
    ]);
    let soon = violation("uses-soon", "tls.certificate-expiring");
    let found = eventually(SETTLE, "the certificate findings in status", || async {
        status_keys(&env, &baseline).await.filter(|found| {
            let without_soon: BTreeSet<Key> =
                found.iter().filter(|k| **k != soon).cloned().collect();
            without_soon == expected
        })
    })
    .await;
    let live = ingress_keys(&drift_in_report(
        &check_live_report(&["--tls-secrets"]),
        &baseline,
    ));
    assert_eq!(
        live.iter()
            .filter(|k| **k != soon)
            .cloned()
            .collect::<BTreeSet<_>>(),
        expected,
        "check --live --tls-secrets agrees"
    );
    // Without --tls-secrets, check --live reads no Secret: every certificate is Unknown.
    let unread = check_live_keys(&baseline);
    assert!(
        unread
            .iter()
            .filter(|k| k.2 == "tls.secret")
            .all(|k| k.3 == DriftReason::Unknown)
            && unread.iter().filter(|k| k.2 == "tls.secret").count() == 7,
        "{unread:?}"
    );

    // The warning window opens by the clock alone: the controller plans again at that instant.
    if found.contains(&soon) {
        eprintln!("note: the machine was too slow to see the status before the warning window");
    } else {
        let appeared = eventually(
            Duration::from_secs(90) + SETTLE,
            "the expiring certificate in status",
            || async {
                status_keys(&env, &baseline)
                    .await
                    .filter(|found| found.contains(&soon))
                    .map(|_| std::time::SystemTime::now())
            },
        )
        .await;
        assert!(appeared >= warn_from, "reported before its warning window");
    }

    // A renewed Secret: the watch re-plans the namespace and the finding goes.
    put_secret(
        &env,
        &shop,
        "expired",
        "kubernetes.io/tls",
        &certificate(&["*.example.com"], year),
    )
    .await;
    eventually(
        SETTLE,
        "the renewed certificate gone from status",
        || async {
            status_keys(&env, &baseline).await.filter(|found| {
                !found.contains(&violation("uses-expired", "tls.certificate-expired"))
            })
        },
    )
    .await;
    env.cleanup().await;
}
