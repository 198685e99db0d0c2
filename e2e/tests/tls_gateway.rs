//! The Gateway checks against the real API server with the Gateway API's own standard CRDs
//! (sigs.k8s.io/gateway-api, `e2e/cluster gateway-crds`): the operator starts without the
//! CRD, which is then installed (the Gateway watch must start); an HTTP-only listener is a
//! violation; listener status written by the test as a Gateway controller would (ResolvedRefs
//! False, InvalidCertificateRef) is a violation quoting the controller, status of an older
//! generation or none is Unknown; `check --live` reports the same; the CRD deleted again
//! takes the findings with it.
//!
//! One test function: the CRD is cluster-wide, and this file is its only user.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use kube::Api;
use kube_baseline::api::{DriftEntry, DriftReason, SecurityBaseline};
use kube_baseline_e2e::*;

const SETTLE: Duration = Duration::from_secs(60);
const GATEWAY_CRD: &str = "crd/gateways.gateway.networking.k8s.io";

/// (name, check, reason) of a Gateway finding.
type Key = (String, String, DriftReason);

fn gateway_findings(drift: &[DriftEntry]) -> Vec<DriftEntry> {
    drift
        .iter()
        .filter(|d| d.kind == "Gateway")
        .cloned()
        .collect()
}

fn keys(drift: &[DriftEntry]) -> BTreeSet<Key> {
    drift
        .iter()
        .map(|d| (d.name.clone(), d.check.clone(), d.reason))
        .collect()
}

/// The Gateway findings in the baseline's status, once it is of the current generation.
async fn status_findings(env: &TestEnv, baseline: &str) -> Option<Vec<DriftEntry>> {
    let baseline = Api::<SecurityBaseline>::all(env.admin.clone())
        .get(baseline)
        .await
        .ok()?;
    let status = baseline.status?;
    (status.observed_generation == baseline.metadata.generation)
        .then(|| gateway_findings(&status.drift))
}

fn check_live_keys(baseline: &str) -> BTreeSet<Key> {
    keys(&gateway_findings(&drift_in_report(
        &check_live_report(&[]),
        baseline,
    )))
}

fn kubectl_ok(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, stdout, stderr) = kubectl_result(args, stdin);
    assert!(ok, "kubectl {args:?}: {stderr}");
    stdout
}

fn key(name: &str, check: &str, reason: DriftReason) -> Key {
    (name.to_owned(), check.to_owned(), reason)
}

/// Waits until the Gateway findings in status have exactly `expected` keys; returns them.
async fn settled(
    env: &TestEnv,
    baseline: &str,
    expected: &BTreeSet<Key>,
    what: &str,
) -> Vec<DriftEntry> {
    eventually(SETTLE, what, || async {
        status_findings(env, baseline)
            .await
            .filter(|found| keys(found) == *expected)
    })
    .await
}

/// Writes `status.listeners` as a Gateway controller would (through the status subresource).
fn write_listener_status(
    namespace: &str,
    gateway: &str,
    generation: &str,
    refs: &[(&str, &str, &str, &str)],
) {
    let listeners: Vec<serde_json::Value> = refs
        .iter()
        .map(|(listener, status, reason, message)| {
            serde_json::json!({
                "name": listener,
                "attachedRoutes": 0,
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
                "conditions": [{
                    "type": "ResolvedRefs", "status": status, "reason": reason, "message": message,
                    "observedGeneration": generation.parse::<i64>().expect("generation"),
                    "lastTransitionTime": "2026-12-01T00:00:00Z",
                }],
            })
        })
        .collect();
    let patch = serde_json::json!({"status": {"listeners": listeners}}).to_string();
    kubectl_ok(
        &[
            "patch",
            "gateway",
            gateway,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
        None,
    );
}

#[tokio::test]
async fn gateway_findings_follow_the_gateway_api() {
    let env = TestEnv::new("tlsgw").await;
    // The operator must start without the Gateway API (a cluster reused from an earlier run
    // still has it).
    kubectl_ok(
        &[
            "delete",
            GATEWAY_CRD,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
        ],
        None,
    );
    let shop = env.create_namespace("shop", &[("env", "prod")]).await;
    let baseline = env.apply_baseline(
        "b",
        &format!(
            "mode: Audit\nnamespaceSelector: {{matchLabels: {{env: prod, {TEST_LABEL}: {}}}}}\nnetworkPolicy: {{defaultDeny: {{ingress: false, egress: false}}, allowDNS: false}}\ntls: {{}}\n",
            env.id
        ),
    );
    let operator = Operator::start(&env, &[]).await;
    settled(
        &env,
        &baseline,
        &BTreeSet::new(),
        "a status without the Gateway API",
    )
    .await;

    // Installed while the operator runs: the CRD watch must start the Gateway watch.
    let crds = gateway_api_crds();
    kubectl_ok(
        &["apply", "--server-side", "-f", crds.to_str().expect("path")],
        None,
    );
    wait_crds_established(&[GATEWAY_CRD.trim_start_matches("crd/")]);
    let gateway = |name: &str, listeners: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {shop}}}\nspec:\n  gatewayClassName: example\n  listeners: {listeners}\n"
        )
    };
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&gateway(
            "http-only",
            "[{name: http, protocol: HTTP, port: 80, hostname: shop.example.com}]",
        )),
    );
    let secure_listeners = |http_port: u16| {
        format!(
            "[{{name: http, protocol: HTTP, port: {http_port}, hostname: a.example.com}}, {{name: websecure, protocol: HTTPS, port: 443, hostname: '*.example.com', tls: {{mode: Terminate, certificateRefs: [{{name: missing}}]}}}}]"
        )
    };
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&gateway("secure", &secure_listeners(80))),
    );

    use DriftReason::{Unknown, Violation};
    let no_status = BTreeSet::from([
        key("http-only", "gateway.http-without-https", Violation),
        key("http-only", "gateway.listener-refs", Unknown),
        key("secure", "gateway.listener-refs", Unknown),
    ]);
    let found = settled(
        &env,
        &baseline,
        &no_status,
        "Gateway findings once the CRD exists",
    )
    .await;
    let http = found
        .iter()
        .find(|d| d.check == "gateway.http-without-https")
        .expect("the HTTP finding");
    assert!(
        http.message
            .contains("HTTP listener http serves hostname shop.example.com"),
        "{}",
        http.message
    );
    assert_eq!(check_live_keys(&baseline), no_status, "check --live agrees");

    // A controller reports: the certificate reference did not resolve.
    let generation = kubectl_ok(
        &[
            "get",
            "gateway",
            "secure",
            "-n",
            &shop,
            "-o",
            "jsonpath={.metadata.generation}",
        ],
        None,
    );
    write_listener_status(
        &shop,
        "secure",
        &generation,
        &[
            ("http", "True", "ResolvedRefs", ""),
            (
                "websecure",
                "False",
                "InvalidCertificateRef",
                "Secret missing does not exist",
            ),
        ],
    );
    let reported = BTreeSet::from([
        key("http-only", "gateway.http-without-https", Violation),
        key("http-only", "gateway.listener-refs", Unknown),
        key("secure", "gateway.listener-refs", Violation),
    ]);
    let found = settled(
        &env,
        &baseline,
        &reported,
        "the controller's ResolvedRefs in status",
    )
    .await;
    let refs = found
        .iter()
        .find(|d| d.name == "secure")
        .expect("the listener-refs finding");
    assert!(
        refs.message.contains("listener websecure")
            && refs.message.contains("InvalidCertificateRef")
            && refs.message.contains("Secret missing does not exist"),
        "{}",
        refs.message
    );
    assert_eq!(check_live_keys(&baseline), reported, "check --live agrees");

    // A spec change: the status is of the previous generation until a controller reports.
    kubectl_ok(
        &["apply", "-f", "-"],
        Some(&gateway("secure", &secure_listeners(8080))),
    );
    settled(
        &env,
        &baseline,
        &no_status,
        "status of an older generation is Unknown",
    )
    .await;

    // The Gateway API removed: its findings go, the operator goes on.
    kubectl_ok(
        &["delete", GATEWAY_CRD, "--wait=true", "--timeout=120s"],
        None,
    );
    settled(
        &env,
        &baseline,
        &BTreeSet::new(),
        "no Gateway findings without the CRD",
    )
    .await;
    assert_eq!(check_live_keys(&baseline), BTreeSet::new());
    env.cleanup_with(operator).await;
}
